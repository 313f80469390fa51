"""``coarse="auto"``: the coarse propagator chosen for the run from what its first fine sweep
measures.

How it works (everything below runs inside the ordinary Parareal run; its calls count in
``Stats`` and its ticks in the critical path):

1. Iterate 0 (the first coarse sweep) uses a robust *initial* coarse propagator, by default
   scipy's LSODA at a loose tolerance (:func:`default_initial`): any coarse sweep is a valid
   initial guess, and this one need not be a smooth map, since no correction uses it.
2. The first fine sweep ``F(U_n^0)`` runs as always. Alongside it, on the same values, every
   candidate ``G_c`` runs on every slice ``n >= 1``, and at a few *probe slices* the fine and
   every candidate also run from a perturbed value ``U_n^0 + delta`` (all of them started
   together: cheap candidates finish before the fine sweep does, so the probe adds extra
   evaluations, not latency, on a parallel machine).
3. When the fine sweep is complete, for each candidate with ``g_c`` ticks per slice:
   ``alpha_c = max |dG_c - dF| / |delta|`` (``dX = X(U + delta) - X(U)``, at the probe slices:
   the quantity the Gander-Vandewalle bounds are written in, ``max |R_F - R_G|`` for Dahlquist),
   ``beta_c = max |dG_c| / |delta|``, and the error left by the initial guess
   ``E_0 = sum_n |G_init(U_n^0) - F(U_n^0)|`` (jumps of the initial sweep, slices ``n >= 1``).
   The predicted error after ``k`` more iterations is
   ``E_k = E_0 * min(alpha^k / k! * prod_{l<k} (N - 1 - l), gamma^k)``,
   ``gamma = alpha / (1 - beta)`` (only when ``beta < 1``), and the run is predicted to stop
   one iteration after ``E_k <= tol + rtol * scale``. With the measured fine cost ``m_n`` of
   every slice, the predicted critical path of the remaining iterations is
   ``sum_k (max_{n >= k} m_n + (N - k) g_c)`` (synchronous) or
   ``sum_k max_{n >= k} m_n + N g_c`` (pipelined).
4. The smallest prediction wins (ties: fewer ticks per slice). Candidates that are not finite
   on the probe or cost at least half the dearest fine propagation are out. The chosen
   candidate's ``G_c(U_n^0)``, already computed, become the ``C(n, 0)`` of iteration 1, which
   then proceeds as usual.

It is deterministic (the perturbation comes from a fixed seed and every decision from values
that are the same on every backend), so the same inputs give the same choice and the same
iterates on every backend and rank count.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..propagators import RK4, LinearlyImplicitEuler, Propagator, Rosenbrock2, ScipyIVP
from ..result import CoarseCandidate, CoarseChoice
from ..state import ArrayOps

__all__ = ["AutoCoarse", "Probe", "SpanSolve", "predict_iterations", "predicted_critical_path"]

#: States larger than this get no dense Jacobians (see :meth:`AutoCoarse.for_state`).
DENSE_LIMIT = 500
#: Without ``jac``, states larger than this keep only implicit candidates of at most four
#: Jacobians per slice (finite differences cost ``size + 1`` calls of ``f`` each).
FD_LIMIT = 32
#: Relative size of the probe perturbation (of the state's max-norm).
PROBE_EPSILON = 1e-4
#: Seed of the probe direction.
PROBE_SEED = 20241208


def _default_candidates() -> tuple[Propagator, ...]:
    explicit = tuple(RK4(steps=s) for s in (1, 2, 4, 8))
    linear = tuple(LinearlyImplicitEuler(steps=s) for s in (4, 16))
    ros = tuple(Rosenbrock2(steps=s) for s in (1, 2, 4, 8, 16))
    return explicit + linear + ros


def default_initial() -> Propagator:
    """The coarse propagator of iterate 0: scipy's LSODA at ``rtol = 1e-3`` (it switches
    between non-stiff Adams and stiff BDF by itself, so the first guess is robust on both
    kinds of problem), or ``Rosenbrock2(steps=8)`` without scipy."""
    try:
        import scipy.integrate  # noqa: F401
    except ImportError:  # pragma: no cover - depends on the environment
        return Rosenbrock2(steps=8)
    return ScipyIVP("LSODA", rtol=1e-3, atol=1e-6)


class SpanSolve(Propagator):
    """One bounded :meth:`ScipyIVP.trajectory` over the whole span, as a propagator the
    driver runs like any other (its calls count on the critical path).

    Its result is the states at every one of ``boundaries``, stacked; with ``balance`` it is
    ``(new boundaries, states)``, the boundaries giving every slice an equal share of the
    solver's steps (``boundaries="work"``). At most :func:`initial_budget` calls of ``f``.
    """

    def __init__(self, scipy: ScipyIVP, boundaries: np.ndarray, *, balance: bool = False
                 ) -> None:
        self.scipy = scipy
        self.boundaries = np.asarray(boundaries, dtype=np.float64)
        self.balance = balance

    def __repr__(self) -> str:
        what = "balancing" if self.balance else "through"
        return f"{self.scipy!r} {what} {len(self.boundaries) - 1} slices"

    def propagate(self, f: Callable[[Any, Any], Any], y: Any, t0: float, t1: float) -> Any:
        slices = len(self.boundaries) - 1
        if self.balance:
            return self.scipy.trajectory(f, y, [t0, t1], balance=slices,
                                         max_calls=initial_budget(slices))
        return self.scipy.trajectory(f, y, self.boundaries, max_calls=initial_budget(slices))


def initial_budget(slices: int) -> int:
    """Calls of ``f`` the loose solve of iterate 0 may make before it counts as failed (a
    blow-up or a problem too hard for it must not cost without bound)."""
    return 2000 + 200 * slices


def ticks(prop: Propagator) -> int | None:
    """Requests per propagation (calls of ``f`` plus Jacobians), when fixed in advance."""
    count = getattr(prop, "ticks", None)
    if count is not None:
        return int(count)
    return prop.evals


@dataclass
class Probe:
    """The probe of one run: its base iterate, candidates, perturbation and results."""

    base: int
    candidates: list[Propagator]
    slices: tuple[int, ...]
    delta: Any
    delta_norm: dict[int, float] = field(default_factory=dict)
    results: dict[tuple[Any, ...], Any] = field(default_factory=dict)
    started: set[int] = field(default_factory=set)
    deferred: list[tuple[int, int]] = field(default_factory=list)
    chosen: bool = False

    def expected(self, N: int) -> int:
        """How many results the probe waits for."""
        c = len(self.candidates)
        per_slice = c * (N - 1 - self.base)
        return per_slice + len(self.slices) * (1 + c)


class AutoCoarse:
    """Choose the coarse propagator for the run (``coarse="auto"``; see the module docstring).

    Parameters
    ----------
    candidates : sequence of Propagator, optional
        Fixed-step propagators to choose from. The default: ``RK4`` with 1, 2, 4 and 8
        steps per slice, ``LinearlyImplicitEuler`` with 4 and 16, ``Rosenbrock2`` with 1, 2,
        4, 8 and 16 (explicit ones for non-stiff problems, L-stable linearly implicit ones for
        stiff problems).
    initial : Propagator, optional
        The coarse propagator of iterate 0 (default: :func:`default_initial`).
    """

    def __init__(self, candidates: Sequence[Propagator] | None = None,
                 initial: Propagator | None = None) -> None:
        if candidates is None:
            cands = _default_candidates()
        else:
            if isinstance(candidates, (str, bytes)) or not isinstance(candidates, Sequence):
                raise TypeError("candidates must be a sequence of Propagator instances")
            cands = tuple(candidates)
            if not cands:
                raise ValueError("candidates must not be empty")
            for c in cands:
                if not isinstance(c, Propagator) or ticks(c) is None:
                    raise TypeError(
                        "every candidate must be a fixed-step Propagator (known calls per "
                        f"slice), got {c!r}")
        if initial is None:
            initial = default_initial()
        elif not isinstance(initial, Propagator):
            raise TypeError(f"initial must be a Propagator, got {type(initial).__name__}")
        self.candidates = cands
        self.initial = initial
        #: The first coarse sweep's propagator when the initial trajectory cannot be had.
        self.fallback: Propagator = Rosenbrock2(steps=8)

    def __repr__(self) -> str:
        if self.candidates == _default_candidates() and self.initial == default_initial():
            return "AutoCoarse()"
        return f"AutoCoarse(candidates={list(self.candidates)!r}, initial={self.initial!r})"

    def __eq__(self, other: object) -> bool:
        return (type(other) is AutoCoarse and other.candidates == self.candidates
                and other.initial == self.initial)

    def __hash__(self) -> int:
        return hash((self.candidates, self.initial))

    def with_jacobian(self, jac: Any, jac_sparsity: Any = None) -> AutoCoarse:
        """A copy whose propagators use ``jac`` where they can."""

        def use(c: Propagator) -> Propagator:
            method = getattr(c, "with_jacobian", None)
            return c if method is None else method(jac, jac_sparsity)

        clone = AutoCoarse.__new__(AutoCoarse)
        clone.candidates = tuple(use(c) for c in self.candidates)
        clone.initial = use(self.initial)
        clone.fallback = use(self.fallback)
        return clone

    def trajectory(self, boundaries: np.ndarray, complex_state: bool = False
                   ) -> Propagator | None:
        """The propagator that computes iterate 0: :attr:`initial` run once over the whole
        span through every boundary (no restart per slice), when it can; else ``None``.
        Complex states, which LSODA and Radau cannot take, get BDF instead."""
        initial = self.initial
        if not isinstance(initial, ScipyIVP):
            return None
        if complex_state and initial.method in ("LSODA", "Radau"):
            initial = copy.copy(initial)
            initial.method = "BDF"
        return SpanSolve(initial, boundaries)

    def for_state(self, size: int) -> AutoCoarse:
        """The candidates and initial solve that suit a state of ``size`` entries: without a
        Jacobian (``jac``) or a sparsity pattern, states larger than :data:`DENSE_LIMIT`
        would need dense ``(size, size)`` finite-difference or autograd Jacobians (memory and
        time growing like ``size**2``), so only the explicit candidates and an explicit
        initial solve (RK45) remain; with only ``jac_sparsity`` the initial solve is BDF,
        which uses it."""
        source = getattr(self.initial, "source", None)
        has_jac = source is not None and source.jac is not None
        has_pattern = source is not None and source.sparsity is not None
        if not has_jac and FD_LIMIT < size <= DENSE_LIMIT:
            # each Jacobian costs size + 1 calls of f (finite differences): keep the
            # implicit candidates to few steps per slice
            clone = copy.copy(self)
            clone.candidates = tuple(c for c in self.candidates
                                     if getattr(c, "jac_evals", 0) <= 4)
            return clone.for_state(0) if has_pattern else clone
        if size <= DENSE_LIMIT or has_jac:
            if has_pattern and not has_jac and isinstance(self.initial, ScipyIVP) and (
                    self.initial.method == "LSODA"):
                clone = copy.copy(self)
                clone.initial = copy.copy(self.initial)
                clone.initial.method = "BDF"
                return clone
            return self
        clone = copy.copy(self)
        if not has_pattern:
            explicit = tuple(c for c in self.candidates if not hasattr(c, "jac_evals"))
            clone.candidates = explicit or (RK4(steps=8),)
            clone.fallback = RK4(steps=8)
        if isinstance(self.initial, ScipyIVP):
            clone.initial = copy.copy(self.initial)
            clone.initial.method = "BDF" if has_pattern else "RK45"
        return clone

    # -- the probe ------------------------------------------------------------------------
    @staticmethod
    def direction(shape: tuple[int, ...]) -> np.ndarray:
        """The fixed probe direction: entries of size 0.5 to 1 and random sign."""
        rng = np.random.default_rng(PROBE_SEED)
        size = int(np.prod(shape)) if shape else 1
        v = rng.uniform(0.5, 1.0, size) * rng.choice([-1.0, 1.0], size)
        return v.reshape(shape)

    def probe(self, *, ops: ArrayOps, base: int, slices: int, max_iters: int,
              scale: float = 1.0) -> Probe | None:
        """The probe for a run whose first fine sweep starts from iterate ``base``; ``None``
        when there is nothing to choose (no slice after the first, or no iteration left)."""
        N = slices
        if base + 1 >= N or max_iters <= base:
            return None
        probe_slices = tuple(sorted({base + 1, (base + 1 + N) // 2} & set(range(base + 1, N))))
        delta = self.direction(ops.shape) * PROBE_EPSILON
        return Probe(base=base, candidates=list(self.candidates), slices=probe_slices,
                     delta=delta)

    def trivial(self, slices: int) -> CoarseChoice:
        """The choice when nothing is left to choose (one slice, or no iteration)."""
        return CoarseChoice(
            propagator=self.initial,
            reason=(f"{self.initial!r}: the initial coarse propagator; with {slices} "
                    "slice(s) and the iterations allowed no other coarse sweep runs"),
            candidates=(), fine_ticks=0, probe_ticks=0)

    def choose(
        self,
        *,
        probe: Probe,
        U: dict[int, Any],
        F: dict[int, Any],
        defects: dict[int, float],
        fine_lengths: dict[int, int],
        norm: Callable[[Any], float],
        slices: int,
        tol: float,
        rtol: float,
        schedule: str,
        clock: int,
    ) -> CoarseChoice:
        """Rank the candidates on the probe's results and pick the fastest predicted one.

        ``U`` and ``F`` map a slice ``n >= base`` to ``U_n^base`` and ``F(U_n^base)``,
        ``defects`` a slice ``n > base`` to ``|U_{n+1}^base - F(U_n^base)|`` (how far the
        initial guess is from the fine solution across that slice), ``fine_lengths`` to the
        measured fine ticks.
        """
        b, N = probe.base, slices
        later = range(b + 1, N)
        scale = max([norm(u) for u in U.values()] + [norm(v) for v in F.values()])
        target = tol + rtol * scale
        error0 = sum(defects.values())
        if not math.isfinite(error0):
            error0 = math.inf
        m_max = max(fine_lengths.values()) if fine_lengths else 1
        m_by_k = [max([fine_lengths.get(n, 0) for n in range(k, N)] or [0])
                  for k in range(N + 1)]
        rows: list[CoarseCandidate] = []
        for i, prop in enumerate(probe.candidates):
            g = ticks(prop) or 0
            alpha = beta = jump = 0.0
            for n in later:
                gap = norm(probe.results[("G", i, n, 0)] - F[n])
                jump = _worst(jump, gap)
                # for linear f, G(U) - F(U) = (R_G - R_F) U: a bound on alpha from every slice
                alpha = _worst(alpha, gap / (norm(U[n]) or 1.0))
            for n in probe.slices:
                d = probe.delta_norm.get(n) or 1.0
                dF = probe.results[("F", 0, n, 1)] - F[n]
                dG = probe.results[("G", i, n, 1)] - probe.results[("G", i, n, 0)]
                alpha = _worst(alpha, norm(dG - dF) / d)
                beta = _worst(beta, norm(dG) / d)
            if not all(math.isfinite(v) for v in (jump, alpha, beta)):
                rows.append(CoarseCandidate(repr(prop), g, jump, alpha, beta, N - b,
                                            math.inf, "not finite on the probe"))
                continue
            # not capped by max_iters: the choice must not change with it, so that a run
            # stopped at max_iters and resumed with a larger cap is the uninterrupted run
            K = predict_iterations(error0, alpha, beta, slices=N - b, max_iters=N - b,
                                   tol=target)
            path = predicted_critical_path(K, g, m_by_k[b + 1:], N - b, schedule)
            note = "" if 2 * g < m_max else "costs half a fine propagation or more"
            rows.append(CoarseCandidate(repr(prop), g, jump, alpha, beta, b + K,
                                        path if not note else math.inf, note))
        cap = N

        def rank(i: int) -> tuple[float, float, int, int]:
            # predicted to converge only by exactness: favour fidelity per cost (alpha * g)
            r = rows[i]
            fidelity = r.alpha * max(r.ticks, 1) if r.predicted_iterations >= cap else 0.0
            return (r.predicted_critical_path if r.predicted_iterations < cap
                    else math.inf if not math.isfinite(r.predicted_critical_path)
                    else 1e300, fidelity, r.ticks, i)

        order = sorted(range(len(rows)), key=rank)
        best = order[0]
        row = rows[best]
        if math.isfinite(row.predicted_critical_path):
            why = (f"{row.propagator}: predicted to stop after {row.predicted_iterations} "
                   f"iterations with {row.predicted_critical_path:.0f} more calls on the "
                   f"critical path ({schedule}), the fewest of {len(rows)} candidates "
                   f"(fine: up to {m_max} calls per slice; derivative mismatch "
                   f"{row.alpha:.2e}, initial error {error0:.2e})")
        else:
            why = (f"{row.propagator}: no candidate was usable (all non-finite or too "
                   "costly); the cheapest was taken")
        return CoarseChoice(
            propagator=probe.candidates[best], reason=why, candidates=tuple(rows),
            fine_ticks=m_max, probe_ticks=clock)


def _worst(a: float, b: float) -> float:
    """``max(a, b)`` in which NaN wins (a NaN measurement must not look like zero)."""
    if math.isnan(a) or math.isnan(b):
        return math.nan
    return max(a, b)


def _power(base: float, k: int) -> float:
    """``base ** k``, inf where that overflows a float."""
    try:
        return base**k
    except OverflowError:
        return math.inf


def predict_iterations(error0: float, alpha: float, beta: float, *, slices: int,
                       max_iters: int, tol: float) -> int:
    """Iterations until the boundary update meets ``tol`` (see the module docstring)."""
    N = slices
    cap = max(min(N, max_iters), 1)
    if tol <= 0.0 or not math.isfinite(error0):
        return cap
    if error0 <= tol:
        return 1
    gamma = alpha / (1.0 - beta) if beta < 1.0 else math.inf
    superlinear = 1.0
    for k in range(1, cap):
        superlinear *= alpha * (N - k) / k
        if error0 * min(superlinear, _power(gamma, k)) <= tol:
            return min(k + 1, cap)
    return cap


def predicted_critical_path(K: int, g: int, fine: Sequence[int], slices: int,
                            schedule: str) -> float:
    """Critical path of ``K`` iterations with ``g`` coarse ticks per slice; ``fine[k - 1]``
    is the dearest fine propagation that iteration ``k`` runs."""
    N = slices
    m = [fine[min(k - 1, len(fine) - 1)] if fine else 0 for k in range(1, K + 1)]
    if schedule == "pipelined":
        return float(sum(m) + N * g)
    return float(sum(mk + (N - k) * g for k, mk in enumerate(m, start=1)))
