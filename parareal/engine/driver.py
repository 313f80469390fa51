"""The tick driver: advances propagations together, one evaluation round per tick.

A *task* is one propagation of one slice. Steppable propagators run as coroutines: every tick,
the driver collects the pending ``(t, y)`` request of each coroutine in flight, hands them all to
the backend in one :meth:`~parareal.backends.Backend.evaluate` call, and sends the results back.
On a backend that ``groups``, tasks of one groupable propagator started in the same tick run as
a single coroutine over their stacked states (one request per group, :class:`Lanes` times).
When the propagator keeps the inherited
:meth:`~parareal.propagators.SteppablePropagator.stepper` (its propagation is ``steps`` equal
sub-steps :meth:`~parareal.propagators.SteppablePropagator.step`), the driver runs the
sub-steps itself and regroups at every sub-step boundary: all propagations of one step kind
(:meth:`~parareal.propagators.SteppablePropagator.step_kind`: a fine ``RK4(20)`` and a coarse
``RK4(1)`` are one kind) that begin a sub-step in the same tick, whether they started in this
tick or long ago, advance as one :class:`_Cohort`. A schedule that starts tasks one by one
(pipelined) then costs one coroutine per kind and tick, not one per task; every propagation
still computes the same bits (the stacked arithmetic is elementwise) and takes the same ticks,
and the results of a tick come in the order in which their propagations were launched. A lone
propagation of one sub-step, which can meet no other, runs as its own ``stepper`` coroutine,
and a cohort whose lanes all go on past a sub-step starts the next one at once.
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

import bisect
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
from ..propagators.base import ended as coroutine_value
from ..propagators.linalg import LinalgMeter, current_meter
from ..state import ArrayOps, Lanes, is_torch

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


def _clone(x: Any) -> Any:
    return x.clone()


def _stepwise(propagator: Propagator) -> bool:
    """True if the driver may run ``propagator``'s sub-steps itself (see :class:`_Cohort`)."""
    return type(propagator).stepper is _INHERITED_STEPPER  # type: ignore[attr-defined]


def _kind(propagator: Propagator) -> Hashable:
    """Step-wise propagators of one kind run their sub-steps together (``step_kind``)."""
    try:
        kind = propagator.step_kind()  # type: ignore[attr-defined]
        hash(kind)
    except TypeError:  # unhashable settings: only the propagator itself
        return id(propagator)
    return kind


