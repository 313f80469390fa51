"""Concurrency benchmark: Parareal's fine solves on threads, worker processes and Dask.

Usage::

    python benchmarks/concurrency.py                 # both cases, 5 repeats, about 90 s
    python benchmarks/concurrency.py --quick         # small dense case, 1 repeat, about 20 s
    python benchmarks/concurrency.py --quick --workers 2 --no-warm-up   # a smoke run, ~10 s
    python benchmarks/concurrency.py --json benchmarks/results/concurrency-2cpu.json \\
        --markdown benchmarks/results/concurrency-2cpu.md
    python benchmarks/concurrency.py --only heat-bdf-dense --workers 1,2,4 --repeats 9
    python benchmarks/concurrency.py --no-dask       # without distributed installed
    python benchmarks/concurrency.py --keep-freed-memory   # glibc keeps freed memory

Cases (the heat equation ``u_t = u_xx``, ``parareal.problems.get("heat", points=400,
t_end=0.1, slices=32)``, ``y0 = sin(pi x)``; synchronous schedule, ``tol=1e-8``):

heat-bdf-dense
    Fine: ``ScipyIVP("BDF", rtol=1e-8, atol=1e-10)`` with the exact Jacobian as a dense
    matrix (``options={"jac": A}``), over 10 ms per slice, most of it in LAPACK's LU
    factorisation, which runs without the GIL: the case where threads can scale. 400 points
    keep the matrix (1.3 MB) within one core's L2 cache (2 MB here): with 500 points (2 MB)
    two plain processes running these solves side by side, without parareal, were only
    1.5-1.7x as fast as one on this machine (memory traffic and page faults, not the GIL).
heat-bdf-sparse
    The same with the Jacobian as a sparse matrix: a few ms per slice, most of it in
    ``solve_ivp``'s Python code, which holds the GIL: the case where only processes scale.

Coarse, both cases: Crank-Nicolson, one step per slice, with the heat equation's tridiagonal
matrix (``CrankNicolson`` below: the explicit half through ``f``, the implicit half with
LAPACK's banded Cholesky solver), about 60 microseconds per slice. It converges in 2
iterations (a loose BDF coarse, ``ScipyIVP("BDF", rtol=1e-2)``, took 3 in a trial, at tens of
times the cost per slice) and keeps the sequential coarse sweep a small part of the run, so
that the fine solves, which the workers share, dominate. The problem's own
default coarse propagator, explicit Euler, is limited by stability to thousands of steps per
slice at 400 points.

Variants, interleaved in every repeat (the order rotates from repeat to repeat) so that they
share the machine's noise, after one untimed warm-up run each (``--no-warm-up``: none, the first
timed run is also the reported first run; a smoke run, its times include the workers' start):

- serial fine: ``parareal.solve_serial(f, y0, span, propagator=fine, slices=32)``;
- serial coarse: the same with the coarse propagator (its time gives the cost ratio ``c``);
- Parareal on the serial backend (the reference of the 1.8x target);
- Parareal on ``Threads(W)``, ``Processes(W)`` and ``Executor(client.get_executor(), W)``
  over a Dask ``LocalCluster(n_workers=W, threads_per_worker=1, processes=True)``, for every
  ``W`` of ``--workers`` (default 1 and 2). The process pools and the Dask clusters are
  *persistent*: made once before the timed runs (their one-off start-up is reported apart);
- Parareal on a new ``Processes(W)`` for every run, the largest ``W`` only: what
  ``backend="processes"`` does (a pool per run, start-up included in every run);
- the fine sweeps alone, without Parareal, on a plain ``ThreadPoolExecutor(W)`` and
  ``ProcessPoolExecutor(W)`` (persistent too): the same fine propagations as the Parareal run
  (sweep ``k`` over slices ``k..N-1``, split into ``W`` contiguous groups, one task each),
  with no coarse sweep and no engine. Their speedup is what this machine allows for this
  work with ``W`` workers: the ceiling to judge the Parareal rows against.

Reported per variant: median and minimum wall-clock seconds (``time.perf_counter`` around
the call); speedup against the serial backend and against the serial fine solve, both
measured in the same run; iterations; the model speedup ``parareal.theory.speedup_model(K,
workers=W, coarse_cost, fine_cost)`` with the costs per slice measured here (the serial coarse
and fine sweeps divided by the number of slices); parallel efficiency = measured speedup over
the serial fine solve / model speedup; busy workers = ``Stats.wall_time["workers"] / total``;
and whether ``y``, ``iterations``, ``residuals``, ``status`` and ``critical_path`` equal the
serial backend's, bit for bit (checked on every run; the exit status is 1 if one differs).

The thread count is set explicitly (``--threads``, default 1) for BLAS through the
environment before numpy is imported (worker processes inherit it; Dask's workers get it
through ``distributed.nanny.pre-spawn-environ``, without Dask's default
``MALLOC_TRIM_THRESHOLD_=65536`` unless ``--dask-env``: see :func:`dask_cluster`).
``--keep-freed-memory`` makes glibc keep freed memory in every process (see
:func:`keep_freed_memory`). Wall times depend on the machine and its load (the header
records both, and each worker's environment); the iterations and critical paths do not.
"""

