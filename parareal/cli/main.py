"""Argument parsing and dispatch for the ``parareal`` command.

Exit statuses: 0 success; 1 the run diverged (its status says so; the results are still
printed, and ``sample`` writes no image); 2 bad input or a missing optional dependency (one
line ``parareal: error: ...`` on standard error, before any long work where it can be checked
first; a malformed command line, one line ``parareal solve: error: ... (try 'parareal solve
--help')`` from the parser); 130 interrupted (Ctrl-C: one line ``parareal: interrupted``, no
partial output file); 141 standard output closed while the command was still writing to it
(128 + SIGPIPE, quietly: ``parareal ... --json | head -c 10`` with an output larger than the
pipe's buffer; a small one is usually written whole before ``head`` exits, and the command
exits 0).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from .. import __version__
from ..backends import BACKENDS
from ..engine import DEFAULT_LOOKAHEAD, SCHEDULES
from ..problems import PROBLEMS, parameters, problem_name
from ..validation import short_repr
from .sample_cmd import add_sample_parser
from .solve_cmd import run_solve
from .threads import set_threads

__all__ = ["EXIT_BROKEN_PIPE", "EXIT_INTERRUPTED", "MAX_THREADS", "build_parser", "main"]

#: Longest usage-error message printed (longer ones, echoing a huge argument, are cut).
MAX_MESSAGE = 300
#: Exit status after Ctrl-C (128 + SIGINT, what a shell reports for a killed command).
EXIT_INTERRUPTED = 130
#: Exit status when standard output is closed early (128 + SIGPIPE).
EXIT_BROKEN_PIPE = 141


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line with a hint, exit status 2:
    ``parareal solve: error: MESSAGE (try 'parareal solve --help')``.

    Sub-command parsers are of the same class (argparse makes them with the parent's).
    """

    def error(self, message: str) -> NoReturn:
        text = " ".join(message.split())
        if len(text) > MAX_MESSAGE:  # a huge argument is not echoed whole
            text = text[: MAX_MESSAGE - 3] + "..."
        self.exit(2, f"{self.prog}: error: {text} (try '{self.prog} --help')\n")


