"""Tasks: the unit of work that concurrent backends run on their workers.

A :class:`Task` is a contiguous group of propagations of one propagator that started together.
:func:`run_task` runs it wherever it lands (a thread, a process, a Dask worker, a CUDA stream):
a groupable fixed-step propagator advances the whole group as one coroutine over stacked
states (one vectorised call of ``f`` per sub-step when ``f`` is vectorised); any other
propagator runs the group's propagations one after another, exactly as the serial backend does.
Either way each propagation reports how many calls of ``f`` it made along its own path, which
is what the driver's logical clock needs.

Workers in other processes receive tasks as bytes (:func:`encode_call`, made with cloudpickle
so that closures and lambdas travel) and answer with bytes (:func:`decode_result`): a result,
or the exception that was raised together with its formatted traceback, which the caller
re-raises with the traceback attached as ``__cause__``.
"""

from __future__ import annotations

import pickle
import threading
import time
import traceback
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..propagators import Propagator
from ..propagators.base import ended
from ..propagators.linalg import LinalgMeter, metered
from ..state import Lanes, ops_for
from .base import Rhs

__all__ = [
    "RemoteTraceback",
    "Task",
    "TaskCancelled",
    "TaskResult",
    "caller_grad_mode",
    "decode_result",
    "encode_call",
    "pickled",
    "run_encoded",
    "run_task",
    "worker_traceback",
]


@dataclass
class Task:
    """Propagations of one propagator over slices that started together.

    Attributes
    ----------
    propagator : Propagator
        What to run.
    ys, t0s, t1s : list
        Start state, start time and end time of each propagation.
    """

    propagator: Propagator
    ys: list[Any]
    t0s: list[float]
    t1s: list[float]


@dataclass
class TaskResult:
    """What a worker reports back for a :class:`Task`.

    Attributes
    ----------
    values : list
        The final state of each propagation, in order.
    evals : list of int
        Calls of ``f`` along each propagation's own path: its length on the logical clock.
    f_evals, f_calls : int
        Evaluations of ``f`` at one state, and Python calls of ``f``, of the whole task.
    f_seconds : float
        Seconds inside ``f``.
    seconds : float
        Wall-clock seconds of the task on its worker.
    """

    values: list[Any]
    evals: list[int]
    f_evals: int = 0
    f_calls: int = 0
    f_seconds: float = 0.0
    seconds: float = 0.0
    jac_evals: int = 0
    jac_calls: int = 0
    jac_seconds: float = 0.0
    linalg: LinalgMeter | None = None


class TaskCancelled(Exception):
    """Raised inside ``f`` on a worker once the run that owns the task has ended."""


class RemoteTraceback(Exception):
    """The formatted traceback of an exception raised on a worker (set as ``__cause__``)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text}"""'


def _guard(f: Callable[[Any, Any], Any], cancelled: Callable[[], bool]) -> Callable:
    def guarded(t: Any, y: Any) -> Any:
        if cancelled():
            raise TaskCancelled("the run that owns this task has ended")
        return f(t, y)

    return guarded


def caller_grad_mode() -> bool | None:
    """torch's grad mode in this thread (None without torch loaded): threads that run a
    caller's tasks take it, since a new thread starts with grad mode on."""
    import sys

    torch = sys.modules.get("torch")
    return None if torch is None else torch.is_grad_enabled()


def run_task(
    f: Callable[[Any, Any], Any],
    vectorized: bool,
    task: Task,
    cancelled: Callable[[], bool] | None = None,
    grad: bool | None = None,
) -> TaskResult:
    """Run ``task`` here and now with ``f``; see the module docstring.

    ``cancelled``, when given, is polled before every call of ``f``: once it returns True the
    task stops with :class:`TaskCancelled` (the run that wanted it is over). ``grad``, when
    given, is torch's grad mode for the task (the caller's, on a worker thread).
    """
    if grad is not None:
        import torch

        with torch.set_grad_enabled(grad):
            return run_task(f, vectorized, task, cancelled)
    start = time.perf_counter()
    fn = f if cancelled is None else _guard(f, cancelled)
    ops = ops_for(task.ys[0])
    rhs = Rhs(fn, ops, vectorized)
    meter = LinalgMeter()
    with metered(meter):
        values, evals = _run_task(rhs, ops, task)
    return TaskResult(
        values=list(values),
        evals=evals,
        f_evals=rhs.evals,
        f_calls=rhs.calls,
        f_seconds=rhs.seconds,
        seconds=time.perf_counter() - start,
        jac_evals=rhs.jac_evals,
        jac_calls=rhs.jac_calls,
        jac_seconds=rhs.jac_seconds,
        linalg=meter if (meter.factorizations or meter.failures) else None,
    )


def _run_task(rhs: Rhs, ops: Any, task: Task) -> tuple[list[Any], list[int]]:
    """The propagations of ``task`` and their lengths on the critical path."""
    prop = task.propagator
    if len(task.ys) > 1 and prop.steppable and getattr(prop, "groupable", False):
        gen = prop.stepper(ops.stack(task.ys), Lanes(task.t0s), Lanes(task.t1s))  # type: ignore[attr-defined]
        calls = 0
        try:
            request = next(gen)
            while True:
                dy = rhs.batch([request])[0]
                calls += 1
                request = gen.send(dy)
        except StopIteration as stop:
            values = ops.unstack(ended(gen, stop))
        evals = [calls] * len(task.ys)
    else:
        values, evals = [], []
        for y, t0, t1 in zip(task.ys, task.t0s, task.t1s, strict=True):
            before = rhs.path
            values.append(rhs.propagate(prop, y, t0, t1))
            evals.append(rhs.path - before)
    return list(values), evals


