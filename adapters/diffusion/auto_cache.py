"""What ``method="auto"`` measured, kept in memory and on disk: model call costs and call patterns.

``auto`` (:mod:`.auto`) times model calls and counts call patterns with stub runs; both cost
seconds that a later call should not pay again. This module keeps them:

* **In memory**, for the life of the process: call costs per (model fingerprint, key), or per
  model object (held weakly) when the model has no fingerprint.
* **On disk**, one JSON file per key under ``$XDG_CACHE_HOME/parareal/auto/`` (default
  ``~/.cache/parareal/auto/``), for models with a fingerprint and for call patterns. Set the
  environment variable :data:`ENV_VAR` (``PARAREAL_AUTO_CACHE``) to ``off`` to keep
  everything in memory only.

The **fingerprint** of a ``torch.nn.Module`` is a digest of its class, its tree of submodules
(names and classes), its ``training`` flag and every parameter and buffer (name, dtype, shape
and bytes): a model whose weights change gets a new fingerprint, so stale costs are never
reused. It is computed once per model object and state of its tensors (their storage and
version counters), so a second call costs a walk over the tensors, not a hash of the bytes.
Other callables (a function, a wrapper object) have none: their costs stay in memory, per object.

A cost **key** holds the sample shape, dtype, device (and the GPU's name), torch's thread count,
the conditioning, the host and the torch version (:func:`machine_key`); a pattern key the
scheduler, ``N``, method, iterations, blocks, the same machine fields and a stamp of the package's
source files (a changed sampler counts anew). Files are written atomically
(:func:`parareal.atomic.atomic_path`) and read with suspicion: a file that is unreadable, not
JSON, of another :data:`CACHE_VERSION`, for another key, older than :data:`MAX_AGE_S`, with a
wrong checksum, or holding anything but positive finite seconds and positive row counts is
ignored (and replaced by the next write). When the folder cannot be written, ``auto`` works
as before, from memory, and says so once per process (a :class:`RuntimeWarning`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import re
import threading
import time
import warnings
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from parareal.atomic import atomic_path

__all__ = [
    "CACHE_VERSION",
    "ENV_VAR",
    "MAX_AGE_S",
    "CostSlot",
    "cache_dir",
    "clear_disk",
    "clear_memory",
    "load_pattern",
    "machine_key",
    "model_fingerprint",
    "save_pattern",
]

#: The format of the files; a file of another version is ignored.
CACHE_VERSION = 1
#: ``off`` (or ``0``, ``false``, ``no``) keeps ``auto``'s measurements in memory only.
ENV_VAR = "PARAREAL_AUTO_CACHE"
#: Files older than this (seconds: 30 days) are ignored and measured anew.
MAX_AGE_S = 30 * 24 * 3600.0
_OFF = {"off", "0", "false", "no"}
_MAX_FILE_BYTES = 4 << 20
_MAX_ROWS = 1 << 31
_MAX_SECONDS = 1e6
_ROWS = re.compile(r"[1-9][0-9]{0,9}")

_LOCK = threading.Lock()
_COSTS: dict[str, _Entry] = {}  # per file name (models with a fingerprint)
_BY_OBJECT: weakref.WeakKeyDictionary[Any, dict[str, _Entry]] = weakref.WeakKeyDictionary()
_FINGERPRINTS: weakref.WeakKeyDictionary[Any, tuple[tuple, str]] = weakref.WeakKeyDictionary()
_WARNED: set[str] = set()
_STAMP: list[str] = []


def cache_dir() -> Path | None:
    """The folder of the disk cache, or ``None`` when :data:`ENV_VAR` turns it off.

    ``$XDG_CACHE_HOME/parareal/auto`` where that variable holds an absolute path (the XDG
    rule), else ``~/.cache/parareal/auto``; ``None`` too when there is no home folder.
    """
    if os.environ.get(ENV_VAR, "").strip().lower() in _OFF:
        return None
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        home = os.path.expanduser("~")
        if not os.path.isabs(home):
            return None
        base = os.path.join(home, ".cache")
    return Path(base) / "parareal" / "auto"


def machine_key(device: torch.device) -> dict[str, Any]:
    """The fields of a key that describe where the costs were measured."""
    key: dict[str, Any] = {"host": platform.node(), "machine": platform.machine(),
                           "cpus": os.cpu_count() or 0, "torch": torch.__version__,
                           "threads": torch.get_num_threads(), "device": str(device)}
    if device.type == "cuda":
        key["device_name"] = torch.cuda.get_device_name(device)
    return key


def _tensors(model: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    return [*model.named_parameters(remove_duplicate=False),
            *model.named_buffers(remove_duplicate=False)]


def _state_token(tensors: Sequence[tuple[str, torch.Tensor]]) -> tuple | None:
    """What changes when a tensor is replaced or modified in place (``None``: cannot tell)."""
    try:
        return tuple((name, t.data_ptr(), t._version, tuple(t.shape), t.dtype, t.device)
                     for name, t in tensors)
    except (RuntimeError, AttributeError):  # e.g. inference tensors have no version counter
        return None


def model_fingerprint(model: Any) -> str | None:
    """A digest of a ``torch.nn.Module``'s class, structure and tensors; ``None`` otherwise.

    ``None`` too where the bytes cannot be read (meta or sparse tensors): such a model's costs
    stay in memory.
    """
    if not isinstance(model, torch.nn.Module):
        return None
    tensors = _tensors(model)
    token = _state_token(tensors)
    token = None if token is None else (model.training, token)
    with _LOCK:
        known = _FINGERPRINTS.get(model)
    if token is not None and known is not None and known[0] == token:
        return known[1]
    digest = hashlib.blake2b(digest_size=20)
    cls = type(model)
    digest.update(f"{cls.__module__}.{cls.__qualname__}|{model.training}\n".encode())
    for name, sub in model.named_modules():
        digest.update(f"{name}:{type(sub).__module__}.{type(sub).__qualname__}\n".encode())
    try:
        with torch.no_grad():
            for name, t in tensors:
                if t.is_sparse or t.device.type == "meta":
                    return None
                digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
                flat = t.detach().reshape(-1).contiguous()
                if flat.numel():
                    digest.update(flat.view(torch.uint8).cpu().numpy().data)
    except (RuntimeError, TypeError, ValueError):
        return None
    fingerprint = digest.hexdigest()
    if token is not None:
        with _LOCK:
            _FINGERPRINTS[model] = (token, fingerprint)
    return fingerprint


def _source_stamp() -> str:
    """A digest of the names, sizes and times of the package's source files (once a process)."""
    if not _STAMP:
        import parareal

        digest = hashlib.blake2b(digest_size=16)
        digest.update(getattr(parareal, "__version__", "").encode())
        roots = {Path(parareal.__file__).parent, Path(__file__).resolve().parent}
        for root in sorted(roots):
            for path in sorted(root.rglob("*.py")):
                try:
                    st = path.stat()
                except OSError:
                    continue
                digest.update(f"{path}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        _STAMP.append(digest.hexdigest())
    return _STAMP[0]


# -- files --------------------------------------------------------------------------------------


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _name(kind: str, key: Mapping[str, Any]) -> str:
    digest = hashlib.sha256(_canonical([CACHE_VERSION, kind, key]).encode()).hexdigest()
    return f"{kind}-{digest[:32]}.json"


def _checksum(kind: str, key: Any, created: Any, data: Any) -> str:
    return hashlib.sha256(_canonical([CACHE_VERSION, kind, key, created, data]).encode()
                          ).hexdigest()


def _read(kind: str, key: Mapping[str, Any]) -> tuple[float, Any] | None:
    """``(created, data)`` of the file for ``(kind, key)``, or ``None`` when it is absent or not
    to be trusted (the data's own structure is checked by the caller)."""
    folder = cache_dir()
    if folder is None:
        return None
    path = folder / _name(kind, key)
    try:
        if path.stat().st_size > _MAX_FILE_BYTES:
            return None
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(doc, dict) or set(doc) != {"version", "kind", "key", "created", "data",
                                                 "checksum"}:
        return None
    created, now = doc["created"], time.time()
    try:
        trusted = (type(doc["version"]) is int and doc["version"] == CACHE_VERSION
                   and doc["kind"] == kind and doc["key"] == json.loads(_canonical(key))
                   and type(created) is float and math.isfinite(created)
                   and now - MAX_AGE_S <= created <= now + 60.0
                   and doc["checksum"] == _checksum(kind, doc["key"], created, doc["data"]))
    except (ValueError, TypeError, RecursionError):  # e.g. NaN: no checksum can match
        return None
    return (created, doc["data"]) if trusted else None


def _write(kind: str, key: Mapping[str, Any], data: Any, created: float | None = None) -> None:
    """Write the file for ``(kind, key)`` atomically; say once per process if it cannot be."""
    folder = cache_dir()
    if folder is None:
        return
    created = time.time() if created is None else created
    doc = {"version": CACHE_VERSION, "kind": kind, "key": json.loads(_canonical(key)),
           "created": created, "data": data}
    doc["checksum"] = _checksum(kind, doc["key"], created, data)
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        with atomic_path(str(folder / _name(kind, key))) as tmp:
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(_canonical(doc))
    except (OSError, ValueError) as exc:
        if str(folder) not in _WARNED:
            _WARNED.add(str(folder))
            warnings.warn(f"parareal: method='auto' keeps its timings in memory only: the cache "
                          f"folder {folder} cannot be written ({type(exc).__name__}: {exc}); "
                          f"set {ENV_VAR}=off to not try", RuntimeWarning, stacklevel=2)


def _seconds(value: Any, *, zero: bool = False) -> bool:
    return (type(value) is float and math.isfinite(value) and value < _MAX_SECONDS
            and (value > 0 or (zero and value == 0)))


def _costs_from(data: Any) -> dict[int, float] | None:
    if not isinstance(data, dict) or set(data) != {"costs"} or not isinstance(data["costs"], dict):
        return None
    out = {}
    for rows, seconds in data["costs"].items():
        if not (_ROWS.fullmatch(rows) and int(rows) < _MAX_ROWS and _seconds(seconds)):
            return None
        out[int(rows)] = seconds
    return out


# -- costs --------------------------------------------------------------------------------------


class _Entry:
    """The memory of one cost key: seconds by rows."""

    def __init__(self) -> None:
        self.costs: dict[int, float] = {}


class CostSlot:
    """The measured seconds per call, by rows, of one model and key: in memory, and on disk
    when the model has a fingerprint (:func:`model_fingerprint`).

    Parameters
    ----------
    model : object
        The model as the caller passed it.
    key : mapping
        JSON values: what besides the model the costs depend on (shape, dtype, device...).

    Attributes
    ----------
    costs : dict of int to float
        Seconds of one call of ``rows`` rows (a copy: :meth:`update` keeps new ones).
    on_disk : bool
        Whether the costs are kept on disk too.
    """

    def __init__(self, model: Any, key: Mapping[str, Any]) -> None:
        fingerprint = model_fingerprint(model)
        self._key = {**key, "model": fingerprint}
        name = _name("costs", self._key)
        self.on_disk = fingerprint is not None
        with _LOCK:
            if self.on_disk:
                entry = _COSTS.setdefault(name, _Entry())
            else:
                try:
                    entry = _BY_OBJECT.setdefault(model, {}).setdefault(name, _Entry())
                except TypeError:  # cannot be weakly referenced: nothing is kept
                    entry = _Entry()
            self._entry = entry
            fresh = not entry.costs
        if self.on_disk and fresh:
            found = _read("costs", self._key)
            with _LOCK:
                entry.costs.update(_costs_from(found[1] if found else None) or {})
        with _LOCK:
            self.costs = dict(entry.costs)

    def update(self, new: Mapping[int, float]) -> None:
        """Keep ``new`` costs (in memory; on disk too, merged with what the file holds)."""
        if not new:
            return
        self.costs.update(new)
        with _LOCK:
            self._entry.costs.update(new)
        if self.on_disk:
            found = _read("costs", self._key)
            old = _costs_from(found[1]) if found else None
            created = found[0] if found and old is not None else None
            merged = {**(old or {}), **self.costs}
            _write("costs", self._key, {"costs": {str(r): float(s) for r, s in
                                                  sorted(merged.items())}}, created)


# -- call patterns ------------------------------------------------------------------------------


def _pattern_key(key: Sequence[Any]) -> dict[str, Any]:
    return {"pattern": json.loads(_canonical(list(key))), "code": _source_stamp(),
            **machine_key(torch.device("cpu"))}


def load_pattern(key: Sequence[Any]) -> tuple[tuple[int, ...], float] | None:
    """The rows and seconds of a stub run saved by :func:`save_pattern`, or ``None``."""
    if cache_dir() is None:
        return None
    found = _read("pattern", _pattern_key(key))
    data = found[1] if found else None
    if not isinstance(data, dict) or set(data) != {"rows", "seconds"}:
        return None
    rows, seconds = data["rows"], data["seconds"]
    if (not isinstance(rows, list) or not _seconds(seconds, zero=True)
            or not all(type(r) is int and 1 <= r < _MAX_ROWS for r in rows)):
        return None
    return tuple(rows), seconds


def save_pattern(key: Sequence[Any], rows: Sequence[int], seconds: float) -> None:
    """Keep a stub run's rows per call and seconds on disk (``key``: JSON values)."""
    if cache_dir() is not None and math.isfinite(seconds) and seconds >= 0:
        _write("pattern", _pattern_key(key), {"rows": [int(r) for r in rows],
                                              "seconds": float(seconds)})


def clear_memory() -> None:
    """Forget the costs and fingerprints held in memory (the files stay)."""
    with _LOCK:
        _COSTS.clear()
        _BY_OBJECT.clear()
        _FINGERPRINTS.clear()


def clear_disk() -> None:
    """Remove this cache's files (``costs-*.json``, ``pattern-*.json``) from :func:`cache_dir`."""
    folder = cache_dir()
    if folder is None or not folder.is_dir():
        return
    for path in [*folder.glob("costs-*.json"), *folder.glob("pattern-*.json")]:
        try:
            if path.is_file() and not path.is_symlink():
                path.unlink()
        except OSError:
            pass
