"""``parareal solve``: run a bundled problem, print a table or JSON, optionally plot."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import sys
from typing import Any

import numpy as np

from ..backends import Backend, Processes, Threads, resolve_backend
from ..backends.concurrent import run_workers
from ..checkpoint import check_checkpoint_path, check_resume_path
from ..problems import Problem, ReferenceUnavailable, get
from ..propagators import resolve
from ..result import IterationInfo, Solution, Status
from ..solve import solve, solve_serial
from ..theory import dahlquist_bounds
from ..validation import MAX_SLICES, check_int, check_positive, check_tolerance
from .flags import CUDA_FLAGS, in_flags, in_flags_raised, named
from .paths import atomic_path, check_extension, check_writable

__all__ = ["run_solve"]

#: The options of ``parareal solve`` that set a problem parameter (``--param`` may not repeat
#: them).
_OPTION_PARAMS = {"t_end": "--t-end", "slices": "--slices", "fine": "--fine", "coarse": "--coarse"}
#: The library's errors that only the run itself finds (reading the --resume checkpoint), in
#: flags: ``(pattern, replacement)`` for :func:`.flags.in_flags`.
_RUN_FLAGS = (
    (r"^resume\b", "--resume"),  # "resume: checkpoint '...' is corrupt or truncated"
    (r"\bmax_iters = ", "--max-iters "),  # below the checkpoint's iteration
    (r"\bpass max_iters >= ", "pass --max-iters >= "),
    (r"\(resume=None\)", "(without --resume)"),  # another run's checkpoint
    (r" \(and the same f\)", ""),  # the problem is one of the arguments here
)


def _json_value(value: Any) -> Any:
    """JSON-safe values: NaN/inf become null; complex arrays become [real, imag] pairs."""
    if isinstance(value, np.ndarray):
        if np.iscomplexobj(value):
            value = np.stack([value.real, value.imag], axis=-1)
        return _json_value(value.tolist())
    if isinstance(value, dict):
        return {key: _json_value(v) for key, v in value.items()}
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _parse_params(items: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"--param takes NAME=VALUE, got {item!r}")
        if name in params:
            raise ValueError(f"--param {name} is given twice")
        try:
            value = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            value = text.strip()
        params[name] = value
    return params


def _problem(args: argparse.Namespace) -> Problem:
    overrides: dict[str, Any] = _parse_params(args.param)
    for name, option in _OPTION_PARAMS.items():
        value = getattr(args, name)
        if value is None or (name == "coarse" and value.strip().lower() in ("auto", "problem")):
            continue
        if name in overrides:
            raise ValueError(f"{name} is given twice: use {option} or --param {name}=..., not both")
        overrides[name] = resolve(value, name=option) if name in ("fine", "coarse") else value
    return get(args.problem, **overrides)


def _plot_formats() -> set[str]:
    """The file formats matplotlib can write (imports matplotlib, not pyplot)."""
    try:
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError as exc:
        raise ImportError("--plot needs matplotlib: pip install 'parareal[plot]'") from exc
    return set(FigureCanvasBase.get_supported_filetypes())


def _check_numbers(args: argparse.Namespace) -> None:
    """The numeric options, by the library's rules, in errors that name the flag (the
    library's would name the Python argument: ``t_end``, ``max_iters``)."""
    if args.slices is not None:
        check_int(args.slices, "--slices", 1, MAX_SLICES)
    if args.t_end is not None:
        check_positive(args.t_end, "--t-end")
    if args.tol is not None:
        check_tolerance(args.tol, "--tol")
    check_tolerance(args.rtol, "--rtol")
    if args.max_iters is not None:
        check_int(args.max_iters, "--max-iters", 0)


def _check_outputs(args: argparse.Namespace) -> None:
    """Everything about the output files (and the file to resume from) that can be checked
    before solving."""
    if args.plot is not None:
        with named("--plot"):
            check_writable(args.plot, "the plot")
        check_extension(args.plot, _plot_formats(), "--plot")
    if args.checkpoint is not None:
        with named("--checkpoint"):
            check_writable(args.checkpoint, "the checkpoint")
        check_checkpoint_path(args.checkpoint, name="--checkpoint")
    check_resume_path(args.resume, name="--resume")


def _errors(problem: Problem, sol: Solution, values: list[Any]) -> tuple[list[float | None], str]:
    """Max-norm errors of ``values`` against the reference, and a note on the reference.

    A value of ``None`` (an iterate before a resume, not known here) has no error.
    """
    try:
        reference = np.asarray(problem.reference(sol.t))
    except ReferenceUnavailable as exc:
        return [None] * len(values), f"unavailable: {exc}"
    errors = [
        None if y is None else float(np.max(np.abs(np.asarray(y) - reference))) for y in values
    ]
    return errors, "available"


