"""Theory helpers: the Parareal speedup model and the Gander-Vandewalle bounds for Dahlquist.

References
----------
M. J. Gander and S. Vandewalle, "Analysis of the parareal time-parallel time-integration
method", SIAM J. Sci. Comput. 29(2), 2007.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .propagators import Propagator, resolve
from .result import Solution
from .validation import (
    check_int,
    check_positive,
    check_real,
    check_slices,
    check_span,
    check_y0,
)

#: States larger than this are not probed for Jacobian eigenvalues by default (the probe costs
#: ``size + 1`` evaluations of ``f`` and an eigenvalue problem of that size).
JACOBIAN_MAX_SIZE = 64
#: :func:`coarse_stability` flags a coarse propagator that amplifies some mode over the span by
#: more than this factor beyond what the ODE itself does.
EXCESS_GROWTH_LIMIT = 10.0

__all__ = [
    "CoarseStability",
    "DahlquistBounds",
    "coarse_stability",
    "critical_path_speedup",
    "dahlquist_bounds",
    "jacobian_eigenvalues",
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
    if isinstance(lam, bool) or not isinstance(lam, numbers.Number):
        raise TypeError(f"lam must be a number, got {lam!r}")
    return complex(_stability_factors(prop, np.array([complex(lam)]), check_real(dt, "dt"))[0])


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


def jacobian_eigenvalues(
    f: Callable[[Any, Any], Any],
    t: float,
    y: Any,
    *,
    vectorized: bool = False,
    max_size: int = JACOBIAN_MAX_SIZE,
) -> np.ndarray | None:
    """Eigenvalues of the Jacobian ``df/dy`` at ``(t, y)``, by forward differences.

    Costs ``y.size + 1`` evaluations of ``f`` (one batched call if ``vectorized``), made
    directly, outside any solve. The estimate is local: for a nonlinear ``f`` it describes the
    linearisation at ``(t, y)`` only.

    Parameters
    ----------
    f : callable
        ``f(t, y)`` as :func:`parareal.solve` takes it.
    t : float
    y : numpy.ndarray or torch.Tensor
        The state (numpy or torch, any shape; complex states are differentiated along the
        real axis, which gives the complex derivative of a holomorphic ``f``).
    vectorized : bool
        ``f`` takes batches ``f(t (B,), Y (B, *y.shape))``.
    max_size : int
        Return ``None`` instead of probing when ``y.size`` exceeds it.

    Returns
    -------
    numpy.ndarray or None
        Complex eigenvalues (``y.size`` of them), or ``None`` when the state is too large or
        the differences are not finite.
    """
    y, ops = check_y0(y)
    size = int(np.prod(ops.shape, dtype=np.int64))
    if size == 0 or size > check_int(max_size, "max_size", 0):
        return None
    base = ops.to_numpy(y).reshape(-1)
    real = base.real if np.iscomplexobj(base) else base
    eps = float(np.finfo(real.dtype).eps)
    steps = np.sqrt(eps) * np.maximum(1.0, np.abs(base))
    # row 0: the state itself; row j + 1: the state with entry j moved by steps[j]
    probes = base + np.concatenate([np.zeros((1, size)), np.diag(steps)])
    stacked = ops.from_numpy(probes.reshape(size + 1, *ops.shape))
    if vectorized:
        out = f(ops.times([float(t)] * (size + 1)), stacked)
        dy = ops.coerce_derivative(out, stacked, batched=True)
    else:
        dy = ops.stack([ops.coerce_derivative(f(ops.time(float(t)), s), s)
                        for s in ops.unstack(stacked)])
    dys = np.asarray(ops.to_numpy(dy), dtype=complex).reshape(size + 1, size)
    jac = ((dys[1:] - dys[0]) / steps[:, None]).T  # column j: df/dy_j
    if not np.all(np.isfinite(jac)):
        return None
    return np.linalg.eigvals(jac)


@dataclass(frozen=True)
class CoarseStability:
    """How the coarse propagator treats the modes of an ODE, from :func:`coarse_stability`.

    Attributes
    ----------
    eigenvalues : numpy.ndarray
        Estimated Jacobian eigenvalues ``lam`` at the initial state.
    coarse_growth : numpy.ndarray
        Per eigenvalue, ``prod_n |R_G(lam dt_n)|``: the coarse sweep's amplification over the
        whole span.
    exact_growth : numpy.ndarray
        Per eigenvalue, ``prod_n |exp(lam dt_n)|``: the ODE's own amplification.
    excess : float
        ``max coarse_growth / max(1, exact_growth)``: how much more the coarse sweep amplifies
        some mode than the ODE does (1 or less is harmless).
    worst : complex
        The eigenvalue where ``excess`` is attained.
    worst_factor : float
        ``|R_G(worst * dt)|`` for the longest slice.
    stable : bool
        ``excess <= limit``.
    """

    eigenvalues: np.ndarray
    coarse_growth: np.ndarray
    exact_growth: np.ndarray
    excess: float
    worst: complex
    worst_factor: float
    stable: bool


def coarse_stability(
    f: Callable[[Any, Any], Any],
    y0: Any,
    boundaries: Sequence[float],
    coarse: Propagator | str,
    *,
    vectorized: bool = False,
    max_size: int = JACOBIAN_MAX_SIZE,
    limit: float = EXCESS_GROWTH_LIMIT,
) -> CoarseStability | None:
    """Check that the coarse propagator does not amplify modes the ODE does not amplify.

    The Jacobian of ``f`` at ``(boundaries[0], y0)`` is estimated by
    :func:`jacobian_eigenvalues`; for each eigenvalue ``lam`` the coarse stability factor
    ``R_G(lam dt)`` (:func:`stability_factor`) is taken over every slice length ``dt`` and
    multiplied out over the span. A coarse propagator outside its stability region (forward
    Euler on an oscillation: ``|1 + i w dt| > 1``) amplifies the coarse sweep's error
    exponentially; Parareal then converges only through exactness, one slice per iteration,
    at far more cost than the serial solver. ``stable`` is False when the coarse sweep
    amplifies some mode by more than ``limit`` times what the ODE does (at least 1).

    Returns ``None`` when nothing can be known cheaply: a state larger than ``max_size``
    entries, or a Jacobian that is not finite. The estimate is local to the initial state.

    Parameters
    ----------
    f, y0 :
        As :func:`parareal.solve` takes them.
    boundaries : sequence of float
        Slice boundaries ``T_0 < ... < T_N``.
    coarse : Propagator or str
        The coarse propagator, applied once per slice.
    vectorized : bool
        ``f`` takes batches.
    max_size : int
        Largest state probed.
    limit : float
        Excess amplification above which ``stable`` is False.
    """
    prop = resolve(coarse, name="coarse")
    grid = np.asarray(boundaries, dtype=np.float64)
    if grid.ndim != 1 or grid.size < 2 or not np.all(np.diff(grid) > 0):
        raise ValueError("boundaries must be a 1-D increasing sequence of at least two times")
    limit = check_positive(limit, "limit")
    lams = jacobian_eigenvalues(f, float(grid[0]), y0, vectorized=vectorized, max_size=max_size)
    if lams is None:
        return None
    dts, counts = np.unique(np.diff(grid), return_counts=True)
    log_coarse = np.zeros(lams.size)
    worst_factor = np.zeros(lams.size)
    with np.errstate(all="ignore"):
        for dt, count in zip(dts, counts, strict=True):
            factors = np.abs(_stability_factors(prop, lams, float(dt)))
            log_coarse += count * np.log(factors)
            worst_factor = np.maximum(worst_factor, factors)
        log_exact = np.real(lams) * float(grid[-1] - grid[0])
        log_excess = log_coarse - np.maximum(log_exact, 0.0)
    log_excess = np.where(np.isnan(log_excess), np.inf, log_excess)
    i = int(np.argmax(log_excess))
    excess = float(np.exp(min(log_excess[i], 700.0)))
    return CoarseStability(
        eigenvalues=lams,
        coarse_growth=np.exp(np.minimum(log_coarse, 700.0)),
        exact_growth=np.exp(np.minimum(log_exact, 700.0)),
        excess=excess,
        worst=complex(lams[i]),
        worst_factor=float(worst_factor[i]),
        stable=bool(excess <= limit),
    )


def _stability_factors(prop: Propagator, lams: np.ndarray, dt: float) -> np.ndarray:
    """``R(lam * dt)`` for every ``lam`` at once (one propagation of a diagonal system).

    The complex system ``z' = lam z`` is propagated in its real form, ``(x, y)' = (a x - b y,
    b x + a y)`` for ``lam = a + i b`` from ``(1, 0)``, so that propagators that cannot take
    complex states (``ScipyIVP("Radau")``, ``"LSODA"``) can be probed too. A method with real
    coefficients gives ``(Re R, Im R)`` (the real form of a linear map), the same numbers as the
    complex probe up to rounding.
    """
    rates = np.asarray(lams, dtype=complex).ravel()
    a, b = rates.real, rates.imag

    def rhs(t: Any, y: np.ndarray) -> np.ndarray:
        x, w = y[..., 0], y[..., 1]
        return np.stack([a * x - b * w, b * x + a * w], axis=-1)

    start = np.zeros((rates.size, 2))
    start[:, 0] = 1.0
    out = np.asarray(prop.propagate(rhs, start, 0.0, dt), dtype=np.float64)
    return out[..., 0] + 1j * out[..., 1]
