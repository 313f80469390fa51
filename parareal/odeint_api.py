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
from .propagators import RK4, Euler, Heun, Midpoint, Propagator, ScipyIVP, TorchDiffEq, spec_steps
from .propagators.external import torchdiffeq_methods
from .result import Solution, Status
from .solve import check_callable, solve
from .state import is_torch
from .stopping import StopRule
from .theory import coarse_stability
from .validation import (
    MAX_STEPS,
    check_int,
    check_positive,
    check_slices,
    check_tensor_storage,
    check_y0,
)

__all__ = ["DEFAULT_METHOD", "DEFAULT_SLICES", "FIXED_GRID_METHODS", "odeint"]

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


def _unknown_method(method: str, torch_in: bool) -> ValueError:
    names = sorted(FIXED_GRID_METHODS)
    adaptive = torchdiffeq_methods()
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
        check_tensor_storage(t, "t")
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
    if times.ndim != 1 or times.size < 1:
        raise ValueError(f"t must be a 1-D sequence of at least one time, got shape {times.shape}")
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
    """A propagator applied on each piece of one slice in turn.

    ``points`` holds every output time and every slice boundary, so the fine solution is
    restarted at the same times whatever the slicing, and an output time inside a slice is
    the end of a piece (its value is taken there by :func:`_fill_in`).
    """

    def __init__(self, points: np.ndarray, make: Callable[[float, float], Propagator]) -> None:
        self.points = points
        self.make = make

    def pieces(self, t0: float, t1: float) -> list[tuple[Propagator, float, float]]:
        i0 = int(np.searchsorted(self.points, t0))
        i1 = int(np.searchsorted(self.points, t1))
        pts = self.points[i0 : i1 + 1]
        return [(self.make(a, b), a, b) for a, b in zip(pts[:-1], pts[1:], strict=True)]

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
            "or the ODE blows up. The run's Solution is in the exception's .solution"
            + (f". Reason: {sol.reason}" if sol.reason else ""),
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


#: Slices when ``slices`` is not given: Parareal's parallelism, independent of ``len(t)``.
DEFAULT_SLICES = 16
#: The solver torchdiffeq uses when ``method`` is None, and its tolerances.
DEFAULT_METHOD = "dopri5"
#: Attributes torchdiffeq reads from ``func`` to call back at every solver step.
_CALLBACKS = (
    "callback_step",
    "callback_accept_step",
    "callback_reject_step",
    "callback_step_adjoint",
    "callback_accept_step_adjoint",
    "callback_reject_step_adjoint",
)


def _refuse_callbacks(func: Any) -> None:
    """Refuse torchdiffeq's step callbacks on ``func`` instead of ignoring them."""
    found = [name for name in _CALLBACKS if getattr(func, name, None) is not None]
    if found:
        raise ValueError(
            f"func has torchdiffeq step callbacks {', '.join(found)}, which parareal.odeint "
            "does not call: Parareal runs each solver step once per iteration on every slice, "
            "so torchdiffeq's per-step semantics do not exist here. Remove them, or use "
            "torchdiffeq.odeint for runs that need them"
        )


