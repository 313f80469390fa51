"""The few array operations the engine needs, for numpy arrays and torch tensors.

The engine and the propagators never import torch themselves: they ask :func:`ops_for` for an
:class:`ArrayOps` matching the user's initial state and go through it. Torch is imported only
when a torch tensor is actually handed in (it is then already in ``sys.modules``).
"""

from __future__ import annotations

import operator
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["VECTORIZED_HINT", "ArrayOps", "Lanes", "NumpyOps", "TorchOps", "is_torch", "ops_for"]

#: What ``vectorized=True`` means, for error messages about batched calls of ``f``.
VECTORIZED_HINT = (
    "with vectorized=True, f is always called as f(t, Y) with t of shape (B,) and Y of shape "
    "(B, *y0.shape) (B states stacked along a new leading axis) and must return dy/dt of "
    "shape (B, *y0.shape); pass vectorized=False if f handles one state at a time"
)


def is_torch(x: Any) -> bool:
    """Return True when ``x`` is a torch tensor (without importing torch)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


class ArrayOps:
    """Array operations for one kind of state (a numpy array or a torch tensor).

    An instance is bound to a template state: its shape, dtype and (for torch) device. All
    states handled by one solve share them.
    """

    kind: str = "abstract"
    #: The exact type of a state of this kind (``numpy.ndarray``, ``torch.Tensor``).
    array_type: Any = None

    def __init__(self, template: Any) -> None:
        self.shape: tuple[int, ...] = tuple(template.shape)
        self.dtype = template.dtype
        #: The template's dtype when an answer of exactly :attr:`array_type`, this dtype and the
        #: state's shape, for a state of this dtype, passes :meth:`coerce_derivative` unchanged
        #: (so that loops may skip the call); ``None`` when every answer needs the full check.
        self.fast_dtype: Any = None

    # -- time values handed to f -------------------------------------------------------------
    def time(self, t: float) -> Any:
        """The time value passed to a non-batched call ``f(t, y)``."""
        raise NotImplementedError

    def times(self, ts: Sequence[float]) -> Any:
        """The 1-D vector of times passed to a batched call ``f(t, Y)``."""
        raise NotImplementedError

    # -- structure ---------------------------------------------------------------------------
    def stack(self, items: Sequence[Any]) -> Any:
        """Stack states along a new leading axis."""
        raise NotImplementedError

    def unstack(self, x: Any) -> list[Any]:
        """Split a stacked array along its leading axis."""
        raise NotImplementedError

    def concat(self, items: Sequence[Any]) -> Any:
        """Concatenate stacked arrays along their leading axis."""
        raise NotImplementedError

    def stack_consume(self, items: list[Any]) -> Any:
        """:meth:`stack` ``items`` and empty the list while doing so, so that each state can
        be freed once copied (the caller should hold no other reference): the peak is the
        result plus one state, not twice the result. The same values as :meth:`stack`."""
        out = self.stack(items)
        items.clear()
        return out

    def correct(self, fine: Any, new: Any, old: Any) -> Any:
        """The Parareal correction ``fine + (new - old)`` in one new buffer (no temporary
        beyond it); bitwise what the expression gives."""
        return fine + (new - old)

    def max_abs_diff(self, a: Any, b: Any) -> float:
        """``max_abs(a - b)`` with at most one temporary of the state's size."""
        return self.max_abs(a - b)

    def own(self, x: Any) -> Any:
        """``x``, or a copy of it if it is a view into a larger buffer (a row of a batched
        result), so that keeping it does not keep the whole buffer alive."""
        return x

    def full_nan(self) -> Any:
        """A state of the template's shape filled with NaN."""
        raise NotImplementedError

    # -- reductions --------------------------------------------------------------------------
    def max_abs(self, x: Any) -> float:
        """Max-norm of ``x`` as a Python float (NaN if ``x`` holds a NaN)."""
        raise NotImplementedError

    def all_finite(self, x: Any) -> bool:
        """True when every entry of ``x`` is finite."""
        raise NotImplementedError

    # -- conversion and checks ---------------------------------------------------------------
    def to_numpy(self, x: Any) -> np.ndarray:
        """A numpy copy of ``x`` (for plotting, JSON, MPI buffers)."""
        raise NotImplementedError

    def from_numpy(self, a: np.ndarray) -> Any:
        """A state of this kind, dtype and device built from a numpy array."""
        raise NotImplementedError

    def coerce_derivative(self, dy: Any, y: Any, *, batched: bool = False) -> Any:
        """Check that ``f`` returned an array of the right kind and shape; cast its dtype.

        Raises
        ------
        TypeError
            If ``dy`` is not an array of this kind or its dtype cannot be cast safely.
        ValueError
            If ``dy`` does not have the shape of ``y``.
        """
        raise NotImplementedError

    @staticmethod
    def _type_error(dy: Any, batched: bool) -> str:
        where = "a batched call f(t, Y)" if batched else "f(t, y)"
        what = f"an array of dtype {dy.dtype}" if isinstance(dy, np.ndarray) else repr(dy)
        if len(what) > 60:
            what = type(dy).__name__
        return (
            f"f returned {what} in {where}; f(t, y) must return dy/dt as a numeric array "
            "(or torch tensor) of the state's shape"
        )

    @staticmethod
    def _shape_error(dy_shape: tuple[int, ...], y_shape: tuple[int, ...], batched: bool) -> str:
        if batched:
            return (
                f"f returned an array of shape {dy_shape} in a batched call f(t, Y) with Y of "
                f"shape {y_shape}; {VECTORIZED_HINT}"
            )
        return (
            f"f returned an array of shape {dy_shape} in f(t, y), but the state has shape "
            f"{y_shape}; f(t, y) must return dy/dt with the same shape as y"
        )


