"""The ``processes`` backend: fine propagations on a pool of worker processes."""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing
import os
import tempfile
import threading
import weakref
from typing import Any, ClassVar

from ..propagators import Propagator
from .base import Rhs
from .concurrent import (
    ConcurrentBackend,
    Session,
    _PickledSession,
    run_workers,
    warn_oversubscribed,
)
from .tasks import set_cancel_value

__all__ = ["Processes"]

#: Seconds a worker process is given to finish its current call of ``f`` after its run ended,
#: before it is terminated when the pool shuts down.
GRACE_SECONDS = 2.0


def _shutdown(pool: cf.ProcessPoolExecutor) -> None:
    """Shut ``pool`` down and join its workers; terminate those still busy after a grace period
    (a task stops at its next call of ``f`` once its run is cancelled, but ``f`` itself may be
    slow)."""
    closer = threading.Thread(
        target=pool.shutdown, kwargs={"wait": True, "cancel_futures": True}, daemon=True
    )
    closer.start()
    closer.join(GRACE_SECONDS)
    for stop in ("terminate", "kill"):
        if not closer.is_alive():
            return
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            if process.is_alive():
                getattr(process, stop)()
        closer.join(GRACE_SECONDS)


class _ProcessSession(_PickledSession):
    def __init__(
        self, backend: Processes, rhs: Rhs, propagator: Propagator, y0: Any, workers: int
    ) -> None:
        self.backend = backend
        self.file: str | None = None
        pool, run_id = backend._pool, backend._runs
        super().__init__(pool, workers, backend.name, rhs, propagator, y0, run_id)

    def share(self, payload: bytes) -> Any:
        """The workers are on this machine: they read ``(f, propagator)`` from a temporary
        file once per run instead of receiving it with every task."""
        fd, self.file = tempfile.mkstemp(prefix="parareal-run-", suffix=".pkl")
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
        return self.file

    def broken(self) -> None:
        self.backend._discard()

    def close(self, failed: bool = False) -> None:
        try:
            cancel = self.backend._cancel
            if cancel is not None:
                cancel.value = max(cancel.value, self.run_id)
            super().close(failed)
        finally:
            if self.file is not None:
                with contextlib.suppress(OSError):
                    os.remove(self.file)
            self.backend._busy.release()


class Processes(ConcurrentBackend):
    """Fine propagations on a pool of worker processes.

    ``f``, the fine propagator and the states are sent with cloudpickle, so closures, lambdas
    and objects defined in ``__main__`` work; anything that cannot be pickled gets a
    ``TypeError`` naming it before any work starts. Each worker unpickles ``f`` once per run.
    Use it when ``f`` or the fine solver holds the GIL (pure-Python code, small systems).

    The pool starts on the first run and is reused by later runs of the same instance until
    :meth:`close` (or ``with Processes(4) as backend: ...``); ``backend="processes"`` makes a
    pool for that run alone. Worker processes are started with ``start_method`` ("spawn" by
    default: safe with threads, the same on every platform; it imports the main module in each
    worker, so scripts need the usual ``if __name__ == "__main__":`` guard). One instance runs
    one solve at a time (a second concurrent solve gets a ``RuntimeError``). When a run ends,
    unstarted tasks are cancelled and running ones stop at their next call of ``f``; a worker
    that dies outright (killed, out of memory, ``os._exit``, a crash in native code) ends the
    run with a ``RuntimeError`` naming the backend, never a hang, and the next run starts a
    fresh pool. :meth:`close` gives busy workers ``GRACE_SECONDS`` (2 s), then terminates them.
    An exception raised on a worker reaches the caller with its type and message, the worker's
    traceback attached as its ``__cause__`` (one that cannot be pickled arrives as a
    ``RuntimeError`` with its type name and message).

    Parameters
    ----------
    workers : int, optional
        Worker processes (default: the number of CPUs). A run uses no more than its number
        of slices (the pool holds as many as the largest run so far could use), and warns
        (:class:`~parareal.errors.OversubscriptionWarning`) when that is four per CPU core
        or more.
    start_method : {"spawn", "forkserver", "fork"}
        How worker processes start (see :mod:`multiprocessing`).
    """

    name: ClassVar[str] = "processes"
    #: Fine propagations run in other processes: no autograd across them.
    keeps_autograd: bool = False
    start_methods: ClassVar[tuple[str, ...]] = ("spawn", "forkserver", "fork")

    def __init__(self, workers: int | None = None, *, start_method: str = "spawn") -> None:
        super().__init__(workers)
        if start_method not in self.start_methods:
            raise ValueError(
                f"start_method must be one of {self.start_methods}, got {start_method!r}"
            )
        if start_method not in multiprocessing.get_all_start_methods():
            raise ValueError(
                f"start_method {start_method!r} is not available on this platform; "
                f"available: {multiprocessing.get_all_start_methods()}"
            )
        self.start_method = start_method
        self._pool: cf.ProcessPoolExecutor | None = None
        self._pool_size = 0
        self._cancel: Any = None
        self._runs = 0
        self._busy = threading.Lock()
        self._finalizer: weakref.finalize | None = None

    def open(
        self, rhs: Rhs, propagator: Propagator, y0: Any, *, slices: int | None = None
    ) -> Session:
        if not self._busy.acquire(blocking=False):
            raise RuntimeError(
                f"{self!r} is running another solve; one instance runs one solve at a time "
                "(create one backend per concurrent solve)"
            )
        try:
            workers = run_workers(self.workers, slices)
            warn_oversubscribed(repr(self), workers)
            if self._pool is not None and self._pool_size < workers:
                self._discard()  # a run that can use more workers than the pool has
            if self._pool is None:
                self._start_pool(workers)
            self._runs += 1
            return _ProcessSession(self, rhs, propagator, y0, workers)
        except BaseException:
            self._busy.release()
            raise

    def _start_pool(self, size: int) -> None:
        """A pool of at most ``size`` worker processes (started as tasks need them)."""
        context = multiprocessing.get_context(self.start_method)
        self._cancel = context.RawValue("q", 0)
        self._pool = cf.ProcessPoolExecutor(
            size, mp_context=context, initializer=set_cancel_value, initargs=(self._cancel,)
        )
        self._pool_size = size
        self._finalizer = weakref.finalize(self, _shutdown, self._pool)

    def _discard(self) -> None:
        """Drop the pool (after a worker died); the next run starts a new one."""
        if self._finalizer is not None:
            self._finalizer()
        self._pool = None
        self._finalizer = None

    def close(self) -> None:
        """Shut the worker processes down (a later run starts new ones)."""
        self._discard()

    def __repr__(self) -> str:
        extra = "" if self.start_method == "spawn" else f", start_method={self.start_method!r}"
        return f"Processes(workers={self.workers}{extra})"
