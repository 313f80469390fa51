"""Implicit and linearly implicit fixed-step propagators (steppable): the stiff coarse.

Every sub-step asks for the Jacobian once (a :class:`~parareal.propagators.jacobian.
JacobianRequest`, one tick) and then for ``f`` a fixed number of times, so a propagation is a
*smooth* function of its input (no step-size or iteration-count decisions: what Parareal needs
from its coarse propagator) and every propagation of a slice costs the same number of ticks on
every backend. Propagations started together run as one group on the batched backend: one
batched call of ``f`` per tick, one batched factorisation of ``I - h gamma J`` per step.

========================  =====  ===========  ====================  =====================
class (spec)              order  stability    calls of f per step   method
========================  =====  ===========  ====================  =====================
``LinearlyImplicitEuler``   1    L-stable     1                     Rosenbrock-Euler
(``"lie"``)
``Rosenbrock2``             2    L-stable     2                     ROS2 (Verwer et al.
(``"ros2"``)                                                        1999), a W-method
``BackwardEuler``           1    L-stable     ``newton``            simplified Newton
(``"be"``)
``CrankNicolson``           2    A-stable     ``1 + newton``        trapezoidal rule
(``"cn"``)
``SDIRK2``                  2    L-stable     ``2 * newton``        Alexander's 2-stage,
(``"sdirk2"``)                                                      gamma = 1 - 1/sqrt(2)
========================  =====  ===========  ====================  =====================

Newton-type methods run exactly ``newton`` simplified-Newton iterations per stage with the
Jacobian of the step's start (exact in one iteration for linear problems). If the last
increment of a lane is not finite, or larger than its first and not small, Newton is declared
not converging there: that lane's result is NaN and the reason is reported (the run ends
``Status.DIVERGED`` with it in ``Solution.reason``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from ..state import Lanes, is_torch
from ..validation import check_int
from .base import SteppablePropagator, Stepper
from .jacobian import JacobianRequest, JacobianSource
from .linalg import NewtonMatrix, nan_lanes, report_failure

__all__ = [
    "SDIRK2",
    "BackwardEuler",
    "CrankNicolson",
    "ImplicitPropagator",
    "LinearlyImplicitEuler",
    "Rosenbrock2",
]


def _lane_norms(x: Any, grouped: bool) -> np.ndarray:
    """Max-norm per lane (one value for an ungrouped state) as a float64 numpy array."""
    if is_torch(x):
        a = x.detach().abs()
        if grouped:
            return a.reshape(a.shape[0], -1).amax(dim=1).double().cpu().numpy()
        return np.array([float(a.max())]) if a.numel() else np.zeros(1)
    a = np.abs(np.asarray(x))
    if grouped:
        return a.reshape(a.shape[0], -1).max(axis=1).astype(np.float64)
    return np.array([float(a.max())]) if a.size else np.zeros(1)


class ImplicitPropagator(SteppablePropagator):
    """Base class of the implicit fixed-step propagators (see the module docstring).

    Parameters
    ----------
    steps : int
        Equal sub-steps per propagation (>= 1).
    jac : callable, optional
        ``jac(t, y) -> (d, d)`` (dense numpy, scipy sparse, or torch). Without it: autograd for
        torch states, finite differences for numpy states. :func:`parareal.solve`'s ``jac=``
        fills it in when not given here.
    jac_sparsity : array_like or scipy sparse matrix, optional
        Nonzero pattern of the Jacobian for finite differences (as in ``solve_ivp``).
    """

    groupable: ClassVar[bool] = True
    #: Jacobian requests per sub-step.
    jacobians: ClassVar[int] = 1
    #: Stability of the method, for documentation and tests: "A" or "L".
    stability: ClassVar[str] = "L"

    def __init__(self, steps: int = 1, *, jac: Callable[[Any, Any], Any] | None = None,
                 jac_sparsity: Any = None) -> None:
        super().__init__(steps)
        self.source = JacobianSource(jac, jac_sparsity)

    def __repr__(self) -> str:
        extra = "" if self.source.jac is None and self.source.sparsity is None else (
            f", {self.source!r}")
        return f"{type(self).__name__}(steps={self.steps}{self._options()}{extra})"

    def _options(self) -> str:
        return ""

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and vars(other) == vars(self)

    def __hash__(self) -> int:
        return hash((type(self), self.steps, self.source))

    @property
    def evals(self) -> int:
        """Calls of ``f`` per propagation (Jacobian requests not included)."""
        return self.steps * self.stages

    @property
    def jac_evals(self) -> int:
        """Jacobian requests per propagation (each one tick on the critical path)."""
        return self.steps * self.jacobians

    @property
    def ticks(self) -> int:
        """Requests per propagation: its length on the critical path."""
        return self.evals + self.jac_evals

    @property
    def has_jac(self) -> bool:
        """True when a user's ``jac`` is set."""
        return self.source.jac is not None

    def with_jacobian(self, jac: Callable[[Any, Any], Any] | None, jac_sparsity: Any = None
                      ) -> ImplicitPropagator:
        """A copy that uses ``jac`` (and ``jac_sparsity``) unless this one has its own."""
        if self.source.jac is not None or (jac is None and jac_sparsity is None):
            return self
        import copy

        clone = copy.copy(self)
        clone.source = JacobianSource(
            jac if jac is not None else self.source.jac,
            jac_sparsity if jac_sparsity is not None else self.source.sparsity)
        return clone

    def _matrix(self, J: Any, c: Any, y: Any, t: Any) -> NewtonMatrix:
        grouped = isinstance(t, Lanes)
        return NewtonMatrix(J, c, shape=tuple(y.shape), grouped=grouped,
                            who=type(self).__name__, t=t)