# -- shipping tasks to other processes ------------------------------------------------------
def pickled(obj: Any, what: str, backend: str) -> bytes:
    """``cloudpickle.dumps(obj)``, or a ``TypeError`` naming ``what`` when it cannot be."""
    import cloudpickle

    try:
        return cloudpickle.dumps(obj)
    except Exception as exc:
        raise TypeError(
            f"backend {backend!r} sends {what} to its workers with cloudpickle, but {what} "
            f"cannot be pickled: {type(exc).__name__}: {exc}. Make it picklable (module-level "
            "objects, no open files, locks or sockets), or use backend='threads', which runs "
            "it in this process"
        ) from exc


def encode_call(
    key: str, shared: Any, propagator: Propagator, vectorized: bool, task: Task
) -> tuple:
    """The arguments of :func:`run_encoded` for ``task``.

    ``shared`` holds, pickled once per run, ``(f, propagator)`` (or says where to find them:
    see :func:`run_encoded`); a task of that propagator travels without it.
    """
    import cloudpickle

    if task.propagator is propagator:
        task = Task(None, task.ys, task.t0s, task.t1s)  # type: ignore[arg-type]
    return (key, shared, vectorized, cloudpickle.dumps(task))


#: ``(f, propagator)`` of the runs this worker process served last, by key.
_F_CACHE: OrderedDict[str, tuple[Callable[[Any, Any], Any], Propagator]] = OrderedDict()
_F_LOCK = threading.Lock()
#: Set in worker processes of :class:`~parareal.backends.Processes`: the shared
#: "cancelled up to run number" value.
_CANCEL_VALUE: Any = None


def hold(payload: bytes) -> bytes:
    """A task that returns its argument: on Dask it puts a run's ``(f, propagator)`` on a
    worker with a lineage, so that the scheduler recomputes it if that worker dies (data
    scattered with ``client.scatter`` has none and would be lost with its last holder)."""
    return payload


def new_key() -> str:
    """A key that names one run's ``f`` in the workers' caches."""
    return uuid.uuid4().hex


def _cached(key: str, shared: Any) -> tuple[Callable[[Any, Any], Any], Propagator]:
    """``(f, propagator)`` of run ``key``: unpickled once per worker process and run, from
    ``shared``: the pickled pair of their cloudpickle bytes, or the path of a file that holds
    it."""
    with _F_LOCK:
        pair = _F_CACHE.get(key)
        if pair is None:
            if isinstance(shared, str):
                with open(shared, "rb") as fh:
                    shared = fh.read()
            f_bytes, p_bytes = pickle.loads(shared)
            pair = (pickle.loads(f_bytes), pickle.loads(p_bytes))
            _F_CACHE[key] = pair
            while len(_F_CACHE) > 4:
                _F_CACHE.popitem(last=False)
        return pair


def set_cancel_value(value: Any) -> None:
    """Worker-process initialiser of :class:`~parareal.backends.Processes`."""
    global _CANCEL_VALUE
    _CANCEL_VALUE = value


def run_encoded(
    key: str, shared: Any, vectorized: bool, task_bytes: bytes, run_id: int = 0
) -> bytes:
    """Worker side of the bytes route: run the task, answer with bytes (never raises).

    ``shared`` is the run's pickled ``(f, propagator)`` or the path of a file holding it
    (see :func:`encode_call`); it is unpickled once per worker process and run.
    """
    import cloudpickle

    try:
        f, propagator = _cached(key, shared)
        task = pickle.loads(task_bytes)
        if task.propagator is None:
            task.propagator = propagator
        cancel = _CANCEL_VALUE
        cancelled = None if cancel is None or not run_id else (lambda: cancel.value >= run_id)
        return b"R" + cloudpickle.dumps(run_task(f, vectorized, task, cancelled))
    except BaseException as exc:  # reported to the caller, never lost
        text = worker_traceback(exc)
        try:
            payload = cloudpickle.dumps(exc)
            pickle.loads(payload)
        except Exception:
            payload = cloudpickle.dumps(RuntimeError(f"{type(exc).__qualname__}: {exc}"))
        return b"E" + cloudpickle.dumps((payload, text))


def worker_traceback(exc: BaseException, where: str = "") -> str:
    """The stack of ``exc`` as raised on a worker (its message follows in the caller's
    report, so it is not repeated here)."""
    place = f" on {where}" if where else ""
    frames = "".join(traceback.format_tb(exc.__traceback__))
    return f"Traceback of the worker{place} (most recent call last):\n{frames}"


def decode_result(data: bytes) -> TaskResult:
    """The caller side of :func:`run_encoded`: the result, or the worker's exception raised
    here with its traceback attached as ``__cause__``."""
    if data[:1] == b"R":
        return pickle.loads(data[1:])
    payload, text = pickle.loads(data[1:])
    exc = pickle.loads(payload)
    raise exc from RemoteTraceback(text)
