"""HIRES: the "High Irradiance RESponse" of plant photomorphogenesis (a stiff test problem)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..propagators import Propagator, Rosenbrock2, ScipyIVP
from .base import Problem, check_propagators, check_t_end

__all__ = ["HIRES_T_END", "HIRES_Y0", "HIRES_Y_END", "HiresJacobian", "HiresRHS", "hires"]

#: End of the standard span ``(0, 321.8122)``.
HIRES_T_END = 321.8122
#: Standard initial state.
HIRES_Y0 = (1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0057)
#: ``y(321.8122)`` as published in the Bari "Test Set for IVP Solvers" (F. Mazzia,
#: F. Iavernaro, C. Magherini; problem HIRES, file ``hires.f``, subroutine ``solut``:
#: "computed using true double precision RADAU5 on Cray C90, rtol = atol = h0 = 1.1d-18").
HIRES_Y_END = (
    0.7371312573325668e-3,
    0.1442485726316185e-3,
    0.5888729740967575e-4,
    0.1175651343283149e-2,
    0.2386356198831331e-2,
    0.6238968252742796e-2,
    0.2849998395185769e-2,
    0.2850001604814231e-2,
)
#: Tolerances of the default fine propagator (scipy Radau with the exact Jacobian).
FINE_RTOL = 1e-7
FINE_ATOL = 1e-10


@dataclass(frozen=True)
class HiresRHS:
    """The eight HIRES reaction equations on states ``(..., 8)`` (elementwise)."""

    def __call__(self, t: Any, y: np.ndarray) -> np.ndarray:
        y1, y2, y3, y4, y5, y6, y7, y8 = (y[..., i] for i in range(8))
        r = 280.0 * y6 * y8
        return np.stack(
            [
                -1.71 * y1 + 0.43 * y2 + 8.32 * y3 + 0.0007,
                1.71 * y1 - 8.75 * y2,
                -10.03 * y3 + 0.43 * y4 + 0.035 * y5,
                8.32 * y2 + 1.71 * y3 - 1.12 * y4,
                -1.745 * y5 + 0.43 * y6 + 0.43 * y7,
                -r + 0.69 * y4 + 1.71 * y5 - 0.43 * y6 + 0.69 * y7,
                r - 1.81 * y7,
                -r + 1.81 * y7,
            ],
            axis=-1,
        )


#: The constant entries of the HIRES Jacobian; the entries from ``280 y6 y8`` are added per state.
_HIRES_LINEAR = np.array(
    [
        [-1.71, 0.43, 8.32, 0.0, 0.0, 0.0, 0.0, 0.0],
        [1.71, -8.75, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, -10.03, 0.43, 0.035, 0.0, 0.0, 0.0],
        [0.0, 8.32, 1.71, -1.12, 0.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 0.0, -1.745, 0.43, 0.43, 0.0],
        [0.0, 0.0, 0.0, 0.69, 1.71, -0.43, 0.69, 0.0],
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.81, 0.0],
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.81, 0.0],
    ]
)
_HIRES_LINEAR.setflags(write=False)


@dataclass(frozen=True)
class HiresJacobian:
    """The exact Jacobian of :class:`HiresRHS`: ``(8,) -> (8, 8)``, ``(B, 8) -> (B, 8, 8)``."""

    def __call__(self, t: Any, y: np.ndarray) -> np.ndarray:
        y = np.asarray(y, dtype=np.float64)
        y6, y8 = y[..., 5], y[..., 7]
        out = np.empty((*y.shape[:-1], 8, 8))
        out[...] = _HIRES_LINEAR
        out[..., 5, 5] = -0.43 - 280.0 * y8
        out[..., 5, 7] = -280.0 * y6
        out[..., 6, 5] = 280.0 * y8
        out[..., 6, 7] = 280.0 * y6
        out[..., 7, 5] = -280.0 * y8
        out[..., 7, 7] = -280.0 * y6
        return out


def hires(
    *,
    t_end: float = HIRES_T_END,
    slices: int = 16,
    coarse: Propagator | str | None = None,
    fine: Propagator | str | None = None,
) -> Problem:
    """HIRES, 8 stiff reaction equations (registry ``"hires"``).

    The "High Irradiance RESponse" model of photomorphogenesis (Schäfer 1975) from Hairer &
    Wanner, *Solving ODEs II*, and the Bari "Test Set for IVP Solvers" (Mazzia & Magherini):
    ``y0 = (1, 0, 0, 0, 0, 0, 0, 0.0057)`` on ``(0, 321.8122)``. With the default span,
    :meth:`~Problem.reference_final` is the test set's published ``y(321.8122)``
    (:data:`HIRES_Y_END`, 16 digits); other times use the numerical reference (Radau at
    ``1e-13`` with the exact Jacobian).

    Defaults: 16 slices; ``fine = ScipyIVP("Radau", rtol=1e-7, atol=1e-10,
    options={"jac": HiresJacobian()})``, within about ``1e-8`` of the published values
    (componentwise, relative); ``coarse = Rosenbrock2(steps=8)`` with the same Jacobian
    (what ``coarse="auto"`` picks in the pipelined schedule, ``benchmarks/testset.py``). Needs
    scipy (``pip install 'parareal[scipy]'``).

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
    jac = HiresJacobian()
    slices, coarse_p, fine_p = check_propagators(
        slices,
        coarse,
        fine,
        lambda: Rosenbrock2(steps=8, jac=jac),
        lambda: ScipyIVP("Radau", rtol=FINE_RTOL, atol=FINE_ATOL, options={"jac": jac}),
    )
    return Problem(
        name="hires",
        f=HiresRHS(),
        y0=np.array(HIRES_Y0, dtype=np.float64),
        t_span=(0.0, t_end),
        coarse=coarse_p,
        fine=fine_p,
        slices=slices,
        description=f"HIRES (Bari test set), 8 stiff equations, T={t_end:g}",
        stiff=True,
        jacobian=jac,
        published_final=np.array(HIRES_Y_END) if t_end == HIRES_T_END else None,
    )
