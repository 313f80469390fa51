"""Concurrent backends: fine propagations run as asynchronous tasks on workers.

The driver keeps the caller's own work (the coarse sweep, corrections, norms) in the caller's
process, ticking like the batched backend, and hands every fine propagation to the backend's
workers as a :class:`~parareal.backends.tasks.Task`. Slices that start together are split into
at most ``workers`` contiguous groups, one task each; a worker runs its group batched. At most
``workers`` tasks are submitted at a time; the others wait in the driver, and the one of the
oldest iteration, then the lowest slice, is submitted first (the critical path first).

A backend opens one :class:`Session` per run: it ships ``f`` to the workers if they live
elsewhere, submits tasks and, when the run ends (converged, failed or interrupted), cancels what
has not started and stops what is running at its next call of ``f``.
"""

from __future__ import annotations

import concurrent.futures as cf
import inspect
import os
import pickle
import queue
import threading
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures.process import BrokenProcessPool
from typing import Any, ClassVar

from ..errors import OversubscriptionWarning
from ..propagators import Propagator, Request
from ..validation import check_int
from .base import Backend, Rhs
from .tasks import (
    Task,
    TaskResult,
    caller_grad_mode,
    decode_result,
    encode_call,
    hold,
    new_key,
    pickled,
    run_encoded,
    run_task,
)

__all__ = [
    "OVERSUBSCRIPTION",
    "ConcurrentBackend",
    "Executor",
    "Session",
    "Threads",
    "default_workers",
    "open_session",
    "run_workers",
]

#: Workers per CPU core from which ``Threads`` and ``Processes`` warn
#: (:class:`~parareal.errors.OversubscriptionWarning`).
OVERSUBSCRIPTION = 4


def default_workers() -> int:
    """The number of CPUs this process may use."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def check_workers(workers: Any) -> int | None:
    """``None`` or a positive int (``TypeError``/``ValueError`` otherwise)."""
    return None if workers is None else check_int(workers, "workers")


def run_workers(workers: int, slices: int | None) -> int:
    """The workers a run can use: ``workers``, but no more than its ``slices`` (a run never
    has more fine propagations to start at once); ``slices=None``: not known, ``workers``."""
    return workers if slices is None else max(1, min(workers, slices))


def warn_oversubscribed(backend: str, workers: int) -> None:
    """Warn if ``workers`` are :data:`OVERSUBSCRIPTION` times the CPU cores or more."""
    cores = default_workers()
    if workers >= OVERSUBSCRIPTION * cores:
        warnings.warn(
            f"backend {backend!r} starts {workers} workers on {cores} CPU core(s) "
            f"({workers / cores:.3g} per core): they only take turns on the cores and each "
            f"costs its memory, so the run is slower than with one per core. Pass workers "
            f"<= {cores} (the default is the number of cores)",
            OversubscriptionWarning,
            stacklevel=2,
        )


def open_session(
    backend: ConcurrentBackend, rhs: Rhs, propagator: Propagator, y0: Any, *, slices: int
) -> Session:
    """``backend.open(rhs, propagator, y0, slices=slices)``, or without ``slices`` for a
    backend whose ``open`` was written before it took that argument."""
    if _takes_slices(backend.open):
        return backend.open(rhs, propagator, y0, slices=slices)
    return backend.open(rhs, propagator, y0)


def _takes_slices(method: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):  # pragma: no cover - a callable without a signature
        return False
    return any(p.name == "slices" or p.kind is p.VAR_KEYWORD for p in parameters)


class Session(ABC):
    """One run's connection to the workers of a concurrent backend.

    Parameters
    ----------
    workers : int
        How many tasks may run at once.
    name : str
        The backend's name, for messages.
    """

    def __init__(self, workers: int, name: str) -> None:
        self.workers = workers
        self.name = name
        self._futures: set[cf.Future] = set()
        self._cancel = threading.Event()

    @property
    def cancelled(self) -> Callable[[], bool]:
        """Polled by tasks before every call of ``f``."""
        return self._cancel.is_set

    def submit(self, task: Task) -> cf.Future:
        """Start ``task`` on a worker; the future's :meth:`result` is decoded by :meth:`result`."""
        future = self._submit(task)
        self._futures.add(future)
        return future

    @abstractmethod
    def _submit(self, task: Task) -> cf.Future: ...

    def result(self, future: cf.Future) -> TaskResult:
        """The :class:`TaskResult` of a finished ``future`` (re-raises the task's exception)."""
        self._futures.discard(future)
        try:
            value = future.result()
        except BrokenProcessPool as exc:
            self.broken()
            raise RuntimeError(
                f"a worker process of backend {self.name!r} died while running a task (killed, "
                "out of memory, os._exit, or a crash in native code); the run is abandoned. "
                "If the script has no `if __name__ == '__main__':` guard, add one: worker "
                "processes started with 'spawn' import the main module"
            ) from exc
        return decode_result(value) if isinstance(value, bytes) else value

    def broken(self) -> None:
        """Called when the workers are lost (default: nothing to do)."""
        return None

    def close(self, failed: bool = False) -> None:
        """Cancel what has not started, stop what runs at its next call of ``f``, release.

        ``failed`` says that the run ends with an exception.
        """
        self._cancel.set()
        for future in self._futures:
            future.cancel()
        self._futures.clear()


