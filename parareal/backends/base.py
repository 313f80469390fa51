"""The :class:`Backend` hook and the :class:`Rhs` wrapper through which backends call ``f``."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar

import numpy as np

from ..propagators import Propagator, Request, SteppablePropagator, drive
from ..propagators.jacobian import JacobianRequest
from ..propagators.jacobian import evaluate as evaluate_jacobian
from ..state import VECTORIZED_HINT, ArrayOps, Lanes, device_error, is_torch

__all__ = ["AUTOGRAD_BACKENDS", "Backend", "Rhs", "refuse_lost_gradients"]

_STEPPABLE_PROPAGATE = SteppablePropagator.propagate
T = TypeVar("T")


def _note_batched(exc: BaseException, t_shape: tuple[int, ...], y_shape: tuple[int, ...]) -> None:
    """Say, on an exception raised by ``f`` in a batched call, how ``f`` was called (PEP 678)."""
    if hasattr(exc, "add_note"):  # Python >= 3.11
        exc.add_note(
            f"parareal: raised by f in a batched call f(t, Y) with t of shape {t_shape} and Y "
            f"of shape {y_shape}; {VECTORIZED_HINT}"
        )


def _snapshot(y: Any) -> Any:
    """A copy of ``y``'s values (no autograd history)."""
    if is_torch(y):
        return y.detach().clone()
    return np.array(y, copy=True)


def _unchanged(before: Any, y: Any) -> bool:
    """True when ``y`` holds the values of ``before`` (NaN where it held NaN)."""
    if is_torch(y):
        y = y.detach()
        same = (before == y) | ((before != before) & (y != y))
        return bool(same.all())
    return bool(np.array_equal(before, y, equal_nan=before.dtype.kind in "fc"))


class ModifiedArgumentError(ValueError):
    """``f`` wrote into its argument ``y``."""


class DeviceMismatchError(TypeError):
    """``f`` answered on another device than its state's."""


def _identity(f: Any) -> Any:
    return f


class _FirstCall:
    """``f`` for its first call, which checks that ``f`` leaves its argument ``y`` as it was;
    then the :class:`Rhs` calls ``f`` itself. Pickles as ``f`` (workers get ``f``)."""

    __slots__ = ("f", "rhs")

    def __init__(self, f: Callable[[Any, Any], Any], rhs: Rhs) -> None:
        self.f = f
        self.rhs = rhs

    def __call__(self, t: Any, y: Any) -> Any:
        rhs = self.rhs
        if rhs.f is not self:  # checked already (a caller that kept this wrapper)
            return self.f(t, y)
        before = _snapshot(y)
        dy = self.f(t, y)
        rhs.f = self.f
        if is_torch(dy) and is_torch(y) and dy.device != y.device:
            raise DeviceMismatchError(device_error(dy, y))
        if not _unchanged(before, y):
            raise ModifiedArgumentError(
                "f modified its argument y in place (for example y *= 2, y[0] = ..., "
                "y.add_(...), or an out= into y): the propagators keep using the state they "
                "hand to f, so every later value would be wrong. Work on a copy inside f "
                "(y = y.copy() for numpy, y = y.clone() for torch) or return a new array"
            )
        return dy

    def __reduce__(self) -> tuple[Any, tuple[Any]]:
        return _identity, (self.f,)