# The BLAS thread count must be set before numpy is imported, hence imports after code:
# ruff: noqa: E402
from __future__ import annotations

import argparse
import os
import sys


def _early_threads(argv: list[str]) -> None:
    """Apply ``--threads`` to the environment before numpy loads its BLAS (checked in main)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--threads", default="1")
    known, _ = pre.parse_known_args(argv)
    if known.threads.isdigit() and int(known.threads) >= 1:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = known.threads


if __name__ == "__main__":
    _early_threads(sys.argv[1:])

import concurrent.futures as cf
import contextlib
import datetime
import gc
import json
import logging
import multiprocessing
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import parareal
from parareal import problems, theory
from parareal.backends import Backend, Executor, Processes, Threads
from parareal.cli.threads import set_threads

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from core import machine_info  # noqa: I001

TOL = 1e-8
SLICES = 32
T_END = 0.1
TARGET = 1.8  # the issue's target: 2 workers at least 1.8x faster than the serial backend
PARAREAL_KINDS = ("serial", "threads", "processes", "dask", "processes (new pool)")


# ----------------------------------------------------------------------------- the problem
class CrankNicolson(parareal.Propagator):
    """Crank-Nicolson for the heat equation's ``y' = A y``, ``steps`` steps per propagation.

    ``(I - h/2 A) y1 = y + h/2 f(t, y)``: the explicit half through ``f`` (``f(t, y) = A y``),
    the implicit half with LAPACK's banded Cholesky solver (``I - h/2 A`` is symmetric
    positive definite and tridiagonal). A-stable, second order, one call of ``f`` per step.

    Parameters
    ----------
    points : int
        Interior grid points of the heat problem (``A`` is its second-difference matrix).
    steps : int
        Steps per propagation.
    """

    def __init__(self, points: int, steps: int = 1) -> None:
        self.points = points
        self.steps = steps

    def __repr__(self) -> str:
        return f"CrankNicolson(points={self.points}, steps={self.steps})"

    @property
    def evals(self) -> int:
        return self.steps

    def propagate(self, f: Callable[[Any, Any], Any], y: Any, t0: float, t1: float) -> Any:
        from scipy.linalg import solveh_banded

        h = (float(t1) - float(t0)) / self.steps
        inv_dx2 = float((self.points + 1) ** 2)
        banded = np.empty((2, self.points))  # upper form: superdiagonal, diagonal
        banded[0] = -0.5 * h * inv_dx2
        banded[1] = 1.0 + h * inv_dx2
        t = float(t0)
        for i in range(self.steps):
            y = solveh_banded(banded, y + 0.5 * h * f(t + i * h, y))
        return y


def heat_matrix(points: int, *, dense: bool) -> Any:
    """The heat problem's matrix ``A`` (``f(t, y) = A y``): scipy sparse CSC or dense."""
    from scipy import sparse

    ones = np.ones(points)
    matrix = sparse.diags([ones[1:], -2.0 * ones, ones[1:]], [-1, 0, 1], format="csc")
    matrix = matrix * float((points + 1) ** 2)
    return matrix.toarray() if dense else matrix


