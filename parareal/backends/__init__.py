"""Backends: where the fine work of the active slices runs.

``serial`` and ``batched`` run everything in the caller's thread. ``threads``, ``processes``,
``cuda-streams`` and :class:`Executor` run the fine propagations as asynchronous tasks on
workers (see :mod:`parareal.backends.concurrent`).
"""

import contextlib
from collections.abc import Iterator
from typing import Any

from .base import AUTOGRAD_BACKENDS, Backend, Rhs, refuse_lost_gradients
from .batched import Batched
from .concurrent import ConcurrentBackend, Executor, Session, Threads
from .cuda import CudaStreams
from .mpi import MPI, RankAborted
from .processes import Processes
from .serial import Serial
from .tasks import RemoteTraceback, Task, TaskResult

__all__ = [
    "AUTOGRAD_BACKENDS",
    "BACKENDS",
    "Backend",
    "Batched",
    "ConcurrentBackend",
    "CudaStreams",
    "Executor",
    "MPI",
    "Processes",
    "RankAborted",
    "RemoteTraceback",
    "Rhs",
    "Serial",
    "Session",
    "Task",
    "TaskResult",
    "Threads",
    "refuse_lost_gradients",
    "resolve_backend",
    "using_backend",
]

#: Backends by name.
BACKENDS: dict[str, type[Backend]] = {
    "serial": Serial,
    "batched": Batched,
    "threads": Threads,
    "processes": Processes,
    "cuda-streams": CudaStreams,
    "mpi": MPI,
}
#: Backends that take a ``workers`` argument.
WORKER_BACKENDS = ("threads", "processes")


def resolve_backend(value: Any, workers: int | None = None) -> Backend:
    """Accept a :class:`Backend` instance or a registered name.

    ``workers`` is passed to ``threads`` and ``processes``; for ``cuda-streams`` it is the
    number of streams on the current device.
    """
    if isinstance(value, Backend):
        return value
    if isinstance(value, str):
        if value not in BACKENDS:
            raise ValueError(f"unknown backend {value!r}; known: {', '.join(sorted(BACKENDS))}")
        if value in WORKER_BACKENDS:
            return BACKENDS[value](workers)  # type: ignore[call-arg]
        if value == "cuda-streams":
            return CudaStreams(streams_per_device=workers)
        if workers is not None:
            raise ValueError(
                f"workers applies to the backends {', '.join(WORKER_BACKENDS)} and cuda-streams,"
                f" not to {value!r}"
            )
        return BACKENDS[value]()
    raise TypeError(f"backend must be a name or a Backend instance, got {type(value).__name__}")


@contextlib.contextmanager
def using_backend(value: Any, workers: int | None = None) -> Iterator[Backend]:
    """The backend ``value`` is or names (see :func:`resolve_backend`), for one run.

    A backend made here from a name is the run's own: it is closed (its workers released)
    when the block ends, however it ends. An instance stays the caller's, open.
    """
    backend = resolve_backend(value, workers)
    try:
        yield backend
    finally:
        if backend is not value:
            backend.close()
