"""The Lorenz system (chaotic)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..propagators import RK4, Propagator
from .base import Problem, check_propagators, check_real, check_state, check_t_end

__all__ = ["LorenzRHS", "lorenz"]


@dataclass(frozen=True)
class LorenzRHS:
    """``x' = s (y - x)``, ``y' = x (r - z) - y``, ``z' = x y - b z`` on states ``(..., 3)``."""

    sigma: float = 10.0
    rho: float = 28.0
    beta: float = 8.0 / 3.0

    def __call__(self, t: Any, y: np.ndarray) -> np.ndarray:
        if type(y) is np.ndarray and y.size == 3 and y.dtype == np.float64:
            # one state (or a batch of one): Python floats do the same IEEE float64 operations
            # bit for bit, without numpy's fixed cost per operation
            x, w, z = y.ravel().tolist()
            out = (self.sigma * (w - x), x * (self.rho - z) - w, x * w - self.beta * z)
            return np.array(out).reshape(y.shape)
        x, w, z = y[..., 0], y[..., 1], y[..., 2]
        return np.stack(
            [self.sigma * (w - x), x * (self.rho - z) - w, x * w - self.beta * z], axis=-1
        )


def lorenz(
    *,
    sigma: float = 10.0,
    rho: float = 28.0,
    beta: float = 8.0 / 3.0,
    y0: Any = (1.0, 1.0, 1.0),
    t_end: float = 3.0,
    slices: int = 30,
    coarse: Propagator | str | None = None,
    fine: Propagator | str | None = None,
) -> Problem:
    """The Lorenz system with the classic chaotic parameters (registry ``"lorenz"``).

    ``x' = sigma (y - x)``, ``y' = x (rho - z) - y``, ``z' = x y - beta z`` with
    ``sigma = 10``, ``rho = 28``, ``beta = 8/3``, ``(x, y, z)(0) = (1, 1, 1)``. The flow is
    chaotic (largest Lyapunov exponent about 0.9), so errors grow exponentially in time; the
    default span ``(0, 3)`` is kept short so that a reference solution, and agreement with it,
    mean something. Longer spans are a test of Parareal's behaviour, not of accuracy.

    Defaults: 30 slices of length 0.1, ``coarse = RK4(steps=2)`` (``h = 0.05``) and
    ``fine = RK4(steps=100)`` (``h = 0.001``). The fine solution is within about ``7e-8`` of
    the reference (scipy DOP853 at ``rtol = atol = 1e-13``) at the slice boundaries, where
    ``|y|`` reaches about 47; Parareal reaches a boundary update of ``1e-10`` in about 6
    iterations.

    Parameters
    ----------
    sigma, rho, beta : float
        Parameters of the system.
    y0 : triple of float
        Initial state ``(x, y, z)``.
    t_end : float
        End of the span ``(0, t_end)``.
    slices : int
        Number of time slices.
    coarse, fine : Propagator or str, optional
        Override the default propagators.

    Returns
    -------
    Problem
    """
    params = (check_real(sigma, "sigma"), check_real(rho, "rho"), check_real(beta, "beta"))
    t_end = check_t_end(t_end)
    y0_arr = check_state(y0, 3, "(x, y, z)")
    slices, coarse_p, fine_p = check_propagators(
        slices, coarse, fine, lambda: RK4(steps=2), lambda: RK4(steps=100)
    )
    return Problem(
        name="lorenz",
        f=LorenzRHS(*params),
        y0=y0_arr,
        t_span=(0.0, t_end),
        coarse=coarse_p,
        fine=fine_p,
        slices=slices,
        description=(
            f"Lorenz sigma={params[0]:g}, rho={params[1]:g}, beta={params[2]:.6g}, "
            f"y0={tuple(y0_arr.tolist())}, T={t_end:g} (chaotic)"
        ),
    )