def _iterate_values(sol: Solution, iterates: list[IterationInfo]) -> list[Any]:
    """The boundary values of iterates ``0..sol.iterations`` (``None`` where not seen).

    After ``--resume`` the callback sees only the iterates after the checkpoint's.
    """
    values: list[Any] = [None] * (sol.iterations + 1)
    for info in iterates:
        if info.iteration <= sol.iterations:
            values[info.iteration] = info.y
    values[-1] = sol.y
    return values


def _coarse(args: argparse.Namespace, problem: Problem) -> Any:
    """``--coarse``: "auto" (the default), "problem" (the problem's default), or a spec
    (already in ``problem.coarse``)."""
    choice = (args.coarse or "auto").strip().lower()
    return "auto" if choice == "auto" else problem.coarse


def run_solve(args: argparse.Namespace) -> int:
    """Handler of ``parareal solve``."""
    _check_numbers(args)
    _check_outputs(args)
    problem = _problem(args)
    backend = _backend(args)
    args.used_workers = getattr(backend, "workers", None) if backend.concurrent else None
    if isinstance(backend, (Threads, Processes)):  # a run uses at most one per slice
        args.used_workers = run_workers(backend.workers, problem.slices)
    iterates: list[IterationInfo] = []
    with backend, np.errstate(over="ignore", invalid="ignore"), in_flags_raised(_RUN_FLAGS):
        sol = solve(  # divergence: in the status
            problem.f,
            problem.y0,
            problem.t_span,
            coarse=_coarse(args, problem),
            fine=problem.fine,
            slices=problem.slices,
            jac=problem.jacobian,
            tol=args.tol,
            rtol=args.rtol,
            max_iters=args.max_iters,
            backend=backend,
            schedule=args.schedule,
            lookahead=args.lookahead,
            vectorized=args.backend != "serial",
            callback=iterates.append,
            progress=args.progress,
            checkpoint=args.checkpoint,
            resume=args.resume,
        )
    if not backend.drives():
        return 1 if sol.status is Status.DIVERGED else 0  # MPI: the root reports, once
    if sol.coarse_choice is not None:  # what ran, for the report and the plot
        problem = dataclasses.replace(problem, coarse=sol.coarse_choice.propagator)
    args.resumed_from = None
    if args.resume is not None:
        args.resumed_from = iterates[0].iteration - 1 if iterates else sol.iterations
    values = _iterate_values(sol, iterates)
    with np.errstate(over="ignore", invalid="ignore"):  # a diverged iterate: an inf error
        errors, reference = _errors(problem, sol, values)
    if args.json:
        print(json.dumps(_json_value(_summary(args, problem, sol, errors, reference))))
    else:
        _print_table(args, problem, sol, errors, reference)
    if args.plot is not None:
        with atomic_path(args.plot) as tmp:
            _plot(tmp, problem, sol, iterates[: len(errors)], errors)
        if not args.json:
            print(f"plot written to {args.plot}")
    return 1 if sol.status is Status.DIVERGED else 0


def _backend(args: argparse.Namespace) -> Backend:
    """The backend named by ``--backend`` with ``--workers`` (usage errors as ValueError)."""
    try:
        return resolve_backend(args.backend, args.workers)
    except RuntimeError as exc:  # cuda-streams without CUDA
        raise ValueError(in_flags(str(exc), CUDA_FLAGS)) from exc
    except ValueError as exc:
        raise ValueError(str(exc).replace("workers applies", "--workers applies")) from exc


