"""The Van der Pol oscillator."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..propagators import RK4, LinearlyImplicitEuler, Propagator, ScipyIVP
from .base import Problem, check_propagators, check_real, check_state, check_t_end

__all__ = [
    "STIFF_MU",
    "VDPOL_Y_END",
    "VanDerPolJacobian",
    "VanDerPolRHS",
    "van_der_pol",
    "van_der_pol_stiff",
]

#: From this ``mu`` on the problem counts as stiff (:attr:`Problem.stiff`) and its reference
#: is computed with Radau: at ``mu = 100`` on ``(0, 10)`` Radau needs 4 800 evaluations of
#: ``f`` against DOP853's 7 400, at ``mu = 1000`` 2 600 against 56 000 (``rtol = 1e-13``).
STIFF_MU = 100.0
#: ``(x, x')(2000)`` for ``mu = 1000``, ``y0 = (2, 0)``, as published in the Bari "Test Set for
#: IVP Solvers" (Mazzia & Magherini; problem VDPOL, file ``vdpol.f``, subroutine ``solut``:
#: "computed using double precision RADAU, rtol = atol = h0 = 1.1d-18"). The test set states
#: the problem in this unscaled form, ``y2' = 1000 (1 - y1^2) y2 - y1`` on ``(0, 2000)``;
#: it is Hairer & Wanner's scaled VDPOL with ``eps = 1/mu^2 = 1e-6`` on ``(0, 2)`` after
#: ``t -> mu t`` (their ``y2`` is ``mu`` times ours).
VDPOL_Y_END = (0.1706167732170469e1, -0.8928097010248125e-3)
#: Tolerances of :func:`van_der_pol_stiff`'s fine propagator (Radau, exact Jacobian).
STIFF_FINE_RTOL = 1e-7
STIFF_FINE_ATOL = 1e-7


@dataclass(frozen=True)
class VanDerPolRHS:
    """``x' = v``, ``v' = mu (1 - x^2) v - x`` on states ``(..., 2)``."""

    mu: float = 1.0

    def __call__(self, t: Any, y: np.ndarray) -> np.ndarray:
        if type(y) is np.ndarray and y.size == 2 and y.dtype == np.float64:
            # one state (or a batch of one): Python floats do the same IEEE float64 operations
            # bit for bit, without numpy's fixed cost per operation
            x, v = y.ravel().tolist()
            return np.array((v, self.mu * (1.0 - x * x) * v - x)).reshape(y.shape)
        x, v = y[..., 0], y[..., 1]
        return np.stack([v, self.mu * (1.0 - x * x) * v - x], axis=-1)


@dataclass(frozen=True)
class VanDerPolJacobian:
    """``d f / d (x, v) = [[0, 1], [-2 mu x v - 1, mu (1 - x^2)]]``.

    At one state ``(x, v)`` it returns ``(2, 2)``; at a batch ``(B, 2)``, ``(B, 2, 2)``.
    """

    mu: float = 1.0

    def __call__(self, t: Any, y: np.ndarray) -> np.ndarray:
        y = np.asarray(y, dtype=np.float64)
        x, v = y[..., 0], y[..., 1]
        out = np.zeros((*y.shape[:-1], 2, 2))
        out[..., 0, 1] = 1.0
        out[..., 1, 0] = -2.0 * self.mu * x * v - 1.0
        out[..., 1, 1] = self.mu * (1.0 - x * x)
        return out


def _check_mu(mu: Any) -> float:
    mu = check_real(mu, "mu")
    if mu < 0:
        raise ValueError(f"mu must be >= 0, got {mu}")
    return mu


def van_der_pol(
    mu: float = 1.0,
    *,
    y0: Any = (2.0, 0.0),
    t_end: float = 10.0,
    slices: int = 20,
    coarse: Propagator | str | None = None,
    fine: Propagator | str | None = None,
) -> Problem:
    """The Van der Pol oscillator ``x'' = mu (1 - x^2) x' - x`` (registry ``"vanderpol"``).

    The state is ``(x, x')``, starting at ``(2, 0)``; for ``mu > 0`` it approaches a limit
    cycle (period about 6.66 for ``mu = 1``). The defaults are non-stiff (``mu = 1``): span
    ``(0, 10)``, 20 slices, ``coarse = RK4(steps=2)`` (``h = 0.25``) and
    ``fine = RK4(steps=50)`` (``h = 0.01``); the fine solution is within about ``5e-8`` of the
    reference (scipy DOP853 at ``rtol = atol = 1e-13``), and Parareal reaches a boundary update
    of ``1e-10`` in about 5 iterations.

    Large ``mu`` makes the problem stiff (the fast phases have eigenvalues of order ``-mu``
    and the period grows like ``(3 - 2 ln 2) mu``): explicit fixed-step propagators then need
    tiny steps. For ``mu >= 100`` (:data:`STIFF_MU`) the problem is marked ``stiff`` and its
    reference solution is computed with Radau and the analytic Jacobian. Use an implicit
    propagator, too, e.g.
    ``van_der_pol(mu=1000, t_end=3000, coarse=ScipyIVP("Radau", rtol=1e-3),
    fine=ScipyIVP("Radau", rtol=1e-8))``.

    Parameters
    ----------
    mu : float
        Damping parameter (``>= 0``; 0 is the harmonic oscillator).
    y0 : pair of float
        Initial state ``(x, x')``.
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
    mu = _check_mu(mu)
    t_end = check_t_end(t_end)
    y0_arr = check_state(y0, 2, "(x, x')")
    slices, coarse_p, fine_p = check_propagators(
        slices, coarse, fine, lambda: RK4(steps=2), lambda: RK4(steps=50)
    )
    return Problem(
        name="vanderpol",
        f=VanDerPolRHS(mu),
        y0=y0_arr,
        t_span=(0.0, t_end),
        coarse=coarse_p,
        fine=fine_p,
        slices=slices,
        description=f"Van der Pol mu={mu:g}, y0={tuple(y0_arr.tolist())}, T={t_end:g}",
        stiff=mu >= STIFF_MU,
        jacobian=VanDerPolJacobian(mu),
    )


def van_der_pol_stiff(
    mu: float = 1000.0,
    *,
    y0: Any = (2.0, 0.0),
    t_end: float = 2000.0,
    slices: int = 16,
    coarse: Propagator | str | None = None,
    fine: Propagator | str | None = None,
) -> Problem:
    """The stiff Van der Pol oscillator VDPOL, ``mu = 1000`` (registry ``"vanderpol-stiff"``).

    The same equation as :func:`van_der_pol`, ``x'' = mu (1 - x^2) x' - x`` (unscaled time),
    with the Bari "Test Set for IVP Solvers" setup: ``mu = 1000``, ``(x, x')(0) = (2, 0)``,
    span ``(0, 2000)`` (a bit more than one period, ``(3 - 2 ln 2) mu ~ 1614``, with two
    fast jumps). Hairer & Wanner's scaled form ``eps y'' = (1 - y^2) y' - y``,
    ``eps = 1e-6`` on ``(0, 2)`` is the same problem in ``s = t / mu`` (their ``y'`` is
    ``mu x'``). With these parameters :meth:`~Problem.reference_final` is the published
    ``(x, x')(2000)`` (:data:`VDPOL_Y_END`); otherwise the numerical reference (Radau at
    ``1e-13`` with the exact Jacobian).

    Defaults: 16 slices; ``fine = ScipyIVP("Radau", rtol=1e-7, atol=1e-7,
    options={"jac": VanDerPolJacobian(mu)})``, within about ``1e-7`` of the published
    values (componentwise, relative); ``coarse = LinearlyImplicitEuler(steps=4)`` with the
    same Jacobian (what ``coarse="auto"`` picks; Parareal still needs 13 of 16 iterations
    here: the relaxation oscillation's jumps defeat every cheap coarse measured). Needs scipy
    (``pip install 'parareal[scipy]'``).

    Parameters
    ----------
    mu : float
        Damping parameter (``>= 0``).
    y0 : pair of float
        Initial state ``(x, x')``.
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
    mu = _check_mu(mu)
    t_end = check_t_end(t_end)
    y0_arr = check_state(y0, 2, "(x, x')")
    jac = VanDerPolJacobian(mu)
    slices, coarse_p, fine_p = check_propagators(
        slices,
        coarse,
        fine,
        lambda: LinearlyImplicitEuler(steps=4, jac=jac),
        lambda: ScipyIVP("Radau", rtol=STIFF_FINE_RTOL, atol=STIFF_FINE_ATOL, options={"jac": jac}),
    )
    published = mu == 1000.0 and t_end == 2000.0 and tuple(y0_arr.tolist()) == (2.0, 0.0)
    return Problem(
        name="vanderpol-stiff",
        f=VanDerPolRHS(mu),
        y0=y0_arr,
        t_span=(0.0, t_end),
        coarse=coarse_p,
        fine=fine_p,
        slices=slices,
        description=f"Van der Pol (Bari VDPOL) mu={mu:g}, y0={tuple(y0_arr.tolist())}, T={t_end:g}",
        stiff=mu >= STIFF_MU,
        jacobian=jac,
        published_final=np.array(VDPOL_Y_END) if published else None,
    )
