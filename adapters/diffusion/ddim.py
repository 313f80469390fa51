"""The DDIM step as steppable propagators over the sampler's grid (time = grid index)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from parareal.propagators import Propagator, Stepper, drive

from .prediction import clip_x0, predicted_x0
from .schedule import DDIMGrid

__all__ = ["DDIMJump", "DDIMSteps", "ddim_jump"]


def ddim_jump(
    grid: DDIMGrid,
    x: torch.Tensor,
    model_output: torch.Tensor,
    a: int,
    b: int,
    *,
    eta: float = 0.0,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """One DDIM update from grid point ``a`` to ``b`` given the model output at point ``a``.

    With ``b = a + 1`` this is ``DDIMScheduler.step`` (same formulas, same order of operations,
    same float32 coefficients); ``b > a + 1`` is one large step across the block.
    """
    schedule = grid.schedule
    sqrt_alpha, sqrt_beta, sqrt_alpha_prev, direction, std = grid.coefficients(a, b, eta)
    kind = schedule.prediction_type
    x0 = predicted_x0(kind, x, model_output, sqrt_alpha, sqrt_beta)
    if kind == "epsilon":
        eps = model_output
    elif kind == "sample":
        eps = (x - sqrt_alpha * x0) / sqrt_beta
    else:  # v_prediction
        eps = sqrt_alpha * model_output + sqrt_beta * x
    x0 = clip_x0(x0, schedule)
    prev = sqrt_alpha_prev * x0 + direction * eps
    if eta > 0:
        if noise is None:
            raise ValueError("eta > 0 needs noise for the step")
        prev = prev + std * noise
    return prev


def _grid_index(s: Any, steps: int) -> int:
    value = float(s)
    index = int(round(value))
    if abs(value - index) > 1e-6 or not 0 <= index <= steps:
        raise ValueError(f"DDIM propagators work on grid indices 0..{steps}, got {value}")
    return index


class DDIMSteps(Propagator):
    """Fine propagator: the DDIM sampler's own steps between two grid points.

    Time is the grid index: propagating from ``s0`` to ``s1`` takes steps ``s0 .. s1 - 1``,
    each one call of the model (``f(i, x)`` returns the model output at ``timesteps[i]``).

    Each step is ``DDIMScheduler.step`` exactly: the same timesteps for every
    ``timestep_spacing`` (``leading``, ``trailing``, ``linspace``) and ``steps_offset``, the
    same "previous timestep" (``t - num_train_timesteps // N``, which for ``linspace`` and
    ``trailing`` need not be the next timestep of the list), ``final_alpha_cumprod`` from
    ``set_alpha_to_one``, the three prediction types, ``clip_sample`` and dynamic
    ``thresholding``, and the coefficients computed in float32 in diffusers' order of
    operations. The tests check that serial sampling equals diffusers' loop to 1e-5 relative in
    float32 for every spacing, both ``set_alpha_to_one`` values and every prediction type
    (bitwise where we looked), and reproduces ``DDIMPipeline`` end to end. (The published
    ParaDiGMS code does not for ``set_alpha_to_one=False``: its batched step takes 1.0 as the
    final ``alpha_bar``.)

    Parameters
    ----------
    grid : DDIMGrid
        The sampler's grid.
    eta : float
        DDIM's eta; ``eta > 0`` adds ``noises[i]`` scaled by the step's standard deviation.
    noises : sequence of torch.Tensor, optional
        One noise tensor per step, drawn once up front (needed when ``eta > 0``).
    """

    steppable: ClassVar[bool] = True

    def __init__(
        self, grid: DDIMGrid, *, eta: float = 0.0, noises: Sequence[torch.Tensor] | None = None
    ) -> None:
        if eta > 0 and (noises is None or len(noises) != grid.steps):
            raise ValueError(f"eta > 0 needs one noise tensor per step ({grid.steps})")
        self.grid = grid
        self.eta = float(eta)
        self.noises = list(noises) if noises is not None else None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(steps={self.grid.steps}, eta={self.eta:g})"

    def noise(self, a: int, b: int) -> torch.Tensor | None:
        """The noise of the jump ``a -> b`` (the step's own noise when ``b = a + 1``)."""
        if self.noises is None or self.eta == 0:
            return None
        return self.noises[a]

    def jump(self, x: torch.Tensor, out: torch.Tensor, a: int, b: int) -> torch.Tensor:
        """Apply the DDIM update ``a -> b``."""
        return ddim_jump(self.grid, x, out, a, b, eta=self.eta, noise=self.noise(a, b))

    def stepper(self, x: Any, s0: float, s1: float) -> Stepper:
        a, b = _grid_index(s0, self.grid.steps), _grid_index(s1, self.grid.steps)
        for i in range(a, b):
            out = yield float(i), x
            x = self.jump(x, out, i, i + 1)
        return x

    def propagate(self, f: Callable[[Any, Any], Any], y: Any, t0: float, t1: float) -> Any:
        return drive(self.stepper(y, t0, t1), f, y)


class DDIMJump(DDIMSteps):
    """Coarse propagator: one DDIM step across a whole block (SRDS's ``G``).

    From grid point ``a`` to ``b`` it evaluates the model once at ``timesteps[a]`` and jumps to
    where step ``b - 1`` lands. With ``eta > 0`` its noise is the block's step noises combined
    with weights equal to their standard deviations and rescaled to unit variance, so that the
    coarse path stays close to the fine one (convergence to the serial sample does not depend
    on this choice).
    """

    def __init__(
        self, grid: DDIMGrid, *, eta: float = 0.0, noises: Sequence[torch.Tensor] | None = None
    ) -> None:
        super().__init__(grid, eta=eta, noises=noises)
        self._combined: dict[tuple[int, int], torch.Tensor] = {}

    def noise(self, a: int, b: int) -> torch.Tensor | None:
        if self.noises is None or self.eta == 0:
            return None
        if b == a + 1:
            return self.noises[a]
        combined = self._combined.get((a, b))
        if combined is None:
            weights = np.array([self.grid.coefficients(i, i + 1, self.eta)[4] for i in range(a, b)])
            norm = float(np.sqrt(np.sum(weights**2)))
            if norm == 0.0:
                return self.noises[a]
            combined = sum(
                (float(w) / norm) * z for w, z in zip(weights, self.noises[a:b], strict=True)
            )
            self._combined[(a, b)] = combined
        return combined

    def stepper(self, x: Any, s0: float, s1: float) -> Stepper:
        a, b = _grid_index(s0, self.grid.steps), _grid_index(s1, self.grid.steps)
        out = yield float(a), x
        return self.jump(x, out, a, b)
