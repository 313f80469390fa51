"""The tick driver: advances propagations together, one evaluation round per tick.

A *task* is one propagation of one slice. Steppable propagators run as coroutines: every tick,
the driver collects the pending ``(t, y)`` request of each coroutine in flight, hands them all to
the backend in one :meth:`~parareal.backends.Backend.evaluate` call, and sends the results back.
On a backend that ``groups``, tasks of one groupable propagator started in the same tick run as
a single coroutine over their stacked states (one request per group, :class:`Lanes` times).
When the propagator keeps the inherited
:meth:`~parareal.propagators.SteppablePropagator.stepper` (its propagation is ``steps`` equal
sub-steps :meth:`~parareal.propagators.SteppablePropagator.step`), the driver runs the
sub-steps itself and regroups at every sub-step boundary: all propagations of that propagator
that begin a sub-step in the same tick, whether they started in this tick or long ago, advance
as one :class:`_Cohort`. A schedule that starts tasks one by one (pipelined) then costs one
coroutine per propagator and tick, not one per task; every propagation still computes the
same bits (the stacked arithmetic is elementwise) and takes the same ticks.
Opaque propagators (scipy, torchdiffeq), and every propagator on a backend that does not
interleave (serial), run at once through :meth:`~parareal.backends.Backend.propagate`; their
result is released after as many ticks as they called ``f``, so the critical path is the same
either way.

On a concurrent backend, propagations started with ``remote=True`` (the fine ones) become
asynchronous tasks: those started in the same tick are split into at most ``workers``
contiguous groups, queued by priority (oldest iteration, then lowest slice) and submitted while
fewer than ``workers`` are running. The logical clock stays deterministic: a remote propagation
started at tick ``c`` that called ``f`` ``m`` times is released at tick ``c + m``, in the same
order as on the serial backend; to keep that order the driver waits for a task whose release
could come first (it cannot know ``m`` before the task ends), and whenever nothing else can
move it waits for the first task to finish. The driver knows nothing of Parareal.
"""

from __future__ import annotations

import concurrent.futures as cf
import heapq
import math
import time
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backends import Backend, Rhs, Session, Task
from ..propagators import Propagator, Request, SteppablePropagator, Stepper
from ..state import ArrayOps, Lanes

__all__ = ["Driver"]

_INHERITED_STEPPER = SteppablePropagator.stepper
#: Where a finished propagation comes in a tick's results: ``(launch number, index in its
#: group)``, the order in which the flights that ran it were launched.
Order = tuple[int, int]


@dataclass
class _Flight:
    keys: list[Hashable]
    gen: Stepper
    request: Request
    grouped: bool
    seq: int = 0  # launch number: results of a tick come in launch order


def _stepwise(propagator: Propagator) -> bool:
    """True if the driver may run ``propagator``'s sub-steps itself (see :class:`_Cohort`)."""
    return type(propagator).stepper is _INHERITED_STEPPER  # type: ignore[attr-defined]


