"""Argument parsing and dispatch for the ``parareal`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .. import __version__
from ..backends import BACKENDS
from ..engine import SCHEDULES
from ..problems import PROBLEMS
from .sample_cmd import add_sample_parser
from .solve_cmd import run_solve

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``parareal`` command."""
    parser = argparse.ArgumentParser(
        prog="parareal",
        description="Parallel-in-time ODE solving with the Parareal algorithm.",
    )
    parser.add_argument("--version", action="version", version=f"parareal {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    solve = sub.add_parser(
        "solve",
        help="solve a bundled test problem with Parareal",
        description="Solve a bundled problem with Parareal and report each iteration.",
    )
    solve.add_argument("problem", choices=sorted(PROBLEMS), metavar="PROBLEM",
                       help=f"one of: {', '.join(sorted(PROBLEMS))}")
    solve.add_argument("--slices", type=int, help="number of time slices (problem default)")
    solve.add_argument("--fine", help="fine propagator spec, e.g. RK4:20 or scipy:Radau")
    solve.add_argument("--coarse", help="coarse propagator spec, e.g. RK4:1 or Euler:2")
    solve.add_argument("--backend", default="serial", choices=sorted(BACKENDS))
    solve.add_argument("--schedule", default="synchronous", choices=SCHEDULES)
    solve.add_argument("--tol", type=float, default=1e-8, help="absolute tolerance on updates")
    solve.add_argument("--rtol", type=float, default=0.0, help="relative tolerance on updates")
    solve.add_argument("--max-iters", type=int, default=None,
                       help="iteration cap (default: the number of slices)")
    solve.add_argument("--t-end", type=float, default=None, help="end time (problem default)")
    solve.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                       help="a problem parameter, e.g. --param lam=2j or --param points=1000 "
                            "(repeatable; values are Python literals)")
    solve.add_argument("--json", action="store_true", help="print one JSON object")
    solve.add_argument("--plot", metavar="FILE", help="save the convergence plot (PNG, PDF...)")
    solve.add_argument("--progress", action="store_true", help="print progress on stderr")
    solve.set_defaults(handler=run_solve)
    add_sample_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except (ValueError, TypeError, ImportError, OSError) as exc:
        print(f"parareal: error: {exc}", file=sys.stderr)
        return 2
