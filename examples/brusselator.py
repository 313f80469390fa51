"""Parareal on the Brusselator: convergence, backends and schedules.

The Brusselator ``x' = a + x^2 y - (b + 1) x``, ``y' = b x - x^2 y`` (``a = 1``, ``b = 3``,
``(x, y)(0) = (0, 1)`` on ``(0, 12)``) with pymgrit's two-level setup: 32 slices, coarse
``RK4(steps=1)`` and fine ``RK4(steps=20)`` per slice.

The script

1. runs Parareal once and prints, per iteration, the largest boundary update, the error
   against the serial fine solution (which Parareal converges to) and against a
   high-accuracy reference, and the critical path;
2. runs the same problem on the ``serial`` and ``batched`` backends and with the
   ``synchronous`` and ``pipelined`` schedules, checks that all four give the same numbers,
   and compares their ``f`` calls, critical paths and wall times with the tick model;
3. optionally saves a convergence plot (``--plot FILE``, needs matplotlib).

Run ``python examples/brusselator.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

import parareal
from parareal import problems
from parareal.problems import Problem


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
    parser.add_argument("--slices", type=int, default=32, help="time slices (default 32)")
    parser.add_argument("--fine-steps", type=int, default=20,
                        help="RK4 steps per slice of the fine propagator (default 20)")
    parser.add_argument("--coarse-steps", type=int, default=1,
                        help="RK4 steps per slice of the coarse propagator (default 1)")
    parser.add_argument("--t-end", type=float, default=12.0, help="end time (default 12)")
    parser.add_argument("--tol", type=float, default=1e-10,
                        help="absolute tolerance on the boundary update (default 1e-10)")
    parser.add_argument("--plot", metavar="FILE", help="save a convergence plot to FILE")
    return parser.parse_args(argv)


def convergence_table(problem: Problem, tol: float) -> tuple[parareal.Solution, list[Any]]:
    """Run Parareal once and print one line per iterate.

    Parameters
    ----------
    problem : Problem
        The Brusselator with the chosen slices and propagators.
    tol : float
        Absolute tolerance on the boundary update.

    Returns
    -------
    solution : parareal.Solution
        The result of the run.
    iterates : list of parareal.IterationInfo
        What the callback received, one entry per iterate ``k = 0..iterations``.
    """
    iterates: list[parareal.IterationInfo] = []
    sol = parareal.solve(
        problem.f, problem.y0, problem.t_span,
        coarse=problem.coarse, fine=problem.fine, slices=problem.slices,
        tol=tol, backend="batched", schedule="pipelined", vectorized=True,
        callback=iterates.append,
    )
    serial = parareal.solve_serial(problem.f, problem.y0, problem.t_span,
                                   propagator=problem.fine, slices=problem.slices)
    reference = problem.reference(sol.t)
    print(f"{problem.description}; {problem.slices} slices, coarse {problem.coarse!r}, "
          f"fine {problem.fine!r}")
    print(f"{'iter':>4}  {'max update':>10}  {'err vs serial F':>15}  {'err vs reference':>16}"
          f"  {'critical path':>13}")
    for info in iterates:
        update = "-" if info.iteration == 0 else f"{info.residual:.3e}"
        print(f"{info.iteration:>4}  {update:>10}  {np.abs(info.y - serial).max():>15.3e}  "
              f"{np.abs(info.y - reference).max():>16.3e}  {info.critical_path:>13}")
    print(f"status: {sol.status.value} after {sol.iterations} iteration(s); "
          f"y(T) = {np.array2string(sol.y_final, precision=10)}")
    return sol, iterates


def predicted_path(schedule: str, slices: int, iterations: int, m: int, g: int) -> int:
    """Ticks of the tick model for ``iterations`` iterations.

    Parameters
    ----------
    schedule : {"synchronous", "pipelined"}
        The schedule.
    slices : int
        ``B``, the number of slices.
    iterations : int
        ``K``.
    m, g : int
        Calls of ``f`` of one fine and one coarse propagation over a slice.

    Returns
    -------
    int
        ``K m + (B - K) g`` for the pipelined schedule; for the synchronous one the coarse
        sweep ``B g`` plus, per iteration ``k``, one fine propagation and a coarse sweep over
        the ``B - k`` slices that are not yet exact.
    """
    if schedule == "pipelined":
        return iterations * m + (slices - iterations) * g
    return slices * g + sum(m + (slices - k) * g for k in range(1, iterations + 1))


def compare_runs(problem: Problem, tol: float) -> None:
    """Run every backend/schedule pair, check they agree, and print their counters."""
    m, g = problem.fine.evals, problem.coarse.evals
    print()
    print(f"serial fine solve: {problem.slices * m} sequential calls of f")
    print(f"{'backend':>8}  {'schedule':>11}  {'iters':>5}  {'f calls':>7}  {'f evals':>7}  "
          f"{'critical path':>13}  {'model':>5}  {'wall [s]':>8}")
    first = None
    for backend in ("serial", "batched"):
        for schedule in ("synchronous", "pipelined"):
            start = time.perf_counter()
            sol = parareal.solve(
                problem.f, problem.y0, problem.t_span,
                coarse=problem.coarse, fine=problem.fine, slices=problem.slices,
                tol=tol, backend=backend, schedule=schedule, vectorized=True,
            )
            wall = time.perf_counter() - start
            if first is None:
                first = sol
            elif not np.array_equal(sol.y, first.y) or sol.iterations != first.iterations:
                raise AssertionError(f"{backend}/{schedule} differs from the first run")
            stats = sol.stats
            model = predicted_path(schedule, problem.slices, sol.iterations, m, g)
            print(f"{backend:>8}  {schedule:>11}  {sol.iterations:>5}  {stats.f_calls:>7}  "
                  f"{stats.f_evals:>7}  {stats.critical_path:>13}  {model:>5}  {wall:>8.3f}")
    print("all backend/schedule pairs gave bitwise identical results")


def plot(path: str, sol: parareal.Solution, iterates: list[Any], problem: Problem) -> None:
    """Save the trajectories of every iterate and the convergence history to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reference = problem.reference(sol.t)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    t_fine = np.linspace(*problem.t_span, 400)
    ax1.plot(t_fine, problem.reference(t_fine)[:, 0], "k-", lw=0.8, label="reference x(t)")
    for info in iterates:
        ax1.plot(info.t, info.y[:, 0], "o-", ms=3, lw=0.8, alpha=0.7, label=f"k = {info.iteration}")
    ax1.set_xlabel("t")
    ax1.set_ylabel("x at the slice boundaries")
    ax1.legend(fontsize=7, ncol=2)
    ks = np.arange(len(iterates))
    serial = parareal.solve_serial(problem.f, problem.y0, problem.t_span,
                                   propagator=problem.fine, slices=problem.slices)
    tiny = np.finfo(float).tiny  # keep exact zeros on the log scale
    ax2.semilogy(ks[1:], np.maximum(sol.residuals, tiny), "o-", label="max update")
    ax2.semilogy(ks, [max(np.abs(i.y - serial).max(), tiny) for i in iterates], "^-",
                 label="error vs serial fine")
    ax2.semilogy(ks, [np.abs(i.y - reference).max() for i in iterates], "s-",
                 label="error vs reference")
    ax2.set_xlabel("iteration k")
    ax2.set_ylabel("max-norm")
    ax2.grid(True, which="both", alpha=0.3)
    ax2.legend()
    fig.suptitle(f"Parareal on the Brusselator ({problem.slices} slices)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    print(f"plot written to {path}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the example; returns the exit status."""
    args = parse_args(argv)
    problem = problems.get(
        "brusselator", t_end=args.t_end, slices=args.slices,
        coarse=parareal.RK4(steps=args.coarse_steps), fine=parareal.RK4(steps=args.fine_steps),
    )
    sol, iterates = convergence_table(problem, args.tol)
    compare_runs(problem, args.tol)
    if args.plot:
        plot(args.plot, sol, iterates, problem)
    return 0


if __name__ == "__main__":
    sys.exit(main())