class _Cohort:
    """Propagations of one step-wise propagator that run their current sub-step together.

    Each lane is one propagation: its key, its place in a tick's results (:data:`Order`), its
    start time ``t0``, sub-step size ``h`` and the index ``i0 + done`` of its current sub-step,
    exactly as :meth:`~parareal.propagators.SteppablePropagator.stepper` computes them
    (``h = (t1 - t0) / steps``, sub-step ``i`` from ``t0 + i * h``), as Python floats for a
    lone lane and as :class:`~parareal.state.Lanes` over a stacked state for several. Between
    changes of its lanes a cohort keeps its stacked state and lanes' arrays: a sub-step costs
    one coroutine and one ``t`` vector.
    """

    __slots__ = ("_h", "_hl", "_i0", "_t0", "done", "gen", "h", "i0", "keys", "left", "orders",
                 "propagator", "request", "rows", "steps", "t0", "y")

    def __init__(self, propagator: SteppablePropagator, keys: list[Hashable],
                 orders: list[Order], t0: list[float], h: list[float], i0: list[int],
                 y: Any, rows: list[Any] | None) -> None:
        self.propagator = propagator
        self.steps = propagator.steps
        self.keys, self.orders, self.t0, self.h, self.i0 = keys, orders, t0, h, i0
        self.y = y  # the (stacked, if several lanes) state, or None while ``rows`` hold it
        self.rows = rows
        self.done = 0  # sub-steps run since the lanes were last changed
        self.left = self.steps - max(i0)  # sub-steps until the first lane finishes
        self._t0 = self._h = self._i0 = self._hl = None
        self.gen: Stepper | None = None
        self.request: Request | None = None

    def begin(self, ops: ArrayOps) -> Stepper:
        """The coroutine of the lanes' current sub-step."""
        if self.y is None:
            rows = self.rows
            self.y = rows[0] if len(rows) == 1 else ops.stack(rows)  # type: ignore[index]
            self.rows = None
        if len(self.keys) == 1:
            h = self.h[0]
            return self.propagator.step(self.y, self.t0[0] + (self.i0[0] + self.done) * h, h)
        if self._hl is None:
            self._t0 = np.array(self.t0, dtype=np.float64)
            self._h = np.array(self.h, dtype=np.float64)
            self._i0 = np.array(self.i0, dtype=np.float64)
            self._hl = Lanes(self._h)
        t = Lanes(self._t0 + (self._i0 + self.done) * self._h)  # type: ignore[operator]
        return self.propagator.step(self.y, t, self._hl)

    def advance(self, y: Any, ops: ArrayOps,
                finished: list[tuple[Order, Hashable, Any]]) -> bool:
        """Take the state after the current sub-step; put finished lanes into ``finished``.

        Returns True if lanes remain.
        """
        self.done += 1
        if self.done < self.left:
            self.y = y
            return True
        single = len(self.keys) == 1
        rows = [y] if single else ops.unstack(y)
        keep = []
        for lane, i0 in enumerate(self.i0):
            if i0 + self.done >= self.steps:
                finished.append((self.orders[lane], self.keys[lane], rows[lane]))
            else:
                keep.append(lane)
        if not keep:
            return False
        self.keys = [self.keys[j] for j in keep]
        self.orders = [self.orders[j] for j in keep]
        self.t0 = [self.t0[j] for j in keep]
        self.h = [self.h[j] for j in keep]
        self.i0 = [self.i0[j] + self.done for j in keep]
        self.rows = [rows[j] for j in keep]
        self.y = None
        self.done = 0
        self.left = self.steps - max(self.i0)
        self._t0 = self._h = self._i0 = self._hl = None
        return True

    @classmethod
    def merge(cls, parts: list[_Cohort], ops: ArrayOps) -> _Cohort:
        """One cohort of the lanes of ``parts`` (cohorts of one propagator), in their order."""
        keys: list[Hashable] = []
        orders: list[Order] = []
        t0: list[float] = []
        h: list[float] = []
        i0: list[int] = []
        pieces: list[Any] = []
        for part in parts:
            keys += part.keys
            orders += part.orders
            t0 += part.t0
            h += part.h
            i0 += [i + part.done for i in part.i0]
            if part.y is None:
                pieces.append(ops.stack(part.rows))  # type: ignore[arg-type]
            elif len(part.keys) == 1:
                pieces.append(part.y[None])
            else:
                pieces.append(part.y)
        return cls(parts[0].propagator, keys, orders, t0, h, i0, ops.concat(pieces), None)


@dataclass
class _Remote:
    """One remote propagation: its key, start order, start tick and what it propagates."""

    key: Hashable
    seq: int
    start: int
    priority: tuple[int, ...]
    y: Any
    t0: float
    t1: float


