"""The Parareal iteration: coarse sweep, correction, convergence, exactness, schedules.

Notation: boundaries ``T_0 < ... < T_N``; ``U_n^k`` is the value at boundary ``n`` after
iteration ``k``; ``C(n, k) = G(U_n^k)`` and ``F(n, k) = F(U_n^k)`` are propagations over slice
``n``. The recurrence, written once here::

    U_0^k     = y0
    U_{n+1}^0 = C(n, 0)                                   (initial coarse sweep)
    U_{n+1}^k = U_{n+1}^{k-1}                 if n + 1 < k (exact prefix: copy, no work)
    U_k^k     = F(k-1, k-1)                   taken as it is (bitwise the serial fine value)
    U_{n+1}^k = F(n, k-1) + (C(n, k) - C(n, k-1))   otherwise

The correction is written ``F + (C_new - C_old)`` so that when the coarse inputs agree the
update is exactly zero (the fixed point holds bitwise). Iteration ``k`` needs ``F(n, k-1)`` only
for ``n >= k-1`` and ``C(n, k)`` only for ``n >= k`` (exactness freezing).

Schedules (same iterates, different timing):

* ``synchronous``: the fine propagations of iteration ``k + 1`` start together once iterate
  ``k`` is complete; the coarse sweep of iteration ``k + 1`` starts once all of them are done.
* ``pipelined``: every task starts the moment its input ``U_n^k`` exists, except that fine
  work may run at most ``lookahead`` iterations ahead of the newest complete iterate: ``F(n, k)``
  (which feeds iterate ``k + 1``) starts only once iterate ``k - lookahead`` is complete. Held
  tasks start, oldest iteration first and then lowest slice, as iterates complete. Work in
  flight when the run stops is abandoned.

Why the bound: unbounded, the slices near the start race ahead through iterations whose result
is never needed once the run converges, and the speculative work grows like
``N**2 g / (2 (m - g))`` propagations (``N`` slices, ``m`` and ``g`` calls of ``f`` per fine and
coarse propagation). With ``lookahead = L`` the fine work started is at most ``L`` sweeps more
than the synchronous schedule's; the latency stays that of the unbounded pipeline roughly while
``L (m - g) >= g N`` (see ``docs/algorithm.md``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import math
import sys
import time
from typing import Any

import numpy as np

from ..backends import refuse_lost_gradients
from ..backends.concurrent import open_session
from ..checkpoint import Checkpoint
from ..propagators import Propagator
from ..propagators.linalg import LinalgMeter, metered
from ..result import CoarseChoice, IterationInfo, Solution, Stats, Status
from ..state import ArrayOps
from ..stopping import Iterate
from .auto import AutoCoarse, Probe, SpanSolve
from .driver import Driver
from .spec import DEFAULT_LOOKAHEAD, SCHEDULES, RunSpec

__all__ = ["DEFAULT_LOOKAHEAD", "SCHEDULES", "RunSpec", "run_parareal"]

Key = tuple[str, int, int]


class _Run:
    """State of one Parareal run; reacts to finished tasks."""

    def __init__(self, spec: RunSpec) -> None:
        rhs = spec.rhs
        self.spec = spec
        self.rhs = rhs
        self.ops: ArrayOps = rhs.ops
        self.y0 = spec.y0
        self.t = spec.boundaries
        self.N = len(spec.boundaries) - 1
        coarse = spec.coarse
        self.auto = coarse.for_state(int(np.prod(rhs.ops.shape))) if isinstance(
            coarse, AutoCoarse) else None
        self.coarse = coarse if self.auto is None else self.auto.initial
        self.fine = spec.fine
        self.choice: CoarseChoice | None = None
        self.probe: Probe | None = None
        self.choice_index: int | None = None  # which auto candidate was chosen
        self.auto_note = ""  # what went wrong in coarse="auto", if anything
        self.pipelined = spec.schedule == "pipelined"
        self.lookahead = math.inf if spec.lookahead is None else spec.lookahead
        self.held: list[tuple[int, int]] = []  # fine tasks (k, n) waiting for the lookahead
        self.rule = spec.stop
        self.rule.start()
        self.met_by_rule = False  # the rule, not the callback, stopped the run
        self.K = spec.max_iters
        self.initial = spec.initial
        self.checkpoint = spec.checkpoint
        self.resume = spec.resume
        self.saved: tuple[int, Status | None] | None = None  # the iterate last checkpointed
        self.driver = Driver(spec.backend, rhs)
        self.U: dict[tuple[int, int], Any] = {}
        self.C: dict[tuple[int, int], Any] = {}
        self.F: dict[tuple[int, int], Any] = {}
        self.fine_pending: dict[int, int] = {}
        self.complete: set[int] = set()
        self.next_iterate = 0
        self.final: int | None = None
        self.status = Status.MAX_ITERS
        self.residuals: list[float] = []
        self.path: list[int] = []
        self.wall_path: list[float] = []
        self.backend = spec.backend
        self.started = 0.0
        self.fine_calls = 0
        self.coarse_calls = 0
        self.engine_seconds = 0.0
        self.fine_start: dict[tuple[int, int], int] = {}  # tick at which F(n, k) started
        self.fine_lengths: dict[tuple[int, int], int] = {}  # of every F(n, k) that finished
        self.linalg = LinalgMeter()
        self.reason = ""

    # -- values ----------------------------------------------------------------------------
    def value(self, n: int, k: int) -> Any:
        """``U_n^k``, following the exact prefix (``U_n^k = U_n^n`` for ``n < k``)."""
        return self.U[(n, min(n, k))]

    def iterate(self, k: int) -> list[Any]:
        return [self.value(n, k) for n in range(self.N + 1)]

    # -- tasks -----------------------------------------------------------------------------
    def launch(self, key: Any, propagator: Propagator, y: Any, t0: float, t1: float,
               **options: Any) -> bool:
        """Start a propagation of ``y``, unless ``y`` is not finite: no task ever starts on
        NaN or inf (a propagator that checks its input, such as scipy's, would raise). Its
        result is then NaN at once, and the run ends ``DIVERGED`` where the synchronous
        schedule ends it. Returns whether work was started."""
        if not self.ops.all_finite(y):
            self.driver.deliver(key, self.ops.full_nan())
            return False
        self.driver.start(key, propagator, y, t0, t1, **options)
        return True

    def start_coarse(self, n: int, k: int) -> None:
        if self.launch(("C", n, k), self.coarse, self.value(n, k), self.t[n], self.t[n + 1]):
            self.coarse_calls += 1

    def start_fine(self, n: int, k: int) -> None:
        self.fine_pending[k] = self.fine_pending.get(k, 0) + 1
        clock = self.driver.clock
        if self.launch(("F", n, k), self.fine, self.value(n, k), self.t[n], self.t[n + 1],
                       remote=True, priority=(k, n)):
            self.fine_calls += 1
            self.fine_start[(n, k)] = clock

    def start_fine_sweep(self, k: int) -> None:
        for n in range(k, self.N):
            self.request_fine(n, k)

    def request_fine(self, n: int, k: int) -> None:
        """Start ``F(n, k)`` now, or hold it while it would run too far ahead (pipelined)."""
        if self.pipelined and k > self.next_iterate - 1 + self.lookahead:
            heapq.heappush(self.held, (k, n))
        else:
            self.start_fine(n, k)

    def release_held(self) -> None:
        """Start the held fine tasks that the newest complete iterate allows, oldest first."""
        bound = self.next_iterate - 1 + self.lookahead
        while self.held and self.held[0][0] <= bound:
            k, n = heapq.heappop(self.held)
            self.start_fine(n, k)

    # -- events ----------------------------------------------------------------------------
    def set_value(self, n: int, k: int, value: Any) -> None:
        self.U[(n, k)] = value
        if n == self.N:
            self.complete.add(k)
            while self.final is None and self.next_iterate in self.complete:
                self.finish_iterate(self.next_iterate)
                self.next_iterate += 1
                if self.final is None:
                    self.release_held()
            return
        if n >= k and k <= self.K:
            self.start_coarse(n, k)
        if self.pipelined and n >= k and k < self.K:
            self.request_fine(n, k)
        if self.probe is not None and not self.probe.chosen and k == self.probe.base:
            self.probe_start(n, k)

    def on_finished(self, key: Key, value: Any) -> None:
        if key[0] == "P":
            self.probe_finished(key, value)  # type: ignore[arg-type]
            return
        kind, n, k = key
        if kind == "C":
            self.C[(n, k)] = value
            self.try_form(n + 1, k)
            if n > k:  # after a resume C(n, k) is recomputed and may come last
                self.try_form(n + 1, k + 1)
            return
        self.F[(n, k)] = value
        self.fine_pending[k] -= 1
        start = self.fine_start.pop((n, k), None)
        if start is not None:
            self.fine_lengths[(n, k)] = self.driver.clock - start
        if self.probe is not None and not self.probe.chosen and k == self.probe.base:
            self.probe_try_choose()
        if self.pipelined:
            self.try_form(n + 1, k + 1)
        elif self.fine_pending[k] == 0:
            # synchronous: the sweep of iteration k + 1 starts once its fine phase is done
            self.try_form(k + 1, k + 1)

    def try_form(self, m: int, k: int) -> None:
        """Form ``U_m^k`` (``m >= 1``) if its inputs exist and it does not yet."""
        if (m, k) in self.U or m < k:
            return
        probe = self.probe
        if probe is not None and not probe.chosen and k == probe.base + 1:
            probe.deferred.append((m, k))  # needs the coarse that the probe will choose
            return
        n = m - 1
        ops = self.ops
        if k == 0:
            if (n, 0) not in self.C:
                return
            value = ops.own(self.C[(n, 0)])
        elif m == k:
            if (n, k - 1) not in self.F:
                return
            value = ops.own(self.F[(n, k - 1)])
        else:
            if (n, k) not in self.C or (n, k - 1) not in self.F or (n, k - 1) not in self.C:
                return
            if not self.pipelined and self.fine_pending.get(k - 1, 0):
                return
            value = ops.correct(self.F[(n, k - 1)], self.C[(n, k)], self.C[(n, k - 1)])
        self.set_value(m, k, value)
        if k > 0:
            self.drop_used(n, k - 1)
        self.drop_used(n, k)

    def drop_used(self, n: int, j: int) -> None:
        """Drop ``F(n, j)`` and ``C(n, j)`` once no boundary value still to be formed needs
        them: ``F(n, j)`` feeds ``U_{n+1}^{j+1}`` only, ``C(n, j)`` feeds ``U_{n+1}^j`` and,
        for ``n > j``, ``U_{n+1}^{j+1}``. The probe of ``coarse="auto"`` reads the fine
        values of its base iterate until it has chosen."""
        U = self.U
        next_formed = (n + 1, j + 1) in U
        probe = self.probe
        keep = self.rule.needs_fine_defects  # until iterate j + 1 is complete (forget)
        if next_formed and not keep and (probe is None or probe.chosen or j != probe.base):
            self.F.pop((n, j), None)
        if (n + 1, j) in U and (n <= j or next_formed):
            self.C.pop((n, j), None)

    # -- iterates --------------------------------------------------------------------------
    def finish_iterate(self, k: int) -> None:
        ops = self.ops
        if k == 0:
            bad = next((n for n in range(1, self.N + 1)
                        if not ops.all_finite(self.value(n, 0))), None)
            if bad is not None:  # no finite iterate exists: iterate 0 is returned as it is
                self.mark_iterate()
                self.diverged(0, bad, "the initial coarse sweep")
                self.stop(0, Status.DIVERGED)
                return
            residual = math.nan
        else:
            span = range(k, self.N + 1)
            residual = self.update_norm(k, span)
            if not math.isfinite(residual):
                bad = next(n for n in span if not ops.all_finite(self.U[(n, k)]))
                self.diverged(k, bad, f"iteration {k}")
                self.stop(k - 1, Status.DIVERGED)
                return
            self.residuals.append(residual)
        verdict = self.rule.check(self.iterate_view(k, residual))
        if verdict is Status.DIVERGED:  # the rule saw what the boundary check did not
            self.reason = f"the stopping rule {self.rule.name!r} saw NaN or inf at iteration {k}"
            if k == 0:  # no earlier iterate: iterate 0 is returned as it is
                self.mark_iterate()
                self.reason += "; iterate 0 is returned as it is"
            else:
                self.reason += f"; the last finite iterate ({k - 1}) is returned"
            self.stop(max(k - 1, 0), Status.DIVERGED)
            return
        self.mark_iterate()
        if self.spec.progress:
            print(
                f"parareal: iteration {k}/{self.K}  max update {residual:.3e}  "
                f"critical path {self.driver.clock}",
                file=sys.stderr,
            )
        # the stop decision comes first, so that the checkpoint the callback may read has it
        status: Status | None = None
        if verdict is Status.CONVERGED:
            status, self.met_by_rule = Status.CONVERGED, True
        elif k == self.K:
            status = Status.CONVERGED if k == self.N else Status.MAX_ITERS
        self.save(k, status)
        stop_requested = False
        if self.spec.callback is not None:
            stop_requested = self.spec.callback(
                IterationInfo(
                    iteration=k,
                    residual=residual,
                    t=self.t.copy(),
                    y=ops.stack(self.iterate(k)),
                    critical_path=self.driver.clock,
                    f_evals=self.rhs.evals,
                )
            )
        if stops(stop_requested):
            status = Status.CONVERGED
        if status is not None:
            self.stop(k, status)
        else:
            self.forget(k)  # first: the fine sweep's results need not share memory with it
            if not self.pipelined:
                self.start_fine_sweep(k)

    def update_norm(self, k: int, span: range) -> float:
        """``max |U_n^k - U_n^{k-1}|`` over ``span`` (NaN if any entry is NaN), slice by slice
        with one temporary state; the same number as one reduction over the stacked updates
        (which stacking states of mixed dtypes would promote: then it is computed so)."""
        ops = self.ops
        new = [self.U[(n, k)] for n in span]
        old = [self.value(n, k - 1) for n in span]
        first = getattr(new[0], "dtype", None)
        if any(getattr(x, "dtype", None) != first for x in new + old):
            return ops.max_abs(ops.stack(new) - ops.stack(old))
        norms = [ops.max_abs_diff(a, b) for a, b in zip(new, old, strict=True)]
        return math.nan if any(math.isnan(v) for v in norms) else max(norms)

    def diverged(self, k: int, n: int, where: str) -> None:
        """Say where the first non-finite boundary value appeared, and why if known."""
        self.reason = (f"{where} produced NaN or inf at boundary {n} (t = {self.t[n]:.6g}); "
                       f"the last finite iterate ({max(k - 1, 0)}) is returned")
        # failures of interleaved propagations (not told apart), and those of the tasks that
        # formed this boundary: speculative work elsewhere does not change the reason
        m = n - 1
        keys = [("C", m, k)] if k == 0 else [("C", m, k), ("F", m, k - 1), ("C", m, k - 1)]
        failures = list(self.linalg.failures)
        for key in keys:
            failures += [r for r in self.driver.task_failures.get(key, []) if r not in failures]
        if failures:
            self.reason += ". Propagators reported: " + "; ".join(failures[:3])
        if self.auto_note:
            self.reason += (f". {self.auto_note}: for a large stiff state pass jac= or "
                            "jac_sparsity= (the implicit candidates then apply), or choose "
                            "the coarse propagator by hand")

    def mark_iterate(self) -> None:
        """Record the logical clock and the wall-clock at which an iterate completed."""
        self.path.append(self.driver.clock)
        self.wall_path.append(time.perf_counter() - self.started)

    def iterate_view(self, k: int, residual: float) -> Iterate:
        """What the stopping rule sees of iterate ``k``."""
        defects = None
        if self.rule.needs_fine_defects and k >= 1:  # F(n, k - 1) are kept for this
            defects = tuple(
                0.0 if n < k - 1 else _squared_norm(self.F[(n, k - 1)] - self.value(n + 1, k - 1))
                for n in range(self.N))
        return Iterate(iteration=k, update=residual, t=self.t, ops=self.ops,
                       _value=lambda n: self.value(n, k), fine_defects=defects)

    def forget(self, k: int) -> None:
        """Drop values that no later iterate can need once iterate ``k`` is complete."""
        for store in (self.C, self.F):
            for key in [key for key in store if key[1] < k]:
                del store[key]
        for key in [key for key in self.U if key[1] < k and key[0] > key[1]]:
            del self.U[key]

    def stop(self, k: int, status: Status) -> None:
        self.final = k
        self.status = status
        self.save(k, status)

    # -- checkpoint and restart --------------------------------------------------------------
    def save(self, k: int, status: Status | None) -> None:
        """Checkpoint iterate ``k`` (with the status when the run stops there), once."""
        if self.checkpoint is None or self.saved == (k, status):
            return
        self.checkpoint.save(
            iteration=k,
            y=self.ops.stack(self.iterate(k)),
            residuals=self.residuals[:k],
            critical_path=self.path[: k + 1],
            wall_time=self.wall_path[: k + 1],
            status=status,
            max_iters=self.K,
            coarse_index=self.choice_index,
        )
        self.saved = (k, status)

    def restore(self, state: Checkpoint) -> None:
        """Continue from checkpointed iterate ``k``: its values, history and status.

        The clocks go on from the checkpoint's. Unless the run stops at ``k``, the work that
        iterate ``k + 1`` needs starts as after ``finish_iterate(k)``: ``C(n, k)`` (which the
        interrupted run had computed) and ``F(n, k)`` for ``n >= k``.
        """
        k = state.iteration
        for n, value in enumerate(self.ops.unstack(state.y)):
            self.U[(n, min(n, k))] = value
        self.residuals = list(state.residuals)
        self.path = list(state.critical_path)
        self.wall_path = list(state.wall_time)
        self.driver.clock = self.path[-1]
        self.started -= self.wall_path[-1]
        self.complete.update(range(k + 1))
        self.next_iterate = k + 1
        status = state.status
        if status is Status.MAX_ITERS and k < self.K:
            status = None  # a larger max_iters continues the run
        if status is None and k == self.K:
            status = Status.CONVERGED if k == self.N else Status.MAX_ITERS
        if self.spec.progress:
            print(f"parareal: resumed at iteration {k}/{self.K}", file=sys.stderr)
        if status is not None:
            self.stop(k, status)
            return
        self.save(k, None)
        for n in range(k, self.N):
            self.start_coarse(n, k)
        if self.probe is not None:
            for n in range(k + 1, self.N):
                self.probe_start(n, k)
        self.start_fine_sweep(k)

    # -- coarse="auto" ----------------------------------------------------------------------
    def probe_start(self, n: int, k: int) -> None:
        """Start the probe's work on ``U_n^k`` (``k`` is the probe's base iterate): every
        candidate from it, and at the probe slices the fine and every candidate from the
        perturbed value too (:mod:`parareal.engine.auto`)."""
        probe = self.probe
        assert probe is not None
        if k != probe.base or n <= k or n >= self.N or n in probe.started:
            return
        probe.started.add(n)
        y = self.value(n, k)
        t0, t1 = self.t[n], self.t[n + 1]
        for i, cand in enumerate(probe.candidates):
            self.coarse_calls += self.launch(("P", "G", i, n, 0), cand, y, t0, t1)
        if n in probe.slices:  # relative to each entry (floor: 1e-6 of the largest)
            size = self.ops.to_numpy(y)
            size = np.abs(size)
            size = np.maximum(size, 1e-6 * (size.max() if size.size else 0.0) or 1e-300)
            y1 = y + self.ops.from_numpy(probe.delta * size)
            probe.delta_norm[n] = self.ops.max_abs(y1 - y)
            self.fine_calls += self.launch(("P", "F", 0, n, 1), self.fine, y1, t0, t1,
                                           remote=True, priority=(k, n))
            for i, cand in enumerate(probe.candidates):
                self.coarse_calls += self.launch(("P", "G", i, n, 1), cand, y1, t0, t1)

    def balance_slices(self) -> None:
        """Slices chosen from the work: one loose adaptive solve over the span
        (:meth:`~parareal.ScipyIVP.trajectory` with ``balance``) places the boundaries so that
        every slice holds an equal share of its steps; with ``coarse="auto"`` its values there
        are iterate 0 too. On failure the equal slices stay."""
        assert self.spec.balance is not None
        bounds, states = self.run_alone(SpanSolve(self.spec.balance, self.t, balance=True))
        if bounds is None:
            return
        self.t = np.asarray(bounds, dtype=np.float64)
        values = self.ops.unstack(states)
        if self.auto is not None and all(self.ops.all_finite(v) for v in values):
            values[0] = self.y0
            self.initial = values

    def run_alone(self, propagator: Propagator) -> Any:
        """Run one propagation over the whole span from ``y0``, before any other work, and
        return its result (its ticks and calls count like any others)."""
        self.driver.start(("S", 0), propagator, self.y0, self.t[0], self.t[-1])
        while True:
            for _, value in self.driver.step():
                return value

    def restore_choice(self, index: int) -> None:
        """Go on with the candidate the checkpointed run chose (no new probe)."""
        auto = self.auto
        assert auto is not None
        if not 0 <= index < len(auto.candidates):
            raise ValueError(f"the checkpoint names coarse candidate {index}, but this "
                             f"AutoCoarse has {len(auto.candidates)} candidates")
        self.coarse = auto.candidates[index]
        self.choice_index = index
        self.choice = CoarseChoice(
            propagator=self.coarse,
            reason=f"{self.coarse!r}: chosen by the run that wrote the checkpoint",
            candidates=(), fine_ticks=0, probe_ticks=0)

    def initial_guess(self) -> list[Any] | None:
        """Iterate 0 for ``coarse="auto"``: one adaptive solve over the whole span at a loose
        tolerance (:meth:`AutoCoarse.trajectory`), its values at the boundaries; ``None``
        when it failed (the first coarse sweep then uses :attr:`AutoCoarse.fallback`)."""
        auto = self.auto
        assert auto is not None
        complex_state = (np.dtype(self.ops.dtype).kind == "c" if self.ops.kind == "numpy"
                         else bool(self.y0.is_complex()))
        trajectory = auto.trajectory(self.t, complex_state)
        if trajectory is None:
            return None
        states = self.ops.unstack(self.run_alone(trajectory))
        if not all(self.ops.all_finite(v) for v in states):
            return None
        states[0] = self.y0
        return states

    def probe_finished(self, key: tuple[Any, ...], value: Any) -> None:
        """Keep a probe result; choose the coarse once everything it needs is in."""
        probe = self.probe
        assert probe is not None
        probe.results[key[1:]] = value
        self.probe_try_choose()

    def probe_try_choose(self) -> None:
        probe = self.probe
        if probe is None or probe.chosen:
            return
        b = probe.base
        if len(probe.results) < probe.expected(self.N) or any(
                (n, b) not in self.F for n in range(b, self.N)):
            return
        lengths = {n: self.fine_lengths.get((n, b), 0) for n in range(b, self.N)}
        note = self.auto_note
        tol, rtol = self.rule.update_tolerance()
        choice = self.auto.choose(  # type: ignore[union-attr]
            probe=probe, U={n: self.value(n, b) for n in range(b, self.N)},
            F={n: self.F[(n, b)] for n in range(b, self.N)},
            defects={n: self.ops.max_abs(self.value(n + 1, b) - self.F[(n, b)])
                     for n in range(b + 1, self.N)},
            fine_lengths=lengths, norm=self.ops.max_abs, slices=self.N,
            tol=tol, rtol=rtol, schedule=self.spec.schedule,
            clock=self.driver.clock)
        probe.chosen = True
        if note:
            choice = dataclasses.replace(choice, reason=f"{note}; then {choice.reason}")
        self.choice = choice
        index = next((i for i, c in enumerate(probe.candidates) if c is choice.propagator),
                     None)
        self.choice_index = index
        self.coarse = choice.propagator
        if index is not None:
            for n in range(b + 1, self.N):
                self.C[(n, b)] = probe.results[("G", index, n, 0)]
        deferred, probe.deferred = sorted(probe.deferred), []
        for m, k in deferred:
            self.try_form(m, k)

    # -- main loop -------------------------------------------------------------------------
    def run(self) -> Solution:
        with metered(self.linalg), contextlib.ExitStack() as stack:
            if self.auto is not None:  # candidates that blow up on the probe are expected
                stack.enter_context(np.errstate(over="ignore", invalid="ignore"))
            return self._run()

    def _run(self) -> Solution:
        start = self.started = time.perf_counter()
        try:
            if self.backend.concurrent:
                self.driver.session = open_session(
                    self.backend, self.rhs, self.fine, self.y0, slices=self.N  # type: ignore[arg-type]
                )
            if self.spec.balance is not None:
                self.balance_slices()
            if self.auto is not None and self.resume is not None and (
                    self.resume.coarse_index is not None):
                self.restore_choice(self.resume.coarse_index)
            elif self.auto is not None:
                if self.resume is None and self.initial is None:
                    self.initial = self.initial_guess()
                    if self.initial is None:
                        self.coarse = self.auto.fallback
                        self.auto_note = (
                            f"coarse='auto': the loose initial solve failed, so iterate 0 "
                            f"used {self.coarse!r}")
                        self.choice = CoarseChoice(
                            propagator=self.coarse, reason=self.auto_note, candidates=(),
                            fine_ticks=0, probe_ticks=self.driver.clock)
                base = self.resume.iteration if self.resume is not None else 0
                self.probe = self.auto.probe(ops=self.ops, base=base, slices=self.N,
                                             max_iters=self.K,
                                             scale=self.ops.max_abs(self.y0) or 1.0)
                if self.probe is None:  # nothing to choose: the initial coarse stays
                    self.choice = self.auto.trivial(self.N)
            self.U[(0, 0)] = self.y0
            if self.resume is not None:
                self.restore(self.resume)
            elif self.initial is not None:
                for n in range(1, self.N + 1):
                    self.U[(n, 0)] = self.initial[n]
                if self.probe is None:  # coarse="auto" computes C(n, 0) in its probe
                    for n in range(self.N):
                        self.start_coarse(n, 0)
                if self.probe is not None:
                    for n in range(1, self.N):
                        self.probe_start(n, 0)
                last, self.initial = self.initial[self.N], None  # the values live in U now
                self.set_value(self.N, 0, last)
                if self.pipelined and self.final is None and self.K > 0:
                    self.start_fine_sweep(0)
            else:
                self.set_value(0, 0, self.y0)
            while self.final is None:
                if self.driver.idle:  # pragma: no cover - guards against schedule bugs
                    raise RuntimeError("parareal engine stalled: no task in flight")
                for key, value in self.driver.step():
                    self.on_finished(key, value)
                    if self.final is not None:
                        break
        except BaseException:
            self.driver.close(failed=True)
            raise
        self.driver.close()
        total = time.perf_counter() - start
        k = self.final
        if not self.reason:  # first: the rtol test reads the iterate's values
            self.reason = self.describe_end(k)
        y = self.take_iterate(k)
        driver = self.driver
        f_seconds = self.rhs.seconds
        batching = self.rhs.batching_seconds
        prop_seconds = driver.propagator_seconds
        wall_time = {
            "total": total,
            "f": f_seconds + driver.remote_f_seconds,
            "propagators": prop_seconds,
            "batching": batching,
            "engine": max(total - f_seconds - prop_seconds - batching - driver.wait_seconds, 0.0),
        }
        if self.backend.concurrent:
            wall_time["wait"] = driver.wait_seconds
            wall_time["workers"] = driver.worker_seconds
        linalg = self.linalg.seconds + driver.linalg.seconds
        if self.rhs.jac_calls or linalg:
            wall_time["jacobian"] = self.rhs.jac_seconds
            wall_time["linear_solve"] = linalg
        # fine work on non-finite or garbage values says nothing of the serial fine cost
        serial = self.serial_fine_cost(k) if self.status is not Status.DIVERGED else math.nan
        clock = self.driver.clock
        stats = Stats(
            fine_calls=self.fine_calls,
            coarse_calls=self.coarse_calls,
            f_evals=self.rhs.evals,
            f_calls=self.rhs.calls,
            critical_path=self.driver.clock,
            critical_path_per_iteration=tuple(self.path[: k + 1]),
            wall_time_per_iteration=tuple(self.wall_path[: k + 1]),
            wall_time=wall_time,
            jac_evals=self.rhs.jac_evals,
            jac_calls=self.rhs.jac_calls,
            serial_fine_cost=serial,
            speedup_bound=serial / clock if clock else math.nan,
        )
        return Solution(
            t=self.t.copy(),
            y=y,
            iterations=k,
            converged=self.status is Status.CONVERGED,
            status=self.status,
            residuals=tuple(self.residuals[:k]),
            stats=stats,
            reason=self.reason,
            coarse_choice=self.choice,
            stop_state=self.rule.state(),
        )

    def take_iterate(self, k: int) -> Any:
        """Iterate ``k`` stacked, the run's values dropped as they are copied (the peak is
        the result and one state, not twice the result); the run is over."""
        self.C.clear()
        self.F.clear()
        keys = [(n, min(n, k)) for n in range(self.N + 1)]
        values = [self.U[key] for key in keys]
        self.U.clear()
        return self.ops.stack_consume(values)

    def serial_fine_cost(self, k: int) -> float:
        """Sum over slices of the newest fine propagation's length that fed an iterate the
        run reached (``F(n, j)`` with ``j < k``; speculative pipelined work on later, less
        converged values does not count), or of the newest one at all when none did."""
        best: dict[int, tuple[bool, int]] = {}  # slice -> (fed a reached iterate, j)
        for n, j in self.fine_lengths:
            rank = (j < max(k, 1), j)
            if rank > best.get(n, (False, -1)):
                best[n] = rank
        if len(best) < self.N:
            return math.nan
        return float(sum(self.fine_lengths[(n, j)] for n, (_, j) in best.items()))

    def describe_end(self, k: int) -> str:
        """Why the run stopped at iterate ``k``, in words."""
        if self.status is Status.CONVERGED:
            if k >= self.N:
                return (f"every slice became exact after {k} iterations (the serial fine "
                        "solution, computed without gain)")
            if self.met_by_rule:
                return self.rule.reason()
            return "the callback asked to stop"
        return f"max_iters = {self.K} iterations ran without meeting the tolerance"


def stops(answer: Any) -> bool:
    """True when a callback's ``answer`` asks to stop: ``True``, ``numpy.True_`` or a
    one-element boolean tensor/array holding True (anything else, ``None`` included, goes on)."""
    if answer is True:
        return True
    if isinstance(answer, np.bool_):
        return bool(answer)
    dtype = getattr(answer, "dtype", None)
    if dtype is not None and str(dtype) in ("bool", "torch.bool") and getattr(
            answer, "shape", None) in ((), (1,)):
        return bool(answer)
    return False


def _squared_norm(x: Any) -> float:
    """``sum |x|**2`` over the entries (numpy or torch)."""
    return float((abs(x) ** 2).sum())


def run_parareal(spec: RunSpec) -> Solution:
    """Run Parareal as ``spec`` describes it (see :func:`parareal.solve`).

    On an SPMD backend (``mpi``) only the driving rank runs the iteration; the others serve
    its tasks, and every rank returns the same :class:`Solution` (:meth:`Backend.drive`).
    """
    refuse_lost_gradients(spec.backend, spec.rhs, spec.y0, float(spec.boundaries[0]))
    return spec.backend.drive(lambda: _Run(spec).run(), spec.rhs, spec.fine, spec.y0)