class Rhs:
    """The user's ``f`` with its calling convention, checks and counters.

    Parameters
    ----------
    f : callable
        ``f(t, y) -> dy/dt``.
    ops : ArrayOps
        Operations for the state's kind.
    vectorized : bool
        If True, ``f`` is only ever called as ``f(t, Y)`` with ``t`` of shape ``(B,)`` and ``Y``
        of shape ``(B, *y0.shape)``; single evaluations are batches of one.
    check_first : bool
        Check on the first call that ``f`` leaves its argument unchanged (``ValueError``
        otherwise): an ``f`` that writes into ``y`` corrupts the states the propagators
        keep. :attr:`user_f` is ``f`` itself in any case.
    """

    def __init__(self, f: Callable[[Any, Any], Any], ops: ArrayOps, vectorized: bool,
                 check_first: bool = False) -> None:
        #: The user's ``f`` (what workers in other processes get).
        self.user_f = f
        self.f: Callable[[Any, Any], Any] = _FirstCall(f, self) if check_first else f
        self.ops = ops
        self.vectorized = vectorized
        self.calls = 0
        self.evals = 0
        self.seconds = 0.0
        #: Seconds spent stacking and splitting batches (outside ``f``).
        self.batching_seconds = 0.0
        #: Requests answered one at a time (calls of ``f`` on one state and Jacobians): the
        #: length on the critical path of a propagation run here alone.
        self.path = 0
        #: Jacobians evaluated (one per state), Jacobian requests answered, and their seconds
        #: (finite-difference evaluations of ``f`` count in ``evals`` too).
        self.jac_evals = 0
        self.jac_calls = 0
        self.jac_seconds = 0.0
        self.plain = _Plain(self)

    def count(self, calls: int, seconds: float) -> None:
        """Add ``calls`` calls of ``f`` on one state each that took ``seconds`` (a
        :class:`~parareal.propagators.base.Meter`, for :func:`~parareal.propagators.drive`)."""
        self.calls += calls
        self.evals += calls
        self.path += calls
        self.seconds += seconds

    def jacobian(self, request: JacobianRequest, y: Any) -> Any:
        """Answer a Jacobian request at ``y`` (one state or a group's stacked states).

        One step on the critical path; finite differences call ``f`` on all perturbed states
        in one batch (counted in ``evals``), autograd and a user's ``jac`` do not call it.
        """
        J, jac_evals, f_evals, seconds = evaluate_jacobian(
            request, y, f=self.f, ops=self.ops, vectorized=self.vectorized, rows=self._fd_rows,
            count=self._count_autograd)
        self.path += 1
        self.jac_calls += 1
        self.jac_evals += jac_evals
        self.jac_seconds += seconds
        return J

    def _count_autograd(self, calls: int, evals: int) -> None:
        """Calls of ``f`` made by autograd's forward pass (not on the path: one Jacobian)."""
        self.calls += calls
        self.evals += evals

    def _fd_rows(self, ts: np.ndarray, ys: Any) -> Any:
        """``f`` at stacked single states (finite differences): counted, not on the path."""
        start = time.perf_counter()
        ops = self.ops
        if self.vectorized:
            dys = self.f(ops.times(ts), ys)
            dys = ops.coerce_derivative(dys, ys, batched=True)
            self.calls += 1
        else:
            dys = ops.stack([ops.coerce_derivative(self.f(ops.time(v), row), row)
                             for v, row in zip(ts.tolist(), ys, strict=True)])
            self.calls += len(ts)
        self.evals += len(ts)
        self.seconds += time.perf_counter() - start
        return dys

    def _split_jacobians(self, requests: Sequence[Request], answer: Any) -> list[Any]:
        """Answer Jacobian requests one by one and the others with ``answer`` together."""
        plain = [r for r in requests if type(r[0]) is not JacobianRequest]
        values = iter(answer(plain) if plain else [])
        return [self.jacobian(t, y) if type(t) is JacobianRequest else next(values)
                for t, y in requests]

    def _call(self, t: Any, y: Any) -> Any:
        """One timed, counted call ``f(t, y)`` with ``t`` already in ``f``'s convention."""
        start = time.perf_counter()
        dy = self.f(t, y)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        self.evals += 1
        self.path += 1
        return dy

    def one(self, t: float, y: Any) -> Any:
        """``f`` at one state (a batch of one if ``f`` is vectorised)."""
        if self.vectorized:
            return self.batch([(t, y)])[0]
        return self.ops.coerce_derivative(self._call(self.ops.time(t), y), y)

    def each(self, requests: Sequence[Request]) -> list[Any]:
        """``f`` at every request, one state per call (a group's rows one by one)."""
        if any(type(t) is JacobianRequest for t, _ in requests):
            return self._split_jacobians(requests, self.each)
        if self.vectorized:
            return [self._rows(t, y) if isinstance(t, Lanes) else self.one(t, y)
                    for t, y in requests]
        f, ops = self.f, self.ops
        to_time, coerce = ops.time, ops.coerce_derivative
        clock = time.perf_counter
        calls, seconds = 0, 0.0
        out = []
        try:
            for t, y in requests:
                lanes = isinstance(t, Lanes)
                rows = []
                for v, row in zip(t.values.tolist(), y, strict=True) if lanes else ((t, y),):
                    start = clock()
                    dy = f(to_time(v), row)
                    seconds += clock() - start
                    calls += 1
                    rows.append(coerce(dy, row))
                out.append(ops.stack(rows) if lanes else rows[0])
        finally:
            self.count(calls, seconds)
        return out

    def _rows(self, t: Lanes, y: Any) -> Any:
        """A group's rows one by one, each a batch of one (vectorised ``f``)."""
        return self.ops.stack([self.one(v, row) for v, row in zip(t.values.tolist(), y,
                                                                  strict=True)])

    def batch(self, requests: Sequence[Request], max_batch: int | None = None) -> list[Any]:
        """``f`` at every request in one call if vectorised, else as :meth:`each`.

        A request is ``(t, y)`` for one state, or ``(lanes, Y)`` for a group of slices whose
        states are stacked in ``Y`` (see :class:`~parareal.state.Lanes`). A single request
        reaches ``f`` without a copy of its states (``y[None]``, or ``Y`` itself).
        ``max_batch`` bounds the states of one call: more are split, in order, into calls of
        at most that many (:meth:`_chunked`).
        """
        if not self.vectorized:
            return self.each(requests)
        if any(type(t) is JacobianRequest for t, _ in requests):
            return self._split_jacobians(
                requests, lambda plain: self.batch(plain, max_batch))
        clock = time.perf_counter
        begin = clock()
        f_before = self.seconds
        if max_batch is not None and sum(
                len(t) if isinstance(t, Lanes) else 1 for t, _ in requests) > max_batch:
            out = self._chunked(requests, max_batch)
        elif len(requests) == 1:
            t, y = requests[0]
            if isinstance(t, Lanes):
                out = [self._stacked(self.ops.times(t.values), y)]
            else:
                out = [self._stacked(self.ops.times([t]), y[None])[0]]
        else:
            out = self._batch(requests)
        self.batching_seconds += clock() - begin - (self.seconds - f_before)
        return out

    def _batch(self, requests: Sequence[Request]) -> list[Any]:
        """Several requests: stack them, one call of ``f``, split the answer."""
        ops = self.ops
        sizes = [len(t) if isinstance(t, Lanes) else 0 for t, _ in requests]
        if any(sizes):
            ys = ops.concat([y if n else y[None] for (_, y), n in zip(requests, sizes)])
            ts = ops.times(np.concatenate([t.values if n else [t] for (t, _), n in
                                           zip(requests, sizes)]))
        else:
            return ops.unstack(self._stacked(ops.times([t for t, _ in requests]),
                                             ops.stack([y for _, y in requests])))
        dys = self._stacked(ts, ys)
        out, row = [], 0
        for n in sizes:
            out.append(dys[row : row + n] if n else dys[row])
            row += max(n, 1)
        return out

    def _chunked(self, requests: Sequence[Request], max_batch: int) -> list[Any]:
        """The requests' states in order, in calls of ``f`` on at most ``max_batch`` states
        each (as equal as possible); a chunk within one request's stacked states is a view of
        them, not a copy. One step on the critical path, like one batched call."""
        ops = self.ops
        sizes = [len(t) if isinstance(t, Lanes) else 0 for t, _ in requests]
        total = sum(max(n, 1) for n in sizes)
        count = -(-total // max_batch)
        bounds = [total * i // count for i in range(count + 1)]
        # the rows of every request: (request, first row, end row) pieces per chunk
        pieces: list[list[tuple[int, int, int]]] = [[] for _ in range(count)]
        row = 0
        for i, n in enumerate(sizes):
            begin, end = row, row + max(n, 1)
            for c in range(count):
                lo, hi = max(begin, bounds[c]), min(end, bounds[c + 1])
                if lo < hi:
                    pieces[c].append((i, lo - begin, hi - begin))
            row = end
        # a request whose rows span several chunks gets one buffer, filled chunk by chunk (each
        # chunk's answer is freed once copied); the others a view of their chunk's answer
        answers: list[Any] = [None] * len(requests)
        split = {i for i in range(len(requests))
                 if sum(1 for chunk in pieces for piece in chunk if piece[0] == i) > 1}
        path = self.path
        for chunk in pieces:
            ys, ts = [], []
            for i, a, b in chunk:
                t, y = requests[i]
                if sizes[i]:
                    ys.append(y[a:b])
                    ts.append(t.values[a:b])
                else:
                    ys.append(y[None])
                    ts.append(np.array([float(t)]))
            stacked = ys[0] if len(ys) == 1 else ops.concat(ys)
            dys = self._stacked(ops.times(np.concatenate(ts)), stacked)
            del stacked, ys
            at = 0
            for i, a, b in chunk:
                rows = dys[at : at + b - a]
                at += b - a
                if i not in split:
                    answers[i] = rows if sizes[i] else rows[0]
                    continue
                if answers[i] is None:
                    shape = (sizes[i], *rows.shape[1:])
                    answers[i] = (rows.new_empty(shape) if is_torch(rows)
                                  else np.empty(shape, dtype=rows.dtype))
                answers[i][a:b] = rows
            del dys, rows
        self.path = path + 1
        return answers

    def _stacked(self, ts: Any, ys: Any) -> Any:
        """One timed, counted call ``f(ts, ys)`` on stacked states; its answer checked."""
        start = time.perf_counter()
        try:
            dys = self.f(ts, ys)
        except Exception as exc:
            if not isinstance(exc, (ModifiedArgumentError, DeviceMismatchError)) and (
                    self._takes_single_states(ts, ys)):
                raise ValueError(
                    f"vectorized=True, but f is not vectorised: it raised {type(exc).__name__}"
                    f" ({exc}) in a batched call f(t, Y) with t of shape {tuple(ts.shape)} and "
                    f"Y of shape {tuple(ys.shape)}, and works on a single state; "
                    f"{VECTORIZED_HINT}"
                ) from exc
            _note_batched(exc, tuple(ts.shape), tuple(ys.shape))
            raise
        self.seconds += time.perf_counter() - start
        self.calls += 1
        self.evals += len(ys)
        self.path += 1
        ops = self.ops
        if (  # the answer is exactly what coerce_derivative would return unchanged
            type(dys) is not ops.array_type
            or dys.dtype is not ops.fast_dtype
            or ys.dtype is not ops.fast_dtype
            or dys.shape != ys.shape
        ):
            dys = ops.coerce_derivative(dys, ys, batched=True)
        return dys

    def _takes_single_states(self, ts: Any, ys: Any) -> bool:
        """After a batched call failed: does ``f`` work on one unbatched state instead?"""
        try:
            dy = self.f(self.ops.time(float(ts[0])), ys[0])
            return tuple(getattr(dy, "shape", ())) == tuple(ys[0].shape) and dy is not None
        except Exception:
            return False

    def propagate(self, propagator: Propagator, y: Any, t0: float, t1: float) -> Any:
        """Run one propagation here and now with this ``f`` (calls counted and timed).

        A steppable propagator that keeps the inherited
        :meth:`~parareal.propagators.SteppablePropagator.propagate`, with a non-vectorised
        ``f``, runs its stepper through :func:`~parareal.propagators.drive` with ``f`` itself:
        the same calls and numbers as ``propagator.propagate(self.plain, ...)`` without a
        wrapper per call. Any other propagator gets :meth:`plain`.
        """
        if not self.vectorized and type(propagator).propagate is _STEPPABLE_PROPAGATE:
            stepper = propagator.stepper(y, t0, t1)  # type: ignore[attr-defined]
            return drive(stepper, self.f, y, ops=self.ops, meter=self)
        return propagator.propagate(self.plain, y, t0, t1)

    def call_plain(self, t: Any, y: Any) -> Any:
        """``f`` in the non-batched convention, for opaque propagators (counted, timed).

        ``t`` arrives already converted by the propagator (a float or a 0-d tensor).
        """
        if self.vectorized:
            return self.batch([(float(t), y)])[0]
        return self._call(t, y)


class _Plain:
    """:meth:`Rhs.call_plain` as a callable ``f(t, y)`` that also answers Jacobians
    counted (``plain.jacobian(request, y)``, for opaque propagators such as ``ScipyIVP``)."""

    __slots__ = ("rhs",)

    def __init__(self, rhs: Rhs) -> None:
        self.rhs = rhs

    def __call__(self, t: Any, y: Any) -> Any:
        return self.rhs.call_plain(t, y)

    def jacobian(self, request: JacobianRequest, y: Any) -> Any:
        return self.rhs.jacobian(request, y)


class Backend(ABC):
    """Where the work of one tick runs.

    The engine owns the schedule and calls two hooks: :meth:`evaluate` with every pending
    request of the steppable propagators in flight (one tick), and :meth:`propagate` for a
    propagation run to completion at once: always for opaque (non-steppable) propagators, and
    for steppable ones too when the backend does not ``interleave``. Either way a propagation
    that calls ``f`` ``m`` times occupies ``m`` ticks of the critical path.
    """

    #: Name in the backend registry.
    name: ClassVar[str] = "abstract"
    #: True if :meth:`evaluate` accepts group requests ``(Lanes, stacked states)``: the driver
    #: then runs propagations of a groupable propagator that start together as one group.
    groups: ClassVar[bool] = False
    #: True if steppable propagations advance together, one tick per call of ``f`` (needed to
    #: batch them); False runs each to completion when it starts (better cache locality).
    interleaves: ClassVar[bool] = False
    #: True if fine propagations run as asynchronous tasks on workers
    #: (:class:`~parareal.backends.ConcurrentBackend`).
    concurrent: ClassVar[bool] = False
    #: True if every call of ``f`` runs in this process, so that autograd follows the whole
    #: run: gradients of ``Solution.y`` reach ``y0`` and ``f``'s parameters (torch states).
    #: False where the fine propagations run in other processes, whose results come back
    #: without a graph; :func:`refuse_lost_gradients` then refuses runs that need one.
    keeps_autograd: bool = True
    #: True if every process of a job calls ``solve`` with the same arguments and the
    #: processes run it together (SPMD: :class:`~parareal.backends.MPI`); one of them
    #: :meth:`drives` the iteration, the others serve its tasks. The hooks below (``enter``,
    #: ``agree``, ``broadcast``, ``drive``, ``barrier``) say what that means, so that no
    #: caller needs to test this flag.
    spmd: ClassVar[bool] = False
    #: True if :func:`~parareal.solve_serial` runs its propagations in the calling process
    #: (every process of an SPMD job computes them); False sends them to a worker.
    serial_here: ClassVar[bool] = True

    def drives(self) -> bool:
        """True if this process drives the iteration, and so reports the result: always,
        except on the serving ranks of an SPMD backend."""
        return True

    def enter(self, **arguments: Any) -> None:
        """Meet the other processes of the run before any work (SPMD: check that every
        process passed the same ``arguments``); nothing to do otherwise."""
        return None

    def agree(self, prepare: Callable[[], T], what: str = "the arguments") -> T | None:
        """Run ``prepare()`` on the driving process only and share how it went.

        Returns its result there (``None`` on the other processes of an SPMD job). An
        exception it raises is raised on every process, so that all of them stop together
        (the others' error says that the driver refused ``what``).
        """
        return prepare()

    def broadcast(self, value: T) -> T:
        """The driving process's ``value``, on every process (``value`` itself unless SPMD)."""
        return value

    def drive(self, run: Callable[[], Any], rhs: Rhs, fine: Propagator, y0: Any) -> Any:
        """Run the iteration ``run()`` where it belongs and return its
        :class:`~parareal.Solution` on every process.

        Here: ``run()``. On an SPMD backend the driving process runs it and sends the result
        to the others, which meanwhile serve its tasks (fine propagations of ``rhs`` with
        ``fine``; ``y0`` says the kind of state).
        """
        return run()

    def barrier(self) -> None:
        """Wait until every process of the job gets here (nothing to wait for unless SPMD)."""
        return None

    @abstractmethod
    def evaluate(self, rhs: Rhs, requests: Sequence[Request]) -> list[Any]:
        """Return ``f(t, y)`` for every request, in order."""

    def propagate(self, propagator: Propagator, rhs: Rhs, y: Any, t0: float, t1: float) -> Any:
        """Run one propagation to completion, here and now (default: :meth:`Rhs.propagate`)."""
        return rhs.propagate(propagator, y, t0, t1)

    def close(self) -> None:
        """Release resources that outlive a run (default: none)."""
        return None

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


#: The backends whose work stays in the caller's process (for messages).
AUTOGRAD_BACKENDS = ("'serial', 'batched', 'threads', 'cuda-streams', "
                     "Executor(ThreadPoolExecutor(...)), and MPI() on a single rank")


def refuse_lost_gradients(backend: Backend, rhs: Rhs, y0: Any, t0: float) -> None:
    """Raise ``ValueError`` before any work when a run needs autograd and ``backend`` would
    lose it: torch ``y0`` with grad mode on, ``backend.keeps_autograd`` False, and either
    ``y0`` requires grad or ``f`` has parameters that do (one call of ``f`` at ``(t0,
    y0.detach())`` tells: its answer then has a graph; the call is not counted).

    Without the refusal ``Solution.y`` would require grad, but its gradients would follow
    the coarse sweeps done here and miss the fine propagations done elsewhere: wrong numbers.
    """
    if getattr(backend, "keeps_autograd", True) or not is_torch(y0):
        return
    import torch

    if not torch.is_grad_enabled():
        return
    if y0.requires_grad:
        what = "y0 requires grad"
    else:
        probe = y0.detach()
        with torch.enable_grad():
            if rhs.vectorized:
                dy = rhs.f(rhs.ops.times([t0]), probe[None])
            else:
                dy = rhs.f(rhs.ops.time(t0), probe)
        if not (is_torch(dy) and dy.requires_grad):
            return
        what = "f has parameters that require grad (its answer carries a graph)"
    raise ValueError(
        f"backend {backend!r} cannot give gradients: {what}, but gradients do not cross "
        "process boundaries, and this backend runs the fine propagations in other "
        "processes, so the derivatives of Solution.y would miss them (wrong numbers). "
        f"Gradients are right on the backends that run in this process: {AUTOGRAD_BACKENDS}. "
        "If you do not need gradients, run under torch.no_grad() (or pass y0.detach() and "
        "parameters with requires_grad=False). A custom backend whose work stays in this "
        "process declares keeps_autograd = True"
    )