class ConcurrentBackend(Backend):
    """A backend whose workers run fine propagations as asynchronous tasks.

    The caller's own propagations (the coarse sweep) run here as on the batched backend.
    Subclasses implement :meth:`open`.

    Parameters
    ----------
    workers : int, optional
        How many tasks run at once (default: the number of CPUs).
    """

    groups: ClassVar[bool] = True
    interleaves: ClassVar[bool] = True
    concurrent: ClassVar[bool] = True
    #: ``solve_serial`` sends its propagations, one after another, to a worker.
    serial_here: ClassVar[bool] = False
    #: Unknown for a subclass: one whose tasks run in this process declares True.
    keeps_autograd: bool = False

    def __init__(self, workers: int | None = None) -> None:
        self.workers = check_workers(workers) or default_workers()

    def evaluate(self, rhs: Rhs, requests: Sequence[Request]) -> list[Any]:
        return rhs.batch(requests)

    @abstractmethod
    def open(
        self, rhs: Rhs, propagator: Propagator, y0: Any, *, slices: int | None = None
    ) -> Session:
        """Start a run whose tasks call ``rhs.f`` and run ``propagator`` on states like ``y0``.

        ``slices`` is the run's number of slices: no more than that many workers are used
        (:func:`run_workers`). The engine passes it only to an ``open`` that takes it, so
        backends written without it keep working.

        Raises ``TypeError`` before any work starts if something cannot reach the workers.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}(workers={self.workers})"


# -- sessions over a concurrent.futures executor ---------------------------------------------
class _DirectSession(Session):
    """Tasks run in this process (threads): ``f`` is passed by reference."""

    def __init__(
        self, executor: cf.Executor, workers: int, name: str, rhs: Rhs, *, owned: bool
    ) -> None:
        super().__init__(workers, name)
        self.executor = executor
        self.f = rhs.f
        self.vectorized = rhs.vectorized
        self.owned = owned
        self.grad = caller_grad_mode()

    def _submit(self, task: Task) -> cf.Future:
        return self.executor.submit(run_task, self.f, self.vectorized, task, self.cancelled,
                                    self.grad)

    def close(self, failed: bool = False) -> None:
        super().close(failed)
        if self.owned:
            # a failed run (an exception, Ctrl-C) waits a little for running calls of f (a
            # task stops at its next call); one that never returns is left to its daemon
            # thread (threads cannot be stopped), which does not hold up the exit
            if failed and isinstance(self.executor, DaemonThreadPool):
                self.executor.shutdown(cancel_futures=True, timeout=GRACE_SECONDS)
            else:
                self.executor.shutdown(wait=True, cancel_futures=True)


class _PickledSession(Session):
    """Tasks run in other processes: ``f`` and the fine propagator are pickled once per run
    (with cloudpickle) and shared with the workers (:meth:`share`); each task carries its
    states and times.

    On Dask, a worker that dies is survived: the scheduler reruns its tasks elsewhere and
    recomputes the shared ``(f, propagator)`` if it held them. When Dask gives up on a task
    (``KilledWorker``, after ``distributed.scheduler.allowed-failures`` deaths) or cancels it
    after losing what it needed, :meth:`result` raises a ``RuntimeError`` naming the worker
    and what to do.
    """

    def __init__(
        self,
        executor: cf.Executor,
        workers: int,
        name: str,
        rhs: Rhs,
        propagator: Propagator,
        y0: Any,
        run_id: int = 0,
    ) -> None:
        super().__init__(workers, name)
        self.executor = executor
        f_bytes = pickled(rhs.f, "f", name)
        p_bytes = pickled(propagator, f"the fine propagator {propagator!r}", name)
        pickled(y0, "y0", name)
        self.propagator = propagator
        self.key = new_key()
        self.vectorized = rhs.vectorized
        self.run_id = run_id
        self.shared = self.share(pickle.dumps((f_bytes, p_bytes)))  # pickled once each

    def share(self, payload: bytes) -> Any:
        """What tasks carry to find the run's ``(f, propagator)``: on Dask a future of a task
        that holds it (sent once to a worker, fetched from there by the others, recomputed by
        the scheduler if its worker dies); other executors get the bytes with every task."""
        client = getattr(self.executor, "_client", None)
        if client is not None:  # distributed.client.ClientExecutor
            self._client = client
            self._workers_at_start = _dask_workers(client)
            with warnings.catch_warnings():  # the payload is meant to travel once, in the graph
                warnings.filterwarnings("ignore", "Sending large graph", UserWarning)
                self._held = client.submit(hold, payload, key=f"parareal-f-{self.key}",
                                           pure=False)
            return self._held
        return payload

    def _submit(self, task: Task) -> cf.Future:
        args = encode_call(self.key, self.shared, self.propagator, self.vectorized, task)
        return self.executor.submit(run_encoded, *args, self.run_id)

    def result(self, future: cf.Future) -> TaskResult:
        client = getattr(self, "_client", None)
        if client is None:
            return super().result(future)
        try:
            return super().result(future)
        except cf.CancelledError as exc:  # not cancelled by this run: Dask lost what it needed
            if self._cancel.is_set():
                raise
            raise self._lost_workers(exc, client) from exc
        except Exception as exc:
            if type(exc).__name__ != "KilledWorker":
                raise
            raise RuntimeError(
                f"backend {self.name!r}: Dask workers died while running a task, every time "
                f"it was retried ({exc}); the run is abandoned. Look at the workers' logs "
                "(out of memory? a crash in f or in native code?), give them more memory, "
                "or raise distributed.scheduler.allowed-failures"
            ) from exc

    def _lost_workers(self, exc: BaseException, client: Any) -> RuntimeError:
        lost = sorted(self._workers_at_start - _dask_workers(client))
        who = ", ".join(lost) if lost else "a worker (no longer known to the scheduler)"
        return RuntimeError(
            f"backend {self.name!r}: a task was cancelled by Dask after the loss of {who}; "
            "the run is abandoned. Look at the workers' logs (killed, out of memory?) and "
            "run again; resume from a checkpoint (solve(..., checkpoint=, resume=)) to keep "
            "the finished iterates"
        )

    def close(self, failed: bool = False) -> None:
        super().close(failed)
        held = getattr(self, "_held", None)
        if held is not None:
            held.release()


def _dask_workers(client: Any) -> set[str]:
    """The addresses of the workers of a Dask client's cluster (empty if it cannot say)."""
    try:
        return set(client.scheduler_info()["workers"])
    except Exception:  # pragma: no cover - a scheduler that is gone
        return set()