class NumpyOps(ArrayOps):
    """:class:`ArrayOps` for numpy arrays. Times are passed to ``f`` as Python floats."""

    #: dtype kinds accepted from ``f`` (bool, integers, floating, complex).
    _NUMERIC = "biufc"

    kind = "numpy"
    array_type = np.ndarray

    def __init__(self, template: Any) -> None:
        super().__init__(template)
        if self.dtype.kind in self._NUMERIC:
            self.fast_dtype = self.dtype

    def time(self, t: float) -> float:
        return float(t)

    def times(self, ts: Sequence[float]) -> np.ndarray:
        return np.array(ts, dtype=np.float64)  # a copy: f may not alter the caller's times

    def stack(self, items: Sequence[Any]) -> np.ndarray:
        return np.stack(items)

    def unstack(self, x: np.ndarray) -> list[np.ndarray]:
        return list(x)

    def concat(self, items: Sequence[Any]) -> np.ndarray:
        return np.concatenate(items)

    def full_nan(self) -> np.ndarray:
        return np.full(self.shape, np.nan, dtype=self.dtype)

    def stack_consume(self, items: list[Any]) -> np.ndarray:
        first = items[0] if items else None
        if (first is None or type(first) is not np.ndarray
                or any(type(x) is not np.ndarray or x.dtype != first.dtype
                       or x.shape != first.shape for x in items)):
            return super().stack_consume(items)
        out = np.empty((len(items), *first.shape), dtype=first.dtype)
        return _fill_consuming(out, items)

    def correct(self, fine: Any, new: Any, old: Any) -> Any:
        d = new - old
        if type(d) is np.ndarray and d.flags.writeable and np.result_type(fine, d) == d.dtype \
                and np.broadcast_shapes(np.shape(fine), d.shape) == d.shape:
            return np.add(fine, d, out=d)  # fine + d: addition commutes bitwise
        return fine + d

    def max_abs_diff(self, a: Any, b: Any) -> float:
        d = np.subtract(a, b)
        if type(d) is not np.ndarray or d.size == 0:
            return self.max_abs(np.asarray(d))
        if d.dtype.kind == "f":
            return float(np.abs(d, out=d).max())
        return float(np.abs(d).max())

    def own(self, x: Any) -> Any:
        if type(x) is np.ndarray and x.base is not None:
            return x.copy()
        return x

    def max_abs(self, x: np.ndarray) -> float:
        if x.size == 0:
            return 0.0
        return float(np.abs(x).max())

    def all_finite(self, x: np.ndarray) -> bool:
        return bool(np.all(np.isfinite(x)))

    def to_numpy(self, x: np.ndarray) -> np.ndarray:
        return np.array(x, copy=True)

    def from_numpy(self, a: np.ndarray) -> np.ndarray:
        return np.asarray(a, dtype=self.dtype)

    def coerce_derivative(self, dy: Any, y: np.ndarray, *, batched: bool = False) -> np.ndarray:
        if not isinstance(dy, np.ndarray):
            if is_torch(dy):
                raise TypeError("f returned a torch tensor for a numpy state; return a numpy array")
            if dy is None or isinstance(dy, (str, bytes)):
                raise TypeError(self._type_error(dy, batched))
            try:
                dy = np.asarray(dy)
            except Exception as exc:  # numpy raises many kinds (ragged lists...)
                raise TypeError(self._type_error(dy, batched)) from exc
        if dy.dtype.kind not in self._NUMERIC:
            raise TypeError(self._type_error(dy, batched))
        if dy.shape != y.shape:
            raise ValueError(self._shape_error(dy.shape, y.shape, batched))
        if dy.dtype != y.dtype:
            if not np.can_cast(dy.dtype, y.dtype, casting="same_kind"):
                raise TypeError(
                    f"f returned dtype {dy.dtype} for a state of dtype {y.dtype}; "
                    "return real values for a real state"
                )
            dy = dy.astype(y.dtype)
        return dy


