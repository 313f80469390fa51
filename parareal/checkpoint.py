"""Checkpoint and restart: the newest Parareal iterate on disk, and a run continued from it.

``solve(..., checkpoint=PATH)`` writes, after every complete iterate (iterate 0 included) and
once more when the run stops, what is needed to continue: the boundary values ``U^k``, ``k``,
the residual and critical-path history, the status if the run has stopped, and a fingerprint
of the run. ``solve(..., resume=PATH)`` reads it back, checks the fingerprint against its own
arguments and continues from iterate ``k``; the result is the uninterrupted run's, bit for
bit (``C(n, k) = G(U_n^k)`` and ``F(n, k) = F(U_n^k)`` are recomputed from ``U^k``).

Format (nothing is ever unpickled):

* numpy states: a ``.npz`` archive (``numpy.load(path, allow_pickle=False)``) with the arrays
  ``values`` (shape ``(N + 1, *y0.shape)``, y0's dtype, little-endian), ``meta`` (``uint8``:
  UTF-8 JSON, below) and ``sha256`` (``uint8``: ASCII hex digest).
* torch states: a safetensors file with the tensor ``values`` (complex states stored as
  ``torch.view_as_real``, a trailing axis of 2) and the metadata entries ``parareal`` (the JSON)
  and ``sha256``.

The digest is SHA-256 over the JSON's bytes followed by the raw bytes of ``values``: any
damaged byte gives a ``ValueError``, never a silently different run. The JSON holds
``format`` (``"parareal-checkpoint"``), ``version`` (1), ``run`` (the fingerprint compared on
resume: ``kind``, ``dtype``, ``shape``, ``y0_sha256``, ``boundaries``, ``coarse``, ``fine``
(reprs), ``tol``, ``rtol``, ``initial_sha256``), ``iteration``, ``status`` (``null`` while the
run goes on), ``max_iters``, ``residuals``, ``critical_path``, ``wall_time`` and ``values``
(its stored ``dtype`` and ``shape``). Floats are written with ``repr`` and read back exactly.

Files are written atomically: a temporary file in the same folder, flushed to disk, then
:func:`os.replace` onto the path; a reader sees the previous complete checkpoint or the new
one, never a partial file. A run killed mid-write may leave a ``.NAME.XXXXXXXX.partEXT`` file
behind.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import stat
import struct
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .atomic import atomic_path, name_max, probe_writable, write_target
from .result import Status
from .state import ArrayOps, is_torch

__all__ = [
    "FORMAT",
    "VERSION",
    "Checkpoint",
    "Checkpointer",
    "check_checkpoint_path",
    "check_resume_path",
    "checkpoint_size_bound",
    "load_checkpoint",
    "read_checkpoint",
    "run_fingerprint",
    "write_checkpoint",
]

FORMAT = "parareal-checkpoint"
VERSION = 1
_NPZ_MAGIC = b"PK\x03\x04"
_STATUS = {status.value: status for status in Status}


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint: the iterate ``U^k`` of a run and what is needed to continue it.

    Attributes
    ----------
    iteration : int
        ``k``.
    y : array
        ``U^k``: the ``N + 1`` boundary values stacked, shape ``(N + 1, *y0.shape)``, numpy or
        torch (:func:`load_checkpoint` gives torch tensors on the CPU).
    residuals : tuple of float
        Updates of iterations ``1..k``.
    critical_path, wall_time : tuple
        ``Stats.critical_path_per_iteration`` and ``Stats.wall_time_per_iteration`` of
        iterates ``0..k``.
    status : Status or None
        How the run ended at iterate ``k``; ``None`` while it was still going.
    max_iters : int
        The iteration cap of the run that wrote it.
    coarse_index : int or None
        With ``coarse="auto"``: which of the candidates the run chose (``None`` before the
        choice or without auto), so that a resumed run goes on with the same one.
    run : dict
        The fingerprint of the run (see :func:`run_fingerprint`).
    """

    iteration: int
    y: Any
    residuals: tuple[float, ...]
    critical_path: tuple[int, ...]
    wall_time: tuple[float, ...]
    status: Status | None
    max_iters: int
    run: dict[str, Any] = field(default_factory=dict)
    coarse_index: int | None = None

    @property
    def t(self) -> np.ndarray:
        """The slice boundaries of the run."""
        return np.asarray(self.run["boundaries"], dtype=np.float64)


