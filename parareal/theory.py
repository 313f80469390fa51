"""Theory helpers: the Parareal speedup model and the Gander-Vandewalle bounds for Dahlquist.

References
----------
M. J. Gander and S. Vandewalle, "Analysis of the parareal time-parallel time-integration
method", SIAM J. Sci. Comput. 29(2), 2007.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .propagators import Propagator, resolve
from .result import Solution
from .validation import check_int, check_positive, check_slices, check_span

__all__ = [
    "DahlquistBounds",
    "critical_path_speedup",
    "dahlquist_bounds",
    "model_speedup",
    "speedup_limit",
    "speedup_model",
    "stability_factor",
]


def speedup_model(
    iterations: int, *, workers: int, coarse_cost: float, fine_cost: float
) -> float:
    """Model speedup of Parareal over the serial fine solve.

    ``S = 1 / ((K + 1) * c + K / P)`` with ``c = cost(G) / cost(F)`` per slice (equivalently
    ``N_c tau_c / (N_f tau_f)`` over the whole span), ``K`` iterations and ``P`` workers (one
    slice each). It ignores communication and assumes the coarse sweep is sequential.

    Parameters
    ----------
    iterations : int
        ``K >= 0``.
    workers : int
        ``P >= 1``, usually the number of slices.
    coarse_cost, fine_cost : float
        Cost of one coarse and one fine propagation over a slice (any unit, e.g. calls of f).
    """
    k = check_int(iterations, "iterations", 0)
    p = check_int(workers, "workers", 1)
    ratio = check_positive(coarse_cost, "coarse_cost") / check_positive(fine_cost, "fine_cost")
    return 1.0 / ((k + 1) * ratio + k / p)


def speedup_limit(iterations: int, *, slices: int, coarse_cost: float, fine_cost: float) -> float:
    """The upper bound ``min(N / K, cost(F) / cost(G))`` of the model speedup."""
    k = check_int(iterations, "iterations", 1)
    n = check_slices(slices)
    ratio = check_positive(fine_cost, "fine_cost") / check_positive(coarse_cost, "coarse_cost")
    return min(n / k, ratio)


def _evals(prop: Propagator, name: str) -> int:
    if prop.evals is None:
        raise ValueError(f"{name} has no fixed cost per propagation; pass costs to speedup_model")
    return prop.evals


def model_speedup(
    solution: Solution, *, coarse: Propagator, fine: Propagator, workers: int | None = None
) -> float:
    """:func:`speedup_model` for a finished run (costs in calls of ``f``; P defaults to N)."""
    slices = len(solution.t) - 1
    return speedup_model(
        solution.iterations,
        workers=slices if workers is None else workers,
        coarse_cost=_evals(coarse, "coarse"),
        fine_cost=_evals(fine, "fine"),
    )


def critical_path_speedup(solution: Solution, *, fine: Propagator) -> float:
    """Serial fine calls of ``f`` divided by the run's critical path (the ideal latency gain)."""
    slices = len(solution.t) - 1
    return slices * _evals(fine, "fine") / max(solution.stats.critical_path, 1)


def stability_factor(propagator: Propagator | str, lam: complex, dt: float) -> complex:
    """``R`` with ``propagator(y) = R * y`` for ``y' = lam * y`` over a step of length ``dt``."""
    prop = resolve(propagator, name="propagator")
    lam = complex(lam)
    out = prop.propagate(lambda t, y: lam * y, np.array(1.0 + 0.0j), 0.0, float(dt))
    return complex(np.asarray(out))


@dataclass(frozen=True)
class DahlquistBounds:
    """Gander-Vandewalle error bounds, relative to the error of iterate 0.

    The error is ``e_k = max_n |U_n^k - u_n|`` with ``u_n`` the serial fine solution; then
    ``e_k <= linear[k] * e_0`` and ``e_k <= superlinear[k] * e_0``.

    Attributes
    ----------
    linear : numpy.ndarray
        ``gamma**k`` with ``gamma = alpha / (1 - |R_G|)`` (inf when ``|R_G| >= 1``).
    superlinear : numpy.ndarray
        ``alpha**k / k! * prod_{l<k} (N - 1 - l) * max(1, |R_G|)**(N - 1 - k)``; zero from
        ``k = N`` on (exactness).
    alpha : float
        ``|R_F - R_G|``.
    gamma : float
        Linear contraction factor.
    r_coarse, r_fine : complex
        Stability factors of the coarse and fine propagators over one slice.
    """

    linear: np.ndarray
    superlinear: np.ndarray
    alpha: float
    gamma: float
    r_coarse: complex
    r_fine: complex

    @property
    def combined(self) -> np.ndarray:
        """The sharper of the two bounds at each iteration."""
        return np.minimum(self.linear, self.superlinear)


def dahlquist_bounds(
    lam: complex,
    *,
    t_span: Sequence[float],
    slices: int,
    coarse: Propagator | str,
    fine: Propagator | str,
    iterations: int,
) -> DahlquistBounds:
    """Gander-Vandewalle bounds for ``y' = lam * y`` at ``k = 0..iterations`` (see class)."""
    t0, t1 = check_span(t_span)
    n = check_slices(slices)
    kmax = check_int(iterations, "iterations", 0)
    dt = (t1 - t0) / n
    rg = stability_factor(coarse, lam, dt)
    rf = stability_factor(fine, lam, dt)
    alpha = abs(rf - rg)
    gamma = alpha / (1.0 - abs(rg)) if abs(rg) < 1.0 else math.inf
    ks = np.arange(kmax + 1)
    with np.errstate(over="ignore", invalid="ignore"):
        linear = np.array([gamma**k if gamma < math.inf or k == 0 else math.inf for k in ks])
    superlinear = np.empty(kmax + 1)
    growth = max(1.0, abs(rg))
    for k in ks:
        if k >= n:
            superlinear[k] = 0.0
            continue
        prod = math.prod(n - 1 - j for j in range(k))
        superlinear[k] = alpha**k / math.factorial(k) * prod * growth ** (n - 1 - k)
    return DahlquistBounds(linear, superlinear, alpha, gamma, rg, rf)
