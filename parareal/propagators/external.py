"""Wrappers for adaptive and implicit integrators: scipy's ``solve_ivp`` and torchdiffeq."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..state import is_torch, ops_for
from ..validation import check_positive
from .base import Propagator

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
        Further keyword arguments for ``solve_ivp`` (``first_step``, ``max_step``, ``jac``...).
    """

    methods = ("RK45", "RK23", "DOP853", "Radau", "BDF", "LSODA")

    def __init__(
        self,
        method: str = "RK45",
        rtol: float = 1e-6,
        atol: float = 1e-9,
        options: Mapping[str, Any] | None = None,
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

    def __repr__(self) -> str:
        return f"ScipyIVP(method={self.method!r}, rtol={self.rtol:g}, atol={self.atol:g})"

    def propagate(self, f: Callable[[Any, Any], Any], y: Any, t0: float, t1: float) -> Any:
        try:
            from scipy.integrate import solve_ivp
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                "ScipyIVP needs scipy: pip install 'parareal[scipy]'"
            ) from exc
        ops = ops_for(y)
        y_np = ops.to_numpy(y)
        shape = y_np.shape

        def rhs(t: float, flat: np.ndarray) -> np.ndarray:
            state = flat.reshape(shape)
            arg = ops.from_numpy(state) if is_torch(y) else state
            dy = ops.coerce_derivative(f(ops.time(t), arg), arg)
            return np.ravel(ops.to_numpy(dy) if is_torch(dy) else dy)

        sol = solve_ivp(
            rhs,
            (float(t0), float(t1)),
            y_np.ravel(),
            method=self.method,
            rtol=self.rtol,
            atol=self.atol,
            **self.options,
        )
        if not sol.success:
            warnings.warn(
                f"solve_ivp failed on [{t0}, {t1}]: {sol.message}", RuntimeWarning, stacklevel=2
            )
            return ops.full_nan()
        return ops.from_numpy(sol.y[:, -1].reshape(shape))


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
        t = torch.tensor([float(t0), float(t1)], dtype=ops.time_dtype, device=ops.device)

        def rhs(t_: Any, state: Any) -> Any:
            if numpy_in:
                dy = f(float(t_), state.numpy())
                return torch.as_tensor(np.asarray(dy), dtype=state.dtype)
            return ops.coerce_derivative(f(t_, state), state)

        out = odeint(
            rhs, y_t, t, rtol=self.rtol, atol=self.atol, method=self.method, options=self.options
        )[-1]
        return out.numpy() if numpy_in else out


def _torchdiffeq_solvers() -> dict[str, Any]:
    try:
        from torchdiffeq._impl.odeint import SOLVERS
    except ImportError as exc:
        raise ImportError(
            "TorchDiffEq needs torch and torchdiffeq: pip install 'parareal[torch]'"
        ) from exc
    return SOLVERS