# -- paths ----------------------------------------------------------------------------------
def _path(value: Any, name: str) -> str:
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path (str or os.PathLike) or None, got {value!r}")
    path = os.fsdecode(os.fspath(value))
    if not path.strip():
        raise ValueError(f"{name} is an empty path: give a file name")
    return path


_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind(mode: int) -> str:
    """What a file that is not a regular file is, in words."""
    return next((words for test, words in _KINDS if test(mode)), "not a regular file")


def _check_name(path: str, name: str) -> None:
    """No NUL byte, and no component longer than the file system allows."""
    if "\0" in path:
        raise ValueError(f"{name} {path!r} contains a NUL byte; give a valid file name")
    try:
        os.fsencode(path)
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"{name} {path!r} cannot be encoded as a file name ({exc.reason}); give a valid "
            "file name"
        ) from exc
    folder = os.path.dirname(os.path.abspath(path))
    limit = name_max(folder)
    for part in os.path.abspath(path).split(os.sep):
        if len(os.fsencode(part)) > limit:
            raise ValueError(
                f"{name}: the name {part[:40]!r}... is {len(os.fsencode(part))} bytes long; "
                f"this file system allows {limit} at most"
            )


def _stat(path: str, name: str) -> os.stat_result | None:
    """``os.stat(path)`` (links followed), None if nothing is there; a dangling or looping
    link, or a path that cannot be looked at, is a ValueError naming ``name``."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise ValueError(
                f"{name} {path!r} is a symbolic link to {os.readlink(path)!r}, which does not "
                "exist; point it at a file or give another path"
            ) from None
        return None
    except OSError as exc:
        raise ValueError(f"{name} {path!r} cannot be used: {exc.strerror}") from exc


def check_checkpoint_path(value: Any, *, name: str = "checkpoint") -> str | None:
    """Return the checkpoint path as a str, or raise before any work is done.

    The path must name a regular file, a symbolic link to one (written through: the file it
    points to is replaced and the link stays), or nothing yet, in an existing folder where
    files can be created: the temporary file of the atomic write is created and removed here,
    so a read-only or special place (``/proc``) fails now, not after the coarse sweep.

    Parameters
    ----------
    value : str, os.PathLike or None
        The path (None: no checkpoint, returned as is).
    name : str, optional
        What the messages call it: the argument (default ``"checkpoint"``), or a command
        line's flag (``"--checkpoint"``).

    Raises
    ------
    TypeError
        If it is not a str or ``os.PathLike`` (or None).
    ValueError
        If it is empty, holds a NUL byte or a name longer than the file system allows, names
        a folder, a device, a FIFO or a dangling link, or its folder does not exist or is not
        writable.
    """
    if value is None:
        return None
    path = _path(value, name)
    _check_name(path, name)
    info = _stat(path, name)
    if info is not None and not stat.S_ISREG(info.st_mode):
        hint = "give a file name" if stat.S_ISDIR(info.st_mode) else "give a regular file"
        raise ValueError(f"{name} {path!r} is {_kind(info.st_mode)}; {hint}")
    target = write_target(path)
    _check_name(target, name)
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        raise ValueError(f"{name} {path!r}: folder {folder!r} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{name} {path!r}: folder {folder!r} is not writable")
    try:
        probe_writable(path)
    except OSError as exc:
        raise ValueError(
            f"{name} {path!r}: cannot create a file in folder {folder!r} "
            f"({exc.strerror}); give a path in a writable folder"
        ) from exc
    return path


def check_resume_path(value: Any, *, name: str = "resume") -> str | None:
    """Return the path to resume from as a str (or None).

    It must name a regular file or a symbolic link to one; nothing is opened here (a FIFO or
    a device is refused without reading from it).

    Parameters
    ----------
    value : str, os.PathLike or None
        The path (None: a new run, returned as is).
    name : str, optional
        What the messages call it: the argument (default ``"resume"``), or a command line's
        flag (``"--resume"``).

    Raises
    ------
    TypeError
        If it is not a str or ``os.PathLike`` (or None).
    FileNotFoundError
        If there is no file there (resuming never starts a new run silently).
    ValueError
        If it is empty, holds a NUL byte or a name longer than the file system allows, or
        names a folder, a device, a FIFO or a dangling link.
    """
    if value is None:
        return None
    path = _path(value, name)
    _check_name(path, name)
    info = _stat(path, name)
    if info is None:
        raise FileNotFoundError(
            f"{name}: no checkpoint at {path!r}; resuming needs an existing checkpoint file "
            f"(to start a new run, do not pass {name})"
        )
    if stat.S_ISDIR(info.st_mode):
        raise ValueError(f"{name} {path!r} is a folder; give the checkpoint file")
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(
            f"{name} {path!r} is {_kind(info.st_mode)}, not a checkpoint file; give the file "
            "that a checkpointing run wrote"
        )
    return path


def checkpoint_size_bound(run: dict[str, Any], itemsize: int) -> int:
    """The most bytes a checkpoint of the run ``run`` (its fingerprint) can have.

    The boundary values (``N + 1`` states of ``itemsize``-byte elements) plus a generous
    allowance for the metadata (the fingerprint, per-iterate histories, archive headers).
    """
    boundaries = len(run["boundaries"])
    values = boundaries * math.prod(run["shape"]) * itemsize
    header = 8 * len(json.dumps(run)) + 512 * boundaries + (1 << 20)
    return values + header


# -- fingerprint ----------------------------------------------------------------------------
def _raw_bytes(x: Any) -> bytes:
    """The bytes of an array or tensor in C order, little-endian (for hashing and storing)."""
    if is_torch(x):
        flat = x.detach().cpu().contiguous().reshape(-1)
        return flat.view(sys.modules["torch"].uint8).numpy().tobytes()
    x = np.asarray(x)
    return np.ascontiguousarray(x, dtype=x.dtype.newbyteorder("<")).tobytes()


def _dtype_name(x: Any) -> str:
    return str(x.dtype).removeprefix("torch.") if is_torch(x) else x.dtype.name


def _describe(prop: Any) -> str:
    """``repr(prop)``, or its class when the repr is the default ``<... at 0x...>``."""
    text = repr(prop)
    if re.search(r" at 0x[0-9a-fA-F]+>$", text):
        return f"{type(prop).__module__}.{type(prop).__qualname__} (no repr)"
    return text


def run_fingerprint(
    *,
    y0: Any,
    boundaries: np.ndarray,
    coarse: Any,
    fine: Any,
    tol: float,
    rtol: float,
    initial: list[Any] | None,
    stop: str | None = None,
) -> dict[str, Any]:
    """What identifies a run, as JSON-friendly values; compared field by field on resume.

    ``stop`` is the stopping rule's fingerprint when it is not the default ``MaxUpdate``
    (whose ``tol`` and ``rtol`` are the fields of those names).

    ``f`` cannot be fingerprinted: the caller must pass the same ``f``. Propagators are
    compared by ``repr`` (by class when they have no repr of their own).
    """
    initial_hash = None
    if initial is not None:
        initial_hash = hashlib.sha256(b"".join(_raw_bytes(v) for v in initial)).hexdigest()
    out = {
        "kind": "torch" if is_torch(y0) else "numpy",
        "dtype": _dtype_name(y0),
        "shape": list(y0.shape),
        "y0_sha256": hashlib.sha256(_raw_bytes(y0)).hexdigest(),
        "boundaries": [float(b) for b in boundaries],
        "coarse": _describe(coarse),
        "fine": _describe(fine),
        "tol": float(tol),
        "rtol": float(rtol),
        "initial_sha256": initial_hash,
    }
    if stop is not None:
        out["stop"] = stop
    return out


def _span(b: list[float]) -> str:
    return f"t_span ({b[0]!r}, {b[-1]!r}) with {len(b) - 1} slices"


def _differences(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """One phrase per field of the fingerprint that differs, naming both values."""
    out = []
    for key in ("kind", "dtype"):
        if saved.get(key) != now[key]:
            out.append(f"{key} differs (checkpoint {saved.get(key)}, this run {now[key]})")
    if saved.get("shape") != now["shape"]:
        out.append(
            f"y0 shape differs (checkpoint {tuple(saved.get('shape') or ())}, "
            f"this run {tuple(now['shape'])})"
        )
    elif not out and saved.get("y0_sha256") != now["y0_sha256"]:
        out.append("y0 differs (its values: the SHA-256 of its bytes does not match)")
    b_saved, b_now = saved.get("boundaries") or [math.nan], now["boundaries"]
    if b_saved != b_now:
        if (b_saved[0], b_saved[-1], len(b_saved)) != (b_now[0], b_now[-1], len(b_now)):
            out.append(f"span or slices differ (checkpoint {_span(b_saved)}, this run "
                       f"{_span(b_now)})")
        else:
            out.append("boundaries differ (same span and slices, other slice boundaries)")
    for key in ("coarse", "fine", "tol", "rtol"):
        if saved.get(key) != now[key]:
            out.append(f"{key} differs (checkpoint {saved.get(key)!r}, this run {now[key]!r})")
    if saved.get("stop") != now.get("stop"):  # absent: the default rule, MaxUpdate(tol, rtol)
        default = "MaxUpdate(tol, rtol)"
        out.append(f"the stopping rule differs (checkpoint {saved.get('stop') or default}, "
                   f"this run {now.get('stop') or default})")
    if saved.get("initial_sha256") != now["initial_sha256"]:
        given = {True: "an initial iterate", False: "no initial"}
        if (saved.get("initial_sha256") is None) != (now["initial_sha256"] is None):
            out.append(
                f"initial differs (checkpoint written with "
                f"{given[saved.get('initial_sha256') is not None]}, this run with "
                f"{given[now['initial_sha256'] is not None]})"
            )
        else:
            out.append("initial differs (its values)")
    return out


# -- writing --------------------------------------------------------------------------------
def _encode(checkpoint: Checkpoint) -> bytes:
    """The file's bytes: an npz archive (numpy) or a safetensors file (torch)."""
    y = checkpoint.y
    run = checkpoint.run
    torch_kind = is_torch(y)
    if torch_kind:
        torch = sys.modules["torch"]
        values = y.detach().to("cpu")
        if values.is_complex():
            values = torch.view_as_real(values)
        values = values.contiguous()
    else:
        values = np.ascontiguousarray(y, dtype=y.dtype.newbyteorder("<"))
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "run": run,
        "iteration": int(checkpoint.iteration),
        "status": None if checkpoint.status is None else checkpoint.status.value,
        "max_iters": int(checkpoint.max_iters),
        "coarse_index": checkpoint.coarse_index,
        "residuals": [float(r) for r in checkpoint.residuals],
        "critical_path": [int(c) for c in checkpoint.critical_path],
        "wall_time": [float(w) for w in checkpoint.wall_time],
        "values": {"dtype": _dtype_name(values), "shape": list(values.shape)},
    }
    meta_bytes = json.dumps(meta, allow_nan=False, separators=(",", ":")).encode()
    digest = hashlib.sha256(meta_bytes + _raw_bytes(values)).hexdigest()
    if torch_kind:
        from safetensors.torch import save

        return save({"values": values}, metadata={"parareal": meta_bytes.decode(),
                                                 "sha256": digest})
    buffer = io.BytesIO()
    np.savez(
        buffer,
        values=values,
        meta=np.frombuffer(meta_bytes, dtype=np.uint8),
        sha256=np.frombuffer(digest.encode(), dtype=np.uint8),
    )
    return buffer.getvalue()


