"""Pleiades (PLEI): seven bodies in the plane under gravity, masses ``m_i = i``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..propagators import RK4, Propagator, ScipyIVP
from .base import Problem, check_propagators, check_t_end

__all__ = ["PLEIADES_Y0", "PLEIADES_Y_END", "PleiadesJacobian", "PleiadesRHS", "pleiades"]

#: Number of bodies.
BODIES = 7
#: Initial state ``(x_1..x_7, y_1..y_7, x'_1..x'_7, y'_1..y'_7)`` of the Bari test set.
PLEIADES_Y0 = (
    3.0, 3.0, -1.0, -3.0, 2.0, -2.0, 2.0,
    3.0, -3.0, 2.0, 0.0, 0.0, -4.0, 4.0,
    0.0, 0.0, 0.0, 0.0, 0.0, 1.75, -1.5,
    0.0, 0.0, 0.0, -1.25, 1.0, 0.0, 0.0,
)  # fmt: skip
#: ``y(3)`` as published in the Bari "Test Set for IVP Solvers" (Mazzia & Magherini; problem
#: PLEI, file ``plei.f``, subroutine ``pleiasoln``: "computed at Cray C90 using Cray double
#: precision, solving Pleiades problem using PSIDE", rtol = atol = 1d-16).
PLEIADES_Y_END = (
    0.3706139143970502, 3.237284092057233, -3.222559032418324, 0.6597091455775310,
    0.3425581707156584, 1.562172101400631, -0.7003092922212495,
    -3.943437585517392, -3.271380973972550, 5.225081843456543, -2.590612434977470,
    1.198213693392275, -0.2429682344935824, 1.091449240428980,
    3.417003806314313, 1.354584501625501, -2.590065597810775, 2.025053734714242,
    -1.155815100160448, -0.8072988170223021, 0.5952396354208710,
    -3.741244961234010, 0.3773459685750630, 0.9386858869551073, 0.3667922227200571,
    -0.3474046353808490, 2.344915448180937, -1.947020434263292,
)  # fmt: skip
#: Tolerances of the default fine propagator (scipy DOP853).
FINE_TOL = 1e-11

_MASS = np.arange(1.0, BODIES + 1.0)
_MASS.setflags(write=False)


def _pairs(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``dx[..., i, j] = x_j - x_i``, ``dy``, and ``r2 = dx^2 + dy^2`` (1 on the diagonal)."""
    x, w = y[..., :BODIES], y[..., BODIES : 2 * BODIES]
    dx = x[..., None, :] - x[..., :, None]
    dy = w[..., None, :] - w[..., :, None]
    r2 = dx * dx + dy * dy
    diagonal = np.arange(BODIES)
    r2[..., diagonal, diagonal] = 1.0  # dx = dy = 0 there: the self-term is 0, not 0/0
    return dx, dy, r2


@dataclass(frozen=True)
class PleiadesRHS:
    """``x_i'' = sum_{j != i} m_j (x_j - x_i) / r_ij^3`` (and ``y``), states ``(..., 28)``.

    The sums over ``j`` run in a fixed order, elementwise, so a batch gives the bits of the
    stacked single calls.
    """

    def __call__(self, t: Any, y: np.ndarray) -> np.ndarray:
        dx, dy, r2 = _pairs(y)
        scale = _MASS / (r2 * np.sqrt(r2))  # m_j / r_ij^3
        fx, fy = scale * dx, scale * dy
        ax, ay = fx[..., 0], fy[..., 0]
        for j in range(1, BODIES):
            ax = ax + fx[..., j]
            ay = ay + fy[..., j]
        out = np.empty(y.shape, dtype=np.result_type(y, ax))
        out[..., : 2 * BODIES] = y[..., 2 * BODIES :]
        out[..., 2 * BODIES : 3 * BODIES] = ax
        out[..., 3 * BODIES :] = ay
        return out


@dataclass(frozen=True)
class PleiadesJacobian:
    """The exact Jacobian of :class:`PleiadesRHS`: ``(28,) -> (28, 28)``, batches too.

    ``[[0, I], [A, 0]]`` with ``d a_i / d q_j = m_j (I / r^3 - 3 d d^T / r^5)`` for ``j != i``
    (``d = q_j - q_i``) and ``d a_i / d q_i = -sum_{j != i}`` of those.
    """

    def __call__(self, t: Any, y: np.ndarray) -> np.ndarray:
        y = np.asarray(y, dtype=np.float64)
        n = BODIES
        dx, dy, r2 = _pairs(y)
        r3 = r2 * np.sqrt(r2)
        m = np.broadcast_to(_MASS, r2.shape).copy()
        diagonal = np.arange(n)
        m[..., diagonal, diagonal] = 0.0
        blocks = []
        for da, db, identity in ((dx, dx, 1.0), (dx, dy, 0.0), (dy, dy, 1.0)):
            block = m * (identity - 3.0 * da * db / r2) / r3
            block[..., diagonal, diagonal] = -block.sum(axis=-1)
            blocks.append(block)
        bxx, bxy, byy = blocks
        out = np.zeros((*y.shape[:-1], 4 * n, 4 * n))
        out[..., : 2 * n, 2 * n :] = np.eye(2 * n)
        out[..., 2 * n : 3 * n, :n] = bxx
        out[..., 2 * n : 3 * n, n : 2 * n] = bxy
        out[..., 3 * n :, :n] = bxy
        out[..., 3 * n :, n : 2 * n] = byy
        return out


def pleiades(
    *,
    t_end: float = 3.0,
    slices: int = 16,
    coarse: Propagator | str | None = None,
    fine: Propagator | str | None = None,
) -> Problem:
    """Pleiades, seven bodies in the plane (registry ``"pleiades"``).

    Problem PLEI of Hairer, Nørsett & Wanner, *Solving ODEs I*, and of the Bari "Test Set for
    IVP Solvers" (Mazzia & Magherini): bodies of masses ``m_i = i`` attract each other by
    gravity (``G = 1``); the state is ``(x_1..x_7, y_1..y_7, x'_1..x'_7, y'_1..y'_7)`` (28
    equations), the test set's initial state :data:`PLEIADES_Y0` on ``(0, 3)``, with several
    close encounters. Non-stiff. With the default span, :meth:`~Problem.reference_final` is
    the test set's published ``y(3)`` (:data:`PLEIADES_Y_END`); otherwise the numerical
    reference (DOP853 at ``1e-13``).

    Defaults: 16 slices; ``fine = ScipyIVP("DOP853", rtol=1e-11, atol=1e-11)``, within about
    ``1e-9`` of the published values (needs scipy: ``pip install 'parareal[scipy]'``);
    ``coarse = RK4(steps=8)`` per slice. The exact Jacobian is :attr:`Problem.jacobian`.

    Parameters
    ----------
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
    t_end = check_t_end(t_end)
    slices, coarse_p, fine_p = check_propagators(
        slices,
        coarse,
        fine,
        lambda: RK4(steps=8),
        lambda: ScipyIVP("DOP853", rtol=FINE_TOL, atol=FINE_TOL),
    )
    return Problem(
        name="pleiades",
        f=PleiadesRHS(),
        y0=np.array(PLEIADES_Y0, dtype=np.float64),
        t_span=(0.0, t_end),
        coarse=coarse_p,
        fine=fine_p,
        slices=slices,
        description=f"Pleiades (Bari test set PLEI), 7 bodies, 28 equations, T={t_end:g}",
        jacobian=PleiadesJacobian(),
        published_final=np.array(PLEIADES_Y_END) if t_end == 3.0 else None,
    )
