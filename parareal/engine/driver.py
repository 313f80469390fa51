"""The tick driver: advances propagations together, one evaluation round per tick.

A *task* is one propagation of one slice. Steppable propagators run as coroutines: every tick,
the driver collects the pending ``(t, y)`` request of each coroutine in flight, hands them all to
the backend in one :meth:`~parareal.backends.Backend.evaluate` call, and sends the results back.
On a backend that ``groups``, tasks of one groupable propagator started in the same tick run as
a single coroutine over their stacked states (one request per group, :class:`Lanes` times).
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

from ..backends import Backend, Rhs, Session, Task
from ..propagators import Propagator, Request, Stepper
from ..propagators.linalg import LinalgMeter
from ..state import Lanes

__all__ = ["Driver"]


@dataclass
class _Flight:
    keys: list[Hashable]
    gen: Stepper
    request: Request
    grouped: bool


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
        #: Linear algebra of the implicit propagators run on workers (seconds, failures).
        self.linalg = LinalgMeter()
        self._starting: dict[int, tuple[Propagator, list[_Remote]]] = {}
        self._queue: list[tuple[tuple[int, ...], int, Task, list[_Remote]]] = []
        self._running: dict[cf.Future, list[_Remote]] = {}
        self._bounds: list[tuple[int, int]] = []  # (earliest release, seq) of open tasks
        self._open: set[int] = set()
        self._flights: list[_Flight] = []
        self._delayed: list[tuple[int, int, Hashable, Any]] = []
        self._seq = 0
        self._done: list[tuple[Hashable, Any]] = []
        self._pending: dict[int, tuple[Propagator, list[tuple[Hashable, Any, float, float]]]] = {}

    @property
    def idle(self) -> bool:
        """True when nothing is in flight and no result is waiting."""
        return not (
            self._flights or self._delayed or self._done or self._pending or self._open
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
            path = self.rhs.path
            value = self.backend.propagate(propagator, self.rhs, y, t0, t1)
            release = self.clock + (self.rhs.path - path)
            heapq.heappush(self._delayed, (release, self._seq, key, value))
            self._seq += 1
        self._account(mark)

    def deliver(self, key: Hashable, value: Any) -> None:
        """Return ``value`` under ``key`` at the next :meth:`step`, with no work and no tick
        (a result computed earlier, e.g. by a probe)."""
        self._done.append((key, value))

    def _launch(self, keys: list[Hashable], gen: Stepper, *, grouped: bool) -> None:
        try:
            request = next(gen)
        except StopIteration as stop:
            self._finish(keys, stop.value, grouped, self._done)
        else:
            self._flights.append(_Flight(keys, gen, request, grouped))

    def _finish(
        self, keys: list[Hashable], value: Any, grouped: bool, out: list[tuple[Hashable, Any]]
    ) -> None:
        if grouped:
            out.extend(zip(keys, self.rhs.ops.unstack(value), strict=True))
        else:
            out.append((keys[0], value))

    def _start_groups(self) -> None:
        """Start the held propagations, one coroutine per propagator over stacked states."""
        mark = self._mark()
        pending, self._pending = self._pending, {}
        for propagator, items in pending.values():
            keys = [item[0] for item in items]
            if len(items) == 1:
                _, y, t0, t1 = items[0]
                self._launch(keys, propagator.stepper(y, t0, t1), grouped=False)  # type: ignore[attr-defined]
                continue
            ys = self.rhs.ops.stack([item[1] for item in items])
            t0s = Lanes([item[2] for item in items])
            t1s = Lanes([item[3] for item in items])
            self._launch(keys, propagator.stepper(ys, t0s, t1s), grouped=True)  # type: ignore[attr-defined]
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
            self.rhs.jac_evals += result.jac_evals
            self.rhs.jac_calls += result.jac_calls
            self.rhs.jac_seconds += result.jac_seconds
            if result.linalg is not None:
                self.linalg.merge(result.linalg)
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
        if self._pending:
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
            for flight, dy in zip(flights, results, strict=True):
                try:
                    flight.request = flight.gen.send(dy)
                except StopIteration as stop:
                    self._finish(flight.keys, stop.value, flight.grouped, finished)
                else:
                    self._flights.append(flight)
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
        evaluate, rhs, send = self.backend.evaluate, self.rhs, flight.gen.send
        clock = time.perf_counter
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
            self._finish(flight.keys, stop.value, flight.grouped, finished)
            return finished

    def close(self, failed: bool = False) -> None:
        """Abandon everything in flight; close the session (its workers stop).

        ``failed`` says that the run ends with an exception.
        """
        for flight in self._flights:
            flight.gen.close()
        self._flights.clear()
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
