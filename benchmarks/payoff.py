"""One measured case where Parareal on 2 workers beats the serial fine solve on a 2-core CPU.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/payoff.py --json benchmarks/results/payoff-2cpu.json \\
        --machine '2-core shared CPU'
    python benchmarks/payoff.py --quick                 # a tiny network, 1 repeat, seconds
    python benchmarks/payoff.py --tol 1e-6              # 2 iterations: no payoff on 2 cores
    python benchmarks/payoff.py --backend processes     # a persistent pool of 2 processes

The case: a driven network of rate neurons (an echo-state or reservoir network in continuous
time), ``dx/dt = -x + tanh(W x + w_in sin t)``, ``x(0) = 0``, on ``[0, 32]`` (five periods of
the input). ``n = 2000`` neurons, each with ``k = 100`` inputs from randomly chosen neurons
(``W`` a scipy CSR matrix with 200 000 entries drawn from ``N(0, g^2 / k)``, ``g = 0.9``:
spectral radius about 0.92, the contracting "echo state" regime) and an input weight
``w_in ~ U(-1, 1)``; seed 0. ``f`` costs one sparse product and a ``tanh`` on 2000 values,
about 0.3 ms, nearly all of it in compiled code that releases the GIL, so threads run it in
parallel. Fine propagator: classic RK4 with step ``h = 0.01`` (200 steps on each of 16
slices, 12 800 calls of ``f`` in all). ``coarse`` is left out, so ``coarse="auto"`` chooses
it (with 2000 unknowns and no Jacobian its candidates are RK4 with 1 to 8 steps per slice and
its first guess is one loose ``RK45`` solve over the span); ``tol=1e-3`` (the default
``MaxUpdate`` rule: the largest boundary update at most ``1e-3``; the states stay below 1 in
magnitude). ``vectorized=False``: each slice's fine solve is the same computation as in the
serial solve (no batching of slices into one call of ``f``).

Why it pays here, and when it does not: a run that needs ``K`` iterations makes about ``K``
fine sweeps (``N + (N - 1) + ...`` slice solves), so on 2 cores only a run that stops after
one iteration can beat the serial solve. Here the first iteration's update (the loose initial
guess against the fine solution) is about ``5e-4``, below ``tol``, so the run stops after one
fine sweep, which the 2 workers share: ``N`` fine solves plus ``coarse="auto"``'s probe (two
more fine solves and RK4 candidates at every slice) on 2 workers, plus the sequential loose
solve and coarse sweep. With ``--tol 1e-6`` it needs two iterations and does not pay.

Variants, interleaved in every repeat (the order rotates) after one untimed warm-up each:

- ``serial fine``: ``parareal.solve_serial(f, y0, span, propagator=RK4(steps=200),
  slices=16)``, the serial solution Parareal converges to (its reference for the error);
- ``plain fine``: ``parareal.solve_serial(f, y0, span, propagator=RK4(steps=3200),
  slices=1)``, one RK4 solve over the span with the same step: the same work;
- ``parareal``: ``parareal.solve(f, y0, span, fine=RK4(steps=200), slices=16, tol=1e-3,
  backend=Threads(2))`` (a new ``Threads(2)`` per run, as ``backend="threads"`` makes);
  ``--backend processes`` uses one ``Processes(2)`` pool made before the timed runs (its
  start-up is reported apart).

The ratio is the faster serial variant's median over Parareal's median, both from the same
run; the per-repeat ratios (serial fine over Parareal of the same repeat) and the spread of
every variant (``(max - min) / median``) show the noise of a shared machine. The error is the
largest difference over all 17 boundary values between Parareal and the serial fine solve
(the exit status is 1 if it exceeds ``tol``). The threads of BLAS/OpenMP are set explicitly
(``--threads``, default 1, per process: set in the environment before numpy loads, and with
threadpoolctl where installed); ``f`` uses no BLAS (scipy's sparse product and numpy's
``tanh`` are single-threaded), so the serial solve could not use the second core that way.
"""

# The BLAS thread count must be set before numpy is imported, hence imports after code:
# ruff: noqa: E402
from __future__ import annotations

import argparse
import os
import sys

