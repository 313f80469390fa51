"""``parareal.odeint``: a drop-in for ``torchdiffeq.odeint``, parallel across time."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .backends import Rhs
from .engine import DEFAULT_LOOKAHEAD
from .errors import CoarseStabilityWarning, ConvergenceWarning, DivergenceError
from .propagators import RK4, Euler, Heun, Midpoint, Propagator, TorchDiffEq, spec_steps
from .result import Solution, Status
from .solve import check_callable, run_on_boundaries
from .state import is_torch
from .theory import coarse_stability
from .validation import check_int, check_positive, check_slices, check_y0

__all__ = ["FIXED_GRID_METHODS", "odeint"]

#: The fixed-grid methods, stepped as torchdiffeq steps them (``"rk4"`` is its 3/8 rule).
FIXED_GRID_METHODS: dict[str, Callable[[int], Propagator]] = {
    "euler": Euler,
    "midpoint": Midpoint,
    "heun": Heun,
    "rk4": lambda steps: RK4(steps, variant="3/8"),
}
#: Options of torchdiffeq's fixed-grid solvers and what odeint does with them.
_FIXED_OPTIONS = ("step_size", "interp", "perturb", "grid_constructor")
_SCIPY_METHODS = ("RK45", "RK23", "DOP853", "Radau", "BDF", "LSODA")


def _torchdiffeq_methods() -> list[str] | None:
    try:
        from torchdiffeq._impl.odeint import SOLVERS
    except ImportError:
        return None
    return sorted(SOLVERS)


def _unknown_method(method: str, torch_in: bool) -> ValueError:
    names = sorted(FIXED_GRID_METHODS)
    adaptive = _torchdiffeq_methods()
    text = f"unknown method {method!r}; fixed-grid methods (numpy or torch): {', '.join(names)}"
    extra = [m for m in adaptive or [] if m not in FIXED_GRID_METHODS]
    if adaptive is None:
        text += "; torchdiffeq's methods (dopri5...) need pip install 'parareal[torch]'"
    elif torch_in:
        text += f"; torchdiffeq methods (torch y0): {', '.join(extra)}"
    else:
        text += f"; with a torch y0 also torchdiffeq's: {', '.join(extra)}"
    if method in extra and not torch_in:
        text = (
            f"method {method!r} is a torchdiffeq method and needs a torch tensor y0; for numpy "
            f"use one of {', '.join(names)}, or parareal.solve(..., fine=parareal.ScipyIVP(...))"
        )
    if method in _SCIPY_METHODS:
        text += (
            f". {method!r} is a scipy solve_ivp method: use "
            f"parareal.solve(f, y0, t_span, fine=parareal.ScipyIVP({method!r}), ...)"
        )
    return ValueError(text)


def _fixed_steps(step: float | None, dt: float) -> int:
    """Equal steps over an output interval ``dt``: one, or ``ceil(dt / step)``."""
    return 1 if step is None else max(1, int(np.ceil(dt / step - 1e-12)))


def _check_fixed_options(options: dict[str, Any]) -> float | None:
    """Validate torchdiffeq's fixed-grid options and return ``step_size`` (None if unset).

    Unknown keys get torchdiffeq's warning.
    """
    step = options.get("step_size")
    if step is not None:
        step = check_positive(step, "options['step_size']")
    if options.get("grid_constructor") is not None:
        raise ValueError(
            "options['grid_constructor'] is not supported by parareal.odeint: its fine grid "
            "restarts at every output time; use options['step_size'] or more output times"
        )
    if options.get("perturb", False) not in (False, None):
        raise ValueError("options['perturb'] is not supported by parareal.odeint")
    interp = options.get("interp", "linear")
    if interp not in ("linear", "cubic"):
        raise ValueError(f"options['interp'] must be 'linear' or 'cubic', got {interp!r}")
    unknown = {k: v for k, v in options.items() if k not in _FIXED_OPTIONS}
    if unknown:
        warnings.warn(f"odeint: Unexpected arguments {unknown}", UserWarning, stacklevel=3)
    return step


def _coarse(coarse_method: Any) -> Propagator:
    """``coarse_method``: a fixed-grid name, ``"name:steps"``, or a Propagator instance."""
    if isinstance(coarse_method, Propagator):
        return coarse_method
    if not isinstance(coarse_method, str):
        raise TypeError(
            "coarse_method must be a str such as 'euler' or 'rk4:4', or a Propagator, got "
            f"{type(coarse_method).__name__}"
        )
    name = coarse_method.strip().lower().partition(":")[0]
    if name not in FIXED_GRID_METHODS:
        raise ValueError(
            f"coarse_method must be one of {sorted(FIXED_GRID_METHODS)} (optionally "
            f"'name:steps', e.g. 'rk4:4') or a Propagator, got {coarse_method!r}"
        )
    steps = spec_steps(coarse_method)
    return FIXED_GRID_METHODS[name](check_int(steps, "coarse_method steps"))


def _times(t: Any) -> np.ndarray:
    if is_torch(t):
        if t.requires_grad:
            import torch

            if torch.is_grad_enabled():
                raise ValueError(
                    "t requires grad, but parareal.odeint does not propagate gradients with "
                    "respect to t; pass t.detach() (gradients with respect to y0 and the "
                    "parameters of func flow as usual)"
                )
        if t.is_complex():
            raise TypeError(f"t must hold real times, got dtype {t.dtype}")
        t = t.detach().cpu().numpy()
    if isinstance(t, (str, bytes)) or t is None:
        raise TypeError(f"t must be a 1-D sequence of times, got {t!r}")
    try:
        raw = np.asarray(t)
    except Exception as exc:
        raise TypeError(f"t must be a 1-D sequence of times, got {type(t).__name__}") from exc
    if raw.dtype.kind not in "biuf":
        raise TypeError(f"t must hold real numbers, got dtype {raw.dtype}")
    times = raw.astype(np.float64)
    if times.ndim != 1 or times.size < 2:
        raise ValueError(f"t must be a 1-D sequence of at least two times, got shape {times.shape}")
    if not np.all(np.isfinite(times)):
        raise ValueError("t must be finite")
    return times


class _Reversed:
    """``f(s, y) = -func(-s, y)``: integrating forward in ``s = -t`` runs ``t`` backwards."""

    def __init__(self, func: Callable[[Any, Any], Any]) -> None:
        self.func = func

    def __call__(self, s: Any, y: Any) -> Any:
        dy = self.func(-s, y)
        if dy is None or isinstance(dy, (str, bytes)):
            return dy  # the engine's check names the problem
        if isinstance(dy, (list, tuple)):
            dy = np.asarray(dy)
        return -dy


class _Piecewise(Propagator):
    """A propagator applied on each output interval of one slice in turn."""

    def __init__(self, points: np.ndarray, make: Callable[[float], Propagator]) -> None:
        self.points = points
        self.make = make

    def pieces(self, t0: float, t1: float) -> list[tuple[Propagator, float, float]]:
        i0 = int(np.searchsorted(self.points, t0))
        i1 = int(np.searchsorted(self.points, t1))
        pts = self.points[i0 : i1 + 1]
        return [(self.make(b - a), a, b) for a, b in zip(pts[:-1], pts[1:], strict=True)]

    def propagate(self, f: Callable[[Any, Any], Any], y: Any, t0: float, t1: float) -> Any:
        for prop, a, b in self.pieces(t0, t1):
            y = prop.propagate(f, y, a, b)
        return y


class _SteppablePiecewise(_Piecewise):
    steppable = True

    def stepper(self, y: Any, t0: float, t1: float) -> Any:
        for prop, a, b in self.pieces(t0, t1):
            y = yield from prop.stepper(y, a, b)  # type: ignore[attr-defined]
        return y


def _report(sol: Solution, stacklevel: int) -> None:
    """Raise on divergence, warn when unconverged (odeint returns bare arrays)."""
    last = sol.residuals[-1] if sol.residuals else float("nan")
    if sol.status is Status.DIVERGED:
        raise DivergenceError(
            f"parareal.odeint diverged: iterate {sol.iterations + 1} contained NaN or inf "
            f"(last finite iterate {sol.iterations}, last update {last:.3e}); the coarse "
            "method may be unstable for this problem (see parareal.theory.coarse_stability), "
            "or the ODE blows up. The run's Solution is in the exception's .solution",
            solution=sol,
        )
    if sol.status is Status.MAX_ITERS:
        warnings.warn(
            ConvergenceWarning(
                f"parareal.odeint stopped after max_iters = {sol.iterations} iteration(s) "
                f"without converging: last update {last:.3e} > tol; the values returned may "
                "be far from the serial solution (raise max_iters, or pass "
                "return_solution=True to inspect the run)",
                iterations=sol.iterations,
                residual=last,
                solution=sol,
            ),
            stacklevel=stacklevel,
        )


def odeint(
    func: Callable[[Any, Any], Any],
    y0: Any,
    t: Any,
    *,
    method: str = "rk4",
    coarse_method: str | Propagator = "euler",
    slices: int | None = None,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    options: Mapping[str, Any] | None = None,
    tol: float = 1e-8,
    max_iters: int | None = None,
    backend: Any = "serial",
    schedule: str = "synchronous",
    lookahead: int | None = DEFAULT_LOOKAHEAD,
    vectorized: bool = False,
    progress: bool = False,
    check_stability: bool = True,
    return_solution: bool = False,
) -> Any:
    """A drop-in for ``torchdiffeq.odeint`` that integrates in parallel across time.

    Returns the solution at every time in ``t``, shape ``(len(t), *y0.shape)``, in ``y0``'s
    kind. The fine propagator is ``method`` stepped as torchdiffeq steps it: fixed-grid methods
    take one step per output interval, or ``ceil(interval / options["step_size"])`` equal steps
    (``"rk4"`` is torchdiffeq's 3/8 rule); adaptive methods run per output interval. The coarse
    propagator is ``coarse_method`` once per slice. With ``tol=0`` the result equals
    torchdiffeq's to round-off for fixed-grid methods whose output intervals are multiples of
    ``step_size`` (torchdiffeq steps one grid over the whole span and interpolates at output
    times inside a step; we restart the grid at every output time instead), and agrees to the
    solver tolerance for adaptive methods.

    Unlike :func:`parareal.solve`, which returns a :class:`~parareal.Solution` with a status,
    ``odeint`` returns bare values, so it never hides a failure: it raises
    :class:`~parareal.DivergenceError` when the run produced NaN or inf, and issues a
    :class:`~parareal.ConvergenceWarning` (with the iterations and the last update) when it
    stopped at ``max_iters`` unconverged. Before the run it estimates the Jacobian's
    eigenvalues at ``y0`` (states of up to 64 entries, ``y0.size + 1`` extra calls of
    ``func``) and issues a :class:`~parareal.CoarseStabilityWarning` when the coarse method is
    unstable for them (forward Euler on an oscillation whose ``|1 + i w dt| > 1``): Parareal
    would then converge only through exactness, one slice per iteration.

    Parameters
    ----------
    func : callable
        ``func(t, y) -> dy/dt``.
    y0 : torch.Tensor, numpy.ndarray or float
        Initial state, any shape (0-d included).
    t : 1-D array or tensor
        Strictly increasing or strictly decreasing output times; ``t[0]`` is the time of
        ``y0``. Decreasing times integrate backwards, as torchdiffeq does (``func`` is called
        at the original times). Gradients with respect to ``t`` are not propagated: a ``t``
        that requires grad is refused (pass ``t.detach()``); gradients with respect to ``y0``
        and ``func``'s parameters flow through the torch operations as usual.
    method : str
        ``"euler"``, ``"midpoint"``, ``"heun"``, ``"rk4"``, or any torchdiffeq method
        (``"dopri5"``... torch inputs only).
    coarse_method : str or Propagator
        ``"euler"``, ``"midpoint"``, ``"heun"`` or ``"rk4"``, one step per slice, or
        ``"name:steps"`` (``"rk4:4"``: four RK4 steps per slice), or any
        :class:`~parareal.Propagator`. The default one Euler step per slice is cheap but
        unstable for oscillations with ``w * dt > 0``; ``"rk4"`` is stable for
        ``|w * dt| < 2.8`` (see ``docs/guide.md``).
    slices : int, optional
        Parareal slices; default ``len(t) - 1`` (one per output interval). Fewer slices group
        neighbouring output intervals; their inner values are filled in by one more fine pass.
    rtol, atol, options :
        As ``torchdiffeq.odeint`` takes them. For fixed-grid methods ``options`` may hold
        ``step_size`` and ``interp`` (no effect: no output time falls inside a step);
        ``grid_constructor`` and ``perturb=True`` are refused, other keys are warned about.
    tol, max_iters, backend, schedule, lookahead, vectorized, progress :
        As in :func:`parareal.solve`.
    check_stability : bool
        Run the coarse stability check described above.
    return_solution : bool
        Return ``(values, solution)``: the :class:`~parareal.Solution` of the run alongside.

    Raises
    ------
    DivergenceError
        The run produced NaN or inf; ``.solution`` holds the run's result.
    TypeError, ValueError
        On invalid arguments.
    """
    check_callable(func, "func")
    for name, flag in (("check_stability", check_stability), ("return_solution", return_solution)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be True or False, got {flag!r}")
    y0, ops = check_y0(y0)
    times = _times(t)
    steps = np.diff(times)
    reverse = bool(np.all(steps < 0))
    if not reverse and not np.all(steps > 0):
        raise ValueError("t must be strictly increasing or strictly decreasing")
    if reverse:
        times = -times
        func = _Reversed(func)
    if not isinstance(method, str):
        raise TypeError(f"method must be a str, got {type(method).__name__}")
    if options is not None and not isinstance(options, Mapping):
        raise TypeError(f"options must be a dict or None, got {type(options).__name__}")
    opts = dict(options or {})
    torch_in = is_torch(y0)
    step: float | None = None
    if method in FIXED_GRID_METHODS:
        step = _check_fixed_options(opts)
    elif method in (_torchdiffeq_methods() or []) and torch_in:
        if reverse:  # torchdiffeq flips these time-valued options for reversed t
            for key in ("step_t", "jump_t"):
                if opts.get(key) is not None:
                    opts[key] = -opts[key]
    else:
        raise _unknown_method(method, torch_in)
    coarse = _coarse(coarse_method)
    intervals = times.size - 1
    slices = intervals if slices is None else check_slices(slices)
    if slices > intervals:
        raise ValueError(f"slices must be <= len(t) - 1 = {intervals}, got {slices}")
    boundaries = times[np.round(np.linspace(0, intervals, slices + 1)).astype(int)]

    def make(dt: float) -> Propagator:
        if method in FIXED_GRID_METHODS:
            return FIXED_GRID_METHODS[method](_fixed_steps(step, dt))
        return TorchDiffEq(method=method, rtol=rtol, atol=atol, options=opts)

    piece = make(float(times[1] - times[0]))
    fine = (_SteppablePiecewise if piece.steppable else _Piecewise)(times, make)
    if check_stability:
        try:
            report = coarse_stability(func, y0, boundaries, coarse, vectorized=bool(vectorized))
        except Exception:  # a probe off the trajectory may fail; the solve reports real errors
            report = None
        if report is not None and not report.stable:
            warnings.warn(
                CoarseStabilityWarning(
                    f"the coarse method {coarse!r} is unstable for this problem: for the "
                    f"Jacobian eigenvalue {report.worst:.4g} at y0 it amplifies by "
                    f"{report.worst_factor:.4g} per slice, {report.excess:.3g} times more than "
                    "the ODE over the span, so Parareal would converge only slice by slice. "
                    "Use a stabler coarse_method ('rk4', or 'rk4:N' with N steps per slice) "
                    "or more, shorter slices (more output times)"
                ),
                stacklevel=2,
            )
    sol = run_on_boundaries(
        func,
        y0,
        boundaries,
        coarse=coarse,
        fine=fine,
        tol=tol,
        rtol=0.0,
        max_iters=max_iters,
        backend=backend,
        schedule=schedule,
        callback=None,
        progress=progress,
        vectorized=vectorized,
        initial=None,
        lookahead=lookahead,
    )
    _report(sol, stacklevel=3)
    if slices == intervals:
        values = sol.y
    else:
        rhs = Rhs(func, ops, bool(vectorized))
        out = [sol.y[0]]
        for n in range(slices):
            y = sol.y[n]
            for prop, a, b in fine.pieces(boundaries[n], boundaries[n + 1]):
                y = rhs.propagate(prop, y, a, b)
                out.append(y)
            out[-1] = sol.y[n + 1]
        values = ops.stack(out)
    if not return_solution:
        return values
    return values, (dataclasses.replace(sol, t=-sol.t) if reverse else sol)
