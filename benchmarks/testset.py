"""Test-set benchmark: does Parareal pay on the classic problems users bring?

Usage::

    python benchmarks/testset.py                         # every problem, both schedules
    python benchmarks/testset.py --only hires,kepler     # some problems
    python benchmarks/testset.py --no-wall               # counts only (deterministic, fast)
    python benchmarks/testset.py --json out.json --markdown out.md

For each problem of the classic test sets in ``parareal.problems`` (HIRES, Robertson on
[0, 40] and [0, 1e5], Van der Pol with mu = 1000, Pleiades, Arenstorf, Kepler with e = 0.9,
the 1-D Brusselator of Hairer-Wanner with N = 50) it runs Parareal with 16 slices, the
problem's default fine solver (the one a user would pick: scipy's Radau with the exact
Jacobian for stiff problems, DOP853 otherwise) and the coarse left to the library
(``coarse="auto"``, the default), in the synchronous and the pipelined schedule, and reports:

* iterations and status; what ``coarse="auto"`` chose;
* the speed-up bound (``Stats.speedup_bound``: calls of ``f`` and the Jacobian in the serial
  fine solve over the same slices, divided by the calls on Parareal's critical path);
* the final error against the serial fine solution (max-norm, relative to the solution's
  max-norm) and against the problem's reference (published values where they exist);
* wall-clock seconds of the serial fine solve and of Parareal on the ``threads`` and
  ``processes`` backends (2 workers; medians of ``--repeats``), unless ``--no-wall``.

The goal (issue 17): a speed-up bound of at least 1.5 on at least 3 problems in 4, within
1e-5 of the serial fine solution. Counts are deterministic; wall-clock on a 2-core machine
cannot show a speed-up (two workers cap any run with K >= 2 at the serial speed).

Threads: ``--threads N`` (default 1) fixes the BLAS and torch thread counts.
"""

# ruff: noqa: E402
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings


def _early_threads(argv: list[str]) -> int:
    threads = 1
    for i, arg in enumerate(argv):
        if arg == "--threads" and i + 1 < len(argv):
            threads = int(argv[i + 1])
        elif arg.startswith("--threads="):
            threads = int(arg.split("=", 1)[1])
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    return threads


THREADS = _early_threads(sys.argv)

import numpy as np

import parareal
from parareal import problems
from parareal.cli.threads import set_threads

TEST_SET = ("hires", "robertson", "robertson-long", "vanderpol-stiff", "pleiades", "arenstorf",
            "kepler", "brusselator-1d")
SLICES = 16
GOAL = 1.5


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / max(np.max(np.abs(b)), 1e-300))


CONFIGS = tuple((slicing, schedule) for slicing in ("equal", "work")
                for schedule in ("synchronous", "pipelined"))


def _run(p: problems.Problem, config: tuple[str, str], backend: str = "batched"
         ) -> parareal.Solution:
    slicing, schedule = config
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return parareal.solve(p.f, p.y0, p.t_span, fine=p.fine, slices=SLICES,
                              jac=p.jacobian, schedule=schedule, backend=backend,
                              vectorized=backend != "serial",
                              boundaries="work" if slicing == "work" else None)