BLAS_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _early_threads(argv: list[str]) -> None:
    """Apply ``--threads`` to the environment before numpy loads its BLAS (checked in main)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--threads", default="1")
    known, _ = pre.parse_known_args(argv)
    if known.threads.isdigit() and int(known.threads) >= 1:
        for var in BLAS_VARS:
            os.environ[var] = known.threads


if __name__ == "__main__":
    _early_threads(sys.argv[1:])

import datetime
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

import parareal
from parareal.backends import Processes, Threads
from parareal.cli.threads import set_threads

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from core import machine_info  # noqa: I001


# ----------------------------------------------------------------------------- the problem
class RateNetwork:
    """``dx/dt = -x + tanh(W x + w_in sin t)``: ``n`` rate neurons, ``k`` inputs each.

    ``W`` is a scipy CSR matrix with exactly ``k`` entries per row, in randomly chosen
    columns, drawn from ``N(0, g^2 / k)`` (spectral radius about ``g``); ``w_in`` is drawn
    from ``U(-1, 1)``. Deterministic for a given ``seed``. ``f(t, x)`` takes one state of
    shape ``(n,)`` (not vectorised) and is picklable (for ``--backend processes``).
    """

    def __init__(self, n: int, k: int, g: float = 0.9, seed: int = 0) -> None:
        from scipy import sparse

        rng = np.random.default_rng(seed)
        cols = np.argsort(rng.random((n, n)), axis=1)[:, :k]  # k distinct inputs per neuron
        weights = g / np.sqrt(k) * rng.standard_normal(n * k)
        self.W = sparse.csr_matrix((weights, np.sort(cols, axis=1).ravel(),
                                    np.arange(0, n * k + 1, k)), shape=(n, n))
        self.w_in = rng.uniform(-1.0, 1.0, n)
        self.n, self.k, self.g, self.seed = n, k, g, seed

    def __repr__(self) -> str:
        return f"RateNetwork(n={self.n}, k={self.k}, g={self.g}, seed={self.seed})"

    def __call__(self, t: Any, x: np.ndarray) -> np.ndarray:
        return np.tanh(self.W @ x + np.sin(t) * self.w_in) - x


@dataclass(frozen=True)
class Case:
    """The parameters of one run of the benchmark."""

    neurons: int
    inputs: int
    gain: float
    t_end: float
    slices: int
    steps: int  # RK4 steps per slice
    tol: float

    @property
    def h(self) -> float:
        return self.t_end / (self.slices * self.steps)


FULL = Case(neurons=2000, inputs=100, gain=0.9, t_end=32.0, slices=16, steps=200, tol=1e-3)
QUICK = Case(neurons=600, inputs=20, gain=0.9, t_end=4.0, slices=4, steps=25, tol=1e-3)


# ----------------------------------------------------------------------------- measuring
def load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on every platform
        return None


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def summary(times: list[float]) -> dict[str, float]:
    median = statistics.median(times)
    return {"median": median, "min": min(times), "max": max(times),
            "spread": (max(times) - min(times)) / median}


def run(case: Case, *, backend_kind: str, workers: int, repeats: int) -> dict[str, Any]:
    # coarse="auto" uses scipy.integrate: a fresh process pays its import once, timed apart
    import_s = None
    if "scipy.integrate" not in sys.modules:
        import_s, _ = timed(lambda: __import__("scipy.integrate"))

    f = RateNetwork(case.neurons, case.inputs, case.gain)
    y0 = np.zeros(case.neurons)
    span = (0.0, case.t_end)
    fine = parareal.RK4(steps=case.steps)
    plain = parareal.RK4(steps=case.steps * case.slices)

    pool = None
    if backend_kind == "processes":
        pool = Processes(workers)

    def backend() -> Any:
        return pool if pool is not None else Threads(workers)

    def parareal_run() -> parareal.Solution:
        return parareal.solve(f, y0, span, fine=fine, slices=case.slices, tol=case.tol,
                              backend=backend())

    variants: dict[str, Callable[[], Any]] = {
        "serial fine": lambda: parareal.solve_serial(f, y0, span, propagator=fine,
                                                     slices=case.slices),
        "plain fine": lambda: parareal.solve_serial(f, y0, span, propagator=plain, slices=1),
        "parareal": parareal_run,
    }
    try:
        first_call_s, _ = timed(parareal_run)  # warm-up; starts the pool, if any
        outputs = {name: fn() for name, fn in variants.items() if name != "parareal"}
        times: dict[str, list[float]] = {name: [] for name in variants}
        last: dict[str, Any] = {}
        names = list(variants)
        for r in range(repeats):
            order = names[r % len(names):] + names[:r % len(names)]
            for name in order:
                seconds, last[name] = timed(variants[name])
                times[name].append(seconds)
    finally:
        if pool is not None:
            pool.close()

    sol: parareal.Solution = last["parareal"]
    serial = np.asarray(outputs["serial fine"])
    plain_final = np.asarray(outputs["plain fine"])[-1]
    error = float(np.abs(np.asarray(sol.y) - serial).max())
    stats = {name: summary(ts) for name, ts in times.items()}
    baseline = min(("serial fine", "plain fine"), key=lambda name: stats[name]["median"])
    choice = sol.coarse_choice
    return {
        "case": {
            **asdict(case),
            "h": case.h,
            "description": (
                f"dx/dt = -x + tanh(W x + w_in sin t), {f!r}, x(0) = 0, span {span}; "
                f"fine RK4(steps={case.steps}) on each of {case.slices} slices (h = "
                f"{case.h:g}), coarse='auto', tol={case.tol:g}, vectorized=False"),
            "backend": f"{backend_kind}({workers})",
            "workers": workers,
        },
        "repeats": repeats,
        "times_s": times,
        "stats_s": stats,
        "serial_baseline": baseline,
        "serial_median_s": stats[baseline]["median"],
        "parareal_median_s": stats["parareal"]["median"],
        "ratio": stats[baseline]["median"] / stats["parareal"]["median"],
        "ratio_per_repeat": [s / p for s, p in zip(times[baseline], times["parareal"])],
        "iterations": sol.iterations,
        "status": sol.status.value,
        "residuals": list(sol.residuals),
        "speedup_bound": sol.stats.speedup_bound,
        "critical_path": sol.stats.critical_path,
        "f_evals": {"parareal": sol.stats.f_evals,
                    "serial": 4 * case.steps * case.slices},
        "coarse_chosen": repr(choice.propagator) if choice is not None else None,
        "coarse_reason": choice.reason if choice is not None else None,
        "error_vs_serial_fine": error,
        "scale": float(np.abs(serial).max()),
        "within_tol": error <= case.tol,
        "plain_vs_serial_fine": float(np.abs(plain_final - serial[-1]).max()),
        "first_call_s": first_call_s,
        "pool": pool is not None,
        "scipy_integrate_import_s": import_s,
        "wall_time_last_run": dict(sol.stats.wall_time),
    }


def report(result: dict[str, Any]) -> str:
    case = result["case"]
    lines = [f"case: {case['description']}; backend {case['backend']}",
             f"repeats {result['repeats']}, load average {result['load_start']} -> "
             f"{result['load_end']}",
             "",
             "| variant | median s | min s | max s | spread |",
             "|---|---|---|---|---|"]
    for name, s in result["stats_s"].items():
        lines.append(f"| {name} | {s['median']:.3f} | {s['min']:.3f} | {s['max']:.3f} | "
                     f"{100 * s['spread']:.0f} % |")
    per = result["ratio_per_repeat"]
    lines += [
        "",
        f"ratio ({result['serial_baseline']} / parareal, medians): {result['ratio']:.2f}; "
        f"per repeat {min(per):.2f}-{max(per):.2f}",
        f"parareal: {result['iterations']} iteration(s), status {result['status']}, "
        f"residuals {[float(f'{r:.2e}') for r in result['residuals']]}, speedup bound "
        f"{result['speedup_bound']:.2f}, coarse {result['coarse_chosen']}",
        f"max |parareal - serial fine| = {result['error_vs_serial_fine']:.2e} (tol "
        f"{case['tol']:g}, states up to {result['scale']:.2f}); plain vs serial fine "
        f"{result['plain_vs_serial_fine']:.1e}",
        f"calls of f: parareal {result['f_evals']['parareal']}, serial "
        f"{result['f_evals']['serial']}; untimed first parareal run "
        f"{result['first_call_s']:.2f} s" + (" (with the pool's start-up)" if result["pool"]
                                             else ""),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (default 5)")
    parser.add_argument("--quick", action="store_true",
                        help="a 600-neuron network on [0, 4], 4 slices, 1 repeat: seconds")
    parser.add_argument("--tol", type=float, default=None,
                        help=f"Parareal tolerance (default {FULL.tol:g})")
    parser.add_argument("--backend", choices=("threads", "processes"), default="threads",
                        help="Threads(workers), new per run, or one Processes(workers) pool")
    parser.add_argument("--workers", type=int, default=2, help="workers (default 2)")
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS/OpenMP threads per process (default 1)")
    parser.add_argument("--machine", default="", help="a description of the machine")
    parser.add_argument("--json", metavar="PATH", help="write all numbers as JSON")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    if args.threads < 1:
        parser.error("--threads must be >= 1")
    if args.workers < 1:
        parser.error("--workers must be >= 1")
    if args.tol is not None and not args.tol > 0:
        parser.error("--tol must be > 0")
    try:
        import scipy.sparse  # noqa: F401
    except ImportError:
        parser.error("this benchmark needs scipy: pip install 'parareal[scipy]'")
    threads = set_threads(args.threads)
    case = QUICK if args.quick else FULL
    if args.tol is not None:
        case = Case(**{**asdict(case), "tol": args.tol})
    repeats = 1 if args.quick else args.repeats

    command = "python benchmarks/payoff.py " + " ".join(sys.argv[1:] if argv is None else argv)
    load_start = load()
    started = time.perf_counter()
    result = run(case, backend_kind=args.backend, workers=args.workers, repeats=repeats)
    result = {
        "command": command,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": {"description": args.machine, **machine_info(),
                    "usable_cpus": len(os.sched_getaffinity(0))
                    if hasattr(os, "sched_getaffinity") else os.cpu_count()},
        "threads": {"per_process": args.threads,
                    "environment": {var: os.environ.get(var) for var in BLAS_VARS},
                    "threadpoolctl": threads.get("threadpoolctl")},
        "load_start": load_start,
        "load_end": load(),
        "seconds": time.perf_counter() - started,
        **result,
    }
    print(f"threads: BLAS/OpenMP {args.threads} per process "
          f"({', '.join(f'{v}={os.environ.get(v)}' for v in BLAS_VARS)})")
    print(report(result))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
            fh.write("\n")
    if not result["within_tol"]:
        print(f"error: Parareal is {result['error_vs_serial_fine']:.2e} from the serial fine "
              f"solution, more than tol = {case.tol:g}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
