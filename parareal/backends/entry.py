"""The entry check of an SPMD run: every rank has called ``solve``, with the root's arguments.

Every rank of an :class:`~parareal.backends.MPI` run calls ``solve`` with the same arguments,
like a collective. Before any call of ``f``, each rank reduces its arguments to small
:func:`argument_fields` (short values as text, arrays and objects as hashlib digests) and
sends them to the root; the root compares them with its own and sends every rank one verdict:
go on, or raise ``ValueError`` naming the arguments and the ranks that differ
(:func:`enter`).

The wait is bounded: a rank that has not entered within ``timeout`` seconds (it exited, raised
before ``solve``, called it with another backend, or is stuck) is named by the root, which
prints one line and ends the job with ``Abort``; the waiting ranks cannot know whether it
will ever come, and its absence would otherwise hang every collective after.

Digests of ``f`` and of the propagators are taken over their cloudpickle bytes, with numpy
arrays and torch tensors (a model's weights) hashed from their raw bytes and sets hashed in
an order that does not depend on ``PYTHONHASHSEED``, and classes defined in the script by
their name instead of cloudpickle's per-process id: plain functions, lambdas, closures over
numpy arrays, functions using a global set, ``nn.Module`` instances and their bound
``forward``, and the library's propagators give the same digest on every rank
(``tests/scripts/mpi_digests.py``). An object cloudpickle cannot pickle (it holds a lock, a
file, a CUDA stream...) is compared by its type and ``repr`` (memory addresses removed) for a
propagator, and not at all for ``f``; so is an ``f`` whose arrays exceed
:data:`DIGEST_BYTE_LIMIT` (hashing a large model at every call would cost seconds).
"""

from __future__ import annotations

import hashlib
import io
import math
import re
import sys
import time
from typing import Any

import numpy as np

__all__ = ["DEFAULT_ENTRY_TIMEOUT", "DIGEST_BYTE_LIMIT", "argument_fields", "check_timeout",
           "disagreement", "enter", "object_digest"]

#: Seconds a rank waits for the others to enter ``solve`` (``MPI(entry_timeout=...)``).
DEFAULT_ENTRY_TIMEOUT = 60.0
#: Array bytes beyond which ``f`` is not digested (a large model's weights: hashing them on
#: every call of ``solve`` would cost seconds); ``f`` is then not compared.
DIGEST_BYTE_LIMIT = 256 * 2**20
TAG_ENTRY = 7731
TAG_VERDICT = 7732
TAG_END = 7733
_ADDRESS = re.compile(r"0x[0-9a-fA-F]+")
_SHOWN = 60  # characters of a value shown in a message
#: cloudpickle's functions that rebuild a class defined in a script -> where their arguments
#: hold the class's tracker id (a uuid4, different in every process)
_TRACKER_ARG: dict[Any, int] = {}


class _TooLarge(Exception):
    pass


class _HashWriter(io.RawIOBase):
    """A file that hashes what is written to it."""

    def __init__(self) -> None:
        self.hash = hashlib.blake2b(digest_size=16)

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.hash.update(data)
        return len(data)


def _array_bytes(value: Any) -> tuple[str, tuple[int, ...], memoryview]:
    """dtype, shape and raw bytes of a numpy array or (any device's) torch tensor."""
    if isinstance(value, np.ndarray):
        array = np.ascontiguousarray(value)
        return array.dtype.str, array.shape, memoryview(array).cast("B")
    tensor = value.detach().cpu().contiguous()
    try:
        array = tensor.numpy()
    except TypeError:  # bfloat16 and other dtypes numpy lacks: their bits
        import torch

        view = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
        array = tensor.view(view[tensor.element_size()]).numpy()
    return str(tensor.dtype), tuple(tensor.shape), memoryview(np.ascontiguousarray(array)).cast("B")


def state_digest(value: Any) -> str:
    """A digest of an array's dtype, shape and bytes."""
    dtype, shape, data = _array_bytes(value)
    digest = hashlib.blake2b(f"{dtype}{shape}".encode(), digest_size=16)
    digest.update(data)
    return digest.hexdigest()


