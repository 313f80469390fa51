"""MPI benchmark: Parareal on the ``mpi`` backend at 1, 2 and 4 ranks against the speed-up model.

Usage::

    python benchmarks/mpi.py                         # ranks 1, 2, 4; 3 repeats; a few minutes
    python benchmarks/mpi.py --quick                 # 100 points, 1 repeat, no warm-up, ~10 s
    python benchmarks/mpi.py --ranks 1,2 --json out.json

Problem: the case "heat-bdf-sparse" of ``benchmarks/concurrency.py``: the 1-D heat equation
(1000 points by default, 32 slices) with an implicit fine solver, ``ScipyIVP("BDF", rtol=1e-8,
atol=1e-10)`` with the exact sparse Jacobian, and one Crank-Nicolson step per slice as the
coarse propagator; ``tol = 1e-8``.

This script measures, in this process and one thread: the serial fine solve
(``parareal.solve_serial``) and Parareal on the serial backend; and the cost of one coarse and
one fine propagation per slice (medians over the slices of a serial sweep), whose ratio ``c``
feeds ``parareal.theory.speedup_model(K, workers=R, ...)``. Then, for each rank count ``R``, it
launches ``mpiexec -n R python benchmarks/mpi.py --child`` (ranks beyond the machine's cores
are oversubscribed), which times the same solve on ``MPI()`` (every rank one thread) and checks
that ``y`` equals the serial backend's bit for bit. Reported per ``R``: median wall time,
speed-up over the serial fine solve and over the serial backend, iterations, the model's
speed-up and the efficiency (measured / model).
"""

# ruff: noqa: E402
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import hashlib
import json
import platform
import shutil
import statistics
import subprocess
import sys
import time
from typing import Any

import numpy as np

import parareal
from parareal import theory

SLICES = 32


