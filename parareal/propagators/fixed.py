"""Explicit fixed-step Runge-Kutta propagators (steppable)."""

from __future__ import annotations

from typing import Any, ClassVar

from .base import SteppablePropagator, Stepper

__all__ = ["RK4", "Euler", "Heun", "Midpoint"]

_THIRD = 1.0 / 3.0
_TWO_THIRDS = 2.0 / 3.0


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
        k2 = yield mid, y + half * k1
        k3 = yield mid, y + half * k2
        k4 = yield t + h, y + h * k3
        return y + (h / 6.0) * (k1 + 2.0 * (k2 + k3) + k4)

    @staticmethod
    def _step_38(y: Any, t: float, h: float) -> Stepper:
        k1 = yield t, y
        k2 = yield t + h * _THIRD, y + h * k1 * _THIRD
        k3 = yield t + h * _TWO_THIRDS, y + h * (k2 - k1 * _THIRD)
        k4 = yield t + h, y + h * (k1 - k2 + k3)
        return y + (k1 + 3.0 * (k2 + k3) + k4) * h * 0.125