def write_checkpoint(path: str, checkpoint: Checkpoint) -> None:
    """Write ``checkpoint`` to ``path`` atomically and durably (a temporary file in the same
    folder, ``fsync``, :func:`os.replace`; :func:`parareal.atomic.atomic_path`).

    A reader of ``path`` sees the previous file or the complete new one. The file gets the
    usual permissions (``0o666`` less the umask). Torch states need ``safetensors``.
    """
    data = _encode(checkpoint)
    with atomic_path(path, durable=True) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


class Checkpointer:
    """Writes the checkpoints of one run to ``path`` (what the engine calls).

    Parameters
    ----------
    path : str
        A path checked by :func:`check_checkpoint_path`.
    run : dict
        The run's fingerprint (:func:`run_fingerprint`).

    Raises
    ------
    ImportError
        For torch states when safetensors is not installed (checked before any work).
    """

    def __init__(self, path: str, run: dict[str, Any]) -> None:
        if run["kind"] == "torch":
            _import_safetensors()
        self.path = path
        self.run = run

    def save(
        self,
        *,
        iteration: int,
        y: Any,
        residuals: Any,
        critical_path: Any,
        wall_time: Any,
        status: Status | None,
        max_iters: int,
        coarse_index: int | None = None,
    ) -> None:
        """Write iterate ``iteration`` (``y``: its stacked boundary values) and its history."""
        write_checkpoint(
            self.path,
            Checkpoint(
                iteration=iteration,
                y=y,
                residuals=tuple(residuals),
                critical_path=tuple(critical_path),
                wall_time=tuple(wall_time),
                status=status,
                max_iters=max_iters,
                run=self.run,
                coarse_index=coarse_index,
            ),
        )