def _pickler_class() -> type:
    import cloudpickle
    from cloudpickle import cloudpickle as internals

    _TRACKER_ARG.update({getattr(internals, "_make_skeleton_class", None): 4,
                         getattr(internals, "_make_skeleton_enum", None): 5})
    _TRACKER_ARG.pop(None, None)

    class Pickler(cloudpickle.CloudPickler):
        """cloudpickle, with arrays replaced by digests of their bytes and sets sorted."""

        def __init__(self, file: Any, budget: list[int]) -> None:
            super().__init__(file, protocol=4)
            self.budget = budget

        def persistent_id(self, obj: Any) -> Any:
            kind = type(obj)
            if kind is np.ndarray or _is_tensor(obj):
                dtype, shape, data = _array_bytes(obj)
                self.budget[0] -= data.nbytes
                if self.budget[0] < 0:
                    raise _TooLarge
                return ("array", dtype, shape, state_digest(obj))
            if kind is set or kind is frozenset:
                return (kind.__name__, sorted(_digest(item, self.budget) for item in obj))
            return None

        def reducer_override(self, obj: Any) -> Any:
            reduced = super().reducer_override(obj)
            where = _TRACKER_ARG.get(reduced[0]) if isinstance(reduced, tuple) else None
            if where is None:
                return reduced
            # a class defined in a script: cloudpickle tags it with a random uuid per process
            args = list(reduced[1])
            args[where] = f"{obj.__module__}.{obj.__qualname__}"
            return (reduced[0], tuple(args), *reduced[2:])

    return Pickler


def _is_tensor(obj: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.Tensor)


def _digest(obj: Any, budget: list[int]) -> str:
    writer = _HashWriter()
    _pickler_class()(writer, budget).dump(obj)
    return writer.hash.hexdigest()


def object_digest(obj: Any, limit: int = DIGEST_BYTE_LIMIT) -> str | None:
    """A digest of ``obj``'s cloudpickle bytes, or None when it cannot be pickled.

    Arrays and tensors inside count by their bytes (at most ``limit`` of them in all, else
    None); sets are hashed in sorted order of their items' digests, so that the digest does
    not depend on ``PYTHONHASHSEED``.
    """
    try:
        return _digest(obj, [limit])
    except RecursionError:
        return None
    except Exception:
        return None


def _shown(obj: Any) -> str:
    text = _ADDRESS.sub("0x...", repr(obj))
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def _propagator_field(prop: Any) -> tuple[str, str]:
    digest = object_digest(prop)
    if digest is None:  # cannot be pickled: its type and repr, without memory addresses
        text = f"{type(prop).__module__}.{type(prop).__qualname__}:"
        text += _ADDRESS.sub("0x", repr(prop))
        digest = hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
    return _shown(prop), digest


def _plain(value: Any) -> tuple[str, str]:
    text = repr(value)
    return text, text


def argument_fields(*, f: Any, y0: Any, boundaries: np.ndarray, coarse: Any, fine: Any,
                    tol: float, rtol: float, stop: str, max_iters: int, schedule: str,
                    lookahead: Any, vectorized: Any, initial: Any,
                    checkpointing: tuple[bool, bool]) -> dict[str, tuple[str, str | None]]:
    """What the ranks compare: argument name -> (the value as shown in a message, digest).

    A digest of None (``f`` that cannot be pickled) is not compared.
    """
    dtype, shape, _ = _array_bytes(y0)
    t = np.ascontiguousarray(boundaries, dtype=np.float64)
    f_digest = object_digest(f)
    return {
        "f": ("", f_digest),
        "y0": (f"shape {shape}, dtype {dtype}, digest {state_digest(y0)[:8]}",
               state_digest(y0)),
        "slices": _plain(len(t) - 1),
        "t_span/boundaries": (f"[{t[0]:.17g}, {t[-1]:.17g}] in {len(t) - 1} slices",
                              state_digest(t)),
        "tol": _plain(float(tol)),
        "rtol": _plain(float(rtol)),
        "stop": _plain(stop),
        "max_iters": _plain(int(max_iters)),
        "schedule": _plain(schedule),
        "lookahead": _plain(lookahead),
        "vectorized": _plain(bool(vectorized)),
        "coarse": _propagator_field(coarse),
        "fine": _propagator_field(fine),
        "initial": ("None", "None") if initial is None else (
            "an array", object_digest(list(initial))),
        "checkpoint/resume": (f"checkpoint={'given' if checkpointing[0] else 'None'}, "
                              f"resume={'given' if checkpointing[1] else 'None'}",
                              repr(checkpointing)),
    }