def _timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(name: str, *, wall: bool, repeats: int) -> dict:
    """One problem: serial fine, Parareal in both schedules; counts, errors, wall-clock."""
    p = problems.get(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        serial = serial_equal = parareal.solve_serial(p.f, p.y0, p.t_span, propagator=p.fine,
                                                      slices=SLICES)
    reference = p.reference_final()
    row: dict = {"problem": name, "description": p.description, "fine": repr(p.fine),
                 "stiff": bool(p.stiff), "slices": SLICES,
                 "serial_fine_error_vs_reference": _relative(serial[-1], reference)}
    for config in CONFIGS:
        sol = _run(p, config)
        choice = sol.coarse_choice
        serial = serial_equal
        if config[0] == "work":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                serial = parareal.solve_serial(p.f, p.y0, p.t_span, propagator=p.fine,
                                               slices=SLICES, boundaries=sol.t)
        row["/".join(config)] = {
            "status": sol.status.value,
            "iterations": sol.iterations,
            "speedup_bound": sol.stats.speedup_bound,
            "critical_path": sol.stats.critical_path,
            "critical_path_per_iteration": list(sol.stats.critical_path_per_iteration),
            "serial_fine_cost": sol.stats.serial_fine_cost,
            "f_evals": sol.stats.f_evals,
            "jac_calls": sol.stats.jac_calls,
            "error_vs_serial_fine": _relative(sol.y_final, serial[-1]),
            "error_vs_reference": _relative(sol.y_final, reference),
            "coarse_chosen": repr(choice.propagator) if choice is not None else None,
            "predicted_iterations": next(
                (c.predicted_iterations for c in choice.candidates
                 if c.propagator == repr(choice.propagator)), None) if choice else None,
        }
    if wall:
        row["wall"] = {"serial_fine": _timed(
            lambda: parareal.solve_serial(p.f, p.y0, p.t_span, propagator=p.fine,
                                          slices=SLICES), repeats)}
        for backend in ("threads", "processes"):
            for config in CONFIGS:
                row["wall"][f"{backend}/{'/'.join(config)}"] = _timed(
                    lambda b=backend, c=config: _run(p, c, b), repeats)
    return row


def markdown(rows: list[dict], wall: bool) -> str:
    lines = [
        f"Slices: {SLICES}; fine: the problem's default; coarse: `auto`. Bound = serial fine "
        "calls / critical-path calls. Errors are max-norm, relative to the solution's "
        "max-norm.",
        "",
        "| problem | slices / schedule | K | bound | coarse chosen (predicted K) "
        "| err vs serial fine | err vs reference |",
        "|---|---|---|---|---|---|---|",
    ]
    names = ["/".join(c) for c in CONFIGS]
    for r in rows:
        for name in names:
            s = r[name]
            lines.append(
                f"| {r['problem']} | {name} | {s['iterations']} ({s['status']}) | "
                f"{s['speedup_bound']:.2f} | `{s['coarse_chosen']}` "
                f"({s['predicted_iterations']}) | {s['error_vs_serial_fine']:.1e} | "
                f"{s['error_vs_reference']:.1e} |")
    lines.append("")
    for name in names:
        met = sum(r[name]["speedup_bound"] >= GOAL and r[name]["error_vs_serial_fine"] <= 1e-5
                  for r in rows)
        lines.append(f"- bound >= {GOAL} within 1e-5 of the serial fine solution, {name}: "
                     f"{met} of {len(rows)} problems")
    if wall:
        lines += ["", "Wall-clock seconds (median of the repeats; 2 workers):", "",
                  "| problem | serial fine | " + " | ".join(
                      f"{b} {n}" for b in ("threads", "processes") for n in names) + " |",
                  "|---|---|" + "---|" * (2 * len(names))]
        for r in rows:
            w = r["wall"]
            lines.append(f"| {r['problem']} | {w['serial_fine']:.3f} | " + " | ".join(
                f"{w[f'{b}/{n}']:.3f}" for b in ("threads", "processes") for n in names) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated problem names")
    parser.add_argument("--no-wall", action="store_true", help="skip the wall-clock runs")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default="")
    parser.add_argument("--markdown", default="")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    try:  # in any case, as parareal.problems.get takes them; checked before any work
        names = [problems.problem_name(n) for n in args.only.split(",") if n] or list(TEST_SET)
    except ValueError as exc:
        parser.error(str(exc))
    rows = []
    for name in names:
        start = time.perf_counter()
        rows.append(measure(name, wall=not args.no_wall, repeats=args.repeats))
        print(f"# {name}: {time.perf_counter() - start:.1f} s", file=sys.stderr)
    text = markdown(rows, wall=not args.no_wall)
    print(text)
    meta = {"threads": args.threads, "machine": platform.platform(),
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "command": " ".join(["python", *sys.argv])}
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"meta": meta, "rows": rows}, fh, indent=1)
    if args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
