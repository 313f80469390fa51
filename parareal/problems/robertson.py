"""Robertson's chemical kinetics (ROBER): three species, rate constants over nine decades."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..propagators import LinearlyImplicitEuler, Propagator, ScipyIVP
from .base import Problem, check_positive, check_propagators, check_t_end

__all__ = [
    "ROBERTSON_Y40",
    "RobertsonJacobian",
    "RobertsonRHS",
    "robertson",
    "robertson_long",
]

#: ``y(40)`` for the standard constants and ``y0 = (1, 0, 0)``, as quoted from Hairer & Wanner,
#: *Solving ODEs II*; checked in ``tests/test_problems.py`` against scipy Radau at
#: ``rtol = 1e-12``, ``atol = 1e-16`` (agreement 1.2e-13 relative, componentwise).
ROBERTSON_Y40 = (0.7158270687193306, 9.185534764557338e-06, 0.2841637457458208)
#: Tolerances of the default fine propagator (scipy Radau with the exact Jacobian): the
#: absolute tolerance is far below ``y2`` (about ``1e-5`` at its peak, ``1e-10`` at
#: ``t = 1e5``), so that every component is accurate relative to its own size.
FINE_RTOL = 1e-6
FINE_ATOL = 1e-12


@dataclass(frozen=True)
class RobertsonRHS:
    """``y1' = -k1 y1 + k3 y2 y3``, ``y2' = k1 y1 - k3 y2 y3 - k2 y2^2``, ``y3' = k2 y2^2``."""

    k1: float = 0.04
    k2: float = 3e7
    k3: float = 1e4

    def __call__(self, t: Any, y: np.ndarray) -> np.ndarray:
        y1, y2, y3 = y[..., 0], y[..., 1], y[..., 2]
        a = self.k1 * y1
        b = self.k3 * y2 * y3
        c = self.k2 * y2 * y2
        return np.stack([b - a, a - b - c, c], axis=-1)


@dataclass(frozen=True)
class RobertsonJacobian:
    """The exact Jacobian of :class:`RobertsonRHS`: ``(3,) -> (3, 3)``, ``(B, 3) -> (B, 3, 3)``."""

    k1: float = 0.04
    k2: float = 3e7
    k3: float = 1e4

    def __call__(self, t: Any, y: np.ndarray) -> np.ndarray:
        y = np.asarray(y, dtype=np.float64)
        y2, y3 = y[..., 1], y[..., 2]
        out = np.zeros((*y.shape[:-1], 3, 3))
        out[..., 0, 0] = -self.k1
        out[..., 0, 1] = self.k3 * y3
        out[..., 0, 2] = self.k3 * y2
        out[..., 1, 0] = self.k1
        out[..., 1, 1] = -self.k3 * y3 - 2.0 * self.k2 * y2
        out[..., 1, 2] = -self.k3 * y2
        out[..., 2, 1] = 2.0 * self.k2 * y2
        return out


def _build(
    name: str,
    k: Any,
    t_end: Any,
    slices: Any,
    coarse: Propagator | str | None,
    fine: Propagator | str | None,
    coarse_steps: int = 8,
) -> Problem:
    if isinstance(k, (str, bytes)):
        raise TypeError(f"k must be three rate constants (k1, k2, k3), got {k!r}")
    try:
        items = list(k)
    except TypeError:
        raise TypeError(f"k must be three rate constants (k1, k2, k3), got {k!r}") from None
    if len(items) != 3:
        raise ValueError(f"k must have three entries (k1, k2, k3), got {len(items)}")
    k1, k2, k3 = (check_positive(v, f"k[{i}]") for i, v in enumerate(items))
    t_end = check_t_end(t_end)
    jac = RobertsonJacobian(k1, k2, k3)
    slices, coarse_p, fine_p = check_propagators(
        slices,
        coarse,
        fine,
        lambda: LinearlyImplicitEuler(steps=coarse_steps, jac=jac),
        lambda: ScipyIVP("Radau", rtol=FINE_RTOL, atol=FINE_ATOL, options={"jac": jac}),
    )
    published = (k1, k2, k3) == (0.04, 3e7, 1e4) and t_end == 40.0
    return Problem(
        name=name,
        f=RobertsonRHS(k1, k2, k3),
        y0=np.array([1.0, 0.0, 0.0]),
        t_span=(0.0, t_end),
        coarse=coarse_p,
        fine=fine_p,
        slices=slices,
        description=f"Robertson kinetics k=({k1:g}, {k2:g}, {k3:g}), y0=(1, 0, 0), T={t_end:g}",
        stiff=True,
        jacobian=jac,
        published_final=np.array(ROBERTSON_Y40) if published else None,
    )


_DOC = """Robertson's chemical kinetics (ROBER, registry ``"{name}"``), on ``(0, {t_end})``.

    ``y1' = -k1 y1 + k3 y2 y3``, ``y2' = k1 y1 - k3 y2 y3 - k2 y2^2``, ``y3' = k2 y2^2`` with
    ``k = (0.04, 3e7, 1e4)`` and ``y0 = (1, 0, 0)`` (Robertson 1966; Hairer & Wanner, *Solving
    ODEs II*, and the Bari "Test Set for IVP Solvers"). Very stiff: the Jacobian has an
    eigenvalue near ``-1e4`` while the solution evolves on time scales up to ``1e5`` and
    beyond; ``y1 + y2 + y3 = 1`` is conserved. The registry has ``"robertson"`` (span
    ``(0, 40)``) and ``"robertson-long"`` (span ``(0, 1e5)``); ``t_end`` overrides either.

    With the standard constants and ``t_end = 40``, :meth:`~Problem.reference_final` is the
    published ``y(40)`` (:data:`ROBERTSON_Y40`); otherwise the numerical reference (Radau at
    ``1e-13`` with the exact Jacobian). Defaults: 16 equal slices;
    ``fine = ScipyIVP("Radau", rtol=1e-6, atol=1e-12, options={{"jac": RobertsonJacobian()}})``
    (every component, ``y2`` included, within about ``1e-8`` of the reference relative to its
    own size); ``coarse = LinearlyImplicitEuler(steps=8)`` with the same Jacobian
    (robust from a plain coarse sweep; ``coarse="auto"``, which starts from a loose LSODA
    solve, picks cheaper Rosenbrock steps, ``benchmarks/testset.py``). Needs scipy
    (``pip install 'parareal[scipy]'``).

    Parameters
    ----------
    k : triple of float
        Rate constants ``(k1, k2, k3)``, each ``> 0``.
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


def robertson(
    *,
    k: Any = (0.04, 3e7, 1e4),
    t_end: float = 40.0,
    slices: int = 16,
    coarse: Propagator | str | None = None,
    fine: Propagator | str | None = None,
) -> Problem:
    return _build("robertson", k, t_end, slices, coarse, fine)


def robertson_long(
    *,
    k: Any = (0.04, 3e7, 1e4),
    t_end: float = 1e5,
    slices: int = 16,
    coarse: Propagator | str | None = None,
    fine: Propagator | str | None = None,
) -> Problem:
    return _build("robertson-long", k, t_end, slices, coarse, fine, coarse_steps=16)


robertson.__doc__ = _DOC.format(name="robertson", t_end="40")
robertson_long.__doc__ = _DOC.format(name="robertson-long", t_end="1e5")