def disagreement(root: int, own: dict[str, tuple[str, str | None]],
                 others: dict[int, dict[str, tuple[str, str | None]]]) -> str | None:
    """The message naming each argument on which a rank differs from the root, or None."""
    parts = []
    for name, (shown, digest) in own.items():
        ranks = sorted(rank for rank, fields in others.items()
                       if _differs(digest, fields.get(name, ("?", "?"))[1]))
        if not ranks:
            continue
        which = f"rank {ranks[0]}" if len(ranks) == 1 else "ranks " + ", ".join(map(str, ranks))
        verb = "differs" if len(ranks) == 1 else "differ"
        detail = ""
        if name != "f":
            theirs = others[ranks[0]][name][0]
            detail = f" (rank {ranks[0]}: {theirs}; root: {shown})"
        parts.append(f"{name}: {which} {verb} from the root (rank {root}){detail}")
    if not parts:
        return None
    return ("parareal: MPI ranks disagree on " + "; on ".join(parts)
            + ". Every rank must call solve with the same arguments (SPMD); nothing was run")


def _differs(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a != b


def check_timeout(value: Any) -> float:
    """``entry_timeout``: a positive number of seconds (``math.inf``: wait for ever)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"entry_timeout must be a positive number of seconds, got {value!r}")
    value = float(value)
    if math.isnan(value) or value <= 0:
        raise ValueError(f"entry_timeout must be a positive number of seconds, got {value!r}")
    return value


# -- the handshake ---------------------------------------------------------------------------
#: Longest sleep between two probes while waiting for a message (seconds).
MAX_POLL_SECONDS = 0.002

#: Pause between printing the last words of a rank and ``Abort`` (seconds). MPICH's Hydra
#: kills the job's processes as soon as one calls ``Abort``, and output still on its way to
#: ``mpiexec`` was then lost, or sent twice, on a loaded machine.
ABORT_GRACE_S = 1.0


def backoff() -> Any:
    """A ``sleep()`` for polling loops: 50 us, doubling up to :data:`MAX_POLL_SECONDS`.

    MPI libraries busy-wait inside a blocking receive, which on a node with more ranks (or
    threads) than cores takes the core from the ranks that compute; probing with this sleep
    costs at most :data:`MAX_POLL_SECONDS` of latency per message.
    """
    delay = [0.00005]

    def sleep() -> None:
        time.sleep(delay[0])
        delay[0] = min(delay[0] * 2, MAX_POLL_SECONDS)

    return sleep


def enter(comm: Any, root: int, fields: dict[str, tuple[str, str | None]],
          timeout: float) -> None:
    """Meet the other ranks at the entry of ``solve``: return when every rank is there with
    the root's arguments; raise ``ValueError`` on every rank when some differ; end the job
    (print once, ``Abort``) when a rank has not come within ``timeout`` seconds."""
    if comm.Get_size() == 1:
        return
    if comm.Get_rank() == root:
        _enter_root(comm, root, fields, timeout)
    else:
        _enter_worker(comm, root, fields, timeout)


def _enter_root(comm: Any, root: int, fields: dict[str, Any], timeout: float) -> None:
    from mpi4py import MPI as mpi

    deadline = time.monotonic() + timeout
    status = mpi.Status()
    others: dict[int, dict[str, Any]] = {}
    expected = comm.Get_size() - 1
    sleep = backoff()
    while len(others) < expected:
        if comm.Iprobe(source=mpi.ANY_SOURCE, tag=TAG_ENTRY, status=status):
            source = status.Get_source()
            others[source] = comm.recv(source=source, tag=TAG_ENTRY)
            comm.send("here", dest=source, tag=TAG_VERDICT)  # the root is in: wait for it
            continue
        if time.monotonic() > deadline:
            missing = [r for r in range(comm.Get_size()) if r != root and r not in others]
            for rank in others:
                comm.send(("missing", None), dest=rank, tag=TAG_VERDICT)
            _end_job(comm, _missing_message(missing, f"the root (rank {root})", timeout),
                     tell=[])
        sleep()
    message = disagreement(root, fields, others)
    for rank in others:
        comm.send(("ok", None) if message is None else ("mismatch", message), dest=rank,
                  tag=TAG_VERDICT)
    if message is not None:
        raise ValueError(message)


def _enter_worker(comm: Any, root: int, fields: dict[str, Any], timeout: float) -> None:
    from mpi4py import MPI as mpi

    request = comm.isend(fields, dest=root, tag=TAG_ENTRY)
    # rank r waits 0.2 r s longer than the first: the first to time out ends the job alone
    deadline = time.monotonic() + timeout + 0.2 * min(comm.Get_rank(), 25)
    sleep = backoff()
    while not comm.Iprobe(source=root, tag=TAG_VERDICT):
        if comm.Iprobe(source=mpi.ANY_SOURCE, tag=TAG_END):
            _await_abort(comm)  # another rank, which waited less, is ending the job
        if time.monotonic() > deadline:
            rank = comm.Get_rank()
            _end_job(comm, _missing_message([root], f"rank {rank}", timeout),
                     tell=[r for r in range(comm.Get_size()) if r not in (root, rank)])
        sleep()
    reply = comm.recv(source=root, tag=TAG_VERDICT)  # "here": the root has entered
    sleep = backoff()
    while not comm.Iprobe(source=root, tag=TAG_VERDICT):  # its wait is bounded
        sleep()
    verdict, message = comm.recv(source=root, tag=TAG_VERDICT)
    assert reply == "here"
    request.wait()
    if verdict == "mismatch":
        raise ValueError(message)
    if verdict == "missing":
        _await_abort(comm)  # silent: the root prints and ends the job


def _missing_message(missing: list[int], waiter: str, timeout: float) -> str:
    which = (f"rank {missing[0]}" if len(missing) == 1
             else "ranks " + ", ".join(map(str, missing)))
    return (f"parareal: MPI {which} did not enter solve within entry_timeout = {timeout:g} s "
            f"after {waiter} entered it (it exited, raised before solve, called solve with "
            "another backend or is still busy); every rank must call solve with backend MPI. "
            "Ending the job (MPI Abort); raise MPI(entry_timeout=...) if some ranks need "
            "longer to get there")


def _end_job(comm: Any, message: str, tell: list[int]) -> None:
    """Print ``message`` once (here) and end every process of the job; the ranks in ``tell``
    are first asked to stay silent (they may be waiting, with later deadlines, for the same
    missing rank)."""
    for rank in tell:
        try:
            comm.isend(None, dest=rank, tag=TAG_END)
        except Exception:  # noqa: BLE001 - that rank may be gone; the Abort ends it anyway
            pass
    print(f"RuntimeError: {message}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    time.sleep(ABORT_GRACE_S)  # let mpiexec forward the line before the job is killed
    comm.Abort(1)


def _await_abort(comm: Any) -> None:
    """Wait, silently, for the rank that ends the job; end it here if that never comes. A rank
    that exited instead (``SystemExit``) could make ``mpiexec`` kill the job before the other
    rank's message was forwarded."""
    time.sleep(10 * ABORT_GRACE_S)
    comm.Abort(1)
