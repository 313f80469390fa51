"""Explicit fixed-step Runge-Kutta propagators (steppable)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..state import Lanes, is_torch
from .base import SteppablePropagator, Stepper

__all__ = ["RK4", "Euler", "Heun", "Midpoint"]

_THIRD = 1.0 / 3.0
_TWO_THIRDS = 2.0 / 3.0


def _in_place(s: Any, *others: Any) -> bool:
    """True if ``s`` (a fresh intermediate) may take the results of elementwise operations
    with ``others`` in place: real floating numpy arrays of one dtype and shape, or torch
    tensors of one dtype, shape and device that autograd does not track."""
    if type(s) is np.ndarray:
        return (s.dtype.kind == "f" and s.flags.writeable
                and all(type(o) is np.ndarray and o.dtype == s.dtype and o.shape == s.shape
                        for o in others))
    if not is_torch(s) or not s.is_floating_point() or s.requires_grad:
        return False
    return all(is_torch(o) and o.dtype == s.dtype and o.shape == s.shape
               and o.device == s.device and not o.requires_grad for o in others)


def _axpy(y: Any, a: Any, k: Any) -> Any:
    """``y + a * k`` (``a`` a float or :class:`Lanes`) in one new buffer where possible."""
    ak = a * k
    if _in_place(ak, y):
        ak += y  # y + ak: addition commutes bitwise
        return ak
    return y + ak


class Euler(SteppablePropagator):
    """Forward Euler, order 1, one call of ``f`` per sub-step."""

    order: ClassVar[int] = 1
    stages: ClassVar[int] = 1
    groupable: ClassVar[bool] = True
    shares_steps: ClassVar[bool] = True

    def step(self, y: Any, t: float, h: float) -> Stepper:
        k1 = yield t, y
        return y + h * k1


class Midpoint(SteppablePropagator):
    """Explicit midpoint rule, order 2, two calls of ``f`` per sub-step (as torchdiffeq)."""

    order: ClassVar[int] = 2
    stages: ClassVar[int] = 2
    groupable: ClassVar[bool] = True
    shares_steps: ClassVar[bool] = True

    def step(self, y: Any, t: float, h: float) -> Stepper:
        half = 0.5 * h
        k1 = yield t, y
        k2 = yield t + half, y + k1 * half
        return y + h * k2


class Heun(SteppablePropagator):
    """Heun's method (explicit trapezoid), order 2, two calls of ``f`` per sub-step."""

    order: ClassVar[int] = 2
    stages: ClassVar[int] = 2
    groupable: ClassVar[bool] = True
    shares_steps: ClassVar[bool] = True

    def step(self, y: Any, t: float, h: float) -> Stepper:
        k1 = yield t, y
        k2 = yield t + h, y + h * k1
        return y + (0.5 * h) * (k1 + k2)


class RK4(SteppablePropagator):
    """Fourth-order Runge-Kutta, four calls of ``f`` per sub-step.

    Parameters
    ----------
    steps : int
        Number of equal sub-steps per propagation (>= 1).
    variant : {"classic", "3/8"}
        ``"classic"`` is the textbook method; ``"3/8"`` is Kutta's 3/8 rule written exactly as
        ``torchdiffeq``'s ``method="rk4"`` computes it, so that results match it to round-off.
    """

    order: ClassVar[int] = 4
    stages: ClassVar[int] = 4
    groupable: ClassVar[bool] = True
    shares_steps: ClassVar[bool] = True
    variants: ClassVar[tuple[str, ...]] = ("classic", "3/8")

    def __init__(self, steps: int = 1, variant: str = "classic") -> None:
        super().__init__(steps)
        if variant not in self.variants:
            raise ValueError(f"variant must be one of {self.variants}, got {variant!r}")
        self.variant = variant

    def __repr__(self) -> str:
        extra = "" if self.variant == "classic" else f", variant={self.variant!r}"
        return f"RK4(steps={self.steps}{extra})"

    def step(self, y: Any, t: float, h: float) -> Stepper:
        if self.variant == "3/8":
            return (yield from self._step_38(y, t, h))
        half = 0.5 * h
        mid = t + half
        k1 = yield t, y
        k2 = yield mid, _axpy(y, half, k1)
        k3 = yield mid, _axpy(y, half, k2)
        s = k2 + k3
        del k2  # each stage is dropped as soon as no later operation needs it
        k3 = _axpy(y, h, k3)  # now the last stage's input
        k4 = yield t + h, k3
        del k3
        h6 = h / 6.0
        if _in_place(s, y, k1, k4) and (type(h6) is float or type(h6) is Lanes):
            # y + h6 * (k1 + 2 (k2 + k3) + k4) in the one buffer s: the same operations in
            # the same order (addition and multiplication commute bitwise)
            s *= 2.0
            s += k1
            del k1
            s += k4
            del k4
            s *= h6 if type(h6) is float else h6._cast(s)  # a lane's h6 as Lanes casts it
            s += y
            return s
        return y + h6 * (k1 + 2.0 * s + k4)

    @staticmethod
    def _step_38(y: Any, t: float, h: float) -> Stepper:
        k1 = yield t, y
        k2 = yield t + h * _THIRD, y + h * k1 * _THIRD
        k3 = yield t + h * _TWO_THIRDS, y + h * (k2 - k1 * _THIRD)
        k4 = yield t + h, y + h * (k1 - k2 + k3)
        return y + (k1 + 3.0 * (k2 + k3) + k4) * h * 0.125