class _Cohort:
    """Propagations of step-wise propagators of one kind that run their current sub-step
    together (:meth:`~parareal.propagators.SteppablePropagator.step_kind`).

    Each lane is one propagation: its key, its place in a tick's results (:data:`Order`) and a
    row of ``lanes`` (float64): the count of the cohort's sub-steps (``done``) at which it
    ends, its start time ``t0``, sub-step size ``h``, and ``i0``, such that its current
    sub-step is ``i0 + done``. ``h`` and the sub-step's time ``t0 + i * h`` are exactly what
    :meth:`~parareal.propagators.SteppablePropagator.stepper` computes: Python floats for a
    lone lane, :class:`~parareal.state.Lanes` over a stacked state for several (the same
    float64 operations lane by lane).

    Lanes are kept in the order of their ends, so that the lanes that end at a sub-step are
    the first rows: the others go on with views of the rest (``y[c:]``, ``lanes[c:]``). Between
    changes of its lanes a sub-step costs one coroutine and one vector of times.
    """

    __slots__ = ("_lanes", "done", "ends", "gen", "hl", "i0", "keys", "kind", "one", "orders",
                 "propagator", "request", "same_i", "t0", "y")

    def __init__(self, propagator: SteppablePropagator, kind: Hashable, keys: list[Hashable],
                 orders: list[Order], lanes: np.ndarray | None, y: Any, done: int,
                 ends: list[int] | None = None,
                 one: tuple[float, float, float, float] | None = None) -> None:
        self.propagator = propagator  # one of the kind: it runs every lane's sub-steps
        self.kind = kind
        self.keys, self.orders = keys, orders
        self._lanes = lanes  # (size, 4): end, t0, h, i0; ends ascending (None: see ``one``)
        self.one = one  # the row of a lone lane, as Python floats (a cheap path)
        self.same_i = False  # True if every lane has the same i0 (they started together)
        # with ``hl``: the contiguous columns t0, h and i0 of several lanes, made by begin
        self.t0: np.ndarray | None = None
        self.i0: np.ndarray | float = 0.0
        self.ends = [int(end) for end in lanes[:, 0].tolist()] if ends is None else ends
        self.y = y  # stacked along a leading axis if several lanes
        self.done = done
        self.hl: Lanes | None = None
        self.gen: Stepper | None = None
        self.request: Request | None = None

    @property
    def lanes(self) -> np.ndarray:
        """The lanes' rows ``(end, t0, h, i0)`` as a float64 array."""
        if self._lanes is None:
            self._lanes = np.array([self.one], dtype=np.float64)
        return self._lanes

    def begin(self) -> Stepper:
        """The coroutine of the lanes' current sub-step."""
        if len(self.keys) == 1:
            one = self.one
            if one is None:
                one = self.one = tuple(self._lanes[0].tolist())  # type: ignore[index]
            _, t0, h, i0 = one
            return self.propagator.step(self.y, t0 + (i0 + self.done) * h, h)
        hl = self.hl
        if hl is None:
            lanes = self._lanes
            hl = self.hl = Lanes(lanes[:, 2].copy())  # type: ignore[index]
            self.t0 = lanes[:, 1].copy()  # type: ignore[index]
            # lanes started together have one sub-step index: a float, one operation less
            self.i0 = float(lanes[0, 3]) if self.same_i else lanes[:, 3].copy()  # type: ignore[index]
        return self.propagator.step(self.y, Lanes(self.t0 + (self.i0 + self.done) * hl.values),
                                    hl)

    def advance(self, y: Any, finished: list[tuple[Order, Hashable, Any]]) -> bool:
        """Take the state after the current sub-step; put finished lanes into ``finished``.

        Returns True if lanes remain.
        """
        self.done = done = self.done + 1
        ends = self.ends
        if done < ends[0]:
            self.y = y
            return True
        keys, orders = self.keys, self.orders
        size = len(keys)
        if size == 1:
            finished.append((orders[0], keys[0], y))
            return False
        c = bisect.bisect_right(ends, done)
        if c == size:
            for j in range(c):
                finished.append((orders[j], keys[j], y[j]))
            return False
        # copies of the finished rows and of the rest: the buffer of this sub-step is freed
        # now, not kept whole while any of its rows lives (no larger than the sub-step's peak)
        copy = _clone if is_torch(y) else np.copy
        for j in range(c):
            finished.append((orders[j], keys[j], copy(y[j])))
        self.keys, self.orders, self.ends = keys[c:], orders[c:], ends[c:]
        self._lanes = self._lanes[c:]  # type: ignore[index]
        self.y = copy(y[c] if size - c == 1 else y[c:])
        self.hl = None
        return True

    def at(self, done: int) -> np.ndarray:
        """The lanes' rows with their ends and offsets counted from ``done``."""
        shift = done - self.done
        if not shift:
            return self.lanes
        lanes = self.lanes.copy()
        lanes[:, 0] += shift
        lanes[:, 3] -= shift
        return lanes

    @classmethod
    def merge(cls, parts: list[_Cohort], done: int, ops: ArrayOps) -> _Cohort:
        """One cohort at ``done`` of the lanes of ``parts`` (cohorts of one kind between two
        sub-steps), in the order of their ends."""
        shift = [done - part.done for part in parts]
        parts = [part for _, part in sorted(
            zip(shift, parts, strict=True),
            key=lambda sp: (sp[1].ends[0] + sp[0], sp[1].ends[-1] + sp[0]))]
        keys: list[Hashable] = []
        orders: list[Order] = []
        for part in parts:
            keys += part.keys
            orders += part.orders
        lanes = np.concatenate([part.at(done) for part in parts])
        y = ops.concat([part.y if len(part.keys) > 1 else part.y[None] for part in parts])
        ends = lanes[:, 0]
        if (ends[1:] < ends[:-1]).any():  # interleaved ends: sort the rows
            rows = np.argsort(ends, kind="stable")
            lanes = lanes[rows]
            rows = rows.tolist()
            keys = [keys[j] for j in rows]
            orders = [orders[j] for j in rows]
            y = y[rows]
        first = parts[0]
        return cls(first.propagator, first.kind, keys, orders, lanes, y, done)