# -- reading --------------------------------------------------------------------------------
def _import_safetensors() -> Any:
    try:
        import safetensors.torch
    except ImportError as exc:
        raise ImportError(
            "checkpoints of torch states are safetensors files and need safetensors: "
            "pip install 'parareal[torch]'"
        ) from exc
    return safetensors.torch


def _corrupt(path: str, why: str) -> ValueError:
    return ValueError(
        f"checkpoint {path!r} is corrupt or truncated ({why}); it cannot be resumed from"
    )


def _read_npz(path: str, data: bytes) -> tuple[bytes, str, np.ndarray]:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            entries = {name: archive[name] for name in archive.files}
    except Exception as exc:  # zipfile, EOFError, OSError, ValueError...: a damaged archive
        raise _corrupt(path, f"{type(exc).__name__}: {exc}") from exc
    if set(entries) != {"values", "meta", "sha256"}:
        raise _corrupt(path, f"entries {sorted(entries)}, expected meta, sha256, values")
    for name in ("meta", "sha256"):
        if entries[name].dtype != np.uint8 or entries[name].ndim != 1:
            raise _corrupt(path, f"entry {name} is not a byte string")
    try:
        digest = entries["sha256"].tobytes().decode("ascii")
    except UnicodeDecodeError as exc:
        raise _corrupt(path, "its digest is not ASCII") from exc
    return entries["meta"].tobytes(), digest, entries["values"]


