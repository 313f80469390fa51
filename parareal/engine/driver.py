"""The tick driver: advances propagations together, one evaluation round per tick.

A *task* is one propagation of one slice. Steppable propagators run as coroutines: every tick,
the driver collects the pending ``(t, y)`` request of each coroutine in flight, hands them all to
the backend in one :meth:`~parareal.backends.Backend.evaluate` call, and sends the results back.
Opaque propagators (scipy, torchdiffeq) run at once through
:meth:`~parareal.backends.Backend.propagate`; their result is released after as many ticks as
they called ``f``, so the critical path counts them too. The driver knows nothing of Parareal.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from ..backends import Backend, Rhs
from ..propagators import Propagator, Request, Stepper

__all__ = ["Driver"]


@dataclass
class _Flight:
    key: Hashable
    gen: Stepper
    request: Request


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

    @property
    def idle(self) -> bool:
        """True when nothing is in flight and no result is waiting."""
        return not (self._flights or self._delayed or self._done)

    def start(self, key: Hashable, propagator: Propagator, y: Any, t0: float, t1: float) -> None:
        """Start propagating ``y`` from ``t0`` to ``t1``; its result comes back under ``key``."""
        start = time.perf_counter()
        f_seconds = self.rhs.seconds
        if propagator.steppable:
            gen = propagator.stepper(y, t0, t1)  # type: ignore[attr-defined]
            try:
                request = next(gen)
            except StopIteration as stop:
                self._done.append((key, stop.value))
            else:
                self._flights.append(_Flight(key, gen, request))
        else:
            evals = self.rhs.evals
            value = self.backend.propagate(propagator, self.rhs, y, t0, t1)
            release = self.clock + (self.rhs.evals - evals)
            heapq.heappush(self._delayed, (release, self._seq, key, value))
            self._seq += 1
        self._account(start, f_seconds)

    def step(self) -> list[tuple[Hashable, Any]]:
        """Advance by one tick (or to the next delayed release) and return finished tasks."""
        finished, self._done = self._done, []
        if finished:
            return finished
        if self._flights:
            flights = self._flights
            results = self.backend.evaluate(self.rhs, [fl.request for fl in flights])
            self.clock += 1
            start = time.perf_counter()
            f_seconds = self.rhs.seconds
            self._flights = []
            for flight, dy in zip(flights, results, strict=True):
                try:
                    flight.request = flight.gen.send(dy)
                except StopIteration as stop:
                    finished.append((flight.key, stop.value))
                else:
                    self._flights.append(flight)
            self._account(start, f_seconds)
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

    def _account(self, start: float, f_seconds: float) -> None:
        elapsed = time.perf_counter() - start
        self.propagator_seconds += elapsed - (self.rhs.seconds - f_seconds)