# -- Threads ---------------------------------------------------------------------------------
#: Seconds a failed run waits for its worker threads' running calls of ``f`` to end.
GRACE_SECONDS = 2.0


class DaemonThreadPool(cf.Executor):
    """A minimal thread pool whose threads are daemons: a call of ``f`` that never returns
    (after Ctrl-C ended its run) does not keep the interpreter from exiting, as
    :class:`~concurrent.futures.ThreadPoolExecutor`'s threads would (they are joined at exit).

    Parameters
    ----------
    workers : int
        Threads, started on demand.
    name : str
        Prefix of the threads' names.
    """

    def __init__(self, workers: int, name: str = "parareal-worker") -> None:
        self._workers = workers
        self._name = name
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._shutdown = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future:
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            future: cf.Future = cf.Future()
            self._queue.put((future, fn, args, kwargs))
            if not self._idle.acquire(blocking=False) and len(self._threads) < self._workers:
                thread = threading.Thread(target=self._work, daemon=True,
                                          name=f"{self._name}_{len(self._threads)}")
                thread.start()
                self._threads.append(thread)
        return future

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, fn, args, kwargs = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args, **kwargs))
                except BaseException as exc:
                    future.set_exception(exc)
                del future, fn, args, kwargs
            self._idle.release()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False,
                 timeout: float | None = None) -> None:
        """As :meth:`concurrent.futures.Executor.shutdown`; with ``wait``, wait at most
        ``timeout`` seconds (None: without limit) for running calls to end."""
        with self._lock:
            self._shutdown = True
            if cancel_futures:
                while True:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is not None:
                        item[0].cancel()
            for _ in self._threads:
                self._queue.put(None)
        if wait:
            deadline = None if timeout is None else time.monotonic() + timeout
            for thread in self._threads:
                thread.join(None if deadline is None else max(deadline - time.monotonic(), 0))


