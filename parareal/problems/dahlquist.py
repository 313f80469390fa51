"""Dahlquist's test equation ``y' = lam * y``, real (decay) or complex (oscillation)."""

from __future__ import annotations

import cmath
import functools
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..propagators import RK4, Propagator
from .base import Problem, check_propagators, check_t_end

__all__ = ["DahlquistRHS", "dahlquist", "dahlquist_complex"]


@dataclass(frozen=True)
class DahlquistRHS:
    """``f(t, y) = lam * y`` (elementwise; batches of any leading shape)."""

    lam: float | complex

    def __call__(self, t: Any, y: np.ndarray) -> np.ndarray:
        return self.lam * y


def _exact(lam: float | complex, y0: np.ndarray, t0: float, t: np.ndarray) -> np.ndarray:
    factor = np.exp(lam * (t - t0))
    return factor.reshape((-1,) + (1,) * y0.ndim) * y0


def _check_lam(lam: Any, *, force_complex: bool) -> float | complex:
    """A real ``lam`` stays float (real state) unless ``force_complex``; else complex."""
    if isinstance(lam, bool) or not isinstance(lam, numbers.Complex):
        raise TypeError(f"lam must be a number, got {lam!r}")
    real = isinstance(lam, numbers.Real) and not force_complex
    value = float(lam) if real else complex(lam)
    if not cmath.isfinite(value):
        raise ValueError(f"lam must be finite, got {lam}")
    return value


def _build(
    name: str,
    lam: float | complex,
    y0: Any,
    t_end: Any,
    slices: Any,
    coarse: Propagator | str | None,
    fine: Propagator | str | None,
    fine_steps: int,
) -> Problem:
    t_end = check_t_end(t_end)
    slices, coarse_p, fine_p = check_propagators(
        slices, coarse, fine, lambda: RK4(steps=1), lambda: RK4(steps=fine_steps)
    )
    dtype = np.complex128 if isinstance(lam, complex) else np.float64
    if isinstance(y0, bool) or not isinstance(y0, numbers.Complex):
        raise TypeError(f"y0 must be a number, got {y0!r}")
    if dtype is np.float64 and not isinstance(y0, numbers.Real):
        raise TypeError(f"y0 must be real for a real lam (or pass a complex lam), got {y0!r}")
    y0_arr = np.array([y0], dtype=dtype)
    if not np.all(np.isfinite(y0_arr)):
        raise ValueError(f"y0 must be finite, got {y0}")
    y0_arr.setflags(write=False)
    return Problem(
        name=name,
        f=DahlquistRHS(lam),
        y0=y0_arr,
        t_span=(0.0, t_end),
        coarse=coarse_p,
        fine=fine_p,
        slices=slices,
        description=(
            f"Dahlquist test equation y' = lam*y, lam = {lam}, y(0) = {y0}; exact exp(lam*t)*y0"
        ),
        lam=complex(lam),
        exact=functools.partial(_exact, lam, y0_arr, 0.0),
    )


def dahlquist(
    lam: float | complex = -1.0,
    *,
    y0: float = 1.0,
    t_end: float = 5.0,
    slices: int = 10,
    coarse: Propagator | str | None = None,
    fine: Propagator | str | None = None,
) -> Problem:
    """Dahlquist's test equation ``y' = lam * y`` (registry ``"dahlquist"``).

    The exact solution is ``y(t) = exp(lam * t) * y0``. The state has shape ``(1,)``: float64
    for a real ``lam``, complex128 when ``lam`` is a complex number (see also
    :func:`dahlquist_complex`, which always uses a complex state). Parareal's convergence bounds
    for this problem are in :mod:`parareal.theory`.

    Parameters
    ----------
    lam : float or complex
        The eigenvalue.
    y0 : float
        Initial value.
    t_end : float
        End of the span ``(0, t_end)``.
    slices : int
        Number of time slices.
    coarse, fine : Propagator or str, optional
        Defaults ``RK4(steps=1)`` and ``RK4(steps=20)`` per slice: with the default span,
        ``h = 0.025`` and the fine solution is within about ``1.2e-9`` of the exact one.

    Returns
    -------
    Problem
    """
    lam = _check_lam(lam, force_complex=False)
    return _build("dahlquist", lam, y0, t_end, slices, coarse, fine, fine_steps=20)


def dahlquist_complex(
    lam: complex = -0.1 + 2j,
    *,
    y0: complex = 1.0 + 0j,
    t_end: float = 2 * np.pi,
    slices: int = 10,
    coarse: Propagator | str | None = None,
    fine: Propagator | str | None = None,
) -> Problem:
    """Dahlquist's equation with a complex eigenvalue (registry ``"dahlquist-complex"``).

    ``y' = lam * y`` with complex128 state of shape ``(1,)``; exact ``exp(lam * t) * y0``. The
    default ``lam = -0.1 + 2j`` is a slowly damped oscillation (two periods on the default span
    ``(0, 2*pi)``). Imaginary eigenvalues are the hard case for Parareal: convergence is slow and
    the error may grow before exactness ends it.

    Parameters
    ----------
    lam : complex
        The eigenvalue.
    y0 : complex
        Initial value.
    t_end : float
        End of the span ``(0, t_end)``.
    slices : int
        Number of time slices.
    coarse, fine : Propagator or str, optional
        Defaults ``RK4(steps=1)`` and ``RK4(steps=40)`` per slice: with the default span,
        ``|h * lam| ~ 0.031`` and the fine solution is within about ``5.5e-8`` of the exact one.
        Parareal needs about 8 of the 10 iterations to reach a boundary update of ``1e-10``.

    Returns
    -------
    Problem
    """
    lam = _check_lam(lam, force_complex=True)
    return _build("dahlquist-complex", lam, y0, t_end, slices, coarse, fine, fine_steps=40)
