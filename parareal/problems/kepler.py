"""The Kepler two-body problem (DETEST D1-D5), with its closed-form solution."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..propagators import RK4, Propagator, ScipyIVP
from .base import Problem, check_positive, check_propagators, check_real, check_t_end

__all__ = ["KeplerJacobian", "KeplerRHS", "kepler", "kepler_solution", "solve_kepler_equation"]

#: Tolerances of the default fine propagator (scipy DOP853).
FINE_TOL = 1e-12


@dataclass(frozen=True)
class KeplerRHS:
    """``x'' = -x / r^3``, ``y'' = -y / r^3`` (``r^2 = x^2 + y^2``), states ``(..., 4)``.

    The state is ``(x, y, x', y')``.
    """

    def __call__(self, t: Any, y: np.ndarray) -> np.ndarray:
        x, w = y[..., 0], y[..., 1]
        r2 = x * x + w * w
        r3 = r2 * np.sqrt(r2)
        return np.stack([y[..., 2], y[..., 3], -x / r3, -w / r3], axis=-1)


@dataclass(frozen=True)
class KeplerJacobian:
    """The exact Jacobian of :class:`KeplerRHS`: ``(4,) -> (4, 4)``, ``(B, 4) -> (B, 4, 4)``."""

    def __call__(self, t: Any, y: np.ndarray) -> np.ndarray:
        y = np.asarray(y, dtype=np.float64)
        x, w = y[..., 0], y[..., 1]
        r2 = x * x + w * w
        r3 = r2 * np.sqrt(r2)
        r5 = r3 * r2
        out = np.zeros((*y.shape[:-1], 4, 4))
        out[..., 0, 2] = 1.0
        out[..., 1, 3] = 1.0
        out[..., 2, 0] = 3.0 * x * x / r5 - 1.0 / r3
        out[..., 2, 1] = 3.0 * x * w / r5
        out[..., 3, 0] = out[..., 2, 1]
        out[..., 3, 1] = 3.0 * w * w / r5 - 1.0 / r3
        return out


def solve_kepler_equation(mean_anomaly: Any, e: float) -> np.ndarray:
    """The eccentric anomaly ``E`` with ``E - e sin E = M``, by Newton's method.

    Parameters
    ----------
    mean_anomaly : array-like of float
        ``M`` (any real values).
    e : float
        Eccentricity, ``0 <= e < 1``.

    Returns
    -------
    numpy.ndarray
        ``E``, same shape as ``M``, to round-off (Newton from ``E = M + e sin M``, or from
        ``pi`` for ``e > 0.8``, which converges for every ``M`` when ``e < 1``).
    """
    m = np.asarray(mean_anomaly, dtype=np.float64)
    turns = np.floor(m / (2.0 * math.pi) + 0.5)
    reduced = m - 2.0 * math.pi * turns  # in [-pi, pi]
    big = np.pi * np.sign(reduced)
    ecc = np.where(e > 0.8, big, reduced + e * np.sin(reduced))
    for _ in range(50):
        step = (ecc - e * np.sin(ecc) - reduced) / (1.0 - e * np.cos(ecc))
        ecc = ecc - step
        if np.all(np.abs(step) <= 4e-16 * np.maximum(1.0, np.abs(ecc))):
            break
    return ecc + 2.0 * math.pi * turns


def kepler_solution(t: Any, e: float) -> np.ndarray:
    """The exact orbit ``(x, y, x', y')(t)`` from the pericenter ``(1 - e, 0)`` at ``t = 0``.

    Semi-major axis 1, ``G M = 1``, period ``2 pi``: with ``E`` from Kepler's equation
    ``E - e sin E = t``, ``x = cos E - e``, ``y = sqrt(1 - e^2) sin E``,
    ``x' = -sin E / (1 - e cos E)``, ``y' = sqrt(1 - e^2) cos E / (1 - e cos E)``.

    Parameters
    ----------
    t : 1-D array-like of float
        Times.
    e : float
        Eccentricity, ``0 <= e < 1``.

    Returns
    -------
    numpy.ndarray
        Shape ``(len(t), 4)``.
    """
    t = np.atleast_1d(np.asarray(t, dtype=np.float64))
    ecc = solve_kepler_equation(t, e)
    c, s = np.cos(ecc), np.sin(ecc)
    root = math.sqrt((1.0 - e) * (1.0 + e))
    denom = 1.0 - e * c
    return np.stack([c - e, root * s, -s / denom, root * c / denom], axis=-1)


def kepler(
    e: float = 0.9,
    *,
    periods: float = 1.0,
    t_end: float | None = None,
    slices: int = 16,
    coarse: Propagator | str | None = None,
    fine: Propagator | str | None = None,
) -> Problem:
    """The Kepler two-body problem with eccentricity ``e`` (registry ``"kepler"``).

    ``x'' = -x / r^3``, ``y'' = -y / r^3``; the state is ``(x, y, x', y')``, starting at the
    pericenter as in DETEST's problems D1-D5 (Hull, Enright, Fellen & Sedgwick 1972):
    ``(1 - e, 0, 0, sqrt((1 + e) / (1 - e)))``. The orbit is an ellipse of semi-major axis 1
    and period ``2 pi``; ``e = 0.9`` (the default, D5) makes the pericenter passage about
    ``(1 + e)^2 / (1 - e)^2 = 361`` times faster than the apocenter. The reference is the
    closed form (:func:`kepler_solution`, Newton on Kepler's equation), at any time.

    Defaults: span ``(0, 2 pi)`` (one period, ending at the pericenter), 16 slices;
    ``fine = ScipyIVP("DOP853", rtol=1e-12, atol=1e-12)`` (needs scipy:
    ``pip install 'parareal[scipy]'``), within about ``1e-8`` of the exact solution for
    ``e = 0.9``; ``coarse = RK4(steps=8)`` per slice. The exact Jacobian is
    :attr:`Problem.jacobian`.

    Parameters
    ----------
    e : float
        Eccentricity, ``0 <= e < 1``.
    periods : float
        The span is ``(0, periods * 2 pi)`` unless ``t_end`` is given.
    t_end : float, optional
        End of the span ``(0, t_end)``; overrides ``periods``.
    slices : int
        Number of time slices.
    coarse, fine : Propagator or str, optional
        Override the default propagators.

    Returns
    -------
    Problem
    """
    e = check_real(e, "e")
    if not 0.0 <= e < 1.0:
        raise ValueError(f"e must be in [0, 1) (an ellipse), got {e}")
    if t_end is None:
        t_end = check_positive(periods, "periods") * 2.0 * math.pi
    t_end = check_t_end(t_end)
    slices, coarse_p, fine_p = check_propagators(
        slices,
        coarse,
        fine,
        lambda: RK4(steps=8),
        lambda: ScipyIVP("DOP853", rtol=FINE_TOL, atol=FINE_TOL),
    )
    y0 = kepler_solution([0.0], e)[0] + 0.0  # the closed form's own bits at t = 0 (+0.0: no -0)
    return Problem(
        name="kepler",
        f=KeplerRHS(),
        y0=y0,
        t_span=(0.0, t_end),
        coarse=coarse_p,
        fine=fine_p,
        slices=slices,
        description=f"Kepler orbit e={e:g} from the pericenter, T={t_end:.17g} (period 2 pi)",
        exact=functools.partial(kepler_solution, e=e),
        jacobian=KeplerJacobian(),
    )
