"""Memory benchmark: peak memory of ``parareal.solve`` per slice, in states.

Usage::

    python benchmarks/memory.py                      # 1e5 and 2e6 entries, about a minute
    python benchmarks/memory.py --sizes 100000       # one size, seconds
    python benchmarks/memory.py --json out.json      # default benchmarks/results/memory.json

A *state* is ``y0.nbytes``; memory is reported as ``peak / (slices * y0.nbytes)`` so that a
figure is independent of the state's size. Every case solves ``y' = -y`` on ``[0, 2]`` with
a numpy float64 state of the given number of entries (ones), ``slices`` slices (default 16),
coarse ``RK4(1)`` given explicitly, fine ``RK4(4)``, ``tol = 0`` and ``max_iters = 4`` (four
full iterations, so that every iterate a run could keep exists), on the serial backend
(``f`` called per state) and the batched one (``vectorized=True``; ``Batched()`` and
``Batched(max_batch=4)``), with the synchronous and the pipelined schedule (default
``lookahead``). ``--kinds torch`` runs the same cases on float64 torch CPU tensors.

Two measures per case, each in a fresh subprocess so that no case inherits another's heap:

* ``tracemalloc``: the peak of memory traced during ``solve`` (numpy's buffers and Python
  objects), counted from the allocations alive when it started (``y0`` is not counted; the
  result is).
* ``rss``: ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` after the solve minus its value
  just before (after imports, ``y0`` made and a small warm-up solve): the peak resident
  memory that the solve added. It is coarse (the allocator may keep freed pages), and it
  reads 0 for a run that stays below the warm-up's peak.

The thread count is set explicitly (``--threads``, default 1) for numpy's BLAS through the
environment before numpy is imported (``-y`` uses no BLAS; this only fixes the conditions).
"""

# ruff: noqa: E402
from __future__ import annotations

import os
import sys

_THREADS = "1"
for _i, _arg in enumerate(sys.argv):
    if _arg == "--threads" and _i + 1 < len(sys.argv):
        _THREADS = sys.argv[_i + 1]
    elif _arg.startswith("--threads="):
        _THREADS = _arg.split("=", 1)[1]
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = _THREADS

import argparse
import itertools
import json
import platform
import resource
import subprocess
import tracemalloc
from typing import Any

import numpy as np

import parareal

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_JSON = os.path.join(HERE, "results", "memory.json")
#: backend label -> (backend factory, vectorized)
BACKENDS = {
    "serial": (lambda: "serial", False),
    "batched": (lambda: parareal.Batched(), True),
    "batched(max_batch=4)": (lambda: parareal.Batched(max_batch=4), True),
}
SCHEDULES = ("synchronous", "pipelined")
#: Environment of the measuring subprocesses (``--mmap-threshold`` adds glibc's setting).
_ENV = dict(os.environ)


def _f(t: Any, y: np.ndarray) -> np.ndarray:
    return -y


def _state(kind: str, size: int) -> Any:
    """A float64 state of ones: numpy, or a torch CPU tensor (torch's threads set to 1)."""
    if kind == "torch":
        import torch

        torch.set_num_threads(int(_THREADS))
        return torch.ones(size, dtype=torch.float64)
    return np.ones(size)


def _solve(y0: Any, slices: int, backend: str, schedule: str) -> parareal.Solution:
    make, vectorized = BACKENDS[backend]
    return parareal.solve(
        _f, y0, (0.0, 2.0), coarse=parareal.RK4(steps=1), fine=parareal.RK4(steps=4),
        slices=slices, tol=0.0, max_iters=4, backend=make(), schedule=schedule,
        vectorized=vectorized,
    )