class Driver:
    """Run propagations in ticks on a backend.

    Parameters
    ----------
    backend : Backend
        Evaluates the requests of each tick.
    rhs : Rhs
        The wrapped right-hand side.
    session : Session, optional
        The run's session on a concurrent backend: remote propagations become its tasks.
    """

    def __init__(self, backend: Backend, rhs: Rhs, session: Session | None = None) -> None:
        self.backend = backend
        self.rhs = rhs
        self.session = session
        self.clock = 0
        self.propagator_seconds = 0.0
        #: Seconds blocked waiting for workers; seconds of tasks on workers, summed; seconds
        #: inside ``f`` on workers, summed.
        self.wait_seconds = 0.0
        self.worker_seconds = 0.0
        self.remote_f_seconds = 0.0
        self._starting: dict[int, tuple[Propagator, list[_Remote]]] = {}
        self._queue: list[tuple[tuple[int, ...], int, Task, list[_Remote]]] = []
        self._running: dict[cf.Future, list[_Remote]] = {}
        self._bounds: list[tuple[int, int]] = []  # (earliest release, seq) of open tasks
        self._open: set[int] = set()
        self._flights: list[_Flight | _Cohort] = []
        self._delayed: list[tuple[int, int, Hashable, Any]] = []
        self._seq = 0
        self._done: list[tuple[Hashable, Any]] = []
        self._pending: dict[int, tuple[Propagator, list[tuple[Hashable, Any, float, float]]]] = {}
        #: Cohorts between two sub-steps, by propagator: they go on in the next tick, merged
        #: with each other and with the propagations of that propagator started meanwhile.
        self._ready: dict[int, list[_Cohort]] = {}
        self._launches = 0  # launch number of the next flight or group

    @property
    def idle(self) -> bool:
        """True when nothing is in flight and no result is waiting."""
        return not (
            self._flights or self._delayed or self._done or self._pending or self._ready
            or self._open
        )

    def start(
        self,
        key: Hashable,
        propagator: Propagator,
        y: Any,
        t0: float,
        t1: float,
        *,
        remote: bool = False,
        priority: tuple[int, ...] = (),
    ) -> None:
        """Start propagating ``y`` from ``t0`` to ``t1``; its result comes back under ``key``.

        ``remote`` propagations run as tasks on the session's workers when there is one;
        ``priority`` orders waiting tasks (smallest first).
        """
        if remote and self.session is not None:
            item = _Remote(key, self._seq, self.clock, priority, y, t0, t1)
            self._seq += 1
            known = propagator.evals
            heapq.heappush(self._bounds, (self.clock + (known or 0), item.seq))
            self._open.add(item.seq)
            self._starting.setdefault(id(propagator), (propagator, []))[1].append(item)
            return
        if self.backend.groups and getattr(propagator, "groupable", False):
            # held until the next tick, so that propagations started together form one group
            entry = self._pending.setdefault(id(propagator), (propagator, []))
            entry[1].append((key, y, t0, t1))
            return
        mark = self._mark()
        if propagator.steppable and self.backend.interleaves:
            self._launch([key], propagator.stepper(y, t0, t1), grouped=False)  # type: ignore[attr-defined]
        else:
            evals = self.rhs.evals
            value = self.backend.propagate(propagator, self.rhs, y, t0, t1)
            release = self.clock + (self.rhs.evals - evals)
            heapq.heappush(self._delayed, (release, self._seq, key, value))
            self._seq += 1
        self._account(mark)

    def _launch(self, keys: list[Hashable], gen: Stepper, *, grouped: bool) -> None:
        seq = self._launches
        self._launches += 1
        try:
            request = next(gen)
        except StopIteration as stop:
            self._finish(keys, stop.value, grouped, self._done)
        else:
            self._flights.append(_Flight(keys, gen, request, grouped, seq))

    def _go_on(self, cohort: _Cohort) -> bool:
        """Begin the cohort's current sub-step; True if it now waits for ``f``.

        A sub-step that calls ``f`` no time ends here: its finished lanes go to the results
        waiting for the next :meth:`step`.
        """
        ops = self.rhs.ops
        while True:
            gen = cohort.begin(ops)
            try:
                cohort.request = next(gen)
            except StopIteration as stop:
                done: list[tuple[Order, Hashable, Any]] = []
                more = cohort.advance(stop.value, ops, done)
                self._done.extend((key, value) for _, key, value in sorted(
                    done, key=lambda item: item[0]))
                if not more:
                    return False
            else:
                cohort.gen = gen
                return True

    def _finish(
        self, keys: list[Hashable], value: Any, grouped: bool, out: list[tuple[Hashable, Any]]
    ) -> None:
        if grouped:
            out.extend(zip(keys, self.rhs.ops.unstack(value), strict=True))
        else:
            out.append((keys[0], value))

    def _start_groups(self) -> None:
        """Start the held propagations, one coroutine per propagator over stacked states.

        Propagations of a step-wise propagator join its cohorts between two sub-steps: all
        run their next sub-step as one cohort.
        """
        mark = self._mark()
        pending, self._pending = self._pending, {}
        ready, self._ready = self._ready, {}
        ops = self.rhs.ops
        for ident, (propagator, items) in pending.items():
            keys = [item[0] for item in items]
            if _stepwise(propagator):
                seq = self._launches
                self._launches += 1
                steps = propagator.steps  # type: ignore[attr-defined]
                t0 = [float(item[2]) for item in items]
                h = [(float(item[3]) - a) / steps for item, a in zip(items, t0, strict=True)]
                ys = [item[1] for item in items]
                new = _Cohort(propagator, keys, [(seq, j) for j in range(len(items))],  # type: ignore[arg-type]
                              t0, h, [0] * len(items), None, ys)
                ready.setdefault(ident, []).append(new)
                continue
            if len(items) == 1:
                _, y, t0, t1 = items[0]
                self._launch(keys, propagator.stepper(y, t0, t1), grouped=False)  # type: ignore[attr-defined]
                continue
            ys = self.rhs.ops.stack([item[1] for item in items])
            t0s = Lanes([item[2] for item in items])
            t1s = Lanes([item[3] for item in items])
            self._launch(keys, propagator.stepper(ys, t0s, t1s), grouped=True)  # type: ignore[attr-defined]
        for parts in ready.values():
            cohort = parts[0] if len(parts) == 1 else _Cohort.merge(parts, ops)
            if self._go_on(cohort):
                self._flights.append(cohort)  # type: ignore[arg-type]
        self._account(mark)

    # -- remote tasks ---------------------------------------------------------------------
    def _submit_started(self) -> None:
        """Queue the remote propagations started since the last tick as at most ``workers``
        contiguous groups per propagator, one task each."""
        starting, self._starting = self._starting, {}
        workers = self.session.workers  # type: ignore[union-attr]
        for propagator, items in starting.values():
            groups = min(workers, len(items))
            size, extra = divmod(len(items), groups)
            begin = 0
            for g in range(groups):
                end = begin + size + (g < extra)
                chunk = items[begin:end]
                begin = end
                task = Task(
                    propagator,
                    [it.y for it in chunk],
                    [it.t0 for it in chunk],
                    [it.t1 for it in chunk],
                )
                for it in chunk:
                    it.y = None  # the task holds the state now
                first = min(chunk, key=lambda it: (it.priority, it.seq))
                heapq.heappush(self._queue, (first.priority, first.seq, task, chunk))
        self._refill()

    def _refill(self) -> None:
        """Submit waiting tasks, highest priority first, while fewer than ``workers`` run.

        Waiting tasks of the same propagator are merged, highest priority first, into one task
        of at most a ``workers``-th of the waiting propagations: when the workers cannot keep
        up (the pipelined schedule starts slices one by one), a worker takes its share as one
        batched group instead of paying the hand-over of a task per slice. Each propagation
        keeps its own start tick and length on the logical clock.
        """
        session = self.session
        workers = session.workers  # type: ignore[union-attr]
        while self._queue and len(self._running) < workers:
            _, _, task, chunk = heapq.heappop(self._queue)
            waiting = len(chunk) + sum(len(entry[3]) for entry in self._queue)
            share = -(-waiting // workers)
            while (self._queue and self._queue[0][2].propagator is task.propagator
                   and len(chunk) + len(self._queue[0][3]) <= share):
                _, _, more, extra = heapq.heappop(self._queue)
                task = Task(task.propagator, task.ys + more.ys, task.t0s + more.t0s,
                            task.t1s + more.t1s)
                chunk = chunk + extra
            self._running[session.submit(task)] = chunk  # type: ignore[union-attr]

    def _collect(self, block: bool) -> None:
        """Take in finished tasks (waiting for the first one if ``block``), then refill."""
        if block:
            if not self._running:  # pragma: no cover - guards against driver bugs
                raise RuntimeError("parareal driver stalled: waiting with no task running")
            begin = time.perf_counter()
            done, _ = cf.wait(list(self._running), return_when=cf.FIRST_COMPLETED)
            self.wait_seconds += time.perf_counter() - begin
        else:
            done = {future for future in self._running if future.done()}
        for future in sorted(done, key=lambda fut: self._running[fut][0].seq):
            chunk = self._running.pop(future)
            result = self.session.result(future)  # type: ignore[union-attr]
            self.rhs.evals += result.f_evals
            self.rhs.calls += result.f_calls
            self.remote_f_seconds += result.f_seconds
            self.worker_seconds += result.seconds
            for item, value, evals in zip(chunk, result.values, result.evals, strict=True):
                heapq.heappush(self._delayed, (item.start + evals, item.seq, item.key, value))
                self._open.discard(item.seq)
        self._refill()

    def _earliest_open(self) -> float:
        """The earliest tick at which an unfinished remote propagation could be released."""
        while self._bounds and self._bounds[0][1] not in self._open:
            heapq.heappop(self._bounds)
        return self._bounds[0][0] if self._bounds else math.inf

    def _resolve(self, clock: int) -> None:
        """Wait until every remote propagation that could be released by ``clock`` is back."""
        while self._earliest_open() <= clock:
            self._collect(block=True)

    def step(self) -> list[tuple[Hashable, Any]]:
        """Advance by one tick (or to the next delayed release) and return finished tasks."""
        if self._pending or self._ready:
            self._start_groups()
        if self._starting:
            self._submit_started()
        if self._running:
            self._collect(block=False)
        finished, self._done = self._done, []
        if finished:
            return finished
        if self._flights:
            if len(self._flights) == 1 and not (self._delayed or self._open):
                return self._run_alone()
            flights = self._flights
            results = self.backend.evaluate(self.rhs, [fl.request for fl in flights])
            self.clock += 1
            mark = self._mark()
            self._flights = []
            ended: list[tuple[Order, Hashable, Any]] = []
            ops = self.rhs.ops
            for flight, dy in zip(flights, results, strict=True):
                try:
                    flight.request = flight.gen.send(dy)
                except StopIteration as stop:
                    if type(flight) is _Cohort:
                        if flight.advance(stop.value, ops, ended):
                            self._ready.setdefault(id(flight.propagator), []).append(flight)
                    elif flight.grouped:
                        ended.extend(((flight.seq, j), key, value) for j, (key, value) in
                                     enumerate(zip(flight.keys, ops.unstack(stop.value),
                                                   strict=True)))
                    else:
                        ended.append(((flight.seq, 0), flight.keys[0], stop.value))
                else:
                    self._flights.append(flight)
            if ended:
                if len(ended) > 1:
                    ended.sort(key=lambda item: item[0])
                finished.extend((key, value) for _, key, value in ended)
            self._account(mark)
            if self._open:
                self._resolve(self.clock)
        elif self._delayed or self._open:
            # nothing moves here: the next release is the earliest one, once no unfinished
            # task could come before it
            while not self._delayed or self._delayed[0][0] >= self._earliest_open():
                self._collect(block=True)
            self.clock = max(self.clock, self._delayed[0][0])
        while self._delayed and self._delayed[0][0] <= self.clock:
            _, _, key, value = heapq.heappop(self._delayed)
            finished.append((key, value))
        return finished

    def _run_alone(self) -> list[tuple[Hashable, Any]]:
        """Run the only propagation in flight to its end, one tick per request.

        Nothing else is in flight, delayed or out on workers, so nothing can finish (and start
        more work) before it does: ticking it here in a loop makes the same calls of
        :meth:`~parareal.backends.Backend.evaluate` and reaches the same clock as one tick per
        :meth:`step`, without the round trips.
        """
        flight = self._flights[0]
        evaluate, rhs = self.backend.evaluate, self.rhs
        clock = time.perf_counter
        cohort = flight if type(flight) is _Cohort else None
        while True:
            send = flight.gen.send
            request = flight.request
            try:
                while True:
                    dy = evaluate(rhs, [request])[0]
                    self.clock += 1
                    start = clock()
                    try:
                        request = send(dy)
                    finally:
                        self.propagator_seconds += clock() - start
            except StopIteration as stop:
                self._flights = []
                finished: list[tuple[Hashable, Any]] = []
                if cohort is None:
                    self._finish(flight.keys, stop.value, flight.grouped, finished)
                    return finished
                # a cohort between two sub-steps: nothing can join it before a lane finishes
                mark = self._mark()
                ended: list[tuple[Order, Hashable, Any]] = []
                more = cohort.advance(stop.value, rhs.ops, ended)
                if ended or not more:
                    if more:
                        self._ready[id(cohort.propagator)] = [cohort]
                    finished.extend((key, value) for _, key, value in sorted(
                        ended, key=lambda item: item[0]))
                    self._account(mark)
                    return finished
                going = self._go_on(cohort)
                self._account(mark)
                if not going or self._done:  # pragma: no cover - sub-steps without f calls
                    if going:
                        self._flights = [cohort]  # type: ignore[list-item]
                    return finished
                self._flights = [cohort]  # type: ignore[list-item]

    def close(self, failed: bool = False) -> None:
        """Abandon everything in flight; close the session (its workers stop).

        ``failed`` says that the run ends with an exception.
        """
        for flight in self._flights:
            flight.gen.close()  # type: ignore[union-attr]
        self._flights.clear()
        self._ready.clear()
        self._delayed.clear()
        self._done.clear()
        self._pending.clear()
        self._starting.clear()
        self._queue.clear()
        self._running.clear()
        self._open.clear()
        self._bounds.clear()
        if self.session is not None:
            self.session.close(failed)

    def _mark(self) -> tuple[float, float, float]:
        return time.perf_counter(), self.rhs.seconds, self.rhs.batching_seconds

    def _account(self, mark: tuple[float, float, float]) -> None:
        """Add the time since ``mark`` minus the time spent in ``f`` and in batching."""
        start, f_seconds, batching = mark
        elapsed = time.perf_counter() - start
        outside = (self.rhs.seconds - f_seconds) + (self.rhs.batching_seconds - batching)
        self.propagator_seconds += elapsed - outside