class _TupleState:
    """A tuple of tensors as one flat tensor, as torchdiffeq handles tuple states."""

    def __init__(self, y0: tuple[Any, ...]) -> None:
        if not y0 or not all(is_torch(y) for y in y0):
            raise TypeError(
                "a tuple y0 must be a non-empty tuple of torch tensors, got "
                f"({', '.join(type(y).__name__ for y in y0)})"
            )
        import torch

        self.shapes = [tuple(y.shape) for y in y0]
        self.dtypes = [y.dtype for y in y0]
        self.sizes = [int(np.prod(s, dtype=np.int64)) for s in self.shapes]
        self.flat = torch.cat([y.reshape(-1) for y in y0])

    def split(self, flat: Any, cast: bool = False) -> tuple[Any, ...]:
        """The tuple for ``flat`` of shape ``(*lead, total)``."""
        lead = tuple(flat.shape[:-1])
        out, start = [], 0
        for shape, size, dtype in zip(self.shapes, self.sizes, self.dtypes, strict=True):
            part = flat[..., start : start + size].reshape(lead + shape)
            out.append(part.to(dtype) if cast else part)
            start += size
        return tuple(out)

    def join(self, parts: Any, like: Any) -> Any:
        """One flat tensor from a tuple ``parts`` with leading axes ``like.shape[:-1]``."""
        import torch

        if not isinstance(parts, tuple) or len(parts) != len(self.shapes):
            raise TypeError(
                f"func must return a tuple of {len(self.shapes)} tensors for a tuple y0, got "
                f"{type(parts).__name__}"
            )
        lead = tuple(like.shape[:-1])
        return torch.cat([torch.as_tensor(p).reshape(*lead, -1) for p in parts], dim=-1).to(
            like.dtype
        )

    def func(self, func: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        def flat_func(t: Any, y: Any) -> Any:
            return self.join(func(t, self.split(y)), y)

        return flat_func

    def event(self, event_fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        def flat_event(t: Any, y: Any) -> Any:
            return event_fn(t, self.split(y))

        return flat_event

    def norm(self, norm: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def flat_norm(y: Any) -> Any:
            return norm(self.split(y))

        return flat_norm


def _atoms(times: np.ndarray, step: float | None) -> np.ndarray:
    """The fixed-grid steps' end points: where the fine solution may restart unchanged."""
    if step is not None:
        total = float(np.sum(np.ceil(np.abs(np.diff(times)) / step)))
        if not total <= MAX_STEPS:
            raise ValueError(
                f"options['step_size'] = {step:g} asks for about {total:.3g} fixed-grid steps "
                f"over t; at most {MAX_STEPS:_} are allowed (the work and the grid's memory "
                "would not be bounded): pass a larger step_size"
            )
    parts = [times[:1]]
    for a, b in zip(times[:-1], times[1:], strict=True):
        n = _fixed_steps(step, float(b - a))
        inner = np.linspace(a, b, n + 1)
        inner[-1] = b
        parts.append(inner[1:])
    return np.concatenate(parts)


def _boundaries(times: np.ndarray, atoms: np.ndarray | None, slices: int | None) -> np.ndarray:
    """Slice boundaries: ``slices`` equal slices of the span (on the fixed grid, if any)."""
    if atoms is not None:
        available = atoms.size - 1
        if slices is None:
            slices = min(DEFAULT_SLICES, available)
        elif slices > available:
            raise ValueError(
                f"slices must be <= {available}, the fixed-grid steps over t (one per output "
                f"interval, or more with options['step_size']), got {slices}"
            )
        return atoms[np.round(np.linspace(0, available, slices + 1)).astype(int)]
    slices = DEFAULT_SLICES if slices is None else slices
    grid = np.linspace(times[0], times[-1], slices + 1)
    length = (times[-1] - times[0]) / slices
    nearest = np.clip(np.searchsorted(times, grid), 1, times.size - 1)
    for i, g in enumerate(grid):  # snap to an output time close by: no needless tiny pieces
        for j in (nearest[i] - 1, nearest[i]):
            if abs(times[j] - g) <= 0.05 * length:
                grid[i] = times[j]
    grid[0], grid[-1] = times[0], times[-1]
    return grid


def _fill_in(
    rhs: Rhs, fine: _Piecewise, sol: Solution, boundaries: np.ndarray, times: np.ndarray
) -> list[Any]:
    """Values at every output time: the boundaries of ``sol``, and inside each slice one
    more fine pass from its converged start value through the output times within it."""
    index = {float(v): i for i, v in enumerate(times)}
    out: list[Any] = [None] * times.size
    for n in range(boundaries.size - 1):
        y = sol.y[n]
        pieces = fine.pieces(float(boundaries[n]), float(boundaries[n + 1]))
        last = max((i for i, (_, _, b) in enumerate(pieces) if float(b) in index), default=-1)
        for prop, a, b in pieces[: last + 1]:
            y = rhs.propagate(prop, y, a, b)
            if float(b) in index:
                out[index[float(b)]] = y
    for n, b in enumerate(boundaries):
        if float(b) in index:
            out[index[float(b)]] = sol.y[n]
    return out


def _time_gradient(func: Callable[[Any, Any], Any], t: Any, values: Any, y0: Any) -> Any:
    """Attach the gradients with respect to ``t`` without changing any value.

    ``dy(t_i)/dt_i = func(t_i, y_i)`` for ``i >= 1``; ``t_0`` acts through ``y0`` (see the
    caller), and ``y(t_0) = y0`` does not depend on ``t_0``.
    """
    import torch

    shift = t - t.detach()
    rows = [y0]
    for i in range(1, values.shape[0]):
        dy = func(t[i].detach(), values[i].detach())
        rows.append(values[i] + shift[i].to(values.dtype) * torch.as_tensor(dy).detach())
    return torch.stack(rows)


#: Windows tried by ``event_fn`` mode, each :data:`EVENT_WINDOW_GROWTH` times as long as the
#: one before, before giving up (the last ends 4095 first windows away: the cost of an
#: explicit solve grows with the span, so the search must stop within seconds).
MAX_EVENT_WINDOWS = 12
EVENT_WINDOW_GROWTH = 2


def _until_event(
    func: Callable[[Any, Any], Any],
    y0: Any,
    t: Any,
    rtol: float,
    atol: float,
    method: str | None,
    opts: dict[str, Any],
    event_fn: Callable[[Any, Any], Any],
    packed: _TupleState | None,
    kwargs: dict[str, Any],
) -> tuple[Any, Any]:
    """``odeint(..., event_fn=...)``: Parareal over windows until the event, then located.

    Each window (first ``|t[1] - t[0]|`` long, then twice the one before) is solved by
    :func:`odeint`; the first slice at whose end ``sign(event_fn)`` differs from its value at
    ``t[0]`` holds the event, which torchdiffeq's own event search then locates on the same
    fine method, from that slice's converged start value.
    """
    import torch
    from torchdiffeq import odeint as torchdiffeq_odeint

    check_callable(event_fn, "event_fn")
    if not is_torch(y0):
        raise TypeError("event_fn needs a torch tensor y0 (or a tuple of them), as in torchdiffeq")
    times = _times(t)
    if times.size != 2 or times[0] == times[1]:
        raise ValueError(
            "with event_fn, t must hold two distinct times, as in torchdiffeq: t[0] the start "
            f"and t[1] the direction; got {times.size} time(s)"
        )
    name = DEFAULT_METHOD if method is None else method
    if name not in (torchdiffeq_methods() or []):
        raise ValueError(
            f"with event_fn, method must be a torchdiffeq method (torchdiffeq locates the "
            f"event on it), got {name!r}"
        )
    event = event_fn if packed is None else packed.event(event_fn)
    time_dtype = t.dtype if is_torch(t) and t.is_floating_point() else torch.float64
    direction = 1.0 if times[1] > times[0] else -1.0
    length = abs(float(times[1] - times[0]))
    step = opts.get("step_size")
    if name in FIXED_GRID_METHODS or step is not None:
        if step is None:
            raise ValueError(
                "with event_fn, fixed-grid methods need options['step_size'], as in torchdiffeq"
            )
        step = check_positive(step, "options['step_size']")
        length = step * np.ceil(length / step - 1e-12)  # windows of whole steps

    def when(value: float) -> Any:
        return torch.tensor(value, dtype=time_dtype, device=y0.device)

    def sign(value: float, y: Any) -> Any:
        return torch.sign(torch.as_tensor(event(when(value), y)))

    start, y, first = float(times[0]), y0, sign(float(times[0]), y0)
    if is_torch(t) and t.requires_grad and torch.is_grad_enabled():  # t[0] acts through y0
        y = y0 - (t[0] - t[0].detach()).to(y0.dtype) * torch.as_tensor(
            func(t[0].detach(), y0.detach())).detach()
    for _ in range(MAX_EVENT_WINDOWS):
        window = torch.tensor([start, start + direction * length], dtype=time_dtype)
        _, sol = odeint(func, y, window, rtol, atol, name, opts, return_solution=True,
                        **kwargs)
        for n in range(1, sol.t.size):
            if bool((sign(float(sol.t[n]), sol.y[n]) != first).any()):
                span = torch.tensor([float(sol.t[n - 1]), float(sol.t[n])], dtype=time_dtype)
                event_t, ends = torchdiffeq_odeint(func, sol.y[n - 1], span, rtol=rtol,
                                                   atol=atol, method=name, options=opts,
                                                   event_fn=event)
                return event_t.to(time_dtype), torch.stack([y0, ends[-1]])
        start, y, length = float(sol.t[-1]), sol.y[-1], EVENT_WINDOW_GROWTH * length
    raise RuntimeError(
        f"event_fn did not change sign within {MAX_EVENT_WINDOWS} windows (up to t = "
        f"{start:g}); is there an event in the direction of t[1]?"
    )


def odeint(
    func: Callable[[Any, Any], Any],
    y0: Any,
    t: Any,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    method: str | None = None,
    options: Mapping[str, Any] | None = None,
    *,
    event_fn: Callable[[Any, Any], Any] | None = None,
    coarse_method: str | Propagator = "auto",
    slices: int | None = None,
    tol: float | None = None,
    stop: StopRule | None = None,
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
    kind (a tuple of such tensors for a tuple ``y0``). The span is cut into ``slices``
    Parareal slices, independently of ``len(t)``. The fine propagator is ``method``, run
    piecewise through every output time and slice boundary, so that every output is a value of
    the fine solution (and with ``tol=0`` exactly the serial fine solution's): output times
    inside a slice are filled in by one more fine pass over that slice from its converged
    start value (serially, here; it costs one fine sweep of work). The coarse propagator is
    ``coarse_method`` once per slice.

    The default ``method`` is torchdiffeq's: ``"dopri5"`` at ``rtol``, ``atol`` (via
    :class:`~parareal.TorchDiffEq`) for torch states, scipy's Dormand-Prince
    (:class:`~parareal.ScipyIVP` ``("RK45")``) for numpy states. Fixed-grid methods take one
    step per output interval, or ``ceil(interval / options["step_size"])`` equal steps
    (``"rk4"`` is torchdiffeq's 3/8 rule), and slice boundaries fall on those steps, so with
    ``tol=0`` the result equals torchdiffeq's to round-off when the output intervals are
    multiples of ``step_size`` (torchdiffeq steps one grid over the whole span and
    interpolates at output times inside a step; we restart the grid at every output time).
    Adaptive methods restart at every output time and slice boundary, and agree with
    torchdiffeq to the solver tolerance.

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
        ``func(t, y) -> dy/dt`` (a tuple of derivatives for a tuple ``y0``). torchdiffeq's step
        callbacks (``func.callback_step``, ``callback_accept_step``, ``callback_reject_step``
        and their ``_adjoint`` forms) are refused with a ``ValueError``: Parareal has no
        serial sequence of steps to report.
    y0 : torch.Tensor, numpy.ndarray, float or tuple of torch.Tensor
        Initial state, any shape (0-d included), or a tuple of tensors of any shapes (solved as
        one flat state, as torchdiffeq does).
    t : 1-D array or tensor
        Strictly increasing or strictly decreasing output times; ``t[0]`` is the time of
        ``y0``. Decreasing times integrate backwards, as torchdiffeq does (``func`` is called
        at the original times). ``len(t) == 1`` returns ``y0[None]`` without a solve.
        Gradients flow to ``y0``, to ``func``'s parameters (through the torch operations of
        the solve) and to a ``t`` that requires grad (``dy(t_i)/dt_i = func(t_i, y_i)``, and
        ``t_0`` through ``y0``; ``len(t) - 1`` extra calls of ``func``; first derivatives
        only). Gradients equal torchdiffeq's for fixed-grid methods and agree to the solver
        tolerance for adaptive ones; for a ``t`` that requires grad, torchdiffeq's fixed-grid
        methods differentiate their scheme instead, which differs by its truncation error.
    rtol, atol : float
        Tolerances of the default and adaptive methods (torchdiffeq's defaults); positional
        in torchdiffeq's order.
    method : str, optional
        ``None`` (the default method above), ``"euler"``, ``"midpoint"``, ``"heun"``,
        ``"rk4"``, or any torchdiffeq method (``"dopri5"``... torch inputs only). ``"heun"``
        is this library's Heun method (torchdiffeq has none by that name). scipy's names
        (``"RK45"``, ``"LSODA"``...) are refused with a pointer to
        ``parareal.solve(..., fine=parareal.ScipyIVP(name))``.
    options : dict, optional
        As ``torchdiffeq.odeint`` takes them (``norm`` receives the tuple for a tuple
        ``y0``). For fixed-grid methods ``options`` may hold ``step_size`` and ``interp`` (no
        effect: no output time falls inside a step); ``grid_constructor`` and
        ``perturb=True`` are refused, other keys are warned about. For the numpy default
        they are keyword arguments of ``scipy.integrate.solve_ivp`` (``first_step``,
        ``max_step``...).
    event_fn : callable, optional
        ``event_fn(t, y)``: as in torchdiffeq, ``t`` holds two times (the start and the
        direction) and the solve runs until ``event_fn`` changes sign; returns
        ``(event_t, solution)`` with ``solution = stack([y0, y(event_t)])``. Parareal solves
        windows of ``|t[1] - t[0]|``, then twice that, and so on (at most
        ``MAX_EVENT_WINDOWS`` = 12, reaching 4095 times ``|t[1] - t[0]|``); the
        first slice whose end value changes the sign holds the event, which torchdiffeq's
        event search locates on the fine method from that slice's converged start. A sign
        change undone within one slice is not seen. Torch states and torchdiffeq methods only
        (fixed-grid ones need ``options["step_size"]``). As with ``torchdiffeq.odeint``,
        ``event_t`` carries no gradient (``torchdiffeq.odeint_event`` adds one); ``solution``
        does.
    coarse_method : str or Propagator
        ``"euler"``, ``"midpoint"``, ``"heun"`` or ``"rk4"``, one step per slice, or
        ``"name:steps"`` (``"rk4:4"``: four RK4 steps per slice), or any
        :class:`~parareal.Propagator`, or ``"auto"`` (the default): the coarse propagator
        chosen for the run by :func:`parareal.solve` (``coarse="auto"``; see "Choosing the
        coarse method" in ``docs/guide.md``). One Euler step per slice is cheap but unstable
        for oscillations with ``w * dt > 0``; ``"rk4"`` is stable for ``|w * dt| < 2.8``.
    slices : int, optional
        Parareal slices, equal in time; default ``DEFAULT_SLICES`` (16), whatever ``len(t)``.
        For fixed-grid methods the boundaries fall on the method's steps, so at most that
        many slices (the default is capped there).
    tol : float, optional
        Parareal's stopping test, as in :func:`parareal.solve` (absolute, max-norm of the
        update). ``None`` (the default) lets the state's dtype decide
        (:func:`parareal.default_tolerance`: ``1e-8`` in float64, a few units of round-off
        of the states' size below double precision, where ``1e-8`` cannot be met).
    stop : StopRule, optional
        Another stopping rule (:mod:`parareal.stopping`), as in :func:`parareal.solve`;
        ``tol`` must then be left unset.
    max_iters, backend, schedule, lookahead, vectorized, progress :
        As in :func:`parareal.solve`.
    check_stability : bool
        Run the coarse stability check described above.
    return_solution : bool
        Return ``(values, solution)``: the :class:`~parareal.Solution` of the run alongside
        (``None`` when ``len(t) == 1``). Its ``t`` and ``y`` are the slice boundaries; its
        ``stats.f_evals`` and ``f_calls`` include the fill-in pass (``critical_path`` does
        not).

    Raises
    ------
    DivergenceError
        The run produced NaN or inf; ``.solution`` holds the run's result.
    TypeError, ValueError
        On invalid arguments, unsupported torchdiffeq features (step callbacks,
        ``grid_constructor``, ``perturb=True``) included: an unknown method (the message
        lists the existing ones), an adaptive method with a numpy ``y0``, a ``t`` that is not
        monotonic, ``event_fn`` with ``len(t) != 2``, more fixed-grid ``slices`` than steps,
        ``options["step_size"]`` asking for more than 100 000 000 steps, or bad ``options``
        values (``TypeError`` for a value of the wrong type, naming the option).
    RuntimeError
        With ``event_fn``, when no event is found.
    """
    check_callable(func, "func")
    _refuse_callbacks(func)
    for name, flag in (("check_stability", check_stability), ("return_solution", return_solution)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be True or False, got {flag!r}")
    if method is not None and not isinstance(method, str):
        raise TypeError(f"method must be a str or None, got {type(method).__name__}")
    if options is not None and not isinstance(options, Mapping):
        raise TypeError(f"options must be a dict or None, got {type(options).__name__}")
    opts = dict(options or {})
    packed = _TupleState(y0) if isinstance(y0, tuple) else None
    if packed is not None:
        func = packed.func(func)
        if "norm" in opts:
            opts["norm"] = packed.norm(opts["norm"])
    y0, ops = check_y0(y0 if packed is None else packed.flat)
    if event_fn is not None:
        event_t, ends = _until_event(
            func, y0, t, rtol, atol, method, opts, event_fn, packed,
            dict(coarse_method=coarse_method, slices=slices, tol=tol, stop=stop,
                 max_iters=max_iters,
                 backend=backend, schedule=schedule, lookahead=lookahead,
                 vectorized=vectorized, progress=progress, check_stability=check_stability),
        )
        return event_t, (ends if packed is None else packed.split(ends, cast=True))
    times = _times(t)
    if times.size == 1:
        first = y0[None]
        values = first if packed is None else packed.split(first, cast=True)
        return (values, None) if return_solution else values
    steps = np.diff(times)
    reverse = bool(np.all(steps < 0))
    if not reverse and not np.all(steps > 0):
        raise ValueError("t must be strictly increasing or strictly decreasing")
    original = func
    if reverse:
        times = -times
        func = _Reversed(func)
    torch_in = is_torch(y0)
    step: float | None = None
    if method is None and not torch_in:
        scipy_fine: Propagator = ScipyIVP("RK45", rtol=rtol, atol=atol, options=opts)
    elif method is None or method not in FIXED_GRID_METHODS:
        method = DEFAULT_METHOD if method is None else method
        if method not in (torchdiffeq_methods() or []) or not torch_in:
            raise _unknown_method(method, torch_in)
        if opts.get("perturb", False) not in (False, None):
            raise ValueError(
                "options['perturb'] is not supported by parareal.odeint: the coarse "
                "propagator and the stability probe evaluate func at slice boundaries"
            )
        if reverse:  # torchdiffeq flips these time-valued options for reversed t
            for key in ("step_t", "jump_t"):
                if opts.get(key) is not None:
                    opts[key] = -opts[key]
        torch_fine: Propagator = TorchDiffEq(method=method, rtol=rtol, atol=atol, options=opts)
    else:
        step = _check_fixed_options(opts)
    coarse: Propagator | str
    if isinstance(coarse_method, str) and coarse_method.strip().lower() == "auto":
        coarse = coarse_method  # solve's own choice, passed on untouched
    else:
        coarse = _coarse(coarse_method)
    if slices is not None:
        slices = check_slices(slices)
    fixed = method in FIXED_GRID_METHODS
    atoms = _atoms(times, step) if fixed else None
    boundaries = _boundaries(times, atoms, slices)
    points = np.union1d(times, boundaries)

    def make(a: float, b: float) -> Propagator:
        if atoms is not None:
            n = int(np.searchsorted(atoms, b) - np.searchsorted(atoms, a))
            return FIXED_GRID_METHODS[str(method)](max(1, n))
        return torch_fine if method is not None else scipy_fine

    piece = make(float(points[0]), float(points[1]))
    fine = (_SteppablePiecewise if piece.steppable else _Piecewise)(points, make)
    if check_stability and isinstance(coarse, Propagator):
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
                    "or more, shorter slices (slices=...)"
                ),
                stacklevel=2,
            )
    t_grad = torch_in and is_torch(t) and t.requires_grad
    start = y0
    if t_grad:
        import torch

        t_grad = torch.is_grad_enabled()
        if t_grad:  # y(t_i) moves by -(dy(t_i)/dy0) func(t0, y0) dt0: let y0 carry dt0
            dy0 = torch.as_tensor(original(t[0].detach(), y0.detach())).detach()
            start = y0 - (t[0] - t[0].detach()).to(y0.dtype) * dy0
    sol = solve(
        func,
        start,
        (float(boundaries[0]), float(boundaries[-1])),
        coarse=coarse,
        fine=fine,
        slices=boundaries.size - 1,
        boundaries=boundaries,
        tol=tol,  # None: the state's dtype decides (parareal.tolerance.resolve_tolerance)
        rtol=0.0,
        stop=stop,
        max_iters=max_iters,
        backend=backend,
        schedule=schedule,
        lookahead=lookahead,
        progress=progress,
        vectorized=vectorized,
    )
    _report(sol, stacklevel=3)
    if np.array_equal(boundaries, times):
        values = sol.y
    else:
        rhs = Rhs(func, ops, bool(vectorized))
        values = ops.stack(_fill_in(rhs, fine, sol, boundaries, times))
        stats = dataclasses.replace(sol.stats, f_evals=sol.stats.f_evals + rhs.evals,
                                    f_calls=sol.stats.f_calls + rhs.calls)
        sol = dataclasses.replace(sol, stats=stats)
    if t_grad:
        values = _time_gradient(original, t, values, y0)
    if packed is not None:
        values = packed.split(values, cast=True)
    if not return_solution:
        return values
    return values, (dataclasses.replace(sol, t=-sol.t) if reverse else sol)
