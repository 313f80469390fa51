"""The heat equation by the method of lines, 1000 grid points, with Parareal on a CPU.

``u_t = u_xx`` on ``(0, 1)`` with ``u(0) = u(1) = 0`` and ``u(0, x) = sin(pi x)``, discretised
with the second-difference stencil on ``points`` interior points: a stiff linear system
``y' = A y`` whose exact solution is ``exp(-lam_h t) sin(pi x)`` (the bundled problem
``parareal.problems.get("heat")``). Both propagators are explicit and steppable (forward Euler
coarse, RK4 fine, with step counts chosen for stability on the stiffest mode), so the
``batched`` backend advances every slice in flight with one vectorised call of the stencil per
tick.

The script prints the convergence table, then compares the ``serial`` and ``batched``
backends and the plain serial fine solve in calls, critical path and wall time. On one CPU
core the batched backend is faster than the serial backend, but Parareal does more work in
total than the serial fine solve, and its shorter critical path only pays off on hardware
that runs the slices of a tick at the same time.

Run ``python examples/heat_equation.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import numpy as np

import parareal
from parareal import problems


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command-line options.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; ``None`` reads ``sys.argv``.

    Returns
    -------
    argparse.Namespace
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1000,
                        help="interior grid points (default 1000)")
    parser.add_argument("--t-end", type=float, default=1e-3,
                        help="end time (default 1e-3; the cost grows like points^2 * t_end)")
    parser.add_argument("--slices", type=int, default=10, help="time slices (default 10)")
    parser.add_argument("--tol", type=float, default=1e-10,
                        help="absolute tolerance on the boundary update (default 1e-10)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the example; returns the exit status."""
    args = parse_args(argv)
    problem = problems.get("heat", points=args.points, t_end=args.t_end, slices=args.slices)
    print(f"{problem.description}")
    print(f"{problem.slices} slices, coarse {problem.coarse!r}, fine {problem.fine!r}")

    runs = {}
    for backend in ("batched", "serial"):
        start = time.perf_counter()
        sol = parareal.solve(
            problem.f, problem.y0, problem.t_span,
            coarse=problem.coarse, fine=problem.fine, slices=problem.slices,
            tol=args.tol, backend=backend, schedule="pipelined", vectorized=True,
        )
        runs[backend] = (sol, time.perf_counter() - start)
    sol = runs["batched"][0]
    if not np.array_equal(sol.y, runs["serial"][0].y):
        raise AssertionError("the serial and batched backends disagree")

    exact = problem.reference(sol.t)
    print(f"{'iter':>4}  {'max update':>10}  {'critical path':>13}")
    for k, path in enumerate(sol.stats.critical_path_per_iteration):
        update = "-" if k == 0 else f"{sol.residuals[k - 1]:.3e}"
        print(f"{k:>4}  {update:>10}  {path:>13}")
    print(f"status: {sol.status.value} after {sol.iterations} iteration(s); "
          f"max error vs the exact semi-discrete solution {np.abs(sol.y - exact).max():.2e}")
    x = np.arange(1, args.points + 1) / (args.points + 1)
    pde = np.exp(-np.pi**2 * args.t_end) * np.sin(np.pi * x)
    print(f"spatial error at t_end (vs exp(-pi^2 t) sin(pi x)): "
          f"{np.abs(sol.y_final - pde).max():.2e}")

    start = time.perf_counter()
    serial = parareal.solve_serial(problem.f, problem.y0, problem.t_span,
                                   propagator=problem.fine, slices=problem.slices)
    wall_serial = time.perf_counter() - start
    print(f"max |parareal - serial fine| = {np.abs(sol.y - serial).max():.2e}")
    print()
    serial_calls = problem.slices * problem.fine.evals
    print(f"{'run':>22}  {'f calls':>7}  {'f evals':>7}  {'critical path':>13}  {'wall [s]':>8}")
    print(f"{'serial fine solve':>22}  {serial_calls:>7}  {serial_calls:>7}  "
          f"{serial_calls:>13}  {wall_serial:>8.3f}")
    for backend, (run, wall) in runs.items():
        stats = run.stats
        print(f"{'parareal, ' + backend:>22}  {stats.f_calls:>7}  {stats.f_evals:>7}  "
              f"{stats.critical_path:>13}  {wall:>8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
