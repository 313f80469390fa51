"""Wrappers for adaptive and implicit integrators: scipy's ``solve_ivp`` and torchdiffeq."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..state import is_torch, ops_for
from ..validation import check_positive
from .base import Propagator, answer_jacobian
from .jacobian import JacobianRequest, JacobianSource
from .linalg import report_failure

__all__ = ["ScipyIVP", "TorchDiffEq"]


def _check_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise TypeError(f"options must be a dict or None, got {type(options).__name__}")
    return dict(options)


class ScipyIVP(Propagator):
    """One call of :func:`scipy.integrate.solve_ivp` per slice (adaptive, implicit, stiff).

    Works for numpy states of any shape and dtype (complex needs an explicit method) and for
    torch tensors, which are converted to numpy and back. A failed integration returns NaN, so
    the engine reports ``Status.DIVERGED``, and the solver's message is issued as a warning.

    Parameters
    ----------
    method : str
        Any ``solve_ivp`` method: ``"RK45"``, ``"RK23"``, ``"DOP853"``, ``"Radau"``,
        ``"BDF"``, ``"LSODA"``.
    rtol, atol : float
        Tolerances passed to ``solve_ivp``.
    options : dict, optional
        Further keyword arguments for ``solve_ivp`` (``first_step``, ``max_step``...).
    jac : callable, optional
        The Jacobian ``jac(t, y) -> (d, d)`` (dense numpy, scipy sparse or torch; ``t`` in
        ``f``'s convention, ``y`` of the state's shape) for the implicit methods ``"Radau"``,
        ``"BDF"``, ``"LSODA"`` (explicit methods do not use it). Its calls count on the
        critical path (``Stats.jac_calls``). ``options={"jac": ...}`` is the same thing.
        :func:`parareal.solve`'s ``jac=`` fills it in when not given here.
    jac_sparsity : array_like or scipy sparse matrix, optional
        The Jacobian's nonzero pattern, for scipy's finite differences when there is no
        ``jac``.
    """

    methods = ("RK45", "RK23", "DOP853", "Radau", "BDF", "LSODA")
    #: Methods that use a Jacobian.
    implicit_methods = ("Radau", "BDF", "LSODA")

    def __init__(
        self,
        method: str = "RK45",
        rtol: float = 1e-6,
        atol: float = 1e-9,
        options: Mapping[str, Any] | None = None,
        *,
        jac: Callable[[Any, Any], Any] | None = None,
        jac_sparsity: Any = None,
    ) -> None:
        if method not in self.methods:
            raise ValueError(f"method must be one of {self.methods}, got {method!r}")
        self.method = method
        self.rtol = check_positive(rtol, "rtol")
        self.atol = check_positive(atol, "atol")
        self.options = _check_options(options)
        reserved = {"method", "rtol", "atol", "t_span", "y0", "fun", "t_eval", "dense_output"}
        clash = reserved & set(self.options)
        if clash:
            raise ValueError(f"options may not set {sorted(clash)}; use the named arguments")
        if "jac" in self.options:
            if jac is not None:
                raise ValueError("give jac either as jac= or in options, not both")
            jac = self.options.pop("jac")
        if "jac_sparsity" in self.options:
            if jac_sparsity is not None:
                raise ValueError("give jac_sparsity either as jac_sparsity= or in options")
            jac_sparsity = self.options.pop("jac_sparsity")
        self.source = JacobianSource(jac, jac_sparsity)

    def __repr__(self) -> str:
        extra = "" if self.source.jac is None and self.source.sparsity is None else (
            f", {self.source!r}")
        return (f"ScipyIVP(method={self.method!r}, rtol={self.rtol:g}, atol={self.atol:g}"
                f"{extra})")

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and repr(other) == repr(self) and (
            other.options == self.options and other.source == self.source)

    def __hash__(self) -> int:
        return hash(repr(self))

    def with_jacobian(self, jac: Callable[[Any, Any], Any] | None, jac_sparsity: Any = None
                      ) -> ScipyIVP:
        """A copy that uses ``jac`` (and ``jac_sparsity``) unless this one has its own."""
        if self.source.jac is not None or (jac is None and jac_sparsity is None):
            return self
        clone = copy.copy(self)
        clone.source = JacobianSource(
            jac if jac is not None else None,
            jac_sparsity if jac_sparsity is not None else self.source.sparsity)
        return clone

    def _jac_options(self, f: Any, ops: Any, shape: tuple[int, ...], torch_in: bool
                     ) -> dict[str, Any]:
        if self.method not in self.implicit_methods:
            return {}
        source = self.source
        if source.jac is None:
            return {} if source.sparsity is None else {"jac_sparsity": source.sparsity}
        counted = getattr(f, "jacobian", None)

        def jac(t: float, flat: np.ndarray) -> Any:
            state = flat.reshape(shape)
            arg = ops.from_numpy(state) if torch_in else state
            request = JacobianRequest(float(t), source)
            J = counted(request, arg) if counted is not None else answer_jacobian(
                request, arg, f, ops)
            return ops.to_numpy(J) if is_torch(J) else J

        return {"jac": jac}

    def propagate(self, f: Callable[[Any, Any], Any], y: Any, t0: float, t1: float) -> Any:
        return self.trajectory(f, y, [t0, t1])[-1]

    def trajectory(self, f: Callable[[Any, Any], Any], y: Any, times: Any, *,
                   balance: int | None = None, max_calls: int | None = None) -> Any:
        """One ``solve_ivp`` run from ``times[0]`` through every later time: the states at
        ``times`` stacked along a new leading axis (``y`` first; all NaN on failure).

        With ``balance = N`` the run goes from ``times[0]`` to ``times[-1]`` and returns
        ``(boundaries, states)``: ``N + 1`` boundaries that give every slice an equal share of
        the solver's steps (its work), and the states there from its dense output;
        ``(None, None)`` on failure. ``max_calls`` bounds the calls of ``f``: past it, or
        at a non-finite derivative, the run stops and counts as failed.
        """
        times = [float(t) for t in times]
        t0, t1 = times[0], times[-1]
        if balance is not None:
            times = [t0, t1]
        try:
            from scipy.integrate import solve_ivp
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                "ScipyIVP needs scipy: pip install 'parareal[scipy]'"
            ) from exc
        ops = ops_for(y)

        def failed() -> Any:
            return (None, None) if balance else ops.stack([ops.full_nan() for _ in times])

        if not ops.all_finite(y):  # solve_ivp would raise: NaN in, NaN out (DIVERGED)
            return failed()
        y_np = ops.to_numpy(y)
        shape = y_np.shape

        calls = [0]

        def rhs(t: float, flat: np.ndarray) -> np.ndarray:
            state = flat.reshape(shape)
            arg = ops.from_numpy(state) if is_torch(y) else state
            try:
                dy = ops.coerce_derivative(f(ops.time(t), arg), arg)
            except Exception as exc:  # the user's error: it goes through unchanged
                raise _FromF(exc) from exc
            out = np.ravel(ops.to_numpy(dy) if is_torch(dy) else dy)
            if max_calls is not None:
                calls[0] += 1
                if calls[0] > max_calls or not np.all(np.isfinite(out)):
                    raise _OutOfBudget(f"stopped after {calls[0]} calls of f (budget "
                                       f"{max_calls}, or a non-finite derivative)")
            return out

        try:
            sol = solve_ivp(
                rhs,
                (t0, t1),
                y_np.ravel(),
                method=self.method,
                rtol=self.rtol,
                atol=self.atol,
                t_eval=times[1:] if len(times) > 2 else None,
                dense_output=balance is not None,
                **self.options,
                **self._jac_options(f, ops, shape, is_torch(y)),
            )
        except _FromF as exc:
            raise exc.error from None
        except (_OutOfBudget, ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
            if type(exc) is ValueError and not any(
                    word in str(exc).lower() for word in ("inf", "nan", "finite")):
                raise  # a usage error (e.g. a complex state for Radau), not a blow-up
            # scipy's own checks on values gone non-finite inside the solver (a Jacobian
            # that overflowed, "array must not contain infs or NaNs"): a failed propagation
            report_failure(f"solve_ivp failed ({self.method}) on [{t0}, {t1}]: {exc}",
                           warn=True)
            return failed()
        if not sol.success or not np.all(np.isfinite(sol.y[:, -1])):
            report_failure(f"solve_ivp failed ({self.method}) on [{t0}, {t1}]: {sol.message}",
                           warn=True)
            return failed()
        if balance is not None:
            bounds = work_boundaries(sol.t, balance)
            inner = [ops.from_numpy(sol.sol(t).reshape(shape)) for t in bounds[1:-1]]
            last = ops.from_numpy(sol.y[:, -1].reshape(shape))
            return bounds, ops.stack([y, *inner, last])
        later = [sol.y[:, i].reshape(shape) for i in range(sol.y.shape[1])][-(len(times) - 1):]
        return ops.stack([y, *[ops.from_numpy(v) for v in later]])


class _FromF(Exception):
    """Carries an exception raised by the user's ``f`` through ``solve_ivp``."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class _OutOfBudget(Exception):
    """A bounded :meth:`ScipyIVP.trajectory` ran out of calls of ``f`` or went non-finite."""