class LinearlyImplicitEuler(ImplicitPropagator):
    """Linearly implicit (Rosenbrock) Euler: ``(I - h J) k = f(t, y)``, ``y1 = y + h k``.

    Order 1, L-stable, one Jacobian and one call of ``f`` per sub-step: the cheapest stiff
    coarse propagator.
    """

    order: ClassVar[int] = 1
    stages: ClassVar[int] = 1

    def step(self, y: Any, t: float, h: float) -> Stepper:
        J = yield JacobianRequest(t, self.source), y
        M = self._matrix(J, h, y, t)
        k = yield t, y
        return y + h * M.solve(k)


_ROS2_GAMMA = 1.0 + 1.0 / math.sqrt(2.0)


class Rosenbrock2(ImplicitPropagator):
    """ROS2 (Verwer, Spee, Blom, Hundsdorfer 1999), a second-order L-stable W-method.

    ``(I - g h J) k1 = f(t, y)``; ``(I - g h J) k2 = f(t + h, y + h k1) - 2 k1``;
    ``y1 = y + 1.5 h k1 + 0.5 h k2`` with ``g = 1 + 1/sqrt(2)``. Second order for any matrix
    ``J`` (so approximate Jacobians keep the order); one Jacobian and two calls of ``f`` per
    sub-step, no Newton iteration.
    """

    order: ClassVar[int] = 2
    stages: ClassVar[int] = 2

    def step(self, y: Any, t: float, h: float) -> Stepper:
        J = yield JacobianRequest(t, self.source), y
        M = self._matrix(J, h * _ROS2_GAMMA, y, t)
        f1 = yield t, y
        k1 = M.solve(f1)
        f2 = yield t + h, y + h * k1
        k2 = M.solve(f2 - 2.0 * k1)
        return y + (1.5 * h) * k1 + (0.5 * h) * k2