@dataclass
class Case:
    """One benchmark problem: the heat equation with a BDF fine propagator."""

    name: str
    description: str
    f: Callable[[Any, Any], Any]
    y0: np.ndarray
    t_span: tuple[float, float]
    coarse: parareal.Propagator
    fine: parareal.Propagator
    slices: int


def heat_case(points: int, *, dense: bool) -> Case:
    p = problems.get("heat", points=points, t_end=T_END, slices=SLICES)
    jac = "dense" if dense else "sparse"
    fine = parareal.ScipyIVP(
        "BDF", rtol=1e-8, atol=1e-10, options={"jac": heat_matrix(points, dense=dense)}
    )
    coarse = CrankNicolson(points)
    return Case(
        name=f"heat-bdf-{jac}",
        description=(
            f"{p.description}; {SLICES} slices; fine {fine!r} with the exact {jac} Jacobian, "
            f"coarse {coarse!r}; synchronous schedule, tol={TOL:g}"
        ),
        f=p.f,
        y0=np.array(p.y0),
        t_span=p.t_span,
        coarse=coarse,
        fine=fine,
        slices=p.slices,
    )


# ----------------------------------------------------------------------------- variants
@dataclass
class Variant:
    """One timed variant: ``run()`` returns a Solution (Parareal) or an array (serial)."""

    name: str
    kind: str  # "serial fine", "serial coarse", "serial", "threads", "processes", "dask"
    workers: int
    run: Callable[[], Any]


BLAS_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


MALLOC_VARS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def worker_env() -> dict[str, str | None]:
    """The variables of a worker's environment that matter here."""
    return {var: os.environ.get(var) for var in (*BLAS_VARS, *MALLOC_VARS)}


def keep_freed_memory() -> None:
    """Make glibc keep freed memory for reuse, in this process and in every worker.

    By default glibc serves large arrays with fresh memory maps and returns freed memory at
    the top of the heap to the kernel, so a solver that allocates large temporaries on every
    step page-faults them in (and the kernel zeroes them) again and again; on this machine
    that costs a fifth of the dense BDF solve and keeps two processes from running it twice
    as fast as one. Here: no maps below 32 MiB (``M_MMAP_THRESHOLD``, its maximum) and no
    trimming below 256 MiB (``M_TRIM_THRESHOLD``), set with ``mallopt`` in this process and
    through the environment for the worker processes started afterwards.
    """
    import ctypes
    import ctypes.util

    mmap_threshold, trim_threshold = 32 * 2**20, 256 * 2**20
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    if not (libc.mallopt(-3, mmap_threshold) and libc.mallopt(-1, trim_threshold)):
        raise RuntimeError("mallopt refused M_MMAP_THRESHOLD / M_TRIM_THRESHOLD")
    os.environ.update(MALLOC_MMAP_THRESHOLD_=str(mmap_threshold),
                      MALLOC_TRIM_THRESHOLD_=str(trim_threshold))


#: Dask's own monitoring, turned off or slowed under ``--quick`` (a smoke run): the workers'
#: statistical profiler (a stack sample every 10 ms), the event-loop watchdog (a tick every
#: 20 ms) and the system monitor (every 500 ms) cost CPU time in every process of the cluster
#: for as long as it runs: an idle two-worker cluster took 1.3 CPU-s per 20 s in this process
#: and 0.45 with these settings. The full benchmark keeps Dask's defaults (its published runs).
QUIET_DASK = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "1s",
}


