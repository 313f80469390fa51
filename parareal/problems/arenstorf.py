"""The Arenstorf orbit: a periodic orbit of the restricted three-body problem."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..propagators import RK4, Propagator, ScipyIVP
from .base import Problem, check_propagators, check_t_end

__all__ = ["ARENSTORF_PERIOD", "ArenstorfRHS", "arenstorf"]

#: Mass ratio of the Moon in the Earth-Moon system used by Arenstorf.
ARENSTORF_MU = 0.012277471
#: Initial state ``(x, y, x', y')`` of the periodic orbit.
ARENSTORF_Y0 = (0.994, 0.0, 0.0, -2.00158510637908252240537862224)
#: Period of the orbit (Hairer, Norsett & Wanner, Solving ODEs I, section II.0).
ARENSTORF_PERIOD = 17.0652165601579625588917206249
#: Tolerances of the default fine propagator (scipy DOP853).
FINE_TOL = 1e-11


@dataclass(frozen=True)
class ArenstorfRHS:
    """The restricted three-body equations in the rotating frame, states ``(..., 4)``.

    ``x'' = x + 2 y' - mu' (x + mu) / D1 - mu (x - mu') / D2``,
    ``y'' = y - 2 x' - mu' y / D1 - mu y / D2`` with ``mu' = 1 - mu``,
    ``D1 = ((x + mu)^2 + y^2)^(3/2)``, ``D2 = ((x - mu')^2 + y^2)^(3/2)``.
    """

    mu: float = ARENSTORF_MU

    def __call__(self, t: Any, y: np.ndarray) -> np.ndarray:
        mu = self.mu
        mu1 = 1.0 - mu
        x, w, vx, vw = y[..., 0], y[..., 1], y[..., 2], y[..., 3]
        ww = w * w
        r1 = (x + mu) * (x + mu) + ww
        r2 = (x - mu1) * (x - mu1) + ww
        d1 = r1 * np.sqrt(r1)  # sqrt is correctly rounded: same bits batched and alone
        d2 = r2 * np.sqrt(r2)
        ax = x + 2.0 * vw - mu1 * (x + mu) / d1 - mu * (x - mu1) / d2
        aw = w - 2.0 * vx - mu1 * w / d1 - mu * w / d2
        return np.stack([vx, vw, ax, aw], axis=-1)


def arenstorf(
    *,
    periods: float = 1.0,
    t_end: float | None = None,
    slices: int = 20,
    coarse: Propagator | str | None = None,
    fine: Propagator | str | None = None,
) -> Problem:
    """The Arenstorf orbit (registry ``"arenstorf"``).

    A periodic orbit of a light body around the Earth and the Moon (restricted three-body
    problem, rotating frame, ``mu = 0.012277471``). The state is ``(x, y, x', y')`` with
    ``y0 = (0.994, 0, 0, -2.00158510637908252240537862224)``; after the period
    ``T = 17.0652165601579625588917206249`` the orbit returns to ``y0``. The two close
    approaches to the Earth make it a classic test for step-size control: fixed-step methods
    need very many steps (16 000 equidistant RK4 steps per period still miss the orbit by
    O(1)).

    The default fine propagator is therefore adaptive, ``ScipyIVP("DOP853", rtol=1e-11,
    atol=1e-11)`` on each of 20 slices (about 3 800 calls of ``f`` per period; needs scipy:
    ``pip install 'parareal[scipy]'``); it is within about ``1e-8`` of the reference (DOP853 at
    ``1e-13``) at the slice boundaries. The default coarse propagator is steppable,
    ``RK4(steps=8)`` per slice (160 steps per period, ``h ~ 0.107``: qualitatively wrong near
    the Earth, but Parareal still reaches a boundary update of ``1e-10`` in about 7 of the 20
    iterations). Not being steppable, the fine propagator is called once per slice and state
    by every backend.

    Parameters
    ----------
    periods : float
        The span is ``(0, periods * T)`` unless ``t_end`` is given.
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
    if t_end is None:
        t_end = check_t_end(periods) * ARENSTORF_PERIOD
    t_end = check_t_end(t_end)
    slices, coarse_p, fine_p = check_propagators(
        slices,
        coarse,
        fine,
        lambda: RK4(steps=8),
        lambda: ScipyIVP("DOP853", rtol=FINE_TOL, atol=FINE_TOL),
    )
    return Problem(
        name="arenstorf",
        f=ArenstorfRHS(),
        y0=np.array(ARENSTORF_Y0, dtype=np.float64),
        t_span=(0.0, t_end),
        coarse=coarse_p,
        fine=fine_p,
        slices=slices,
        description=(
            f"Arenstorf orbit mu={ARENSTORF_MU}, T={t_end:.17g} (period {ARENSTORF_PERIOD})"
        ),
    )