class TorchOps(ArrayOps):
    """:class:`ArrayOps` for torch tensors.

    Times are passed to ``f`` as tensors (0-d, or 1-d for batched calls) of the state's real
    dtype on the state's device, as torchdiffeq does.
    """

    kind = "torch"

    def __init__(self, template: Any) -> None:
        import torch

        super().__init__(template)
        self._torch = torch
        self.array_type = torch.Tensor
        self.fast_dtype = self.dtype
        self.device = template.device
        self.time_dtype = template.real.dtype if template.is_complex() else template.dtype

    def time(self, t: float) -> Any:
        return self._torch.tensor(t, dtype=self.time_dtype, device=self.device)

    def times(self, ts: Sequence[float]) -> Any:
        return self._torch.tensor(list(ts), dtype=self.time_dtype, device=self.device)

    def stack(self, items: Sequence[Any]) -> Any:
        return self._torch.stack(list(items))

    def unstack(self, x: Any) -> list[Any]:
        return list(x.unbind(0))

    def concat(self, items: Sequence[Any]) -> Any:
        return self._torch.cat(list(items))

    def full_nan(self) -> Any:
        return self._torch.full(self.shape, float("nan"), dtype=self.dtype, device=self.device)

    def stack_consume(self, items: list[Any]) -> Any:
        torch = self._torch
        first = items[0] if items else None
        if (first is None or any(
                not isinstance(x, torch.Tensor) or x.dtype != first.dtype
                or x.shape != first.shape or x.device != first.device or x.requires_grad
                for x in items)):
            return super().stack_consume(items)
        out = torch.empty((len(items), *first.shape), dtype=first.dtype, device=first.device)
        return _fill_consuming(out, items)

    def correct(self, fine: Any, new: Any, old: Any) -> Any:
        d = new - old
        if (not d.requires_grad and not fine.requires_grad and d.dtype == fine.dtype
                and d.shape == fine.shape):
            return d.add_(fine)  # fine + d: addition commutes bitwise
        return fine + d

    def max_abs_diff(self, a: Any, b: Any) -> float:
        d = (a - b).detach()
        if d.numel() == 0:
            return 0.0
        if d.is_floating_point():
            return float(d.abs_().max())
        return float(d.abs().max())

    def own(self, x: Any) -> Any:
        if x._base is not None:
            return x.clone()
        return x

    def max_abs(self, x: Any) -> float:
        if x.numel() == 0:
            return 0.0
        return float(x.detach().abs().max())

    def all_finite(self, x: Any) -> bool:
        return bool(self._torch.isfinite(x).all())

    def to_numpy(self, x: Any) -> np.ndarray:
        return x.detach().cpu().numpy().copy()

    def from_numpy(self, a: np.ndarray) -> Any:
        return self._torch.as_tensor(np.asarray(a), device=self.device).to(self.dtype)

    def coerce_derivative(self, dy: Any, y: Any, *, batched: bool = False) -> Any:
        torch = self._torch
        if not isinstance(dy, torch.Tensor):
            raise TypeError(
                f"f returned {type(dy).__name__} for a torch state; return a torch.Tensor"
            )
        if dy.shape != y.shape:
            raise ValueError(self._shape_error(tuple(dy.shape), tuple(y.shape), batched))
        if dy.device != y.device:
            raise TypeError(device_error(dy, y))
        if dy.dtype != y.dtype:
            if not torch.can_cast(dy.dtype, y.dtype):
                raise TypeError(
                    f"f returned dtype {dy.dtype} for a state of dtype {y.dtype}; "
                    "return real values for a real state"
                )
            dy = dy.to(y.dtype)
        return dy