def dask_cluster(workers: int, threads: int, dask_env: bool,
                 quiet: bool = False) -> tuple[Any, Any, float]:
    """A Dask LocalCluster of ``workers`` single-threaded worker processes and its client.

    Dask's nanny sets the variables of ``distributed.nanny.pre-spawn-environ`` in its worker
    processes, and also in *this* process's ``os.environ`` (the nanny runs here), where every
    process started later would inherit them. Its default includes
    ``MALLOC_TRIM_THRESHOLD_=65536``, which stops glibc from adapting its mmap threshold: each
    large temporary array is then mapped and page-faulted anew, and the dense BDF solve here
    runs about twice as slowly. So the Dask workers get the same environment as every other
    process of the benchmark (BLAS threads as ``--threads``, no malloc setting; ``dask_env``
    keeps Dask's default for them), and this process's environment is restored afterwards.
    ``quiet`` applies :data:`QUIET_DASK` to the cluster (its nannies pass it to the workers).
    """
    import dask
    from distributed import Client, LocalCluster

    env = dict(dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {})
    env.update({var: str(threads) for var in BLAS_VARS})
    if not dask_env:
        env.pop("MALLOC_TRIM_THRESHOLD_", None)
    saved = dict(os.environ)
    start = time.perf_counter()
    with dask.config.set({"distributed.nanny.pre-spawn-environ": env,
                          **(QUIET_DASK if quiet else {})}):
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            silence_logs=logging.ERROR,
        )
    client = Client(cluster)
    seconds = time.perf_counter() - start
    for key in set(os.environ) - set(saved):
        del os.environ[key]
    os.environ.update(saved)
    return cluster, client, seconds


def fine_group(fine: parareal.Propagator, f: Callable[[Any, Any], Any], ys: list[Any],
               t0s: list[float], t1s: list[float]) -> list[Any]:
    """Propagate a group of slices one after another (a worker's share of a sweep)."""
    return [fine.propagate(f, y, t0, t1) for y, t0, t1 in zip(ys, t0s, t1s)]


def contiguous(items: list[int], groups: int) -> list[list[int]]:
    """``items`` split into at most ``groups`` contiguous runs of sizes differing by <= 1."""
    groups = min(groups, len(items))
    size, extra = divmod(len(items), groups)
    out, begin = [], 0
    for g in range(groups):
        end = begin + size + (g < extra)
        out.append(items[begin:end])
        begin = end
    return out


def make_variants(case: Case, pools: Pools, fresh_workers: int | None,
                  reference: Any) -> list[Variant]:
    def parareal_run(backend: Backend | str) -> Callable[[], Any]:
        return lambda: parareal.solve(
            case.f, case.y0, case.t_span, coarse=case.coarse, fine=case.fine,
            slices=case.slices, tol=TOL, backend=backend,
        )

    def serial_run(prop: parareal.Propagator) -> Callable[[], Any]:
        return lambda: parareal.solve_serial(
            case.f, case.y0, case.t_span, propagator=prop, slices=case.slices
        )

    def fresh_pool(workers: int) -> Callable[[], Any]:
        def run() -> Any:
            with Processes(workers) as backend:
                return parareal_run(backend)()

        return run

    def sweeps_run(executor: cf.Executor, workers: int) -> Callable[[], Any]:
        # Parareal's fine work without Parareal: sweep k propagates slices k..N-1 (from the
        # reference's boundary values), split into contiguous groups as the driver does
        starts, t = list(reference.y), list(reference.t)

        def run() -> Any:
            for k in range(reference.iterations):
                futures = [
                    executor.submit(fine_group, case.fine, case.f, [starts[n] for n in group],
                                    [t[n] for n in group], [t[n + 1] for n in group])
                    for group in contiguous(list(range(k, case.slices)), workers)
                ]
                for future in futures:
                    future.result()

        return run

    variants = [
        Variant("serial fine (solve_serial)", "serial fine", 1, serial_run(case.fine)),
        Variant("serial coarse (solve_serial)", "serial coarse", 1, serial_run(case.coarse)),
        Variant("parareal serial backend", "serial", 1, parareal_run("serial")),
    ]
    for kind, workers, backend in pools.backends:
        variants.append(Variant(f"parareal {kind} W={workers}", kind, workers,
                                parareal_run(backend)))
    for kind, workers, executor in pools.executors:
        variants.append(Variant(f"fine sweeps only: {type(executor).__name__}({workers}), no "
                                "Parareal", f"sweeps {kind}", workers,
                                sweeps_run(executor, workers)))
    if fresh_workers is not None:
        variants.append(Variant(f"parareal processes W={fresh_workers}, new pool per run",
                                "processes (new pool)", fresh_workers, fresh_pool(fresh_workers)))
    return variants