def _join(kind: Hashable, cohort: _Cohort | None, fresh: list[tuple[Propagator, int, list]],
          ops: ArrayOps) -> _Cohort:
    """``cohort`` (or none) with the propagations ``fresh`` started since the last tick: for
    each propagator, its launch number and items ``(key, y, t0, t1)``.

    New propagations of one propagator all end at the same count: they go before the
    cohort's lanes if they end no later than its first, after them if no earlier than its
    last (the usual cases: one concatenation); otherwise the general :meth:`_Cohort.merge`
    sorts the rows.
    """
    if cohort is None and len(fresh) == 1 and len(fresh[0][2]) == 1:  # one new lane alone
        propagator, seq, ((key, y, t0, t1),) = fresh[0]
        steps = propagator.steps  # type: ignore[attr-defined]
        t0 = float(t0)
        return _Cohort(propagator, kind, [key], [(seq, 0)], None, y, 0,  # type: ignore[arg-type]
                       [steps], (steps, t0, (float(t1) - t0) / steps, 0))
    done = 0 if cohort is None else cohort.done
    groups = [(done + propagator.steps, propagator, seq, items)  # type: ignore[attr-defined]
              for propagator, seq, items in fresh]
    if len(groups) > 1:
        groups.sort(key=lambda group: group[0])  # stable: launch order among equal ends
    nf = 0  # new lanes before the cohort's
    if cohort is not None:
        first, last = cohort.ends[0], cohort.ends[-1]
        for end, _, _, items in groups:
            if end <= first:
                nf += len(items)
            elif end < last:  # some new lanes end among the cohort's lanes
                parts = [cohort] + [_join(kind, None, [group[1:]], ops) for group in groups]
                return _Cohort.merge(parts, done, ops)
    rows: list[tuple[float, float, float, float]] = []
    keys: list[Hashable] = []
    orders: list[Order] = []
    ys: list[Any] = []
    ends: list[int] = []
    for end, propagator, seq, items in groups:
        steps = propagator.steps  # type: ignore[attr-defined]
        j = 0
        for key, y, t0, t1 in items:
            t0 = float(t0)
            rows.append((end, t0, (float(t1) - t0) / steps, -done))
            keys.append(key)
            orders.append((seq, j))
            ys.append(y)
            j += 1
        ends += [end] * j
    new = np.array(rows, dtype=np.float64)
    if cohort is None:
        y = ys[0] if len(ys) == 1 else ops.stack(ys)
        cohort = _Cohort(groups[0][1], kind, keys, orders, new, y, done, ends)  # type: ignore[arg-type]
        cohort.same_i = True  # every new lane begins at sub-step 0
        return cohort
    pieces = [y[None] for y in ys]
    pieces.insert(nf, cohort.y if len(cohort.keys) > 1 else cohort.y[None])
    return _Cohort(cohort.propagator, kind, keys[:nf] + cohort.keys + keys[nf:],
                   orders[:nf] + cohort.orders + orders[nf:],
                   np.concatenate((new[:nf], cohort.lanes, new[nf:])), ops.concat(pieces),
                   done, ends[:nf] + cohort.ends + ends[nf:])


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


