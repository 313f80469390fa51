"""Argument checks shared by the public entry points (clear ``TypeError``/``ValueError``)."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from .state import ArrayOps, is_torch, ops_for

__all__ = [
    "check_boundaries",
    "check_int",
    "check_max_iters",
    "check_positive",
    "check_real",
    "check_slices",
    "check_span",
    "check_tensor_storage",
    "check_tolerance",
    "check_y0",
]


def check_y0(y0: Any) -> tuple[Any, ArrayOps]:
    """Return ``y0`` as a numpy array or torch tensor of a floating or complex dtype."""
    if is_torch(y0):
        check_tensor_storage(y0, "y0")
        if not (y0.is_floating_point() or y0.is_complex()):
            raise TypeError(f"y0 must have a floating or complex dtype, got {y0.dtype}")
    else:
        if isinstance(y0, (str, bytes)) or y0 is None:
            raise TypeError(f"y0 must be a numpy array or a torch tensor, got {y0!r}")
        if isinstance(y0, np.ma.MaskedArray):
            raise TypeError(
                "y0 must be a plain numpy array, got a numpy.ma.MaskedArray: its mask would be "
                "dropped and the masked values integrated as numbers; pass y0.filled(value) "
                "or y0.compressed() (the unmasked values) instead"
            )
        try:
            arr = np.asarray(y0)
        except Exception as exc:
            raise TypeError(f"y0 must be array-like, got {type(y0).__name__}") from exc
        if arr.dtype.kind in "biu":
            arr = arr.astype(np.float64)
        if arr.dtype.kind not in "fc":
            raise TypeError(f"y0 must have a floating or complex dtype, got {arr.dtype}")
        y0 = arr
    ops = ops_for(y0)
    if not ops.all_finite(y0):
        raise ValueError("y0 contains NaN or inf; the initial state must be finite")
    return y0, ops


def check_tensor_storage(x: Any, name: str) -> None:
    """Refuse a torch tensor that holds no numbers here: on the ``meta`` device (shapes
    only), sparse, or quantized (``ValueError``/``TypeError`` naming ``name``)."""
    if x.device.type == "meta":
        raise ValueError(
            f"{name} is on the 'meta' device, which holds shapes but no values; create it on "
            "a real device such as 'cpu' or 'cuda'"
        )
    if x.layout is not _strided():
        raise TypeError(f"{name} must be a dense (strided) tensor, got layout {x.layout}; "
                        f"pass {name}.to_dense()")
    if x.is_quantized:
        raise TypeError(f"{name} must not be quantized, got dtype {x.dtype}; pass "
                        f"{name}.dequantize()")


def _strided() -> Any:
    import torch

    return torch.strided


#: Most slices a run may have: more would hold that many states and bookkeeping entries,
#: far beyond any useful parallelism (checked before any work).
MAX_SLICES = 10**6
#: Most sub-steps a fixed-step propagator may take per propagation.
MAX_STEPS = 10**8


def check_int(value: Any, name: str, minimum: int = 1, maximum: int | None = None) -> int:
    """Return ``value`` as an int ``>= minimum`` (and ``<= maximum`` when given; ``bool``
    is refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        kind = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise TypeError(f"{name} must be {kind}, got {short_repr(value)}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {short_repr(value)}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum:_}, got {short_repr(value)}: the work (and "
                         "memory) would not be bounded")
    return int(value)


def short_repr(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_real(value: Any, name: str) -> float:
    """Return ``value`` (a real number, or a one-element array/tensor) as a finite float."""
    if is_torch(value) and value.numel() == 1:
        value = value.item()
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def check_span(t_span: Any) -> tuple[float, float]:
    """Return ``(t0, t1)`` as floats with ``t0 < t1``."""
    if isinstance(t_span, (str, bytes)):
        raise TypeError(f"t_span must be a pair (t0, t1), got {t_span!r}")
    try:
        items = list(t_span)
    except TypeError:
        raise TypeError(f"t_span must be a pair (t0, t1), got {t_span!r}") from None
    if len(items) != 2:
        raise ValueError(f"t_span must have exactly two entries (t0, t1), got {len(items)}")
    t0, t1 = check_real(items[0], "t_span[0]"), check_real(items[1], "t_span[1]")
    if t1 == t0:
        raise ValueError(f"t_span is empty: t0 == t1 == {t0}")
    if t1 < t0:
        raise ValueError(f"t_span is inverted: t1 = {t1} < t0 = {t0}; pass t0 < t1")
    return t0, t1


def check_slices(slices: Any) -> int:
    """Return the number of slices as an int in ``1..MAX_SLICES``."""
    return check_int(slices, "slices", 1, MAX_SLICES)


def check_tolerance(value: Any, name: str) -> float:
    """Return a finite tolerance >= 0."""
    value = check_real(value, name)
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def check_positive(value: Any, name: str) -> float:
    """Return a finite number > 0."""
    value = check_real(value, name)
    if not value > 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return value


def check_max_iters(max_iters: Any, slices: int) -> int:
    """Return the iteration cap: ``slices`` for None, else an int in ``[0, slices]``.

    More than ``slices`` iterations are never needed (all slices are exact after ``slices``),
    so larger values are capped at ``slices``.
    """
    if max_iters is None:
        return slices
    if isinstance(max_iters, bool) or not isinstance(max_iters, numbers.Integral):
        raise TypeError(f"max_iters must be None or an int >= 0, got {max_iters!r}")
    if max_iters < 0:
        raise ValueError(f"max_iters must be >= 0, got {max_iters}")
    return min(int(max_iters), slices)


def check_boundaries(boundaries: Any, t0: float, t1: float, slices: int) -> np.ndarray:
    """Return float64 slice boundaries: equal slices if None, else the validated sequence."""
    if boundaries is None:
        return np.linspace(t0, t1, slices + 1)
    if is_torch(boundaries):
        boundaries = boundaries.detach().cpu().numpy()
    try:
        raw = np.asarray(boundaries)
        if raw.dtype.kind not in "biuf":  # strings, objects, complex: not times
            raise TypeError
        grid = raw.astype(np.float64)
    except (TypeError, ValueError):
        raise TypeError("boundaries must be a 1-D sequence of real numbers, got "
                        f"{short_repr(boundaries)}") from None
    if grid.shape != (slices + 1,):
        raise ValueError(
            f"boundaries must have slices + 1 = {slices + 1} entries, got shape {grid.shape}"
        )
    if not np.all(np.isfinite(grid)) or not np.all(np.diff(grid) > 0):
        raise ValueError("boundaries must be finite and strictly increasing")
    if grid[0] != t0 or grid[-1] != t1:
        raise ValueError(
            f"boundaries must start at t_span[0] = {t0} and end at t_span[1] = {t1}, "
            f"got {grid[0]} and {grid[-1]}"
        )
    return grid
