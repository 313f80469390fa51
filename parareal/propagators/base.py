"""The :class:`Propagator` protocol and the steppable fixed-step base class."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Hashable
from typing import Any, ClassVar, Protocol

from ..state import ArrayOps, Lanes, ops_for
from ..validation import MAX_STEPS, check_int
from .jacobian import JacobianRequest
from .jacobian import evaluate as evaluate_jacobian

__all__ = [
    "Meter",
    "Propagator",
    "Request",
    "SteppablePropagator",
    "Stepper",
    "answer_jacobian",
    "drive",
    "ended",
]

#: One request of a steppable propagator: the time and state at which it needs ``f``.
Request = tuple[float, Any]
#: A stepper coroutine: yields requests, receives ``f(t, y)``, returns the final state.
Stepper = Generator[Request, Any, Any]


class Propagator(ABC):
    """Maps a state at ``t0`` to a state at ``t1`` for the ODE ``dy/dt = f(t, y)``.

    Parareal uses two of them: a cheap *coarse* one (``G``) and an accurate *fine* one (``F``).

    Checklist for writing your own
    ------------------------------
    1. Subclass :class:`Propagator` (or :class:`SteppablePropagator` for a fixed-step method)
       and implement :meth:`propagate` ``(f, y, t0, t1) -> y1``. ``y`` is a numpy array or a
       torch tensor of any shape; return the same kind, shape, dtype and device.
    2. Keep no state between calls: the engine calls the same instance on many slices, with
       different inputs, in any order (no step counters, no caches keyed on call order).
    3. Be deterministic: the same ``(y, t0, t1)`` must give the same bits. Exactness of Parareal
       (the first ``k`` boundaries equal the serial fine solution after ``k`` iterations) and the
       fixed-point property rely on it.
    4. Call ``f(t, y)`` with ``t`` as the state's kind expects: a Python float for numpy
       states, a 0-d tensor of the state's real dtype on its device for torch states
       (:meth:`parareal.state.ArrayOps.time`).
    5. If every propagation is a known sequence of ``f`` calls (explicit fixed-step methods),
       derive from :class:`SteppablePropagator` and write :meth:`SteppablePropagator.step` as
       a coroutine: ``k = yield (t, y)`` asks for ``f(t, y)``. Then the batched backend can
       advance many slices together, one batched call of ``f`` per sub-step. If ``step`` uses
       ``t`` and ``h`` only through ``+ - * /``, also set ``groupable = True``: the batched
       backend then runs slices started together as one stacked coroutine (see
       :class:`parareal.state.Lanes`) and the state arithmetic is vectorised too. If ``step``
       does not depend on ``steps`` either, set ``shares_steps = True``: sub-steps of
       propagators that differ only in ``steps`` (a fine and a coarse one) then run together.
    6. Validate constructor arguments (``TypeError``/``ValueError`` naming the argument), give
       a readable ``repr``, and add one entry to the registry in ``propagators/__init__.py`` and
       to the propagator list in ``tests/``.
    7. Declare ``order`` (the order of accuracy) when it is known, and run
       :func:`parareal.testing.check_propagator` on it: it checks this list and measures the
       order against exact solutions (``docs/testing.md``).
    """

    #: Order of accuracy, when known (fixed-step methods); ``None`` otherwise.
    order: ClassVar[int | None] = None
    #: True when the propagator exposes :meth:`SteppablePropagator.stepper`.
    steppable: ClassVar[bool] = False

    @abstractmethod
    def propagate(self, f: Callable[[Any, Any], Any], y: Any, t0: float, t1: float) -> Any:
        """Return the state at ``t1`` starting from ``y`` at ``t0``."""

    @property
    def evals(self) -> int | None:
        """Calls of ``f`` per propagation when fixed in advance, else ``None``."""
        return None


class SteppablePropagator(Propagator):
    """A fixed-step explicit method with ``steps`` equal sub-steps per propagation.

    Each sub-step is written as a coroutine (:meth:`step`) that yields every ``(t, y)`` at which
    it needs ``f`` and receives ``f(t, y)`` back. This lets a backend interleave many
    propagations and batch their requests.

    Parameters
    ----------
    steps : int
        Number of equal sub-steps per propagation (>= 1).
    """

    steppable: ClassVar[bool] = True
    #: True when :meth:`step` uses ``t`` and ``h`` only through ``+ - * /`` with floats and
    #: states. Then a backend may run many slices in one coroutine, with ``y`` stacked along a
    #: leading axis and ``t``, ``h`` given as :class:`~parareal.state.Lanes` (per-slice floats).
    #: Leave False if ``step`` calls functions of ``t`` or ``h`` (``math.exp(h)``...).
    groupable: ClassVar[bool] = False
    #: Calls of ``f`` per sub-step.
    stages: ClassVar[int] = 1
    #: True when :meth:`step` depends on the instance only through its settings other than
    #: ``steps`` (``vars(self)``): propagators of this class that differ only in ``steps``
    #: then compute the same sub-steps (see :meth:`step_kind`).
    shares_steps: ClassVar[bool] = False

    def __init__(self, steps: int = 1) -> None:
        self.steps = check_int(steps, "steps", 1, MAX_STEPS)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(steps={self.steps})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and vars(other) == vars(self)

    def __hash__(self) -> int:
        return hash((type(self), tuple(sorted(vars(self).items()))))

    @property
    def evals(self) -> int:
        return self.steps * self.stages

    def step_kind(self) -> Hashable:
        """Propagators of equal kinds compute the same :meth:`step` from the same ``(y, t, h)``.

        A backend may run sub-steps of propagators of one kind as one group (a fine and a
        coarse ``RK4`` of different ``steps``). The kind is the propagator itself (equal
        propagators share), or its class and settings other than ``steps`` if the class
        :attr:`shares_steps`.
        """
        if not self.shares_steps:
            return self
        settings = sorted((k, v) for k, v in vars(self).items() if k != "steps")
        return (type(self), tuple(settings))

    @abstractmethod
    def step(self, y: Any, t: float, h: float) -> Stepper:
        """One sub-step of size ``h`` from ``(t, y)``, as a coroutine returning the new state."""

    def stepper(self, y: Any, t0: float, t1: float) -> Stepper:
        """The whole propagation from ``t0`` to ``t1`` as one coroutine."""
        if not isinstance(t0, Lanes):
            t0, t1 = float(t0), float(t1)
        h = (t1 - t0) / self.steps
        for i in range(self.steps):
            y = yield from self.step(y, t0 + i * h, h)
        return y

    def propagate(self, f: Callable[[Any, Any], Any], y: Any, t0: float, t1: float) -> Any:
        return drive(self.stepper(y, t0, t1), f, y)


class Meter(Protocol):
    """What :func:`drive` reports to when asked to time and count the calls of ``f``."""

    def count(self, calls: int, seconds: float) -> None:
        """Add ``calls`` calls of ``f`` on one state each, which took ``seconds`` in all."""

    def jacobian(self, request: JacobianRequest, y: Any) -> Any:
        """Answer a Jacobian request (counted and timed)."""


def answer_jacobian(request: JacobianRequest, y: Any, f: Callable[[Any, Any], Any],
                    ops: ArrayOps) -> Any:
    """Answer a Jacobian request at ``y`` for whoever drives a stepper by hand: through
    ``f.jacobian`` when ``f`` is a counted wrapper (``Rhs.plain``), else from ``f`` itself
    (:func:`parareal.propagators.jacobian.evaluate`; nobody counts)."""
    helper = getattr(f, "jacobian", None)
    if helper is not None:  # a counted wrapper (Rhs.plain)
        return helper(request, y)

    def rows(ts: Any, states: Any) -> Any:
        return ops.stack([ops.coerce_derivative(f(ops.time(v), row), row)
                          for v, row in zip(ts.tolist(), states, strict=True)])

    return evaluate_jacobian(request, y, f=f, ops=ops, vectorized=False, rows=rows)[0]


def ended(gen: Any, stop: StopIteration) -> Any:
    """The value of a stepper coroutine ``gen`` that raised ``stop``, or a ``RuntimeError``
    when ``gen`` is still suspended: then ``f`` raised ``StopIteration`` while answering it
    (as inside a generator since PEP 479, it must not pass for the coroutine's end, which
    would take the exception's value, or None, for the propagated state)."""
    if getattr(gen, "gi_frame", None) is not None:
        raise RuntimeError(
            "f raised StopIteration; parareal cannot let it pass (it would look like the end "
            "of a propagation, with a wrong state): raise another exception in f"
        ) from stop
    return stop.value


def drive(
    gen: Stepper,
    f: Callable[[Any, Any], Any],
    y: Any,
    *,
    ops: ArrayOps | None = None,
    meter: Meter | None = None,
) -> Any:
    """Run a stepper coroutine to the end, answering each request with ``f(t, y)``.

    ``t`` is converted as the state's kind expects (:meth:`~parareal.state.ArrayOps.time`) and
    each answer is checked like the engine checks it
    (:meth:`~parareal.state.ArrayOps.coerce_derivative`). The check is made on every call, but
    an answer of exactly the state's array type, dtype and shape (the usual case) is accepted
    after three identity tests and a shape comparison; anything else gets the full check, with
    its error messages and casts. A Jacobian request
    (:class:`~parareal.propagators.jacobian.JacobianRequest`) is answered by the meter when
    there is one, else from ``f``. Returns the coroutine's final state.

    Parameters
    ----------
    gen : Stepper
        The coroutine (:meth:`SteppablePropagator.stepper`).
    f : callable
        ``f(t, y)`` on one state.
    y : array
        The start state (its kind selects the :class:`~parareal.state.ArrayOps`).
    ops : ArrayOps, optional
        The operations for ``y``'s kind, when the caller has them already.
    meter : Meter, optional
        When given, the calls of ``f`` are timed and counted into it (also when the
        propagation stops on an exception: the calls that returned count).
    """
    if ops is None:
        ops = ops_for(y)
    to_time, coerce = ops.time, ops.coerce_derivative
    kind, dtype = ops.array_type, ops.fast_dtype
    timed = meter is not None
    clock = time.perf_counter
    calls, seconds, start = 0, 0.0, 0.0
    try:
        t, yr = next(gen)
        while True:
            if type(t) is JacobianRequest:
                jac = meter.jacobian(t, yr) if timed else answer_jacobian(t, yr, f, ops)  # type: ignore[union-attr]
                t, yr = gen.send(jac)
                continue
            if timed:
                start = clock()
            dy = f(to_time(t), yr)
            if timed:
                seconds += clock() - start
                calls += 1
            if (
                type(dy) is not kind
                or dy.dtype is not dtype
                or yr.dtype is not dtype
                or dy.shape != yr.shape
            ):
                dy = coerce(dy, yr)
            t, yr = gen.send(dy)
    except StopIteration as stop:
        return ended(gen, stop)
    finally:
        if timed:
            meter.count(calls, seconds)  # type: ignore[union-attr]