def same_run(sol: Any, ref: Any) -> bool:
    """Bitwise the same ``y`` and the same iterations, residuals, status and critical path."""
    return (
        np.array_equal(sol.y, ref.y)
        and sol.iterations == ref.iterations
        and list(sol.residuals) == list(ref.residuals)
        and sol.status == ref.status
        and sol.stats.critical_path == ref.stats.critical_path
    )


def timed(run: Callable[[], Any]) -> tuple[Any, float]:
    gc.collect()
    start = time.perf_counter()
    out = run()
    return out, time.perf_counter() - start


def bench_case(case: Case, pools: Pools, fresh_workers: int | None,
               repeats: int, warm_up: bool = True) -> dict[str, Any]:
    reference = parareal.solve(case.f, case.y0, case.t_span, coarse=case.coarse,
                               fine=case.fine, slices=case.slices, tol=TOL, backend="serial")
    variants = make_variants(case, pools, fresh_workers, reference)
    # warm-up, untimed but recorded: the first run of a persistent pool starts its workers
    first: dict[str, float] = {}
    for v in variants if warm_up else ():
        _, seconds = timed(v.run)
        first[v.name] = seconds
        print(f"  warm-up {v.name}: {seconds:.3f} s", file=sys.stderr, flush=True)
    times: dict[str, list[float]] = {v.name: [] for v in variants}
    busy: dict[str, list[float]] = {v.name: [] for v in variants}
    same: dict[str, bool] = {v.name: True for v in variants}
    last: dict[str, Any] = {}
    for r in range(repeats):
        shift = r % len(variants)
        for v in variants[shift:] + variants[:shift]:
            out, seconds = timed(v.run)
            times[v.name].append(seconds)
            if v.kind in PARAREAL_KINDS:
                last[v.name] = out
                same[v.name] &= same_run(out, reference)
                wall = out.stats.wall_time
                if "workers" in wall:
                    busy[v.name].append(wall["workers"] / wall["total"])
            first.setdefault(v.name, seconds)  # without a warm-up: the first timed run
        print(f"  repeat {r + 1}/{repeats} done", file=sys.stderr, flush=True)
    median = {name: statistics.median(ts) for name, ts in times.items()}
    fine_name, coarse_name, serial_name = (v.name for v in variants[:3])
    fine_cost = median[fine_name] / case.slices
    coarse_cost = median[coarse_name] / case.slices
    iterations = reference.iterations
    rows = []
    for v in variants:
        row: dict[str, Any] = {
            "variant": v.name,
            "kind": v.kind,
            "workers": v.workers,
            "median_s": median[v.name],
            "min_s": min(times[v.name]),
            "times_s": times[v.name],
            "first_run_s": first[v.name],
            "vs_serial_backend": median[serial_name] / median[v.name],
            "vs_serial_fine": median[fine_name] / median[v.name],
        }
        if v.name in last:
            sol = last[v.name]
            model = theory.speedup_model(iterations, workers=v.workers,
                                         coarse_cost=coarse_cost, fine_cost=fine_cost)
            row.update({
                "same_as_serial": same[v.name],
                "iterations": sol.iterations,
                "status": sol.status.value,
                "critical_path": sol.stats.critical_path,
                "fine_calls": sol.stats.fine_calls,
                "model_speedup": model,
                "efficiency": row["vs_serial_fine"] / model,
                "busy_workers": statistics.median(busy[v.name]) if busy[v.name] else None,
                "wall_time": dict(sol.stats.wall_time),
            })
        rows.append(row)
    return {
        "case": case.name,
        "description": case.description,
        "slices": case.slices,
        "iterations": iterations,
        "residuals": list(reference.residuals),
        "fine_cost_s": fine_cost,
        "coarse_cost_s": coarse_cost,
        "cost_ratio": coarse_cost / fine_cost,
        "rows": rows,
    }