def work_boundaries(steps: Any, slices: int) -> np.ndarray:
    """``slices + 1`` boundaries from ``steps[0]`` to ``steps[-1]`` that give every slice an
    equal share of the steps (the times an adaptive solver stepped to): the cumulative step
    count, linear between steps, is cut into equal parts. Where that would make a slice
    empty or out of order the boundaries fall back to equal spacing."""
    steps = np.asarray(steps, dtype=np.float64)
    t0, t1 = float(steps[0]), float(steps[-1])
    count = np.arange(len(steps), dtype=np.float64)
    bounds = np.interp(np.linspace(0.0, count[-1], slices + 1), count, steps)
    bounds[0], bounds[-1] = t0, t1
    if not np.all(np.diff(bounds) > 0.0):
        return np.linspace(t0, t1, slices + 1)
    return bounds


class TorchDiffEq(Propagator):
    """One call of :func:`torchdiffeq.odeint` per slice (any torchdiffeq method).

    Parameters
    ----------
    method : str
        A torchdiffeq method name: ``"dopri5"``, ``"dopri8"``, ``"bosh3"``, ``"rk4"``,
        ``"euler"``, ``"midpoint"``, ``"implicit_adams"``...
    rtol, atol : float
        Tolerances (torchdiffeq's defaults).
    options : dict, optional
        torchdiffeq's ``options`` (``step_size``, ``max_num_steps``...).
    """

    def __init__(
        self,
        method: str = "dopri5",
        rtol: float = 1e-7,
        atol: float = 1e-9,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        solvers = _torchdiffeq_solvers()
        if method not in solvers:
            raise ValueError(f"method must be one of {sorted(solvers)}, got {method!r}")
        self.method = method
        self.rtol = check_positive(rtol, "rtol")
        self.atol = check_positive(atol, "atol")
        self.options = _check_options(options)

    def __repr__(self) -> str:
        return f"TorchDiffEq(method={self.method!r}, rtol={self.rtol:g}, atol={self.atol:g})"

    def propagate(self, f: Callable[[Any, Any], Any], y: Any, t0: float, t1: float) -> Any:
        import torch
        from torchdiffeq import odeint

        numpy_in = not is_torch(y)
        y_t = torch.as_tensor(y) if numpy_in else y
        ops = ops_for(y_t)
        if not ops.all_finite(y_t):  # adaptive steps would never end: NaN in, NaN out
            nan = ops.full_nan()
            return nan.numpy() if numpy_in else nan
        t = torch.tensor([float(t0), float(t1)], dtype=ops.time_dtype, device=ops.device)

        def rhs(t_: Any, state: Any) -> Any:
            try:
                if numpy_in:
                    dy = f(float(t_), state.numpy())
                    return torch.as_tensor(np.asarray(dy), dtype=state.dtype)
                return ops.coerce_derivative(f(t_, state), state)
            except Exception as exc:  # the user's error: it goes through unchanged
                raise _FromF(exc) from exc

        def failed(why: str) -> Any:
            report_failure(f"torchdiffeq failed ({self.method}) on [{t0}, {t1}]: {why}",
                           warn=True)
            nan = ops.full_nan()
            return nan.numpy() if numpy_in else nan

        try:
            out = odeint(rhs, y_t, t, rtol=self.rtol, atol=self.atol, method=self.method,
                         options=self.options)[-1]
        except _FromF as exc:
            raise exc.error from None
        except (AssertionError, ArithmeticError) as exc:
            # torchdiffeq's own checks: "underflow in dt", a non-finite step size
            return failed(f"{type(exc).__name__}: {exc}")
        except RuntimeError as exc:
            if "max_num_steps" not in str(exc) and "finite" not in str(exc):
                raise
            return failed(str(exc))
        if not ops.all_finite(out):
            return failed("the solution is not finite")
        return out.numpy() if numpy_in else out


def torchdiffeq_methods() -> list[str] | None:
    """The names of torchdiffeq's methods, sorted, or None without torchdiffeq (the one
    place that reads its private ``SOLVERS`` table)."""
    try:
        from torchdiffeq._impl.odeint import SOLVERS
    except ImportError:
        return None
    return sorted(SOLVERS)


def _torchdiffeq_solvers() -> list[str]:
    methods = torchdiffeq_methods()
    if methods is None:
        raise ImportError("TorchDiffEq needs torch and torchdiffeq: pip install 'parareal[torch]'")
    return methods
