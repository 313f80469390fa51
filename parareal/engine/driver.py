"""The tick driver: advances propagations together, one evaluation round per tick.

A *task* is one propagation of one slice. Steppable propagators run as coroutines: every tick,
the driver collects the pending ``(t, y)`` request of each coroutine in flight, hands them all to
the backend in one :meth:`~parareal.backends.Backend.evaluate` call, and sends the results back.
On a backend that ``groups``, tasks of one groupable propagator started in the same tick run as
a single coroutine over their stacked states (one request per group, :class:`Lanes` times).
Opaque propagators (scipy, torchdiffeq), and every propagator on a backend that does not
interleave (serial), run at once through :meth:`~parareal.backends.Backend.propagate`; their
result is released after as many ticks as they called ``f``, so the critical path is the same
either way. The driver knows nothing of Parareal.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from ..backends import Backend, Rhs
from ..propagators import Propagator, Request, Stepper
from ..state import Lanes

__all__ = ["Driver"]


@dataclass
class _Flight:
    keys: list[Hashable]
    gen: Stepper
    request: Request
    grouped: bool


class Driver:
    """Run propagations in ticks on a backend.

    Parameters
    ----------
    backend : Backend
        Evaluates the requests of each tick.
    rhs : Rhs
        The wrapped right-hand side.
    """

    def __init__(self, backend: Backend, rhs: Rhs) -> None:
        self.backend = backend
        self.rhs = rhs
        self.clock = 0
        self.propagator_seconds = 0.0
        self._flights: list[_Flight] = []
        self._delayed: list[tuple[int, int, Hashable, Any]] = []
        self._seq = 0
        self._done: list[tuple[Hashable, Any]] = []
        self._pending: dict[int, tuple[Propagator, list[tuple[Hashable, Any, float, float]]]] = {}

    @property
    def idle(self) -> bool:
        """True when nothing is in flight and no result is waiting."""
        return not (self._flights or self._delayed or self._done or self._pending)

    def start(self, key: Hashable, propagator: Propagator, y: Any, t0: float, t1: float) -> None:
        """Start propagating ``y`` from ``t0`` to ``t1``; its result comes back under ``key``."""
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

    def step(self) -> list[tuple[Hashable, Any]]:
        """Advance by one tick (or to the next delayed release) and return finished tasks."""
        if self._pending:
            self._start_groups()
        finished, self._done = self._done, []
        if finished:
            return finished
        if self._flights:
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
        elif self._delayed:
            self.clock = max(self.clock, self._delayed[0][0])
        while self._delayed and self._delayed[0][0] <= self.clock:
            _, _, key, value = heapq.heappop(self._delayed)
            finished.append((key, value))
        return finished

    def close(self) -> None:
        """Abandon everything in flight."""
        for flight in self._flights:
            flight.gen.close()
        self._flights.clear()
        self._delayed.clear()
        self._done.clear()
        self._pending.clear()

    def _mark(self) -> tuple[float, float, float]:
        return time.perf_counter(), self.rhs.seconds, self.rhs.batching_seconds

    def _account(self, mark: tuple[float, float, float]) -> None:
        """Add the time since ``mark`` minus the time spent in ``f`` and in batching."""
        start, f_seconds, batching = mark
        elapsed = time.perf_counter() - start
        outside = (self.rhs.seconds - f_seconds) + (self.rhs.batching_seconds - batching)
        self.propagator_seconds += elapsed - outside