# ----------------------------------------------------------------------------- output
def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms" if seconds < 10 else f"{seconds:.2f} s"


def markdown_case(res: dict[str, Any]) -> str:
    lines = [
        f"### {res['case']}",
        "",
        res["description"] + ".",
        "",
        f"Per slice: fine {_ms(res['fine_cost_s'])}, coarse {_ms(res['coarse_cost_s'])} "
        f"(c = {res['cost_ratio']:.4f}); K = {res['iterations']} iterations, residuals "
        + ", ".join(f"{r:.1e}" for r in res["residuals"][1:]) + ".",
        "",
        "| variant | median | min | vs serial backend | vs serial fine | iters | model S | "
        "efficiency | busy workers | same as serial |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in res["rows"]:
        if "iterations" in row:
            busy = row["busy_workers"]
            extra = (f"{row['iterations']} | {row['model_speedup']:.2f}x | "
                     f"{row['efficiency']:.0%} | {'-' if busy is None else f'{busy:.2f}'} | "
                     f"{'yes' if row['same_as_serial'] else 'NO'}")
        else:
            extra = "- | - | - | - | -"
        lines.append(
            f"| {row['variant']} | {_ms(row['median_s'])} | {_ms(row['min_s'])} | "
            f"{row['vs_serial_backend']:.2f}x | {row['vs_serial_fine']:.2f}x | {extra} |"
        )
    return "\n".join(lines) + "\n"


def target_text(res: dict[str, Any], workers: int) -> str:
    """The issue's target for ``workers`` workers, per backend kind, and the ceiling."""
    met, ceiling = [], []
    for row in res["rows"]:
        if row["workers"] != workers:
            continue
        if row["kind"] in ("threads", "processes", "dask"):
            ok = row["vs_serial_backend"] >= TARGET
            met.append(f"{row['kind']} {row['vs_serial_backend']:.2f}x "
                       f"({'met' if ok else 'NOT met'})")
        elif row["kind"].startswith("sweeps "):
            ceiling.append(f"{row['kind'].split()[1]} {row['vs_serial_backend']:.2f}x")
    text = (f"\nTarget ({workers} workers at least {TARGET}x faster than the serial backend): "
            + ", ".join(met) + ".")
    if ceiling:
        text += (f" The fine sweeps alone on {workers} workers, without Parareal: "
                 + ", ".join(ceiling) + ".")
    return text + "\n"


def startup_lines(startup: dict[str, Any], results: list[dict[str, Any]]) -> list[str]:
    lines = ["One-off start-up of the persistent pools (not in the table's times):", ""]
    for key, seconds in startup.items():
        lines.append(f"- {key}: {seconds:.2f} s")
    for res in results:
        for row in res["rows"]:
            if row["kind"] in ("processes", "dask"):
                extra = row["first_run_s"] - row["median_s"]
                lines.append(f"- {res['case']}, {row['variant']}: first run "
                             f"{row['first_run_s']:.2f} s, {extra:+.2f} s over the median "
                             "(starting the workers, importing scipy there)")
    return lines


def versions() -> dict[str, Any]:
    info = machine_info()
    for mod in ("distributed", "cloudpickle"):
        try:
            info[mod] = __import__(mod).__version__
        except ImportError:
            info[mod] = None
    try:
        info["usable_cpus"] = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        info["usable_cpus"] = os.cpu_count()
    return info


def load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover
        return "?"


@dataclass
class Pools:
    """The persistent workers of the benchmark.

    Attributes
    ----------
    backends : list of (kind, workers, Backend)
        Parareal's concurrent backends.
    executors : list of (kind, workers, Executor)
        Plain ``concurrent.futures`` pools for the fine sweeps without Parareal.
    startup : dict
        Seconds to start each Dask cluster.
    environments : dict
        The variables of :func:`worker_env` here and on each Dask cluster's workers.
    """

    backends: list[tuple[str, int, Backend]] = field(default_factory=list)
    executors: list[tuple[str, int, cf.Executor]] = field(default_factory=list)
    startup: dict[str, float] = field(default_factory=dict)
    environments: dict[str, Any] = field(default_factory=dict)


@contextlib.contextmanager
def open_pools(workers: list[int], dask: bool, threads: int, dask_env: bool,
               quiet_dask: bool = False) -> Iterator[Pools]:
    """Thread, process and Dask workers for every worker count, closed on exit (``quiet_dask``:
    see :data:`QUIET_DASK`)."""
    pools = Pools()
    spawn = multiprocessing.get_context("spawn")
    with contextlib.ExitStack() as stack:
        for w in workers:
            pools.backends.append(("threads", w, Threads(w)))
        for w in workers:
            pools.backends.append(("processes", w, stack.enter_context(Processes(w))))
        for w in workers:
            pools.executors.append(("threads", w, stack.enter_context(
                cf.ThreadPoolExecutor(w))))
            pools.executors.append(("processes", w, stack.enter_context(
                cf.ProcessPoolExecutor(w, mp_context=spawn))))
        pools.environments["this process"] = worker_env()
        if dask:
            for w in workers:
                cluster, client, seconds = dask_cluster(w, threads, dask_env, quiet_dask)
                stack.callback(cluster.close)
                stack.callback(client.close)
                pools.startup[f"Dask LocalCluster(n_workers={w}) + Client"] = seconds
                pools.environments[f"dask W={w}"] = next(iter(client.run(worker_env).values()))
                pools.backends.append(("dask", w, Executor(client.get_executor(), workers=w)))
        yield pools


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (default 5)")
    parser.add_argument("--quick", action="store_true",
                        help="the dense case with 50 points, 1 repeat, Dask's own monitoring "
                        "off (QUIET_DASK), about 20 s (a smoke run)")
    parser.add_argument("--workers", default="1,2",
                        help="comma-separated worker counts (default 1,2)")
    parser.add_argument("--only", default="", help="comma-separated cases to run")
    parser.add_argument("--no-dask", action="store_true", help="skip the Dask rows")
    parser.add_argument("--keep-freed-memory", action="store_true",
                        help="glibc keeps freed memory for reuse (no trimming, no maps below "
                        "32 MiB) here and in every worker; see keep_freed_memory")
    parser.add_argument("--dask-env", action="store_true",
                        help="keep Dask's default worker environment "
                        "(MALLOC_TRIM_THRESHOLD_=65536; see dask_cluster)")
    parser.add_argument("--json", metavar="PATH", help="write all raw numbers as JSON")
    parser.add_argument("--markdown", metavar="PATH", help="also write the report to PATH")
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS threads, also of the workers (default 1)")
    parser.add_argument("--no-warm-up", action="store_true",
                        help="no untimed warm-up run before the timed ones (a smoke run: the "
                        "first timed run of a persistent pool starts its workers)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    if args.threads < 1:
        parser.error("--threads must be >= 1")
    try:
        workers = sorted({int(w) for w in args.workers.split(",")})
    except ValueError:
        parser.error(f"--workers must be comma-separated whole numbers, got {args.workers!r}")
    if workers[0] < 1:
        parser.error("--workers must be >= 1")
    try:
        import scipy.integrate  # noqa: F401
    except ImportError:
        parser.error("this benchmark needs scipy: pip install 'parareal[scipy]'")
    dask = not args.no_dask
    if dask:
        try:
            import distributed  # noqa: F401
        except ImportError:
            parser.error("the Dask rows need distributed: pip install 'parareal[dask]' "
                         "(or pass --no-dask)")
    set_threads(args.threads)
    if args.keep_freed_memory:
        keep_freed_memory()
    repeats = 1 if args.quick else args.repeats
    points = 50 if args.quick else 400
    builders = {
        "heat-bdf-dense": lambda: heat_case(points, dense=True),
        "heat-bdf-sparse": lambda: heat_case(points, dense=False),
    }
    default = ["heat-bdf-dense"] if args.quick else list(builders)
    names = [n for n in args.only.split(",") if n] or default
    unknown = set(names) - set(builders)
    if unknown:
        parser.error(f"unknown case(s) {sorted(unknown)}; known: {', '.join(builders)}")

    started = time.perf_counter()
    info = versions()
    info.update(load_start=load(), date=datetime.datetime.now().isoformat(timespec="seconds"))
    command = "python benchmarks/concurrency.py " + " ".join(sys.argv[1:] if argv is None
                                                              else argv)
    report = [
        "# parareal concurrency benchmark",
        "",
        f"command: `{command.strip()}`",
        "",
        f"machine: {info.get('Model name', '?')}, {info.get('CPU(s)', '?')} CPUs "
        f"({info['usable_cpus']} usable), {info['platform']}; load average at start "
        f"{info['load_start']} (1, 5, 15 min); {info['date']}",
        f"versions: Python {info['python']}, numpy {info['numpy']}, scipy {info['scipy']}, "
        f"distributed {info['distributed']}, cloudpickle {info['cloudpickle']}, parareal "
        f"{info['parareal']}",
        f"threads: BLAS {args.threads} per process (OPENBLAS_NUM_THREADS="
        f"{os.environ.get('OPENBLAS_NUM_THREADS')}, inherited by the workers); repeats "
        f"{repeats}{' (--quick)' if args.quick else ''}"
        f"{', no warm-up run' if args.no_warm_up else ''}; workers {workers}; processes start "
        f"with 'spawn'; the process pools and Dask clusters are persistent (made once, before "
        f"the timed runs); times are medians of wall-clock seconds",
        *(["Dask: its profiler off, its event-loop tick and system monitor every 1 s "
           "(--quick: QUIET_DASK)"] if args.quick and dask else []),
        "glibc malloc: " + ("keeps freed memory (--keep-freed-memory: M_MMAP_THRESHOLD 32 MiB, "
                            "M_TRIM_THRESHOLD 256 MiB, here and in every worker)"
                            if args.keep_freed_memory else "default settings"),
        "",
    ]
    print("\n".join(report), flush=True)
    results = []
    with open_pools(workers, dask, args.threads, args.dask_env, quiet_dask=args.quick) as pools:
        text = "worker environments: " + "; ".join(
            f"{where}: " + ", ".join(f"{k}={v}" for k, v in env.items())
            for where, env in pools.environments.items())
        text += " (process pools inherit this process's)\n"
        print(text, flush=True)
        report.append(text)
        for name in names:
            print(f"{name} ...", file=sys.stderr, flush=True)
            res = bench_case(builders[name](), pools, workers[-1], repeats,
                             warm_up=not args.no_warm_up)
            results.append(res)
            text = markdown_case(res)
            if 2 in workers:
                text += target_text(res, 2)
            print(text, flush=True)
            report.append(text)
    text = "\n".join(startup_lines(pools.startup, results))
    total = time.perf_counter() - started
    text += f"\n\nload average at the end {load()}; total benchmark time {total:.1f} s\n"
    print(text, flush=True)
    report.append(text)
    if args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write("\n".join(report))
    if args.json:
        payload = {"machine": info, "args": vars(args), "threads": args.threads,
                   "repeats": repeats, "workers": workers, "startup_s": pools.startup,
                   "environments": pools.environments,
                   "load_end": load(), "total_s": total, "results": results}
        with open(args.json, "w") as fh:
            json.dump(payload, fh, indent=1)
    same = all(row.get("same_as_serial", True) for res in results for row in res["rows"])
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
