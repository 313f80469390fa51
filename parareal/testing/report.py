"""How the checks of :mod:`parareal.testing` report: one-line ``AssertionError`` messages and
the bit-for-bit comparison of states (numpy arrays or torch tensors)."""

from __future__ import annotations

from typing import Any, NoReturn

import numpy as np

from ..state import is_torch

__all__ = ["describe", "fail", "max_abs_diff", "same_bits"]


def fail(check: str, prop: str, detail: str, **inputs: Any) -> NoReturn:
    """Raise ``AssertionError("check: property: detail; key=value, ...")`` on one line.

    ``check`` is the check function's name, ``prop`` the property that failed, ``detail`` what
    was observed and by how much, and ``inputs`` the input that shows it.
    """
    where = ", ".join(f"{key}={_short(value)}" for key, value in inputs.items())
    message = f"{check}: {prop}: {detail}" + (f"; {where}" if where else "")
    raise AssertionError(message.replace("\n", " "))


def _short(value: Any, limit: int = 120) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe(y: Any) -> str:
    """``"numpy float32 (2, 3)"`` or ``"torch float64 (4,) on cpu"``: a state's kind."""
    if is_torch(y):
        return f"torch {str(y.dtype).removeprefix('torch.')} {tuple(y.shape)} on {y.device}"
    if isinstance(y, np.ndarray):
        return f"numpy {y.dtype} {y.shape}"
    return type(y).__name__


def _numpy(y: Any) -> np.ndarray:
    if is_torch(y):
        return y.detach().cpu().numpy()
    return np.asarray(y)


def same_bits(a: Any, b: Any) -> bool:
    """True when ``a`` and ``b`` are of one kind, dtype, shape and device, with equal values."""
    if is_torch(a) != is_torch(b):
        return False
    if is_torch(a):
        if a.dtype != b.dtype or a.shape != b.shape or a.device != b.device:
            return False
        return bool(a.equal(b)) or bool(((a == b) | (a.isnan() & b.isnan())).all())
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")


def max_abs_diff(a: Any, b: Any) -> float:
    """``max |a - b|`` (computed in float64/complex128; inf when the shapes differ)."""
    x, y = _numpy(a), _numpy(b)
    if x.shape != y.shape:
        return float("inf")
    if x.size == 0:
        return 0.0
    wide = np.complex128 if np.iscomplexobj(x) or np.iscomplexobj(y) else np.float64
    with np.errstate(invalid="ignore", over="ignore"):
        return float(np.max(np.abs(x.astype(wide) - y.astype(wide))))