def _fill_consuming(out: Any, items: list[Any]) -> Any:
    """Copy ``items`` into the rows of ``out``, dropping each from the list once copied (its
    memory can go before the next row is written); returns ``out``."""
    for i in range(len(items)):
        out[i] = items[i]
        items[i] = None
    items.clear()
    return out


def device_error(dy: Any, y: Any) -> str:
    """The message for an answer of ``f`` on another device than its state."""
    return (f"f returned a tensor on device {dy.device} for a state on {y.device}; return "
            "the derivative on the state's device")


def ops_for(y0: Any) -> ArrayOps:
    """Return the :class:`ArrayOps` for a state like ``y0`` (numpy array or torch tensor)."""
    if is_torch(y0):
        return TorchOps(y0)
    if isinstance(y0, np.ndarray):
        return NumpyOps(y0)
    if isinstance(y0, np.generic) and y0.dtype.kind in "fc":
        # numpy arithmetic on 0-d arrays returns scalars: a 0-d state may arrive as one
        return NumpyOps(np.asarray(y0))
    raise TypeError(f"expected a numpy array or a torch tensor, got {type(y0).__name__}")


class Lanes:
    """Per-slice scalars (times, step sizes) for states stacked along a leading slice axis.

    A grouped propagation runs ``b`` slices in one coroutine: its state is stacked to shape
    ``(b, *shape)`` and its ``t`` and ``h`` are :class:`Lanes` of ``b`` float64 values. Lanes
    combine with floats and other lanes like Python floats do (in float64), and multiply or
    add with a stacked state exactly like a Python float would with each slice's state (cast
    to the state's dtype, broadcast along the slice axis), so a grouped propagation gives the
    same bits as ``b`` separate ones.
    """

    __slots__ = ("_casts", "values")
    __array_ufunc__ = None  # make numpy defer to our reflected operators

    def __init__(self, values: Any) -> None:
        self.values = np.asarray(values, dtype=np.float64)
        self._casts: dict[Any, Any] = {}

    def __len__(self) -> int:
        return len(self.values)

    def __repr__(self) -> str:
        return f"Lanes({self.values.tolist()})"

    @classmethod
    def _of(cls, values: np.ndarray) -> Lanes:
        """Lanes over ``values``, already a float64 array (no conversion, no copy)."""
        lanes = cls.__new__(cls)
        lanes.values = values
        lanes._casts = {}
        return lanes

    def _cast(self, array: Any) -> Any:
        torch_device = None if type(array) is np.ndarray else (
            array.device if is_torch(array) else None)
        key = (array.dtype, array.ndim, torch_device)
        cast = self._casts.get(key)
        if cast is None:
            shape = (len(self.values),) + (1,) * (array.ndim - 1)
            if torch_device is not None:
                torch = sys.modules["torch"]
                cast = torch.as_tensor(self.values, device=torch_device).to(array.dtype)
            else:
                cast = self.values.astype(array.dtype)
            cast = cast.reshape(shape)
            self._casts[key] = cast
        return cast

    def _binary(self, other: Any, op: Any, reflected: bool) -> Any:
        kind = type(other)
        if kind is Lanes:
            scalar = other.values
        elif kind is float or kind is int:
            scalar = float(other)
        elif isinstance(other, np.ndarray) or is_torch(other):
            mine = self._cast(other)
            return op(other, mine) if reflected else op(mine, other)
        elif isinstance(other, (float, int)) and not isinstance(other, bool):
            scalar = float(other)  # numpy float scalars, int subclasses
        else:
            return NotImplemented
        return Lanes._of(op(scalar, self.values) if reflected else op(self.values, scalar))

    def __add__(self, other: Any) -> Any:
        return self._binary(other, operator.add, False)

    def __radd__(self, other: Any) -> Any:
        return self._binary(other, operator.add, True)

    def __sub__(self, other: Any) -> Any:
        return self._binary(other, operator.sub, False)

    def __rsub__(self, other: Any) -> Any:
        return self._binary(other, operator.sub, True)

    def __mul__(self, other: Any) -> Any:
        return self._binary(other, operator.mul, False)

    def __rmul__(self, other: Any) -> Any:
        return self._binary(other, operator.mul, True)

    def __truediv__(self, other: Any) -> Any:
        return self._binary(other, operator.truediv, False)

    def __rtruediv__(self, other: Any) -> Any:
        return self._binary(other, operator.truediv, True)

    def __neg__(self) -> Lanes:
        return Lanes._of(-self.values)