def measure_one(size: int, slices: int, backend: str, schedule: str,
                kind: str = "numpy") -> dict[str, Any]:
    """Run one case in this process and return its figures (called in a subprocess)."""
    _solve(_state(kind, 8), slices, backend, schedule)  # warm-up: imports, caches
    y0 = _state(kind, size)
    nbytes = y0.element_size() * y0.numel() if kind == "torch" else y0.nbytes
    state = slices * nbytes
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux
    sol = _solve(y0, slices, backend, schedule)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    del sol
    tracemalloc.start()
    sol = _solve(y0, slices, backend, schedule)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "kind": kind, "size": size, "slices": slices, "backend": backend,
        "schedule": schedule, "iterations": sol.iterations, "state_bytes": nbytes,
        "tracemalloc_peak_bytes": peak, "rss_peak_bytes": rss,
        "tracemalloc_states_per_slice": peak / state, "rss_states_per_slice": rss / state,
    }


def measure(size: int, slices: int, backend: str, schedule: str,
            kind: str = "numpy") -> dict[str, Any]:
    """Run one case in a fresh subprocess (so that its RSS peak is its own)."""
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--one", str(size), str(slices), backend,
         schedule, "--kind", kind, "--threads", _THREADS],
        check=True, capture_output=True, text=True, timeout=900, env=_ENV,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table."""
    lines = ["| state | entries | backend | schedule | tracemalloc peak | per slice | "
             "RSS peak | per slice |", "|---|---:|---|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['kind']} | {r['size']:.0e} | {r['backend']} | {r['schedule']} | "
            f"{r['tracemalloc_peak_bytes'] / 2**20:.1f} MiB | "
            f"{r['tracemalloc_states_per_slice']:.2f} | {r['rss_peak_bytes'] / 2**20:.1f} MiB | "
            f"{r['rss_states_per_slice']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 2_000_000])
    parser.add_argument("--slices", type=int, default=16)
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=list(BACKENDS))
    parser.add_argument("--kinds", nargs="+", default=["numpy"], choices=["numpy", "torch"],
                        help="state kinds (torch: CPU tensors; tracemalloc does not see "
                             "torch's allocator, so only the RSS figure counts)")
    parser.add_argument("--kind", default="numpy", help=argparse.SUPPRESS)
    parser.add_argument("--mmap-threshold", type=int, default=None, metavar="BYTES",
                        help="set MALLOC_MMAP_THRESHOLD_ in the measuring processes, so that "
                             "glibc returns freed large blocks at once and the RSS figure "
                             "follows live memory (torch's CPU tensors otherwise stay in "
                             "glibc's heap after they are freed)")
    parser.add_argument("--json", default=DEFAULT_JSON)
    parser.add_argument("--threads", default=_THREADS)
    parser.add_argument("--one", nargs=4, metavar=("SIZE", "SLICES", "BACKEND", "SCHEDULE"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.threads.isdigit() or int(args.threads) < 1:
        parser.error("--threads must be >= 1")
    if min(args.sizes) < 1 or args.slices < 1:
        parser.error("--sizes and --slices must be >= 1")
    if args.one:
        size, slices, backend, schedule = args.one
        print(json.dumps(measure_one(int(size), int(slices), backend, schedule, args.kind)))
        return 0
    if args.mmap_threshold is not None:
        _ENV["MALLOC_MMAP_THRESHOLD_"] = str(args.mmap_threshold)
    rows = []
    for kind, size, backend, schedule in itertools.product(args.kinds, args.sizes,
                                                           args.backends, SCHEDULES):
        rows.append(measure(size, args.slices, backend, schedule, kind))
        print(f"{kind} {size:.0e} {backend} {schedule}: "
              f"{rows[-1]['tracemalloc_states_per_slice']:.2f} states/slice (traced), "
              f"{rows[-1]['rss_states_per_slice']:.2f} (RSS)", file=sys.stderr)
    print(table(rows))
    meta = {"threads": int(args.threads), "mmap_threshold": args.mmap_threshold,
            "python": platform.python_version(), "numpy": np.__version__,
            "machine": platform.machine(),
            "command": "python benchmarks/memory.py " + " ".join(argv or sys.argv[1:])}
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as fh:
            json.dump({"meta": meta, "rows": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
