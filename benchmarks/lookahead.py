"""Lookahead benchmark: latency and work of the pipelined schedule against its bound.

Usage::

    python benchmarks/lookahead.py                    # about a minute
    python benchmarks/lookahead.py --quick            # smaller cases, about 4 s
    python benchmarks/lookahead.py --json out.json

For every case the synchronous schedule and the pipelined schedule with ``lookahead`` in
0, 1, 2 (the default), 3, 4 and unbounded run on the batched backend (``vectorized=True``,
``tol=1e-8``, the case's iteration count is whatever the tolerance needs). Reported per row:
iterations, critical path (sequential calls of ``f``), state evaluations of ``f``, fine
propagations started, their ratios to the synchronous schedule, the peak of memory allocated
during the run (``tracemalloc``, in one extra untimed run: numpy's buffers and Python objects),
and the median wall time over the repeats. The iterates are checked to be bitwise equal to
the synchronous schedule's.

Cases: the three problems of ``benchmarks/core.py`` (Brusselator, 1000-point heat equation,
10 000 oscillators), the bundled Lorenz (50 slices) and Van der Pol (20 slices) problems with
their default propagators, Lorenz again with fine ``RK4(20)`` and coarse ``RK4(1)`` (a fine
propagation short against the coarse sweep), and Dahlquist ``y' = -y`` on ``[0, 10]`` with
1000, 2000 and 10 000 slices, fine ``RK4(20)`` or ``RK4(2)``, coarse ``RK4(1)``, which
converges in one iteration: the case where unbounded speculative work is worst. The unbounded
runs of the 10 000-slice case are skipped (they do not finish in reasonable time or memory).

The thread count is set explicitly (``--threads``, default 1) for numpy's BLAS through the
environment before numpy is imported.
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
import gc
import json
import platform
import statistics
import time
import tracemalloc
from typing import Any

import numpy as np

import parareal
from parareal import problems

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from core import Case, brusselator_case, heat_case, oscillators_case  # noqa: I001

LOOKAHEADS: tuple[int | None, ...] = (0, 1, 2, 3, 4, None)


def _case(p: problems.Problem, name: str, description: str) -> Case:
    return Case(name=name, description=description, f=p.f, y0=np.array(p.y0),
                t_span=p.t_span, coarse=p.coarse, fine=p.fine, slices=p.slices,
                reference=np.array(p.reference_final()))


def dahlquist_case(slices: int, fine_steps: int) -> Case:
    p = problems.get("dahlquist", slices=slices, t_end=10.0, coarse=parareal.RK4(steps=1),
                     fine=parareal.RK4(steps=fine_steps))
    return _case(p, f"dahlquist-{slices}-rk4x{fine_steps}",
                 f"y' = -y on [0, 10], {slices} slices, fine RK4({fine_steps}), coarse RK4(1)")


def problem_case(name: str, slices: int, **overrides: Any) -> Case:
    p = problems.get(name, slices=slices, **overrides)
    suffix = "".join(f"-{v}" for v in overrides.values()).replace(":", "x").lower()
    return _case(p, name + suffix,
                 f"{p.description}; {slices} slices, fine {p.fine!r}, coarse {p.coarse!r}")


def run_once(
    case: Case, schedule: str, lookahead: int | None, trace: bool
) -> tuple[Any, float, int]:
    """One solve; with ``trace`` the peak of traced allocations (slower: not timed then)."""
    gc.collect()
    if trace:
        tracemalloc.start()
    start = time.perf_counter()
    sol = parareal.solve(case.f, case.y0, case.t_span, coarse=case.coarse, fine=case.fine,
                         slices=case.slices, tol=1e-8, backend="batched", vectorized=True,
                         schedule=schedule, lookahead=lookahead)
    seconds = time.perf_counter() - start
    peak = 0
    if trace:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return sol, seconds, peak


def bench(case: Case, repeats: int, skip_unbounded: bool) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    variants: list[tuple[str, int | None]] = [("synchronous", None)]
    variants += [("pipelined", la) for la in LOOKAHEADS if not (la is None and skip_unbounded)]
    base = None
    for schedule, lookahead in variants:
        times = [run_once(case, schedule, lookahead, False)[1] for _ in range(repeats)]
        sol, _, peak = run_once(case, schedule, lookahead, True)
        if base is None:
            base = sol
        same = bool(np.array_equal(sol.y, base.y)) and sol.iterations == base.iterations
        rows.append({
            "schedule": schedule,
            "lookahead": "-" if schedule == "synchronous" else
            ("unbounded" if lookahead is None else lookahead),
            "iterations": sol.iterations,
            "status": sol.status.value,
            "critical_path": sol.stats.critical_path,
            "f_evals": sol.stats.f_evals,
            "fine_calls": sol.stats.fine_calls,
            "path_vs_sync": sol.stats.critical_path / base.stats.critical_path,
            "evals_vs_sync": sol.stats.f_evals / base.stats.f_evals,
            "peak_mib": peak / 2**20,
            "wall_s": statistics.median(times),
            "same_iterates": same,
        })
        print(f"  {schedule:>11} lookahead={rows[-1]['lookahead']!s:>9}: "
              f"path {rows[-1]['critical_path']}, evals {rows[-1]['f_evals']}", file=sys.stderr)
    return {"case": case.name, "description": case.description, "slices": case.slices,
            "rows": rows}


def markdown(result: dict[str, Any]) -> str:
    lines = [f"#### {result['case']}", "", result["description"], "",
             "| schedule | lookahead | iters | critical path | vs sync | f evals | vs sync | "
             "fine calls | peak MiB | wall [s] | same iterates |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(
            f"| {r['schedule']} | {r['lookahead']} | {r['iterations']} | {r['critical_path']} | "
            f"{r['path_vs_sync']:.2f} | {r['f_evals']} | {r['evals_vs_sync']:.2f} | "
            f"{r['fine_calls']} | {r['peak_mib']:.1f} | {r['wall_s']:.3f} | "
            f"{'yes' if r['same_iterates'] else 'NO'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small cases, one repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS threads (set before numpy loads; default 1)")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    parser.add_argument("--only", metavar="NAMES",
                        help="comma-separated case names (e.g. lorenz,vanderpol)")
    args = parser.parse_args(argv)
    if args.threads < 1 or args.repeats < 1:
        parser.error("--threads and --repeats must be >= 1")
    repeats = 1 if args.quick else args.repeats
    if args.quick:
        cases = [(brusselator_case(), False), (dahlquist_case(50, 20), False)]
    else:
        cases = [
            (brusselator_case(), False),
            (heat_case(1000), False),
            (oscillators_case(10_000), False),
            (problem_case("lorenz", 50), False),
            (problem_case("lorenz", 50, fine="rk4:20", coarse="rk4:1"), False),
            (problem_case("vanderpol", 20), False),
            (dahlquist_case(1000, 20), False),
            (dahlquist_case(1000, 2), False),
            (dahlquist_case(2000, 20), False),
            (dahlquist_case(10_000, 2), True),
        ]
    if args.only:
        wanted = set(args.only.split(","))
        cases = [(case, skip) for case, skip in cases if case.name in wanted]
        if not cases:
            parser.error(f"--only matched no case: {args.only}")
    results = []
    print(f"# Lookahead benchmark ({args.threads} thread(s), {repeats} repeat(s), median wall)\n")
    for case, skip in cases:
        print(f"{case.name} ...", file=sys.stderr)
        result = bench(case, repeats, skip)
        results.append(result)
        print(markdown(result), flush=True)
    if args.json:
        info = {"python": platform.python_version(), "numpy": np.__version__,
                "parareal": parareal.__version__, "machine": platform.machine(),
                "cpus": os.cpu_count(), "threads": args.threads, "repeats": repeats,
                "default_lookahead": parareal.DEFAULT_LOOKAHEAD}
        with open(args.json, "w") as fh:
            json.dump({"machine": info, "results": results}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