def setup(points: int) -> tuple[Any, parareal.Propagator, parareal.Propagator]:
    """The heat equation of ``benchmarks/concurrency.py`` (its sparse-Jacobian case)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from concurrency import heat_case

    case = heat_case(points, dense=False)
    return case, case.coarse, case.fine


def digest(y: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(y).tobytes()).hexdigest()


def child(points: int, repeats: int, warm_up: bool = True) -> None:
    """Run under mpiexec: time the solve on the mpi backend; the root prints JSON.

    Without ``warm_up`` (``--quick``) the first run is timed too: a smoke run, where every
    rank's imports and scipy's first calls count in its time.
    """
    from parareal.backends import MPI

    backend = MPI()
    p, coarse, fine = setup(points)
    times, sol = [], None
    for _ in range(repeats + warm_up):  # the first run warms up (imports, scipy's first calls)
        backend.barrier()
        start = time.perf_counter()
        sol = parareal.solve(p.f, p.y0, p.t_span, coarse=coarse, fine=fine, slices=SLICES,
                             tol=1e-8, backend=backend)
        times.append(time.perf_counter() - start)
    if backend.drives():
        print(json.dumps({"times": times[warm_up:], "iterations": sol.iterations,
                          "digest": digest(sol.y), "wall_time": dict(sol.stats.wall_time)}))


def measure(points: int, repeats: int, ranks: list[int], warm_up: bool = True) -> dict[str, Any]:
    p, coarse, fine = setup(points)
    span = p.t_span
    grid = np.linspace(span[0], span[1], SLICES + 1)

    def sweep(prop: parareal.Propagator) -> list[float]:
        y, costs = p.y0, []
        for n in range(SLICES):
            start = time.perf_counter()
            y = prop.propagate(p.f, y, grid[n], grid[n + 1])
            costs.append(time.perf_counter() - start)
        return costs

    if warm_up:
        sweep(fine)
    fine_cost = statistics.median(sweep(fine))
    coarse_cost = statistics.median(sweep(coarse))
    serial_fine, serial_backend = [], []
    ref = None
    for _ in range(repeats):
        start = time.perf_counter()
        parareal.solve_serial(p.f, p.y0, span, propagator=fine, slices=SLICES)
        serial_fine.append(time.perf_counter() - start)
        start = time.perf_counter()
        ref = parareal.solve(p.f, p.y0, span, coarse=coarse, fine=fine, slices=SLICES,
                             tol=1e-8)
        serial_backend.append(time.perf_counter() - start)
    t_fine, t_serial = statistics.median(serial_fine), statistics.median(serial_backend)
    mpiexec = shutil.which("mpiexec")
    if mpiexec is None:
        raise SystemExit("mpi benchmark: no mpiexec on PATH (pip install mpich)")
    rows = []
    for r in ranks:
        proc = subprocess.run(
            [mpiexec, "-n", str(r), sys.executable, os.path.abspath(__file__), "--child",
             "--points", str(points), "--repeats", str(repeats)]
            + ([] if warm_up else ["--quick"]),
            capture_output=True, text=True, check=False, timeout=1800,
        )
        if proc.returncode != 0:
            raise SystemExit(f"mpiexec -n {r} failed:\n{proc.stderr[-3000:]}")
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        median = statistics.median(out["times"])
        model = theory.speedup_model(out["iterations"], workers=r, coarse_cost=coarse_cost,
                                     fine_cost=fine_cost)
        speedup = t_fine / median
        rows.append({
            "ranks": r,
            "median_s": median,
            "times_s": out["times"],
            "iterations": out["iterations"],
            "speedup_vs_serial_fine": speedup,
            "speedup_vs_serial_backend": t_serial / median,
            "model_speedup": model,
            "efficiency": speedup / model,
            "bitwise_equal_serial_backend": out["digest"] == digest(ref.y),
            "wall_time": out["wall_time"],
        })
    return {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "numpy": np.__version__, "processor": platform.processor() or "unknown"},
        "problem": f"heat, {points} points, {SLICES} slices, fine {fine!r}, coarse {coarse!r}",
        "threads_per_rank": 1,
        "repeats": repeats,
        "warm_up": warm_up,
        "fine_cost_s": fine_cost,
        "coarse_cost_s": coarse_cost,
        "serial_fine_s": t_fine,
        "serial_backend_s": t_serial,
        "serial_backend_iterations": ref.iterations,
        "rows": rows,
    }


def markdown(res: dict[str, Any]) -> str:
    lines = [
        f"{res['problem']}; {res['machine']['cpus']} CPUs, 1 thread per rank, medians of "
        f"{res['repeats']}; one fine propagation {res['fine_cost_s'] * 1e3:.1f} ms, one coarse "
        f"{res['coarse_cost_s'] * 1e3:.2f} ms (c = {res['coarse_cost_s'] / res['fine_cost_s']:.3f}"
        f"); serial fine solve {res['serial_fine_s']:.2f} s, Parareal on the serial backend "
        f"{res['serial_backend_s']:.2f} s ({res['serial_backend_iterations']} iterations).",
        "",
        "| ranks | median | vs serial fine | vs serial backend | iters | model | efficiency |"
        " bitwise = serial backend |",
        "|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in res["rows"]:
        lines.append(
            f"| {row['ranks']} | {row['median_s']:.2f} s | {row['speedup_vs_serial_fine']:.2f}x"
            f" | {row['speedup_vs_serial_backend']:.2f}x | {row['iterations']} | "
            f"{row['model_speedup']:.2f}x | {row['efficiency']:.0%} | "
            f"{'yes' if row['bitwise_equal_serial_backend'] else 'NO'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", default="1,2,4", help="comma-separated rank counts")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--points", type=int, default=None, help="grid points (default 1000)")
    parser.add_argument("--quick", action="store_true",
                        help="100 points, 1 repeat, no warm-up runs (a smoke run)")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    points = args.points or (100 if args.quick else 1000)
    repeats = 1 if args.quick else args.repeats
    if args.child:
        child(points, repeats, warm_up=not args.quick)
        return 0
    try:
        ranks = [int(r) for r in args.ranks.split(",")]
    except ValueError:
        parser.error(f"--ranks must be comma-separated whole numbers, got {args.ranks!r}")
    if repeats < 1 or any(r < 1 for r in ranks):
        parser.error("--repeats and every rank count must be >= 1")
    res = measure(points, repeats, ranks, warm_up=not args.quick)
    res["command"] = "python benchmarks/mpi.py " + " ".join(argv if argv is not None
                                                            else sys.argv[1:])
    print(markdown(res))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
