"""The ``cuda-streams`` backend: fine propagations on CUDA streams, one worker per stream."""

from __future__ import annotations

import concurrent.futures as cf
import queue
import threading
from dataclasses import replace
from typing import Any, ClassVar

from ..propagators import Propagator
from ..state import is_torch
from ..validation import check_int
from .base import Rhs
from .concurrent import ConcurrentBackend, Session
from .tasks import Task, TaskResult, run_task

__all__ = ["CudaStreams"]

#: Streams per device when ``streams_per_device`` is not given.
DEFAULT_STREAMS = 4


def _no_cuda(reason: str) -> RuntimeError:
    return RuntimeError(
        f"backend 'cuda-streams' needs CUDA, but {reason}; on a CPU use backend='threads' "
        "(parareal.backends.Threads), which runs the fine solves on threads"
    )


class _StreamSession(Session):
    """Worker threads, each bound to one (device, stream) slot for the run."""

    def __init__(self, backend: CudaStreams, rhs: Rhs, y0: Any) -> None:
        import torch

        super().__init__(backend.workers, backend.name)
        self.torch = torch
        self.f = rhs.f
        self.vectorized = rhs.vectorized
        self.grad = torch.is_grad_enabled()
        self.home = y0.device
        slots: queue.SimpleQueue = queue.SimpleQueue()
        for device in backend.devices:
            for _ in range(backend.streams_per_device):
                slots.put((device, torch.cuda.Stream(device=device)))
        self.local = threading.local()

        def bind() -> None:
            self.local.slot = slots.get_nowait()

        self.pool = cf.ThreadPoolExecutor(
            backend.workers, thread_name_prefix="parareal-stream", initializer=bind
        )

    def _submit(self, task: Task) -> cf.Future:
        torch = self.torch
        ready = None
        if self.home.type == "cuda":
            # the inputs were written on the caller's current stream: record where they are
            caller = torch.cuda.current_stream(self.home)
            ready = torch.cuda.Event()
            ready.record(caller)
        return self.pool.submit(self._run, task, ready)

    def _run(self, task: Task, ready: Any) -> TaskResult:
        torch = self.torch
        device, stream = self.local.slot
        with torch.cuda.device(device), torch.cuda.stream(stream):
            if ready is not None:
                stream.wait_event(ready)  # the inputs are complete before this stream reads them
            ys = []
            for y in task.ys:
                if y.device == device:
                    y.record_stream(stream)  # not reused by the caller's allocator too early
                    ys.append(y)
                else:
                    ys.append(y.to(device, non_blocking=True))
            result = run_task(self.f, self.vectorized, replace(task, ys=ys), self.cancelled,
                              self.grad)
            values = [v.to(self.home, non_blocking=True) for v in result.values]
            done = torch.cuda.Event()
            done.record(stream)
        done.synchronize()  # the future completes when the values exist
        if self.home.type == "cuda":
            caller = torch.cuda.current_stream(self.home)
            for value in values:
                if value.device == self.home:
                    value.record_stream(caller)
        result.values = values
        return result

    def close(self, failed: bool = False) -> None:
        super().close(failed)
        self.pool.shutdown(wait=True, cancel_futures=True)


class CudaStreams(ConcurrentBackend):
    """Fine propagations on CUDA streams: one worker thread per stream, over one or more GPUs.

    Each task runs on its worker's device and stream: it waits for the caller's stream (an
    event recorded when the task is submitted), marks the caller's input tensors with
    ``record_stream``, computes, copies the results back to the caller's device and
    synchronises its stream before it reports; the results are marked for the caller's current
    stream. States must be torch tensors; with several devices ``f`` must accept states on
    each of them (e.g. a model replicated per device that ``f`` picks by ``y.device``).

    Parameters
    ----------
    devices : sequence of int, str or torch.device, optional
        CUDA devices to use (default: the current CUDA device).
    streams_per_device : int, optional
        Streams (workers) per device (default 4).

    Raises
    ------
    RuntimeError
        If torch or CUDA is not available; it names ``threads`` as the CPU alternative.
    """

    name: ClassVar[str] = "cuda-streams"
    keeps_autograd: bool = True

    def __init__(self, devices: Any = None, streams_per_device: int | None = None) -> None:
        try:
            import torch
        except ImportError as exc:
            raise _no_cuda("torch is not installed") from exc
        if not torch.cuda.is_available():
            raise _no_cuda("torch.cuda.is_available() is False on this machine")
        if devices is None:
            devices = [torch.cuda.current_device()]
        elif isinstance(devices, (int, str)) or isinstance(devices, torch.device):
            devices = [devices]
        parsed = []
        for device in devices:
            try:
                if isinstance(device, int):
                    device = torch.device("cuda", device)
                else:
                    device = torch.device(device)
            except (RuntimeError, TypeError) as exc:
                raise ValueError(f"devices: not a CUDA device: {device!r}") from exc
            if device.type != "cuda":
                raise ValueError(f"devices must be CUDA devices, got {device}")
            if device.index is None:
                device = torch.device("cuda", torch.cuda.current_device())
            if device.index >= torch.cuda.device_count():
                raise ValueError(
                    f"devices: {device} does not exist ({torch.cuda.device_count()} visible)"
                )
            parsed.append(device)
        if not parsed:
            raise ValueError("devices must name at least one CUDA device")
        self.devices = parsed
        if streams_per_device is None:
            streams_per_device = DEFAULT_STREAMS
        self.streams_per_device = check_int(streams_per_device, "streams_per_device")
        self.workers = len(parsed) * self.streams_per_device

    def open(self, rhs: Rhs, propagator: Propagator, y0: Any) -> Session:
        if not is_torch(y0):
            raise TypeError(
                "backend 'cuda-streams' needs torch tensor states (y0 is a "
                f"{type(y0).__name__}); use backend='threads' for numpy states"
            )
        return _StreamSession(self, rhs, y0)

    def __repr__(self) -> str:
        names = ", ".join(repr(str(d)) for d in self.devices)
        return f"CudaStreams(devices=[{names}], streams_per_device={self.streams_per_device})"