def _count_error(where: str, expected: int, values: int, lengths: int | None = None) -> TypeError:
    """A backend answered with the wrong number of results."""
    got = f"{values} results" + ("" if lengths is None else f" and {lengths} lengths")
    return TypeError(
        f"backend error: {where} returned {got} for {expected} requests; a backend must "
        "return exactly one result per request, in the order of the requests"
    )


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
        #: Failures reported by propagations run whole (opaque ones, remote tasks), by key;
        #: those of interleaved propagations stay in the run's meter.
        self.task_failures: dict[Hashable, list[str]] = {}
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
        #: Cohorts between two sub-steps, by kind: they go on in the next tick, merged with
        #: each other and with the propagations of that kind started meanwhile.
        self._ready: dict[Hashable, list[_Cohort]] = {}
        #: Number of the step kind of each groupable propagator seen (None: it runs its own
        #: ``stepper``).
        self._kinds: dict[int, tuple[Propagator, int | None]] = {}
        self._kind_numbers: dict[Hashable, int] = {}
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
            path = self.rhs.path
            meter = current_meter()
            before = len(meter.failures) if meter is not None else 0
            value = self.backend.propagate(propagator, self.rhs, y, t0, t1)
            if meter is not None and len(meter.failures) > before:  # this task's failures
                self.task_failures[key] = meter.failures[before:]
                del meter.failures[before:]
            release = self.clock + (self.rhs.path - path)
            heapq.heappush(self._delayed, (release, self._seq, key, value))
            self._seq += 1
        self._account(mark)

    def deliver(self, key: Hashable, value: Any) -> None:
        """Return ``value`` under ``key`` at the next :meth:`step`, with no work and no tick
        (a result computed earlier, e.g. by a probe)."""
        self._done.append((key, value))

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
        while True:
            gen = cohort.begin()
            try:
                cohort.request = next(gen)
            except StopIteration as stop:
                done: list[tuple[Order, Hashable, Any]] = []
                more = cohort.advance(stop.value, done)
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
        if len(pending) == 1 and not self._ready:  # the usual start of a lone propagation
            ident, (propagator, items) = next(iter(pending.items()))
            known = self._kinds.get(ident)
            if (len(items) == 1 and known is not None and known[0] is propagator
                    and (known[1] is None or propagator.steps == 1)):  # type: ignore[attr-defined]
                key, y, t0, t1 = items[0]
                self._launch([key], propagator.stepper(y, t0, t1), grouped=False)  # type: ignore[attr-defined]
                self._account(mark)
                return
        ready, self._ready = self._ready, {}
        fresh: dict[Hashable, list[tuple[Propagator, int, list]]] = {}
        ops = self.rhs.ops
        for ident, (propagator, items) in pending.items():
            known = self._kinds.get(ident)
            if known is None or known[0] is not propagator:
                kind = None
                if _stepwise(propagator):  # kinds are numbered: cheap dictionary keys
                    kind = self._kind_numbers.setdefault(_kind(propagator),
                                                         len(self._kind_numbers))
                known = self._kinds[ident] = (propagator, kind)
            if (known[1] is not None and len(items) == 1 and not ready and len(pending) == 1
                    and propagator.steps == 1):  # type: ignore[attr-defined]
                known = (propagator, None)  # one sub-step, nothing to meet: as below
            if known[1] is not None:
                fresh.setdefault(known[1], []).append((propagator, self._launches, items))
                self._launches += 1
                continue
            keys = [item[0] for item in items]
            if len(items) == 1:
                _, y, t0, t1 = items[0]
                self._launch(keys, propagator.stepper(y, t0, t1), grouped=False)  # type: ignore[attr-defined]
                continue
            ys = self.rhs.ops.stack([item[1] for item in items])
            t0s = Lanes([item[2] for item in items])
            t1s = Lanes([item[3] for item in items])
            self._launch(keys, propagator.stepper(ys, t0s, t1s), grouped=True)  # type: ignore[attr-defined]
        for kind in [*ready, *(kind for kind in fresh if kind not in ready)]:
            parts = ready.get(kind)
            if parts is None:
                cohort = None
            elif len(parts) == 1:
                cohort = parts[0]
            else:  # pragma: no cover - cohorts of one kind are merged every tick
                cohort = _Cohort.merge(parts, max(parts, key=lambda p: len(p.keys)).done, ops)
            if kind in fresh:
                cohort = _join(kind, cohort, fresh[kind], ops)
            if self._go_on(cohort):  # type: ignore[arg-type]
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
            self.rhs.jac_evals += result.jac_evals
            self.rhs.jac_calls += result.jac_calls
            self.rhs.jac_seconds += result.jac_seconds
            if result.linalg is not None:
                failures, result.linalg.failures = result.linalg.failures, []
                self.linalg.merge(result.linalg)
                for item in chunk:  # a task's failures, told of each of its propagations
                    self.task_failures.setdefault(item.key, []).extend(failures)
            self.remote_f_seconds += result.f_seconds
            self.worker_seconds += result.seconds
            if not len(result.values) == len(result.evals) == len(chunk):
                raise _count_error(f"a task of {self.backend!r}", len(chunk),
                                   len(result.values), len(result.evals))
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
            if len(results) != len(flights):
                raise _count_error(f"{self.backend!r}.evaluate", len(flights), len(results))
            self.clock += 1
            mark = self._mark()
            self._flights = []
            ended: list[tuple[Order, Hashable, Any]] = []
            ops = self.rhs.ops
            for i, flight in enumerate(flights):
                dy, results[i] = results[i], None
                flight.request = None  # the stage's input is freed once the step is past it
                try:
                    flight.request = flight.gen.send(dy)
                except StopIteration as stop:
                    if type(flight) is _Cohort:
                        if flight.advance(stop.value, ended):
                            self._ready.setdefault(flight.kind, []).append(flight)
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
        """Run the only flight to its end (a cohort: until one of its lanes ends), one tick
        per request.

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
                    answer = evaluate(rhs, [request])
                    if len(answer) != 1:
                        raise _count_error(f"{self.backend!r}.evaluate", 1, len(answer))
                    dy = answer[0]
                    request = flight.request = None  # freed once the step is past it
                    self.clock += 1
                    start = clock()
                    try:
                        request = send(dy)
                    finally:
                        self.propagator_seconds += clock() - start
            except StopIteration as stop:
                coroutine_value(flight.gen, stop)  # f's own StopIteration raises here
                if cohort is not None and cohort.done + 1 < cohort.ends[0]:
                    # no lane ends at this sub-step (and nothing can join): the next one now
                    start = clock()
                    cohort.done += 1
                    cohort.y = stop.value
                    gen = cohort.begin()
                    try:
                        cohort.request = next(gen)
                    except StopIteration:  # pragma: no cover - a sub-step without f calls
                        cohort.done -= 1  # the general path below takes it
                    else:
                        cohort.gen = gen
                        self.propagator_seconds += clock() - start
                        continue
                self._flights = []
                finished: list[tuple[Hashable, Any]] = []
                if cohort is None:
                    self._finish(flight.keys, stop.value, flight.grouped, finished)
                    return finished
                # a cohort between two sub-steps: nothing can join it before a lane finishes
                mark = self._mark()
                ended: list[tuple[Order, Hashable, Any]] = []
                more = cohort.advance(stop.value, ended)
                if ended or not more:
                    if more:
                        self._ready[cohort.kind] = [cohort]
                    if len(ended) == 1:
                        finished.append(ended[0][1:])
                    else:
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