def _safetensors_header(path: str, data: bytes) -> dict[str, Any]:
    """The JSON header of a safetensors file (read with the standard library)."""
    if len(data) < 8:
        raise _corrupt(path, f"{len(data)} bytes")
    (size,) = struct.unpack("<Q", data[:8])
    if size > len(data) - 8:
        raise _corrupt(path, "its header runs past the end of the file")
    try:
        header = json.loads(data[8 : 8 + size])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _corrupt(path, f"unreadable safetensors header: {exc}") from exc
    if not isinstance(header, dict):
        raise _corrupt(path, "unreadable safetensors header")
    return header


def _read_safetensors(path: str, data: bytes, header: dict[str, Any]) -> tuple[bytes, str, Any]:
    metadata = header.get("__metadata__")
    if not isinstance(metadata, dict) or not {"parareal", "sha256"} <= set(metadata):
        raise _corrupt(path, "no parareal metadata in the safetensors header")
    st = _import_safetensors()
    try:
        tensors = st.load(data)
    except Exception as exc:  # safetensors' own error type: a damaged file
        raise _corrupt(path, f"{type(exc).__name__}: {exc}") from exc
    if set(tensors) != {"values"}:
        raise _corrupt(path, f"tensors {sorted(tensors)}, expected values")
    return str(metadata["parareal"]).encode(), str(metadata["sha256"]), tensors["values"]