def _summary(
    args: argparse.Namespace,
    problem: Problem,
    sol: Solution,
    errors: list[float | None],
    reference: str,
) -> dict[str, Any]:
    stats = sol.stats
    return {
        "problem": problem.name,
        "backend": args.backend,
        "workers": args.used_workers,
        "schedule": args.schedule,
        "lookahead": args.lookahead if args.schedule == "pipelined" else None,
        "slices": len(sol.t) - 1,
        "coarse": repr(problem.coarse),
        "fine": repr(problem.fine),
        "iterations": sol.iterations,
        "converged": sol.converged,
        "status": sol.status.value,
        "residuals": list(sol.residuals),
        "errors": errors,
        "error": errors[-1],
        "reference": reference,
        "t_final": float(sol.t[-1]),
        "y_final": np.asarray(sol.y_final),
        "wall_time_s": stats.wall_time["total"],
        "fine_calls": stats.fine_calls,
        "coarse_calls": stats.coarse_calls,
        "f_evals": stats.f_evals,
        "f_calls": stats.f_calls,
        "critical_path": stats.critical_path,
        "critical_path_per_iteration": list(stats.critical_path_per_iteration),
        "resumed_from": args.resumed_from,
        "jac_calls": stats.jac_calls,
        "serial_fine_cost": stats.serial_fine_cost,
        "speedup_bound": stats.speedup_bound,
        "reason": sol.reason,
        "coarse_choice": None if sol.coarse_choice is None else {
            "propagator": repr(sol.coarse_choice.propagator),
            "reason": sol.coarse_choice.reason,
        },
    }


def _print_table(
    args: argparse.Namespace,
    problem: Problem,
    sol: Solution,
    errors: list[float | None],
    reference: str,
) -> None:
    out = sys.stdout
    n = len(sol.t) - 1
    print(
        f"{problem.name}: t in [{sol.t[0]:g}, {sol.t[-1]:g}], {n} slices, "
        f"coarse {problem.coarse!r}, fine {problem.fine!r}, "
        f"backend {args.backend}"
        + (f" ({args.used_workers} workers)" if args.used_workers else "")
        + f", schedule {args.schedule}",
        file=out,
    )
    print(f"{'iter':>4}  {'max update':>12}  {'error vs ref':>12}  {'critical path':>13}", file=out)
    path = sol.stats.critical_path_per_iteration
    for k, err in enumerate(errors):
        update = "-" if k == 0 else f"{sol.residuals[k - 1]:.3e}"
        error = "n/a" if err is None else f"{err:.3e}"
        print(f"{k:>4}  {update:>12}  {error:>12}  {path[k]:>13}", file=out)
    stats = sol.stats
    line = (
        f"status: {sol.status.value} after {sol.iterations} iteration(s); "
        f"f evals {stats.f_evals}, critical path {stats.critical_path}"
    )
    if sol.converged and stats.speedup_bound == stats.speedup_bound:  # not NaN
        line += (f" (serial fine: {stats.serial_fine_cost:.0f}, speed-up bound "
                 f"{stats.speedup_bound:.2f}x)")
    line += f"; wall {stats.wall_time['total']:.3f} s"
    print(line, file=out)
    if sol.coarse_choice is not None:
        print(f"coarse chosen: {sol.coarse_choice.reason}", file=out)
    if reference != "available":
        print(f"reference {reference}", file=out)
    if args.resumed_from is not None:
        print(f"resumed from iteration {args.resumed_from} ({args.resume}); the errors of "
              "earlier iterates are not known here", file=out)


def _plot(
    path: str,
    problem: Problem,
    sol: Solution,
    iterates: list[IterationInfo],
    errors: list[float | None],
) -> None:
    """Draw the convergence plot into ``path`` (its extension names the format)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("--plot needs matplotlib: pip install 'parareal[plot]'") from exc
    ks = np.arange(len(errors))
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    floor = np.finfo(float).tiny

    def positive(values: Any) -> np.ndarray:
        return np.maximum(np.asarray(values, dtype=float), floor)

    if sol.residuals:
        ax.semilogy(ks[1:], positive(sol.residuals), "o-", label="max update")
    if any(error is not None for error in errors):  # None (before a resume): a gap
        ax.semilogy(ks, positive(errors), "s-", label="error vs reference")
    if problem.lam is not None and iterates:
        n = len(sol.t) - 1
        serial = np.asarray(solve_serial(problem.f, problem.y0, problem.t_span,
                                         propagator=problem.fine, slices=n))
        fine_err = [float(np.max(np.abs(np.asarray(i.y) - serial))) for i in iterates]
        bounds = dahlquist_bounds(problem.lam, t_span=problem.t_span, slices=n,
                                  coarse=problem.coarse, fine=problem.fine,
                                  iterations=sol.iterations)
        seen = [info.iteration for info in iterates]  # after a resume: the new iterates
        ax.semilogy(seen, positive(fine_err), "^-", label="error vs serial fine")
        if seen[0] == 0:
            ax.semilogy(ks, positive(bounds.combined * fine_err[0]), "k--",
                        label="Gander-Vandewalle bound")
    ax.set_xlabel("iteration k")
    ax.set_ylabel("max-norm")
    ax.set_title(f"Parareal on {problem.name}: {sol.status.value}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