class _Newton(ImplicitPropagator):
    """Implicit Runge-Kutta methods solved by a fixed number of simplified Newton steps."""

    #: Newton-solved stages per sub-step.
    implicit_stages: ClassVar[int] = 1
    #: Explicit calls of ``f`` per sub-step besides the Newton iterations.
    explicit_calls: ClassVar[int] = 0

    def __init__(self, steps: int = 1, *, newton: int = 2,
                 jac: Callable[[Any, Any], Any] | None = None, jac_sparsity: Any = None) -> None:
        super().__init__(steps, jac=jac, jac_sparsity=jac_sparsity)
        self.newton = check_int(newton, "newton")

    def _options(self) -> str:
        return f", newton={self.newton}"

    def __hash__(self) -> int:
        return hash((type(self), self.steps, self.newton, self.source))

    @property
    def evals(self) -> int:
        return self.steps * (self.implicit_stages * self.newton + self.explicit_calls)

    def _solve(self, M: NewtonMatrix, base: Any, c: Any, t_stage: Any, z: Any, grouped: bool
               ) -> Stepper:
        """Solve ``z = base + c f(t_stage, z)`` from the guess ``z``: ``newton`` iterations."""
        first = last = None
        for _ in range(self.newton):
            fz = yield t_stage, z
            delta = M.solve(base + c * fz - z)
            z = z + delta
            last = _lane_norms(delta, grouped)
            if first is None:
                first = last
        scale = _lane_norms(z, grouped)
        bad = ~np.isfinite(last) | ((last > first) & (last > 1e-6 * (1.0 + scale)))
        bad &= ~M.failed  # already NaN, with their reason
        if bad.any():
            times = t_stage.values if grouped else np.array([float(t_stage)])
            for i in np.flatnonzero(bad):
                report_failure(f"{type(self).__name__}: Newton did not converge at t = "
                               f"{times[i]:.6g} (last increment {last[i]:.3g}, first "
                               f"{first[i]:.3g}); use more steps or newton iterations")
            z = nan_lanes(z, bad, grouped)
        return z


class BackwardEuler(_Newton):
    """Backward (implicit) Euler, ``y1 = y + h f(t + h, y1)``: order 1, L-stable.

    Parameters
    ----------
    steps : int
        Equal sub-steps per propagation.
    newton : int
        Simplified Newton iterations per step (calls of ``f``), default 2.
    jac, jac_sparsity
        See :class:`ImplicitPropagator`.
    """

    order: ClassVar[int] = 1

    def step(self, y: Any, t: float, h: float) -> Stepper:
        grouped = isinstance(t, Lanes)
        J = yield JacobianRequest(t, self.source), y
        M = self._matrix(J, h, y, t)
        return (yield from self._solve(M, y, h, t + h, y, grouped))


class CrankNicolson(_Newton):
    """Crank-Nicolson (trapezoidal rule), ``y1 = y + h/2 (f(t, y) + f(t + h, y1))``.

    Order 2, A-stable but not L-stable (stiff modes are not damped: ``R(-inf) = -1``); one
    explicit call of ``f`` plus ``newton`` iterations per step.
    """

    order: ClassVar[int] = 2
    stability: ClassVar[str] = "A"
    explicit_calls: ClassVar[int] = 1

    def step(self, y: Any, t: float, h: float) -> Stepper:
        grouped = isinstance(t, Lanes)
        J = yield JacobianRequest(t, self.source), y
        half = 0.5 * h
        M = self._matrix(J, half, y, t)
        f0 = yield t, y
        base = y + half * f0
        return (yield from self._solve(M, base, half, t + h, y, grouped))


_SDIRK_GAMMA = 1.0 - 1.0 / math.sqrt(2.0)


class SDIRK2(_Newton):
    """Alexander's two-stage SDIRK, ``gamma = 1 - 1/sqrt(2)``: order 2, L-stable, stiffly
    accurate.

    ``Y1 = y + g h f(t + g h, Y1)``; ``y1 = Y2 = y + (1 - g) h k1 + g h f(t + h, Y2)`` with
    ``k1 = (Y1 - y) / (g h)``; both stages share the Newton matrix ``I - g h J``.
    """

    order: ClassVar[int] = 2
    implicit_stages: ClassVar[int] = 2

    def step(self, y: Any, t: float, h: float) -> Stepper:
        grouped = isinstance(t, Lanes)
        J = yield JacobianRequest(t, self.source), y
        gh = _SDIRK_GAMMA * h
        M = self._matrix(J, gh, y, t)
        y1 = yield from self._solve(M, y, gh, t + gh, y, grouped)
        k1 = (y1 - y) / gh
        base = y + ((1.0 - _SDIRK_GAMMA) * h) * k1
        return (yield from self._solve(M, base, gh, t + h, y1, grouped))
