"""The ``mpi`` backend: SPMD Parareal over the ranks of an MPI communicator (mpi4py).

Every rank runs the same script and calls :func:`parareal.solve` with the same arguments, like
an MPI collective. The root rank drives the iteration (coarse sweep, corrections, norms) and
hands fine propagations to the ranks as tasks; the other ranks serve tasks inside their call
of ``solve`` until the root is done, then receive the :class:`~parareal.Solution`. ``f`` and
the propagators never travel: every rank has its own. States travel as MPI buffers (numpy
arrays and CPU torch tensors without pickling; CUDA tensors are copied to host memory for the
transfer and back to the rank's device); only small headers (times, shapes, counters) are
pickled.

The root rank also works: a thread of its own runs tasks beside the driver, so ``n`` ranks give
``n`` workers. Messages of a run go over a duplicate of the communicator, so they never mix
with the application's.

Faults: an exception on a worker rank is sent to the root, which re-raises it (type and
message kept, the worker's traceback attached as ``__cause__``, a note naming the rank); the
root then tells every rank to stop, and each worker rank leaves ``solve`` with
:class:`RankAborted` (a ``SystemExit`` with status 1, so a script ends there silently and
``mpiexec`` reports a non-zero exit; the message is printed once, by the root). An exception
on the root ends the worker ranks the same way. A task in progress stops at its next call of
``f``.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import os
import pickle
import threading
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from ..propagators import Propagator
from ..state import is_torch, ops_for
from .base import Rhs, T
from .concurrent import ConcurrentBackend, Session
from .entry import (
    DEFAULT_ENTRY_TIMEOUT,
    argument_fields,
    backoff,
    check_timeout,
    enter,
)
from .tasks import (
    RemoteTraceback,
    Task,
    TaskCancelled,
    TaskResult,
    caller_grad_mode,
    run_task,
    worker_traceback,
)

__all__ = ["MPI", "RankAborted"]

TAG_TASK = 31
TAG_TASK_DATA = 32
TAG_CTRL = 33
TAG_RESULT = 34
TAG_RESULT_DATA = 35
LOCAL_RANK_VARS = ("OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "PMI_LOCAL_RANK",
                   "SLURM_LOCALID", "MV2_COMM_WORLD_LOCAL_RANK")


class RankAborted(SystemExit):
    """Raised on a worker rank when the run failed (on the root or another rank).

    A ``SystemExit`` with status 1: an uncaught one ends the rank's script silently with a
    non-zero status; the root prints the original error.
    """

    def __init__(self, message: str) -> None:
        super().__init__(1)
        self.message = message

    def __str__(self) -> str:
        return self.message


def _mpi() -> Any:
    try:
        from mpi4py import MPI as mpi
    except ImportError as exc:
        raise ImportError(
            "backend 'mpi' needs mpi4py and an MPI library: pip install 'parareal[mpi]' "
            "(mpi4py with the mpich wheel), or mpi4py built against the cluster's MPI"
        ) from exc
    return mpi


# -- states as buffers -----------------------------------------------------------------------
def to_buffer(states: list[Any]) -> tuple[np.ndarray, dict[str, Any]]:
    """Stack ``states`` into one contiguous numpy array for ``Send``, and how to undo it."""
    first = states[0]
    if not is_torch(first):
        return np.ascontiguousarray(np.stack(states)), {"kind": "numpy"}
    import torch

    stacked = torch.stack([s.detach() for s in states]).cpu().contiguous()
    meta: dict[str, Any] = {"kind": "torch", "dtype": str(stacked.dtype).split(".")[-1]}
    try:
        return stacked.numpy(), meta
    except TypeError:  # bfloat16 and other dtypes numpy lacks: send the bits
        view = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
        bits = stacked.view(view[stacked.element_size()])
        meta["bits"] = True
        return bits.numpy(), meta


def from_buffer(array: np.ndarray, meta: dict[str, Any], device: Any = None) -> list[Any]:
    """The states of :func:`to_buffer` back, on ``device`` for torch states."""
    if meta["kind"] == "numpy":
        return list(array)
    import torch

    tensor = torch.from_numpy(array)
    if meta.get("bits"):
        tensor = tensor.view(getattr(torch, meta["dtype"]))
    if device is not None:
        tensor = tensor.to(device)
    return list(tensor.unbind(0))


def _header(array: np.ndarray) -> dict[str, Any]:
    return {"shape": array.shape, "dtype": array.dtype.str}


def _empty(header: dict[str, Any]) -> np.ndarray:
    return np.empty(header["shape"], dtype=np.dtype(header["dtype"]))


# -- the backend -----------------------------------------------------------------------------
class MPI(ConcurrentBackend):
    """Parareal as an MPI job: every rank calls ``solve`` with the same arguments (SPMD).

    Parameters
    ----------
    comm : mpi4py.MPI.Comm, optional
        The communicator (default: ``MPI.COMM_WORLD`` when the run starts); a
        sub-communicator is allowed: only its ranks take part.
    root : int
        The rank that drives the iteration and returns first.
    device : str, torch.device or callable, optional
        Where each rank runs its tasks (torch states): ``"cuda:{local_rank}"`` (formatted with
        the rank's ``local_rank`` and ``rank``), a fixed device, or a callable
        ``device(rank) -> device``. States come back to the caller's device.
    entry_timeout : float
        Seconds each rank waits for the others to enter ``solve`` (default 60; ``math.inf``:
        no limit). A rank still missing then is named by the root, which ends the job.

    Notes
    -----
    Every rank returns the same :class:`~parareal.Solution`. With one rank it runs in-process
    (the root's worker thread does the fine work). Before any work, every rank's arguments
    are checked against the root's (:meth:`enter`, :mod:`parareal.backends.entry`); the check
    costs one small message per rank and a digest of ``f`` (about 1 ms for a lambda, 0.5 s
    for a 67 MB model's ``forward``). Its messages use tags 7731-7733 of the communicator
    (a duplicate could hang on a missing rank): an application should not receive with
    ``MPI.ANY_TAG`` while ranks are entering ``solve``. ``odeint``'s stability probe (a
    ``coarse_method`` given as a propagator) calls ``f`` on each rank before the check.

    How states travel: numpy arrays and CPU torch tensors as MPI buffers (``Send``/``Recv``/
    ``Bcast``), the states of one task stacked into one contiguous buffer, only small headers
    (times, shapes, counters) pickled; dtypes numpy lacks (bfloat16) as their bits; CUDA
    tensors through host memory and back to the receiving rank's device (no CUDA-aware MPI
    path). Run messages go over a duplicate of the communicator, never mixing with the
    application's.

    Waiting: once every rank has entered, no rank uses a timeout of its own. Waiting ranks
    probe for messages with a sleep that grows to 2 ms (at most 2 ms of latency per task),
    leaving the cores to the ranks that compute. See ``docs/mpi.md``.
    """

    name: ClassVar[str] = "mpi"
    #: Every rank calls ``solve``; only the root drives (:meth:`drive`).
    spmd: ClassVar[bool] = True
    #: ``solve_serial``: every rank computes the serial solution itself.
    serial_here: ClassVar[bool] = True

    def __init__(self, comm: Any = None, root: int = 0, device: Any = None,
                 entry_timeout: float = DEFAULT_ENTRY_TIMEOUT) -> None:
        mpi = _mpi()
        if comm is not None and not isinstance(comm, mpi.Comm):
            raise TypeError(f"comm must be an mpi4py.MPI.Comm or None, got {type(comm).__name__}")
        if isinstance(root, bool) or not isinstance(root, (int, np.integer)):
            raise TypeError(f"root must be a rank (an int), got {root!r}")
        self._comm = comm
        size = self.comm.Get_size()
        if not 0 <= root < size:
            raise ValueError(f"root must be a rank of the communicator (0..{size - 1}), got {root}")
        self.root = int(root)
        if device is not None and not (callable(device) or isinstance(device, str)
                                       or type(device).__name__ == "device"):
            raise TypeError("device must be a str such as 'cuda:{local_rank}', a torch.device, "
                            f"a callable of the rank, or None; got {type(device).__name__}")
        self.device = device
        self.entry_timeout = check_timeout(entry_timeout)

    @property
    def comm(self) -> Any:
        """The communicator of the run."""
        return self._comm if self._comm is not None else _mpi().COMM_WORLD

    @property
    def rank(self) -> int:
        """This process's rank in the communicator."""
        return self.comm.Get_rank()

    @property
    def workers(self) -> int:  # type: ignore[override]
        """One worker per rank (the root's runs on a thread beside the driver)."""
        return self.comm.Get_size()

    @property
    def keeps_autograd(self) -> bool:  # type: ignore[override]
        """True on a single rank (the work stays in this process)."""
        return self.comm.Get_size() == 1

    def drives(self) -> bool:
        """True on the root rank."""
        return self.rank == self.root

    def rank_device(self, rank: int | None = None) -> Any:
        """The device on which ``rank`` (default: this one) runs its tasks, or None."""
        rank = self.rank if rank is None else rank
        device = self.device
        if device is None:
            return None
        if callable(device):
            return device(rank)
        if isinstance(device, str):
            return device.format(local_rank=local_rank(self.comm), rank=rank)
        return device

    def enter(self, **arguments: Any) -> None:
        """Meet the other ranks at the entry of ``solve``, before any call of ``f``.

        Each rank sends digests of its ``arguments`` (those of
        :func:`~parareal.backends.entry.argument_fields`) to the root, which compares them
        with its own.

        Raises
        ------
        ValueError
            On every rank, when a rank's arguments differ from the root's: the message names
            the arguments and the ranks.

        Notes
        -----
        A rank that has not entered within ``entry_timeout`` seconds ends the job: the root
        (or, when the root is the one missing, a waiting rank) prints one line naming it and
        calls ``Abort``.
        """
        enter(self.comm, self.root, argument_fields(**arguments), self.entry_timeout)

    def agree(self, prepare: Callable[[], T], what: str = "the arguments") -> T | None:
        """Run ``prepare()`` on the root alone (it writes and reads checkpoints); its
        exception is raised on every rank (:class:`RankAborted` on the others, saying that
        the root refused ``what``).
        Returns its result on the root, ``None`` on the other ranks."""
        comm, root = self.comm, self.root
        if self.drives():
            try:
                result = prepare()
            except Exception as exc:
                comm.bcast(exc, root=root)
                raise
            comm.bcast(None, root=root)
            return result
        error = comm.bcast(None, root=root)
        if error is not None:
            raise RankAborted(f"parareal: the root refused {what}: {error}")
        return None

    def broadcast(self, value: T) -> T:
        """The root's ``value`` on every rank."""
        return self.comm.bcast(value, root=self.root)

    def drive(self, run: Callable[[], Any], rhs: Rhs, fine: Propagator, y0: Any) -> Any:
        """The root runs ``run()`` and sends its Solution to every rank; the other ranks serve
        its fine propagations meanwhile (:meth:`serve`) and return that Solution."""
        if not self.drives():
            return self.serve(rhs, fine, y0)
        return self.share(run())

    def barrier(self) -> None:
        """``comm.Barrier()``."""
        self.comm.Barrier()

    def open(self, rhs: Rhs, propagator: Propagator, y0: Any) -> Session:
        return _RootSession(self, rhs, y0)

    def serve(self, rhs: Rhs, propagator: Propagator, y0: Any) -> Any:
        """A worker rank's part of ``solve``: run tasks until the root is done, then return
        the root's :class:`~parareal.Solution`."""
        comm = self.comm.Dup()
        try:
            _serve(comm, self.root, rhs, propagator, self.rank_device())
        finally:
            comm.Free()
        return _receive_solution(self.comm, self.root, y0)

    def share(self, solution: Any) -> Any:
        """The root's last step: send ``solution`` to every rank; returns it."""
        comm = self.comm
        if comm.Get_size() > 1:
            _send_solution(comm, self.root, solution)
        return solution

    def __repr__(self) -> str:
        return f"MPI(root={self.root}, size={self.workers})"


def local_rank(comm: Any) -> int:
    """The rank among the ranks of the same node (from the launcher, else by MPI)."""
    for var in LOCAL_RANK_VARS:
        value = os.environ.get(var)
        if value is not None and value.isdigit():
            return int(value)
    mpi = _mpi()
    node = comm.Split_type(mpi.COMM_TYPE_SHARED)
    try:
        return node.Get_rank()
    finally:
        node.Free()


# -- waiting without spinning ---------------------------------------------------------------
def _wait_message(comm: Any, source: int, tag: int, status: Any) -> None:
    """Return once a message from ``source`` with ``tag`` can be received, probing with
    :func:`~parareal.backends.entry.backoff` (a blocking receive would busy-wait, and with
    several threads hold MPI's lock)."""
    sleep = backoff()
    while not comm.Iprobe(source=source, tag=tag, status=status):
        sleep()


# -- worker ranks ----------------------------------------------------------------------------
def _serve(comm: Any, root: int, rhs: Rhs, fine: Propagator, device: Any) -> None:
    mpi = _mpi()
    status = mpi.Status()

    def cancelled() -> bool:
        return comm.Iprobe(source=root, tag=TAG_CTRL)

    while True:
        _wait_message(comm, root, mpi.ANY_TAG, status)
        header = comm.recv(source=root, tag=status.Get_tag())
        if status.Get_tag() == TAG_CTRL:
            comm.send({"op": "bye"}, dest=root, tag=TAG_RESULT)
            if header["op"] == "abort":
                raise RankAborted(f"parareal: the run was aborted ({header['why']})")
            return
        data = _empty(header)
        comm.Recv(data, source=root, tag=TAG_TASK_DATA)
        try:
            ys = from_buffer(data, header["meta"], device)
            task = Task(fine, ys, header["t0s"], header["t1s"])
            result = run_task(rhs.f, rhs.vectorized, task, cancelled)
        except BaseException as exc:
            import cloudpickle

            try:
                payload = cloudpickle.dumps(exc)
            except Exception:
                payload = cloudpickle.dumps(RuntimeError(f"{type(exc).__qualname__}: {exc}"))
            comm.send({"op": "error", "id": header["id"], "exc": payload,
                       "traceback": worker_traceback(exc, f"MPI rank {comm.Get_rank()}")},
                      dest=root, tag=TAG_RESULT)
            continue
        out, meta = to_buffer(result.values)
        reply = dataclasses.replace(result, values=[])
        comm.send({"op": "result", "id": header["id"], "result": reply, "meta": meta,
                   **_header(out)}, dest=root, tag=TAG_RESULT)
        comm.Send(out, dest=root, tag=TAG_RESULT_DATA)


def _receive_solution(comm: Any, root: int, y0: Any) -> Any:
    meta = comm.bcast(None, root=root)
    data = _empty(meta)
    comm.Bcast(data, root=root)
    values = from_buffer(data, meta["meta"], y0.device if is_torch(y0) else None)
    y = ops_for(y0).stack(values)
    return dataclasses.replace(meta["solution"], y=y)


def _send_solution(comm: Any, root: int, solution: Any) -> None:
    ops = ops_for(solution.y)
    data, meta = to_buffer(ops.unstack(solution.y))
    shared = dataclasses.replace(solution, y=None)
    choice = shared.coarse_choice
    if choice is not None:  # its propagator may hold a user's jac that pickle cannot send
        try:
            pickle.dumps(choice)
        except Exception:
            shared = dataclasses.replace(shared, coarse_choice=dataclasses.replace(
                choice, propagator=repr(choice.propagator)))
    comm.bcast({"solution": shared, "meta": meta, **_header(data)}, root=root)
    comm.Bcast(data, root=root)


# -- the root --------------------------------------------------------------------------------
class _RootSession(Session):
    """Sends tasks to idle ranks (the root's own worker thread last) and completes their
    futures from a receiver thread."""

    def __init__(self, backend: MPI, rhs: Rhs, y0: Any) -> None:
        super().__init__(backend.workers, backend.name)
        self.comm = backend.comm.Dup()
        self.root = backend.root
        self.f = rhs.f
        self.vectorized = rhs.vectorized
        self.grad = caller_grad_mode()
        self.home = y0.device if is_torch(y0) else None
        self.device = backend.rank_device()
        self.idle = [r for r in range(self.comm.Get_size()) if r != self.root]
        self.waiting: dict[int, tuple[cf.Future, int]] = {}
        self.lock = threading.Lock()
        self.next_id = 0
        self.local = cf.ThreadPoolExecutor(1, thread_name_prefix="parareal-root-worker")
        self.local_busy = False
        self.receiver: threading.Thread | None = None
        if self.idle:
            self.receiver = threading.Thread(target=self._receive, name="parareal-mpi-receiver",
                                             daemon=True)
            self.receiver.start()

    def _submit(self, task: Task) -> cf.Future:
        with self.lock:
            rank = self.idle.pop(0) if self.idle else None
            if rank is None:
                if self.local_busy:  # pragma: no cover - the driver submits <= workers tasks
                    raise RuntimeError("backend 'mpi': no idle rank for a task")
                self.local_busy = True
        if rank is None:
            future = self.local.submit(self._run_local, task)
            return future
        future: cf.Future = cf.Future()
        future.set_running_or_notify_cancel()  # sent: it runs to its end (or its next f call)
        data, meta = to_buffer(task.ys)
        with self.lock:
            task_id = self.next_id
            self.next_id += 1
            self.waiting[task_id] = (future, rank)
        self.comm.send({"id": task_id, "t0s": [float(t) for t in task.t0s],
                        "t1s": [float(t) for t in task.t1s], "meta": meta, **_header(data)},
                       dest=rank, tag=TAG_TASK)
        self.comm.Send(data, dest=rank, tag=TAG_TASK_DATA)
        return future

    def _run_local(self, task: Task) -> TaskResult:
        try:
            if self.device is not None:
                task = dataclasses.replace(task, ys=[y.to(self.device) for y in task.ys])
            result = run_task(self.f, self.vectorized, task, self.cancelled, self.grad)
            if self.device is not None:
                result.values = [v.to(self.home) for v in result.values]
            return result
        finally:
            with self.lock:
                self.local_busy = False

    def _receive(self) -> None:
        """Receiver thread: complete the futures of remote tasks; end on every rank's bye."""
        mpi = _mpi()
        status = mpi.Status()
        remaining = self.comm.Get_size() - 1
        while remaining:
            _wait_message(self.comm, mpi.ANY_SOURCE, TAG_RESULT, status)
            source = status.Get_source()
            message = self.comm.recv(source=source, tag=TAG_RESULT)
            op = message["op"]
            if op == "bye":
                remaining -= 1
                continue
            if op == "result":
                data = _empty(message)
                self.comm.Recv(data, source=source, tag=TAG_RESULT_DATA)
            with self.lock:
                future, _ = self.waiting.pop(message["id"])
                self.idle.append(source)
            if future.done():  # pragma: no cover - a sent task is never cancelled
                continue
            if op == "result":
                result = message["result"]
                result.values = from_buffer(data, message["meta"], self.home)
                future.set_result(result)
            else:
                future.set_exception(_remote_error(message, source))

    def close(self, failed: bool = False) -> None:
        super().close(failed)
        why = "an error on another rank" if failed else "done"
        for rank in range(self.comm.Get_size()):
            if rank != self.root:
                self.comm.send({"op": "abort" if failed else "stop", "why": why}, dest=rank,
                               tag=TAG_CTRL)
        self.local.shutdown(wait=True, cancel_futures=True)
        if self.receiver is not None:
            self.receiver.join()
        self.comm.Free()


def _remote_error(message: dict[str, Any], rank: int) -> BaseException:
    import pickle

    exc = pickle.loads(message["exc"])
    if isinstance(exc, TaskCancelled):
        return exc
    exc.__cause__ = RemoteTraceback(message["traceback"])
    if hasattr(exc, "add_note"):
        exc.add_note(f"parareal: raised on MPI rank {rank}")
    return exc
