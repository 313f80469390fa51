"""Picard iterations over a sliding window (ParaDiGMS, Shih et al. 2023), optionally with
Anderson acceleration (:mod:`..anderson`): the baseline SRDS is compared with."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import torch

from parareal import Status

from ..anderson import PrefixAnderson
from ..result import Outcome
from .base import Chunk, Refining, change, finite, optional_int

__all__ = ["Picard", "PicardSweep", "Sweep", "check_one_call_steps"]


class Sweep(Protocol):
    """A window update: the new points from the current ones and their DDIM steps."""

    def update(self, begin: int, x: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
        """Points ``begin + 1 .. begin + w`` from ``x_b .. x_{e-1}`` and ``phi_j``."""
        ...

    def moves(self, begin: int, delta: torch.Tensor) -> None:
        """The changes the run made to points ``begin + 1 .. begin + w``."""
        ...


class PicardSweep:
    """Picard's update: ``x'_{j+1} = x_b + sum_{i=b}^{j} (phi_i - x_i)`` (the identity as
    each step's Jacobian)."""

    def update(self, begin: int, x: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
        """``x_b + cumsum(phi - x)``."""
        return x[0] + torch.cumsum(phi - x, dim=0)

    def moves(self, begin: int, delta: torch.Tensor) -> None:
        """Nothing to keep."""


class Picard(Refining):
    """ParaDiGMS: Picard iterations over a sliding window of ``p`` sampler steps, all evaluated
    in one batched model call per iteration; the window slides past the steps that converged.
    Its result is not the serial sample (its default tolerance leaves differences of a few
    8-bit levels, 80-85 % of the 8-bit pixels equal on the digits model; ``tol = 0`` runs until
    every step is exact; ``tol_mode="data", tol=1e-4`` reproduces the serial sample as SRDS
    does, and :class:`~.picard_exact.ExactPicard` is made for that). DDIM steps, and the Euler steps
    of Euler and flow-matching schedulers (one model call per step; not Heun).

    Parameters
    ----------
    steps : int
        ``N``.
    window : int, optional
        The window ``p`` (default ``min(N, 2 * round(sqrt(N)))``; at most ``N`` is used).
    anderson : int, optional
        Anderson acceleration of the window's fixed-point iteration with this memory ``m``
        (ParaTAA's idea; :mod:`..anderson`): each point mixes its Picard update with the last
        ``m`` differences, by least squares over the points up to it. It adds no model call
        and typically saves a quarter of Picard's sequential calls at the same tolerance
        (docs/benchmarks.md). Default: plain Picard.
    tol : float, optional
        Stopping tolerance per step (default 0.1 in noise units, 1e-3 in data units).
    tol_mode : {"data", "noise"}, optional
        ``"noise"`` (default, ParaDiGMS's rule): per-sample RMS change compared with ``tol``
        times the step's DDPM posterior standard deviation (floored at the smallest positive
        one; on a grid of noise levels, that of an ancestral step between its levels).
        ``"data"``: max-abs change, in data units. Every step of the window is tested.
    max_iters : int, optional
        Iteration cap (default ``N``).
    callback : callable, optional
        ``callback(iteration, sample)`` with the current estimate of the final sample after
        every iteration. It needs the whole batch in one chunk.
    """

    name = "picard"
    exact = False
    #: On a grid of noise levels (Euler, flow matching): steps of one model call only.
    sigma_grids = True
    default_tol = {"data": 1e-3, "noise": 0.1}
    default_tol_mode = "noise"

    def __init__(
        self, steps: int, *, window: int | None = None, anderson: int | None = None,
        tol: float | None = None, tol_mode: str | None = None, max_iters: int | None = None,
        callback: Callable[[int, torch.Tensor], Any] | None = None,
    ) -> None:
        super().__init__(steps)
        window = optional_int(window, "window", 1)
        self.anderson = optional_int(anderson, "anderson", 1)
        self.max_iters = optional_int(max_iters, "max_iters", 1)
        self._refining_options(tol, tol_mode)
        self._set_callback(callback)
        p = window if window is not None else 2 * max(1, round(math.sqrt(steps)))
        self.window = min(p, steps)

    @property
    def rows_per_call(self) -> int:
        """``p``: the window's states."""
        return self.window

    @property
    def states_kept(self) -> int:
        """``N + 1 + 2 p``: the trajectory, the window's update and its model outputs."""
        return self.steps + 1 + 2 * self.window

    def _sweep(self, steps: int) -> Sweep:
        """The window update of one run: Picard's (:class:`PicardSweep`)."""
        return PicardSweep()

    def run(self, chunk: Chunk) -> Outcome:
        rhs, fine, grid = chunk.rhs, chunk.fine, chunk.grid
        check_one_call_steps(fine, grid)
        tol, mode = self.tol, self.mode
        steps, p = grid.steps, self.window
        cap = self.max_iters if self.max_iters is not None else steps
        if mode == "noise":
            variances = np.array([grid.posterior_variance(i) for i in range(steps)])
            floor = variances[variances > 0].min() if np.any(variances > 0) else 1.0
            scales = np.sqrt(np.maximum(variances, floor))
        else:
            scales = np.ones(steps)
        xs = [chunk.x_T] * (steps + 1)
        accel = PrefixAnderson(self.anderson) if self.anderson else None
        sweep = self._sweep(steps)
        begin, iterations = 0, 0
        residuals: list[float] = []
        diverged = False
        while begin < steps and iterations < cap:
            end = min(begin + p, steps)
            x = torch.stack(xs[begin:end])
            phi = _steps(rhs, fine, xs, begin, end)
            new = sweep.update(begin, x, phi)
            if accel is not None:
                new = accel.update(begin + 1, torch.stack(xs[begin + 1:end + 1]), new)
            if not finite(new):  # stop at once; xs keeps the last finite iterate
                diverged = True
                break
            delta = new - torch.stack(xs[begin + 1:end + 1])
            sweep.moves(begin, delta)
            errors = [change(delta[i], mode) / scales[begin + i] for i in range(end - begin)]
            for i in range(end - begin):
                xs[begin + 1 + i] = new[i]
            failing = [i for i, e in enumerate(errors) if not e <= tol]
            stride = max(failing[0] if failing else end - begin, 1)
            new_end = min(begin + stride + p, steps)
            for j in range(end + 1, new_end + 1):
                xs[j] = xs[end]  # initialise newly covered points with the latest value
            begin += stride
            iterations += 1
            residuals.append(max(errors))
            if self.callback is not None:
                self.callback(iterations, xs[steps])
        if diverged:
            status = Status.DIVERGED
        else:
            status = Status.CONVERGED if begin >= steps else Status.MAX_ITERS
        return Outcome(
            sample=xs[steps],
            iterations=iterations,
            status=status,
            sequential_evals=rhs.calls,
            evals=rhs.evals,
            residuals=tuple(residuals),
        )


def check_one_call_steps(fine: Any, grid: Any) -> None:
    """Refuse a sampler whose steps need more than one model call (Heun): a Picard window
    evaluates each of its steps with one batched call."""
    calls = getattr(fine, "calls", None)
    if calls is not None and any(calls(j, j + 1) != 1 for j in range(grid.steps)):
        raise ValueError(
            f"Picard iterations need one model call per step; {fine!r} takes more "
            "(Heun): use EulerDiscreteScheduler, FlowMatchEulerDiscreteScheduler or DDIM, "
            "or method 'serial' or 'srds'")


def _steps(rhs: Any, fine: Any, xs: list[torch.Tensor], begin: int, end: int) -> torch.Tensor:
    """``phi_j``, the sampler's step from every point ``j`` of the window ``begin .. end - 1``,
    with one batched model call: DDIM jumps, or the fine propagator's own one-call step on a
    grid of noise levels (its stepper answered with the call's output, so that each step is
    the serial sampler's, bit for bit)."""
    if hasattr(fine, "jump"):
        outs = rhs.batch([(float(j), xs[j]) for j in range(begin, end)])
        return torch.stack([fine.jump(xs[j], out, j, j + 1)
                            for j, out in zip(range(begin, end), outs)])
    steppers = [fine.stepper(xs[j], j, j + 1) for j in range(begin, end)]
    outs = rhs.batch([next(stepper) for stepper in steppers])
    phi = []
    for stepper, out in zip(steppers, outs):
        try:
            stepper.send(out)
        except StopIteration as stop:
            phi.append(stop.value)
        else:  # check_one_call_steps refuses such steps before any call
            raise AssertionError("a Picard step asked for a second model call")
    return torch.stack(phi)