def _whole(text: str, minimum: int, also: str = "") -> int:
    """``text`` as an int ``>= minimum`` (an argparse ``type``; ``also`` names other values)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a whole number >= {minimum}{also}, got {text!r}"
        ) from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
    return value


#: The most ``--threads`` takes: far above any machine's CPUs, and below the counts that
#: crash torch's OpenMP runtime (``torch.set_num_threads(65536)`` ends in a segfault).
MAX_THREADS = 4096


def _threads(text: str) -> int:
    value = _whole(text, 1)
    if value > MAX_THREADS:
        raise argparse.ArgumentTypeError(f"must be <= {MAX_THREADS}, got {value}")
    return value


def _lookahead(text: str) -> int | None:
    if text.strip().lower() == "none":
        return None
    return _whole(text, 0, " or 'none'")


def _problem_name(text: str) -> str:
    """``text`` as a registered problem name, in any case (an argparse ``type``)."""
    try:
        return problem_name(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"unknown problem {short_repr(text, 40)}; choose from {', '.join(sorted(PROBLEMS))}"
        ) from None


def _problems_epilog() -> str:
    lines = ["problems and their parameters (--param NAME=VALUE; default in brackets):"]
    for name in sorted(PROBLEMS):
        params = ", ".join(
            key if default is None else f"{key} [{default!r}]"
            for key, default in parameters(name).items()
        )
        lines.append(f"  {name}: {params}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``parareal`` command."""
    parser = _Parser(
        prog="parareal",
        description="Parallel-in-time ODE solving with the Parareal algorithm.",
    )
    parser.add_argument("--version", action="version", version=f"parareal {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    solve = sub.add_parser(
        "solve",
        help="solve a bundled test problem with Parareal",
        description="Solve a bundled problem with Parareal and report each iteration.",
        epilog=_problems_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    solve.add_argument("problem", type=_problem_name, metavar="PROBLEM",
                       help=f"one of (in any case): {', '.join(sorted(PROBLEMS))}")
    solve.add_argument("--slices", type=int, help="number of time slices (problem default)")
    solve.add_argument("--fine", help="fine propagator spec, e.g. RK4:20 or scipy:Radau")
    solve.add_argument("--coarse", default="auto",
                       help="coarse propagator: 'auto' (default: chosen for the run, see "
                            "the JSON's coarse_choice), 'problem' (the problem's own default), "
                            "or a spec such as RK4:1, ros2:8, be:20")
    solve.add_argument("--backend", default="serial", choices=sorted(BACKENDS),
                       help="where the fine solves run (default serial); threads, processes "
                            "and cuda-streams run them concurrently on --workers workers")
    solve.add_argument("--workers", type=_threads, default=None, metavar="N",
                       help="workers of the threads and processes backends, streams of "
                            "cuda-streams (default: the number of CPUs; 4 streams)")
    solve.add_argument("--schedule", default="synchronous", choices=SCHEDULES)
    solve.add_argument("--lookahead", type=_lookahead, default=DEFAULT_LOOKAHEAD, metavar="L",
                       help="pipelined schedule: iterations fine work may run ahead of the "
                            f"newest complete iterate (default {DEFAULT_LOOKAHEAD}; "
                            "'none': unbounded)")
    solve.add_argument("--tol", type=float, default=None,
                       help="absolute tolerance on updates (default: the state dtype's, "
                            "parareal.default_tolerance: 1e-8 for the float64 problems)")
    solve.add_argument("--rtol", type=float, default=0.0, help="relative tolerance on updates")
    solve.add_argument("--max-iters", type=int, default=None,
                       help="iteration cap (default: the number of slices)")
    solve.add_argument("--t-end", type=float, default=None, help="end time (problem default)")
    solve.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                       help="a problem parameter, e.g. --param lam=2j or --param points=1000 "
                            "(repeatable; values are Python literals; see the list below)")
    solve.add_argument("--json", action="store_true", help="print one JSON object")
    solve.add_argument("--plot", metavar="FILE",
                       help="save the convergence plot; the extension names the format "
                            "(.png, .pdf, .svg...; needs matplotlib)")
    solve.add_argument("--progress", action="store_true", help="print progress on stderr")
    solve.add_argument("--checkpoint", metavar="PATH",
                       help="write the newest iterate to PATH after every iteration "
                            "(atomically; .npz), to continue later with --resume")
    solve.add_argument("--resume", metavar="PATH",
                       help="continue from the checkpoint PATH of a run with the same problem "
                            "and options (may be the --checkpoint path; must exist)")
    solve.set_defaults(handler=run_solve)
    add_sample_parser(sub)
    for command in sub.choices.values():
        command.set_defaults(command_parser=command)  # whose error() reports stray arguments
        command.add_argument(
            "--threads", type=_threads, default=None, metavar="N",
            help="threads per library (torch, BLAS/OpenMP), set before the work "
                 "(default: the libraries' own, or OMP_NUM_THREADS)",
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (see the module docstring).

    Under ``--backend mpi`` every rank runs the command; the ranks other than 0 exit with the
    same status but print no error (rank 0, the root, prints it once).
    """
    quiet = _quiet_rank(sys.argv[1:] if argv is None else list(argv))
    try:
        with contextlib.redirect_stderr(io.StringIO()) if quiet else contextlib.nullcontext():
            args = _parse(build_parser(), argv)
        if args.threads is not None:  # torch only if loaded: sample sets it once it loads it
            set_threads(args.threads)
        status = int(args.handler(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside the handlers below
        return status
    except KeyboardInterrupt:
        print("parareal: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except (ValueError, TypeError, ImportError, OSError) as exc:
        if not quiet:
            print(f"parareal: error: {exc}", file=sys.stderr)
        return 2


def _quiet_rank(argv: list[str]) -> bool:
    """True on an MPI rank other than 0 when ``argv`` asks for ``--backend mpi``: the same
    command runs on every rank, and rank 0 alone reports its errors."""
    wants_mpi = any(token == "--backend=mpi" or (token == "--backend" and following == "mpi")
                    for token, following in zip(argv, [*argv[1:], ""]))
    if not wants_mpi:
        return False
    try:
        from mpi4py import MPI as mpi
    except ImportError:  # reported as the backend's error, by every rank: there is no MPI
        return False
    return mpi.COMM_WORLD.Get_rank() != 0


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """``parser.parse_args(argv)``, with unrecognised arguments reported by the sub-command
    they were given to (``parareal sample: error: ...``), not by the top-level parser."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        args.command_parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def _silence_stdout() -> None:
    """Point standard output at the null device, so that the final flush cannot fail again.

    What the Python documentation recommends after a ``BrokenPipeError`` (see the note on
    SIGPIPE in the :mod:`signal` module's documentation).
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout replaced by a non-file object
        pass
