"""The 1-D Brusselator of Hairer & Wanner (BRUSS): reaction-diffusion by the method of lines."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..propagators import Propagator, Rosenbrock2, ScipyIVP
from ..validation import check_int
from .base import Problem, check_positive, check_propagators, check_t_end

__all__ = ["Brusselator1DJacobian", "Brusselator1DRHS", "brusselator_1d"]

#: Tolerances of the default fine propagator (scipy Radau with the exact Jacobian).
FINE_RTOL = 1e-7
FINE_ATOL = 1e-7


@dataclass(frozen=True)
class Brusselator1DRHS:
    """BRUSS on ``N`` interior points, states ``(..., 2N)`` ordered ``(u_1, v_1, ..., u_N, v_N)``.

    ``u_i' = 1 + u_i^2 v_i - 4 u_i + c (u_{i-1} - 2 u_i + u_{i+1})``,
    ``v_i' = 3 u_i - u_i^2 v_i + c (v_{i-1} - 2 v_i + v_{i+1})`` with ``c = alpha (N + 1)^2``
    and the boundary values ``u_0 = u_{N+1} = 1``, ``v_0 = v_{N+1} = 3``. Elementwise (a
    stencil on a padded copy, no matrix product): a batch gives the bits of single calls.
    """

    points: int = 50
    alpha: float = 0.02

    def __call__(self, t: Any, y: np.ndarray) -> np.ndarray:
        n = self.points
        c = self.alpha * (n + 1) ** 2
        padded = np.empty((*y.shape[:-1], n + 2, 2), dtype=y.dtype)
        padded[..., 1:-1, :] = y.reshape((*y.shape[:-1], n, 2))
        padded[..., 0, :] = (1.0, 3.0)
        padded[..., -1, :] = (1.0, 3.0)
        u, v = padded[..., 1:-1, 0], padded[..., 1:-1, 1]
        lap = padded[..., :-2, :] - 2.0 * padded[..., 1:-1, :] + padded[..., 2:, :]
        uuv = u * u * v
        out = np.empty((*y.shape[:-1], n, 2), dtype=y.dtype)
        out[..., 0] = 1.0 + uuv - 4.0 * u + c * lap[..., 0]
        out[..., 1] = 3.0 * u - uuv + c * lap[..., 1]
        return out.reshape(y.shape)


@dataclass(frozen=True)
class Brusselator1DJacobian:
    """The exact Jacobian of :class:`Brusselator1DRHS` (banded, bandwidth 2, stored dense).

    ``(2N,) -> (2N, 2N)`` and ``(B, 2N) -> (B, 2N, 2N)``.
    """

    points: int = 50
    alpha: float = 0.02

    def __call__(self, t: Any, y: np.ndarray) -> np.ndarray:
        y = np.asarray(y, dtype=np.float64)
        n = self.points
        c = self.alpha * (n + 1) ** 2
        u, v = y[..., 0::2], y[..., 1::2]
        iu = 2 * np.arange(n)
        iv = iu + 1
        out = np.zeros((*y.shape[:-1], 2 * n, 2 * n))
        out[..., iu, iu] = 2.0 * u * v - 4.0 - 2.0 * c
        out[..., iu, iv] = u * u
        out[..., iv, iu] = 3.0 - 2.0 * u * v
        out[..., iv, iv] = -u * u - 2.0 * c
        for i in (iu, iv):  # the diffusion couples each species to its own neighbours
            out[..., i[1:], i[:-1]] = c
            out[..., i[:-1], i[1:]] = c
        return out


def brusselator_1d(
    *,
    points: int = 50,
    alpha: float = 0.02,
    t_end: float = 10.0,
    slices: int = 16,
    coarse: Propagator | str | None = None,
    fine: Propagator | str | None = None,
) -> Problem:
    """The 1-D Brusselator with diffusion, BRUSS (registry ``"brusselator-1d"``).

    Hairer & Wanner, *Solving ODEs II*, section IV.1 ("BRUSS"): ``u_t = 1 + u^2 v - 4 u +
    alpha u_xx``, ``v_t = 3 u - u^2 v + alpha v_xx`` on ``0 <= x <= 1`` with ``alpha = 1/50``,
    ``u = 1``, ``v = 3`` at both ends and ``u(x, 0) = 1 + sin(2 pi x)``, ``v(x, 0) = 3``,
    discretised on ``N = points`` interior grid points ``x_i = i / (N + 1)`` by central
    differences: ``2N`` unknowns ordered ``(u_1, v_1, ..., u_N, v_N)`` (the ordering that makes
    the Jacobian banded), span ``(0, 10)``. Stiff: the diffusion has eigenvalues down to about
    ``-4 alpha (N + 1)^2`` (``-208`` for ``N = 50``). There are no published digits; the
    reference is numerical (Radau at ``1e-13`` with the exact Jacobian). Unrelated to the
    two-species :func:`~parareal.problems.brusselator` ODE, which is the same reaction
    without space.

    Defaults: 16 slices; ``fine = ScipyIVP("Radau", rtol=1e-7, atol=1e-7,
    options={"jac": Brusselator1DJacobian(...)})``, within about ``1e-9`` of the reference;
    ``coarse = Rosenbrock2(steps=16)`` with the same Jacobian (what ``coarse="auto"`` picks
    in the pipelined schedule). Needs scipy (``pip install 'parareal[scipy]'``).

    Parameters
    ----------
    points : int
        Interior grid points ``N`` (``>= 1``); the state has ``2N`` entries.
    alpha : float
        Diffusion coefficient (``> 0``).
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
    points = check_int(points, "points", 1, 1_000_000)
    alpha = check_positive(alpha, "alpha")
    t_end = check_t_end(t_end)
    jac = Brusselator1DJacobian(points, alpha)
    slices, coarse_p, fine_p = check_propagators(
        slices,
        coarse,
        fine,
        lambda: Rosenbrock2(steps=16, jac=jac),
        lambda: ScipyIVP("Radau", rtol=FINE_RTOL, atol=FINE_ATOL, options={"jac": jac}),
    )
    x = np.arange(1, points + 1) / (points + 1)
    y0 = np.empty((points, 2))
    y0[:, 0] = 1.0 + np.sin(2.0 * np.pi * x)
    y0[:, 1] = 3.0
    return Problem(
        name="brusselator-1d",
        f=Brusselator1DRHS(points, alpha),
        y0=y0.ravel(),
        t_span=(0.0, t_end),
        coarse=coarse_p,
        fine=fine_p,
        slices=slices,
        description=f"1-D Brusselator (BRUSS) N={points}, alpha={alpha:g}, T={t_end:g}",
        stiff=True,
        jacobian=jac,
    )
