"""Public entry points: :func:`solve`, :func:`odeint`, :func:`solve_serial`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .backends import Rhs, resolve_backend
from .engine import SCHEDULES, run_parareal
from .propagators import RK4, Euler, Heun, Midpoint, Propagator, TorchDiffEq, resolve
from .result import IterationInfo, Solution
from .state import is_torch
from .validation import (
    check_boundaries,
    check_max_iters,
    check_slices,
    check_span,
    check_tolerance,
    check_y0,
)

__all__ = ["odeint", "solve", "solve_serial"]


def _check_callable(f: Any, name: str) -> None:
    if not callable(f):
        raise TypeError(f"{name} must be callable as {name}(t, y), got {type(f).__name__}")


def _check_flag(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _check_initial(initial: Any, y0: Any, slices: int) -> list[Any] | None:
    if initial is None:
        return None
    expected = (slices + 1, *tuple(y0.shape))
    if is_torch(y0) != is_torch(initial) or tuple(getattr(initial, "shape", ())) != expected:
        raise ValueError(
            f"initial must be an array of y0's kind with shape {expected} "
            "(one state per slice boundary)"
        )
    if is_torch(y0):
        initial = initial.to(dtype=y0.dtype, device=y0.device)
        return list(initial.unbind(0))
    return list(np.asarray(initial, dtype=y0.dtype))


def _run(
    f: Callable[[Any, Any], Any],
    y0: Any,
    boundaries: np.ndarray,
    *,
    coarse: Any,
    fine: Any,
    tol: Any,
    rtol: Any,
    max_iters: Any,
    backend: Any,
    schedule: Any,
    callback: Any,
    progress: Any,
    vectorized: Any,
    initial: Any,
) -> Solution:
    _check_callable(f, "f")
    y0, ops = check_y0(y0)
    slices = len(boundaries) - 1
    coarse_p = resolve(coarse, name="coarse")
    fine_p = resolve(fine, name="fine")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if callback is not None:
        _check_callable(callback, "callback")
    return run_parareal(
        rhs=Rhs(f, ops, _check_flag(vectorized, "vectorized")),
        y0=y0,
        boundaries=boundaries,
        coarse=coarse_p,
        fine=fine_p,
        backend=resolve_backend(backend),
        schedule=schedule,
        tol=check_tolerance(tol, "tol"),
        rtol=check_tolerance(rtol, "rtol"),
        max_iters=check_max_iters(max_iters, slices),
        callback=callback,
        progress=_check_flag(progress, "progress"),
        initial=_check_initial(initial, y0, slices),
    )


def solve(
    f: Callable[[Any, Any], Any],
    y0: Any,
    t_span: Sequence[float],
    *,
    coarse: Propagator | str,
    fine: Propagator | str,
    slices: int,
    tol: float = 1e-8,
    rtol: float = 0.0,
    max_iters: int | None = None,
    backend: Any = "serial",
    schedule: str = "synchronous",
    callback: Callable[[IterationInfo], Any] | None = None,
    progress: bool = False,
    vectorized: bool = False,
    initial: Any = None,
    boundaries: Sequence[float] | None = None,
) -> Solution:
    """Solve ``dy/dt = f(t, y)`` on ``t_span`` with Parareal.

    The span is split into ``slices`` equal slices. A coarse sweep gives a first guess; each
    iteration runs the fine propagator on every slice that is not yet exact (in parallel, as the
    backend allows) and corrects with a sequential coarse sweep. After ``k`` iterations the first
    ``k`` boundaries equal the serial fine solution, so ``slices`` iterations reproduce it.

    Parameters
    ----------
    f : callable
        ``f(t, y) -> dy/dt`` (torchdiffeq's convention). ``t`` is a float for numpy states and a
        0-d tensor of the state's real dtype for torch states. See ``vectorized``.
    y0 : numpy.ndarray or torch.Tensor
        Initial state, any shape, floating or complex dtype. Results keep its kind, dtype and
        device.
    t_span : (float, float)
        ``(t0, t1)`` with ``t0 < t1``.
    coarse, fine : Propagator or str
        The coarse ``G`` and fine ``F`` propagators, e.g. ``RK4(steps=1)`` and ``RK4(steps=20)``,
        or spec strings ``"rk4:1"``, ``"rk4:20"``, ``"scipy:Radau"``.
    slices : int
        Number of time slices ``N >= 1``.
    tol, rtol : float
        Stop when ``max_n |U_n^k - U_n^{k-1}| <= tol + rtol * max_n |U_n^k|`` (max-norms).
        ``tol = rtol = 0`` runs exactly ``max_iters`` iterations.
    max_iters : int, optional
        Iteration cap; ``None`` means ``slices`` (exactness). Values above ``slices`` are
        capped at ``slices``.
    backend : {"serial", "batched"} or Backend
        Where the work runs. ``"batched"`` stacks all active slices into one call of ``f`` per
        sub-step when ``vectorized`` is True.
    schedule : {"synchronous", "pipelined"}
        ``"pipelined"`` starts a slice's next fine solve as soon as its start value exists. Both
        give the same iterates; only the critical path differs.
    callback : callable, optional
        Called with an :class:`IterationInfo` after each complete iterate (including 0). If it
        returns ``True`` the run stops there with status ``CONVERGED``: a custom convergence
        test (other return values are ignored).
    progress : bool
        Print one line per iteration on standard error.
    vectorized : bool
        Declare that ``f`` accepts batches: it is then always called as ``f(t, Y)`` with ``t``
        of shape ``(B,)`` and ``Y`` of shape ``(B, *y0.shape)``, returning ``(B, *y0.shape)``
        (like ``scipy.integrate.solve_ivp(vectorized=True)``, with a leading batch axis).
        A non-vectorised ``f`` works with every backend.
    initial : array, optional
        Iterate 0 instead of the coarse sweep: the boundary values, shape
        ``(slices + 1, *y0.shape)`` (a warm start; ``initial[0]`` is replaced by ``y0``).
    boundaries : sequence of float, optional
        Explicit slice boundaries instead of equal slices: ``slices + 1`` strictly increasing
        values from ``t0`` to ``t1`` (uneven slices, e.g. SRDS blocks of unequal length).

    Returns
    -------
    Solution
        Boundary times and values, iterations, status, residuals and statistics.

    Raises
    ------
    TypeError, ValueError
        On invalid arguments, naming the argument and what is allowed; also when ``f``
        returns an array of the wrong shape. Exceptions raised inside ``f`` propagate.
    """
    t0, t1 = check_span(t_span)
    slices = check_slices(slices)
    grid = check_boundaries(boundaries, t0, t1, slices)
    return _run(
        f,
        y0,
        grid,
        coarse=coarse,
        fine=fine,
        tol=tol,
        rtol=rtol,
        max_iters=max_iters,
        backend=backend,
        schedule=schedule,
        callback=callback,
        progress=progress,
        vectorized=vectorized,
        initial=initial,
    )


def solve_serial(
    f: Callable[[Any, Any], Any],
    y0: Any,
    t_span: Sequence[float],
    *,
    propagator: Propagator | str,
    slices: int = 1,
) -> Any:
    """Apply ``propagator`` slice after slice: the serial solution Parareal converges to.

    Returns the ``slices + 1`` boundary values stacked, in ``y0``'s kind. With the same
    ``slices`` and the fine propagator, this is exactly what ``solve`` reproduces.
    """
    _check_callable(f, "f")
    y0, ops = check_y0(y0)
    t0, t1 = check_span(t_span)
    slices = check_slices(slices)
    prop = resolve(propagator, name="propagator")
    boundaries = np.linspace(t0, t1, slices + 1)
    values = [y0]
    for n in range(slices):
        values.append(prop.propagate(f, values[-1], boundaries[n], boundaries[n + 1]))
    return ops.stack(values)


_ODEINT_FIXED: dict[str, Callable[[int], Propagator]] = {
    "euler": Euler,
    "midpoint": Midpoint,
    "heun": Heun,
    "rk4": lambda steps: RK4(steps, variant="3/8"),
}


def _odeint_propagator(
    method: str, options: Mapping[str, Any], rtol: float, atol: float, dt: float, torch_in: bool
) -> Propagator:
    """The propagator for one output interval of length ``dt``, as torchdiffeq would step."""
    if method in _ODEINT_FIXED:
        steps = 1
        if "step_size" in options:
            step = float(options["step_size"])
            if not step > 0:
                raise ValueError(f"options['step_size'] must be > 0, got {step}")
            steps = max(1, int(np.ceil(dt / step - 1e-12)))
        return _ODEINT_FIXED[method](steps)
    if not torch_in:
        raise ValueError(
            f"method {method!r} is a torchdiffeq method and needs a torch tensor y0; for numpy "
            f"use one of {sorted(_ODEINT_FIXED)} or solve(..., fine=ScipyIVP(...))"
        )
    return TorchDiffEq(method=method, rtol=rtol, atol=atol, options=options)


class _Piecewise(Propagator):
    """A propagator applied on each output interval of one slice in turn (for :func:`odeint`)."""

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


def odeint(
    func: Callable[[Any, Any], Any],
    y0: Any,
    t: Any,
    *,
    method: str = "rk4",
    coarse_method: str = "euler",
    slices: int | None = None,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    options: Mapping[str, Any] | None = None,
    tol: float = 1e-8,
    max_iters: int | None = None,
    backend: Any = "serial",
    schedule: str = "synchronous",
    vectorized: bool = False,
    progress: bool = False,
) -> Any:
    """A drop-in for ``torchdiffeq.odeint`` that integrates in parallel across time.

    Returns the solution at every time in ``t``, shape ``(len(t), *y0.shape)``, in ``y0``'s
    kind. The fine propagator is ``method`` stepped as torchdiffeq steps it: fixed-grid methods
    take one step per output interval, or ``ceil(interval / options["step_size"])`` equal steps
    (``"rk4"`` is torchdiffeq's 3/8 rule); adaptive methods run per output interval. The coarse
    propagator is ``coarse_method`` with one step per slice. With ``tol=0`` the result equals
    torchdiffeq's to round-off for fixed-grid methods whose output intervals are multiples of
    ``step_size`` (torchdiffeq steps one grid over the whole span and interpolates linearly at
    output times inside a step; we restart the grid at every output time instead), and agrees
    to the solver tolerance for adaptive methods.

    Parameters
    ----------
    func : callable
        ``func(t, y) -> dy/dt``.
    y0 : torch.Tensor or numpy.ndarray
        Initial state.
    t : 1-D array or tensor
        Strictly increasing output times; ``t[0]`` is the time of ``y0``.
    method : str
        ``"euler"``, ``"midpoint"``, ``"heun"``, ``"rk4"``, or any torchdiffeq method
        (``"dopri5"``... torch inputs only).
    coarse_method : str
        ``"euler"``, ``"midpoint"``, ``"heun"`` or ``"rk4"``: one step per slice.
    slices : int, optional
        Parareal slices; default ``len(t) - 1`` (one per output interval). Fewer slices group
        neighbouring output intervals; their inner values are filled in by one more fine pass.
    rtol, atol, options :
        Passed to torchdiffeq methods as ``torchdiffeq.odeint`` takes them.
    tol, max_iters, backend, schedule, vectorized, progress :
        As in :func:`solve`.
    """
    _check_callable(func, "func")
    y0, ops = check_y0(y0)
    times = np.asarray(ops.to_numpy(t) if is_torch(t) else t, dtype=np.float64)
    if times.ndim != 1 or times.size < 2:
        raise ValueError(f"t must be a 1-D sequence of at least two times, got shape {times.shape}")
    if not np.all(np.isfinite(times)) or not np.all(np.diff(times) > 0):
        raise ValueError("t must be finite and strictly increasing")
    if not isinstance(method, str):
        raise TypeError(f"method must be a str, got {type(method).__name__}")
    if coarse_method not in _ODEINT_FIXED:
        raise ValueError(
            f"coarse_method must be one of {sorted(_ODEINT_FIXED)}, got {coarse_method!r}"
        )
    opts = dict(options or {})
    intervals = times.size - 1
    slices = intervals if slices is None else check_slices(slices)
    if slices > intervals:
        raise ValueError(f"slices must be <= len(t) - 1 = {intervals}, got {slices}")
    idx = np.round(np.linspace(0, intervals, slices + 1)).astype(int)
    boundaries = times[idx]
    torch_in = is_torch(y0)

    def make(dt: float) -> Propagator:
        return _odeint_propagator(method, opts, rtol, atol, dt, torch_in)

    piece = make(float(times[1] - times[0]))
    fine_cls = _SteppablePiecewise if piece.steppable else _Piecewise
    fine = fine_cls(times, make)
    coarse = _ODEINT_FIXED[coarse_method](1)
    sol = _run(
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
    )
    if slices == intervals:
        return sol.y
    rhs = Rhs(func, ops, bool(vectorized))
    out = [sol.y[0]]
    for n in range(slices):
        y = sol.y[n]
        for prop, a, b in fine.pieces(boundaries[n], boundaries[n + 1]):
            y = prop.propagate(rhs.plain, y, a, b)
            out.append(y)
        out[-1] = sol.y[n + 1]
    return ops.stack(out)