class Threads(ConcurrentBackend):
    """Fine propagations on a pool of threads in this process.

    numpy, scipy and torch release the GIL in their heavy kernels, so adaptive and implicit
    fine solves (``ScipyIVP``, ``TorchDiffEq``) and large vectorised ``f`` run in parallel. A
    pure-Python ``f`` holds the GIL and gains nothing: use ``Processes`` for it. ``f`` must be
    safe to call from several threads at once. A pool is created for each run and shut down
    before ``solve`` returns. When a run ends with an exception or Ctrl-C, running tasks stop at
    their next call of ``f``; a call of ``f`` that never returns is left to its (daemon) thread
    after a grace of ``GRACE_SECONDS`` (2 s), so that the interpreter can still exit.

    Parameters
    ----------
    workers : int, optional
        Threads (default: the number of CPUs). A run starts no more than its number of
        slices, and warns (:class:`~parareal.errors.OversubscriptionWarning`) when it starts
        four per CPU core or more.
    """

    name: ClassVar[str] = "threads"
    keeps_autograd: bool = True

    def open(
        self, rhs: Rhs, propagator: Propagator, y0: Any, *, slices: int | None = None
    ) -> Session:
        workers = run_workers(self.workers, slices)
        warn_oversubscribed(repr(self), workers)
        pool = DaemonThreadPool(workers)
        return _DirectSession(pool, workers, self.name, rhs, owned=True)


# -- any concurrent.futures executor ---------------------------------------------------------
def _executor_workers(executor: cf.Executor) -> int:
    """How many tasks ``executor`` runs at once, as far as it says."""
    client = getattr(executor, "_client", None)
    if client is not None:  # distributed.client.ClientExecutor
        try:
            info = client.scheduler_info()
            return max(sum(w.get("nthreads", 1) for w in info["workers"].values()), 1)
        except Exception:  # pragma: no cover - depends on the cluster
            return default_workers()
    for attribute in ("num_workers", "_max_workers"):  # mpi4py.futures, concurrent.futures
        value = getattr(executor, attribute, None)
        if isinstance(value, int) and value >= 1:
            return value
    return default_workers()


class Executor(ConcurrentBackend):
    """Fine propagations on any :class:`concurrent.futures.Executor` you already have.

    A :class:`~concurrent.futures.ThreadPoolExecutor` runs tasks in this process and gets
    ``f`` by reference. Any other executor (``ProcessPoolExecutor``, Dask's
    ``distributed.Client(...).get_executor()``, ``mpi4py.futures.MPIPoolExecutor``) gets ``f``,
    the propagator and the states as cloudpickle bytes, so closures and lambdas work and the
    workers need only ``parareal`` installed. The executor stays yours: it is never shut down
    here. When a run ends, tasks that have not started are cancelled; tasks already running
    in another process finish on their own (their results are dropped).

    Lost workers are the executor's business. Dask reruns a task on another worker and the run
    goes on to the same answer (the run's ``f`` and fine propagator reach the workers as the
    result of a small Dask task, which the scheduler recomputes when the worker holding it
    dies); when Dask gives up on a task (``KilledWorker``, after
    ``distributed.scheduler.allowed-failures`` deaths) or cancels it after losing data it
    needed, the run ends with a ``RuntimeError`` naming the backend and the lost worker.

    Parameters
    ----------
    executor : concurrent.futures.Executor
        Where the tasks run.
    workers : int, optional
        How many tasks to keep submitted at once (default: what the executor reports: its
        ``max_workers``, the threads of a Dask cluster, ``MPIPoolExecutor.num_workers``; else
        the number of CPUs), and no more than the run's number of slices.
    """

    name: ClassVar[str] = "executor"

    def __init__(self, executor: cf.Executor, workers: int | None = None) -> None:
        if not isinstance(executor, cf.Executor):
            raise TypeError(
                "executor must be a concurrent.futures.Executor (ThreadPoolExecutor, "
                "ProcessPoolExecutor, distributed.Client(...).get_executor(), "
                f"mpi4py.futures.MPIPoolExecutor...), got {type(executor).__name__}"
            )
        self.executor = executor
        self.workers = check_workers(workers) or _executor_workers(executor)

    @property
    def keeps_autograd(self) -> bool:  # type: ignore[override]
        """True for a ``ThreadPoolExecutor`` (tasks run in this process)."""
        return isinstance(self.executor, cf.ThreadPoolExecutor)

    def open(
        self, rhs: Rhs, propagator: Propagator, y0: Any, *, slices: int | None = None
    ) -> Session:
        label = f"Executor({type(self.executor).__name__})"
        executor = self.executor
        if any(bool(getattr(executor, name, False)) for name in
               ("_shutdown", "_shutdown_thread", "_broken")):
            raise ValueError(
                f"executor: the {type(executor).__name__} of backend {self!r} has been shut "
                "down (or is broken) and takes no more tasks; pass a running executor"
            )
        workers = run_workers(self.workers, slices)
        if isinstance(self.executor, cf.ThreadPoolExecutor):
            return _DirectSession(self.executor, workers, label, rhs, owned=False)
        return _PickledSession(self.executor, workers, label, rhs, propagator, y0)

    def __repr__(self) -> str:
        return f"Executor({type(self.executor).__name__}, workers={self.workers})"