def _is_list(value: Any, kind: type | tuple[type, ...], length: int) -> bool:
    return (
        isinstance(value, list)
        and len(value) == length
        and all(isinstance(v, kind) and not isinstance(v, bool) for v in value)
    )


def _check_meta(path: str, meta: Any, values: Any) -> None:
    """Structure of the metadata (every field present, of the right type and length)."""
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path!r} is not a parareal checkpoint (no format {FORMAT!r})")
    if meta.get("version") != VERSION:
        raise ValueError(
            f"checkpoint {path!r} has format version {meta.get('version')!r}; this parareal "
            f"reads version {VERSION}"
        )
    run, k = meta.get("run"), meta.get("iteration")
    ok = (
        isinstance(run, dict)
        and isinstance(run.get("boundaries"), list)
        and isinstance(run.get("shape"), list)
        and isinstance(k, int)
        and not isinstance(k, bool)
        and 0 <= k <= len(run["boundaries"]) - 1
        and isinstance(meta.get("max_iters"), int)
        and (meta.get("coarse_index") is None or (
            isinstance(meta.get("coarse_index"), int)
            and not isinstance(meta.get("coarse_index"), bool)))
        and (meta.get("status") is None or meta.get("status") in _STATUS)
        and _is_list(meta.get("residuals"), (int, float), k)
        and _is_list(meta.get("critical_path"), int, k + 1)
        and _is_list(meta.get("wall_time"), (int, float), k + 1)
        and meta.get("values") == {"dtype": _dtype_name(values), "shape": list(values.shape)}
        and run.get("kind") == ("torch" if is_torch(values) else "numpy")
    )
    if not ok:
        raise _corrupt(path, "inconsistent metadata")
    expected = [len(run["boundaries"]), *run["shape"]]
    if run.get("kind") == "torch" and run.get("dtype", "").startswith("complex"):
        expected.append(2)
    if list(values.shape) != expected:
        raise _corrupt(path, f"values of shape {tuple(values.shape)}, expected {tuple(expected)}")


def _read(path: str, limit: int | None, name: str) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them (more is an error).

    Opened without blocking and checked with ``fstat`` before any read, so that a FIFO or a
    device put there is refused rather than read without end.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{name} {path!r} is {_kind(info.st_mode)}, not a checkpoint file")
        if limit is not None and info.st_size > limit:
            raise _too_large(path, name, info.st_size, limit, at_least=False)
        data = fh.read() if limit is None else fh.read(limit + 1)
    if limit is not None and len(data) > limit:
        raise _too_large(path, name, len(data), limit, at_least=True)
    return data


def _too_large(path: str, name: str, size: int, limit: int, *, at_least: bool) -> ValueError:
    size_words = f"more than {limit} bytes" if at_least else f"{size} bytes"
    return ValueError(
        f"{name} {path!r} has {size_words}, more than a checkpoint of this run can have "
        f"({limit} bytes at most); it is not a checkpoint of this run"
    )


