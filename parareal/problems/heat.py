"""The 1-D heat equation by the method of lines (a stiff linear system)."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..propagators import RK4, Euler, Propagator
from ..validation import check_int, check_slices
from .base import Problem, check_propagators, check_t_end

__all__ = ["HeatRHS", "heat", "heat_eigenvalue"]

#: ``h * lam_max`` of the default coarse Euler step: forward Euler is stable on the negative
#: real axis up to 2; at 1.8 the stiffest mode is damped by ``|1 - 1.8| = 0.8`` per step.
COARSE_STEP_LIMIT = 1.8
#: ``h * lam_max`` of the default fine RK4 step: well inside RK4's stability interval
#: (about 2.785); the stiffest mode is damped by ``|R(-1)| = 0.375`` per step.
FINE_STEP_LIMIT = 1.0


@dataclass(frozen=True)
class HeatRHS:
    """``u_i' = (u_{i-1} - 2 u_i + u_{i+1}) / dx^2`` with ``u_0 = u_{n+1} = 0``, ``dx = 1/(n+1)``.

    States have shape ``(..., n)`` (``n = points`` interior points). Computed with a
    second-difference stencil on a zero-padded copy, elementwise (no matrix product), so a batch
    gives the same bits as the stacked single calls.
    """

    points: int = 100

    def __call__(self, t: Any, y: np.ndarray) -> np.ndarray:
        padded = np.zeros((*y.shape[:-1], self.points + 2), dtype=y.dtype)
        padded[..., 1:-1] = y
        inv_dx2 = float((self.points + 1) ** 2)
        return (padded[..., :-2] - 2.0 * padded[..., 1:-1] + padded[..., 2:]) * inv_dx2


#: Most grid points (the explicit defaults' step counts grow like ``points**2``).
MAX_POINTS = 100_000


def heat_eigenvalue(points: int, mode: int = 1) -> float:
    """``lam_h`` with ``A v = -lam_h v`` for the sine mode ``v_i = sin(mode * pi * x_i)``.

    ``lam_h = (4 / dx^2) sin^2(mode * pi * dx / 2)``; it tends to ``(mode * pi)^2`` as
    ``dx -> 0``. The stiffest mode (``mode = points``) has ``lam_h`` just below ``4 / dx^2``.
    """
    dx = 1.0 / (points + 1)
    return 4.0 / dx**2 * math.sin(mode * math.pi * dx / 2.0) ** 2


def _exact(points: int, t: np.ndarray) -> np.ndarray:
    x = np.arange(1, points + 1) / (points + 1)
    return np.exp(-heat_eigenvalue(points) * t)[:, None] * np.sin(np.pi * x)


def _default_steps(points: int, t_end: float, slices: int) -> tuple[int, int]:
    """Coarse (Euler) and fine (RK4) sub-steps per slice that are stable on every mode."""
    length = t_end / slices * heat_eigenvalue(points, points)
    if not math.isfinite(length):
        raise ValueError(
            f"t_end = {t_end:g} with {points} points is too long for the default (explicit) "
            "propagators: pick a shorter t_end or pass coarse and fine"
        )
    coarse = max(1, math.ceil(length / COARSE_STEP_LIMIT))
    fine = max(1, math.ceil(length / FINE_STEP_LIMIT))
    return coarse, fine


def heat(
    points: int = 100,
    *,
    t_end: float = 0.1,
    slices: int = 10,
    coarse: Propagator | str | None = None,
    fine: Propagator | str | None = None,
) -> Problem:
    """The heat equation ``u_t = u_xx`` on ``(0, 1)``, ``u(0) = u(1) = 0`` (registry ``"heat"``).

    Method of lines with ``points`` interior points ``x_i = i dx``, ``dx = 1 / (points + 1)``,
    and the second-difference stencil: ``y' = A y``. The initial state is the sine mode
    ``y0 = sin(pi x)``, an eigenvector of ``A``, so the semi-discrete system has the exact
    solution ``y(t) = exp(-lam_h t) sin(pi x)`` with ``lam_h = (4 / dx^2) sin^2(pi dx / 2)``
    (:func:`heat_eigenvalue`); :meth:`Problem.reference` returns it. The PDE's own solution
    is ``exp(-pi^2 t) sin(pi x)``; the two differ by the ``O(dx^2)`` spatial error
    (``lam_h - pi^2 ~ pi^4 dx^2 / 12``), which has nothing to do with the time integration.

    The system is stiff: the stiffest mode has ``lam_max ~ 4 / dx^2`` (about ``4e4`` for 100
    points, ``4e6`` for 1000), and round-off excites every mode, so *both* propagators must be
    stable on it: explicit RK4 needs ``h * lam_max < 2.785``, forward Euler ``< 2``. The
    defaults stay explicit (and steppable) and take their step counts from ``points``,
    ``t_end`` and ``slices``: ``coarse = Euler(m)`` with the smallest ``m`` that gives
    ``h * lam_max <= 1.8`` and ``fine = RK4(n)`` with ``h * lam_max <= 1``. For 100 points,
    ``t_end = 0.1`` and 10 slices that is ``Euler(227)`` and ``RK4(408)`` per slice (``G``
    costs about a seventh of ``F``); the fine solution matches the exact one to round-off,
    and Parareal converges to ``1e-10`` in 3 iterations. The cost grows like
    ``points^2 * t_end``: with 1000 points pick a short span (``t_end=1e-3`` takes a fraction
    of a second; the default 0.1 takes tens of seconds). An implicit propagator such as
    ``ScipyIVP("Radau")`` can take long steps instead, at the price of not being steppable.

    Parameters
    ----------
    points : int
        Number of interior grid points (``>= 1``).
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
    points = check_int(points, "points", 1, MAX_POINTS)
    t_end = check_t_end(t_end)
    steps = functools.partial(_default_steps, points, t_end, check_slices(slices))
    slices, coarse_p, fine_p = check_propagators(
        slices, coarse, fine, lambda: Euler(steps=steps()[0]), lambda: RK4(steps=steps()[1])
    )
    x = np.arange(1, points + 1) / (points + 1)
    return Problem(
        name="heat",
        f=HeatRHS(points),
        y0=np.sin(np.pi * x),
        t_span=(0.0, t_end),
        coarse=coarse_p,
        fine=fine_p,
        slices=slices,
        description=(
            f"1-D heat equation u_t = u_xx, {points} interior points, y0 = sin(pi x), "
            f"T={t_end:g}; exact exp(-lam_h t) sin(pi x)"
        ),
        exact=functools.partial(_exact, points),
        stiff=True,
    )
