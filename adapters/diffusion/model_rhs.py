"""The model as the engine's vectorised right side ``f(s, X)``: one class, :class:`ModelRhs`,
parametrised by how the engine's time becomes the model's input (:class:`GridTimesteps` on
the DDIM grid, :class:`SigmaTimesteps` on a grid of noise levels) and how the model's output
becomes the drift (none: the DDIM propagators take the output itself; or
:class:`ProbabilityFlowDrift`, ``dy/dsigma``).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch

from .models import ModelCall, ModelFn
from .prediction import predicted_x0

__all__ = ["Drift", "GridTimesteps", "ModelInput", "ModelRhs", "NoiseLevels",
           "ProbabilityFlowDrift", "SigmaTimesteps"]


class NoiseLevels(Protocol):
    """What the probability-flow parts read of a grid of noise levels
    (:class:`~.pf_ode.SigmaGrid`, which builds on this module)."""

    prediction_type: str
    clip_sample: bool
    clip_sample_range: float

    def timestep(self, sigma: float) -> float:
        """The model's timestep at noise level ``sigma``."""
        ...


class ModelInput(Protocol):
    """Maps the engine's times ``s`` (``(S,)``) and states ``(S, B, ...)`` to the model's input
    ``x`` (``(S * B, ...)``) and timesteps ``t`` (``(S * B,)``)."""

    def __call__(self, s: torch.Tensor, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ...


class Drift(Protocol):
    """Turns the model's output (``states``' shape) at times ``s`` into the engine's ``f``."""

    def __call__(self, s: torch.Tensor, states: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        ...


class ModelRhs:
    """The engine's vectorised ``f(s, X)`` from a model.

    Called as the engine calls it: ``s`` of shape ``(S,)`` and states ``(S, B, ...)``, one
    model call on ``S * B`` inputs; a 0-d ``s`` with states ``(B, ...)`` is one request.

    Parameters
    ----------
    model : ModelFn
    inputs : ModelInput
        The model's input and timesteps at the engine's times.
    drift : Drift, optional
        The drift from the model's output (default: the output itself).
    bar : tqdm bar, optional
        Advanced by one per call.
    """

    def __init__(self, model: ModelFn, inputs: ModelInput, drift: Drift | None = None,
                 bar: Any = None) -> None:
        self.model, self.inputs, self.drift, self.bar = model, inputs, drift, bar
        self.call = ModelCall(model)

    def __call__(self, s: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        single = s.ndim == 0
        if single:
            s, states = s[None], states[None]
        x, t = self.inputs(s, states)
        out = self.call(x, t).reshape(states.shape)
        if self.drift is not None:
            out = self.drift(s, states, out)
        if self.bar is not None:
            self.bar.update(1)
        return out[0] if single else out


class GridTimesteps:
    """The DDIM grid: the engine's time is a grid index ``i``; the model sees the state as it
    is at ``timesteps[i]``."""

    def __init__(self, timesteps: np.ndarray, device: torch.device) -> None:
        self.timesteps = torch.as_tensor(timesteps, dtype=torch.long, device=device)

    def __call__(self, s: torch.Tensor, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        slices, batch = states.shape[0], states.shape[1]
        index = torch.round(s).long().to(self.timesteps.device)
        t = self.timesteps[index].repeat_interleave(batch)
        return states.reshape(slices * batch, *states.shape[2:]), t


def _sigma(s: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
    """``s`` in the states' dtype and device, shaped to broadcast over ``(S, B, ...)``."""
    shape = (states.shape[0],) + (1,) * (states.ndim - 1)
    return s.to(dtype=states.dtype, device=states.device).reshape(shape)


class SigmaTimesteps:
    """A grid of noise levels: the engine's time is ``sigma > 0``; the model sees
    ``y / sqrt(sigma**2 + 1)`` (diffusers' ``scale_model_input``) at its timestep
    ``t(sigma)`` (:meth:`~.pf_ode.SigmaGrid.timestep`)."""

    def __init__(self, grid: NoiseLevels, device: torch.device) -> None:
        self.grid, self.device = grid, device

    def __call__(self, s: torch.Tensor, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        values = [float(v) for v in s.detach().cpu().tolist()]
        if any(not v > 0 for v in values):
            raise ValueError(f"the probability-flow ODE needs sigma > 0, got {min(values)}")
        slices, batch = states.shape[0], states.shape[1]
        scale = (_sigma(s, states)**2 + 1) ** 0.5
        t = torch.tensor([self.grid.timestep(v) for v in values], dtype=torch.float32,
                         device=self.device).repeat_interleave(batch)
        return (states / scale).reshape(slices * batch, *states.shape[2:]), t


class ProbabilityFlowDrift:
    """``dy/dsigma = (y - x0_hat) / sigma``, with ``x0_hat`` clipped as the grid says
    (``EulerDiscreteScheduler.step``'s order of operations, in the state's dtype)."""

    def __init__(self, grid: NoiseLevels) -> None:
        self.grid = grid

    def __call__(self, s: torch.Tensor, states: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        sigma = _sigma(s, states)
        x0 = predicted_x0(self.grid.prediction_type, states, out, None, sigma,
                          input_var=sigma**2 + 1)
        if self.grid.clip_sample:
            bound = self.grid.clip_sample_range
            x0 = x0.clamp(-bound, bound)
        return (states - x0) / sigma