def _parse(path: str, limit: int | None = None, name: str = "checkpoint") -> tuple[
        dict[str, Any], Any]:
    """Read and verify a checkpoint file: its metadata and its raw ``values``."""
    if os.path.isdir(path):
        raise ValueError(f"{name} {path!r} is a folder, not a checkpoint file")
    data = _read(path, limit, name)
    if data.startswith(_NPZ_MAGIC):
        meta_bytes, digest, values = _read_npz(path, data)
    else:
        header = _safetensors_header(path, data)
        meta_bytes, digest, values = _read_safetensors(path, data, header)
    if hashlib.sha256(meta_bytes + _raw_bytes(values)).hexdigest() != digest:
        raise _corrupt(path, "its SHA-256 digest does not match its contents")
    try:
        meta = json.loads(meta_bytes)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _corrupt(path, f"unreadable metadata: {exc}") from exc
    _check_meta(path, meta, values)
    return meta, values


def _checkpoint(meta: dict[str, Any], y: Any) -> Checkpoint:
    status = meta["status"]
    return Checkpoint(
        iteration=meta["iteration"],
        y=y,
        residuals=tuple(float(r) for r in meta["residuals"]),
        critical_path=tuple(meta["critical_path"]),
        wall_time=tuple(float(w) for w in meta["wall_time"]),
        status=None if status is None else _STATUS[status],
        max_iters=meta["max_iters"],
        run=meta["run"],
        coarse_index=meta.get("coarse_index"),
    )


def _values(path: str, values: Any, run: dict[str, Any]) -> Any:
    """The stored values as states of the run's dtype (torch: complex from real pairs)."""
    if is_torch(values) and str(run.get("dtype", "")).startswith("complex"):
        try:
            values = sys.modules["torch"].view_as_complex(values.contiguous())
        except RuntimeError as exc:
            raise _corrupt(path, f"complex values stored as {values.dtype}") from exc
    if _dtype_name(values) != run.get("dtype"):
        raise _corrupt(path, f"values of dtype {_dtype_name(values)} for a run of dtype "
                             f"{run.get('dtype')}")
    return values


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read a checkpoint written by ``solve(..., checkpoint=path)``, verifying its digest.

    Useful to inspect a run, or to warm-start a different one (other tolerances, more
    slices...) with ``solve(..., initial=load_checkpoint(path).y)``. Torch states come back
    as CPU tensors.

    Raises
    ------
    FileNotFoundError
        If there is no file at ``path``.
    ValueError
        If the file is not a parareal checkpoint, or is corrupt or truncated.
    """
    path = _path(path, "path")
    meta, values = _parse(path)
    return _checkpoint(meta, _values(path, values, meta["run"]))


def read_checkpoint(path: str, run: dict[str, Any], ops: ArrayOps) -> Checkpoint:
    """Read the checkpoint at ``path`` for resuming the run ``run`` (its fingerprint).

    The values come back in the run's kind, dtype and device. The file must be a regular
    file no larger than :func:`checkpoint_size_bound` allows; a larger one is refused from
    its size, without reading it.

    Raises
    ------
    ValueError
        If the file is not a regular file, is larger than any checkpoint of this run can
        be, is corrupt or truncated, or was written by a run that differs from ``run`` (the
        message names every field that differs).
    """
    itemsize = ops.dtype.itemsize  # type: ignore[attr-defined]
    try:
        meta, values = _parse(path, checkpoint_size_bound(run, itemsize), "resume")
    except ValueError as exc:
        if str(exc).startswith("resume "):
            raise
        raise ValueError(f"resume: {exc}") from exc
    differences = _differences(meta["run"], run)
    if differences:
        raise ValueError(
            f"checkpoint {path!r} was written by another run: " + "; ".join(differences)
            + ". Resume with the arguments of the run that wrote it (and the same f), or "
            "start a new run (resume=None)"
        )
    y = _values(path, values, run)
    if run["kind"] == "torch":
        y = y.to(device=ops.device)  # type: ignore[attr-defined]
    else:
        y = y.astype(ops.dtype, copy=False)
    return _checkpoint(meta, y)
