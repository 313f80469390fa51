"""Flow matching: diffusers' ``FlowMatchEulerDiscreteScheduler`` (Stable Diffusion 3, Flux...)
as an ODE in ``sigma`` on the sampler's grid of noise levels (:mod:`.pf_ode`).

A flow-matching model predicts the velocity ``v(x, t) = dx/dsigma`` of the path
``x_sigma = (1 - sigma) x0 + sigma eps``, so the model's output *is* the drift: no clean-sample
conversion, no input scaling. The scheduler's step is Euler on that ODE::

    x_{sigma_next} = x + (sigma_next - sigma) * v(x, t),   t = sigma * num_train_timesteps

from ``sigma_0`` (1 unless shifted) to ``sigma_N = 0``. Its grid is the scheduler's own
(``set_timesteps`` on a copy): ``shift``, ``shift_terminal``, Karras/exponential/beta sigmas,
and dynamic shifting with ``mu`` (``set_timesteps(N, mu=mu)``; pipelines compute ``mu`` from
the image size). ``sample(..., mu=...)`` binds ``mu`` to the scheduler once
(:func:`with_mu`), so that every part downstream reads one :class:`FlowSchedule`. The initial
state is ``x_T`` itself (the scheduler has no ``init_noise_sigma``).

Off the grid (RK4's midpoints, ``fine="heun"`` on split intervals) the model's timestep is
``sigma * num_train_timesteps``, the scheduler's own formula.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from parareal.validation import check_int, check_real

from .model_rhs import ModelRhs
from .models import ModelFn
from .pf_ode import FLOW_SCHEDULERS, SigmaGrid, check_scheduler

__all__ = ["FlowGrid", "FlowRhs", "FlowSchedule", "FlowTimesteps", "with_mu"]


def with_mu(scheduler: Any, mu: float | None) -> Any:
    """``scheduler`` for the sampler: a flow-matching scheduler with ``mu`` bound
    (:class:`FlowSchedule`), any other scheduler as it is.

    Raises
    ------
    ValueError
        Naming ``mu``: ``mu`` for a scheduler that does not shift dynamically, or a
        dynamically shifting scheduler without ``mu``, or a ``mu`` that is not finite.
    """
    if isinstance(scheduler, FlowSchedule):
        if mu is not None and mu != scheduler.mu:
            raise ValueError(f"mu={mu!r} given for a FlowSchedule bound to mu={scheduler.mu!r}")
        return scheduler
    if check_scheduler(scheduler) != "flow":
        if mu is not None:
            raise ValueError(
                f"mu applies to {FLOW_SCHEDULERS[0]} with use_dynamic_shifting=True only, "
                f"not to {type(scheduler).__name__}; pass mu=None")
        return scheduler
    return FlowSchedule.from_scheduler(scheduler, mu)


@dataclass(frozen=True, eq=False)
class FlowSchedule:
    """A ``FlowMatchEulerDiscreteScheduler`` (only read) with its dynamic shift ``mu`` bound.

    Build one with :meth:`from_scheduler` (or :func:`with_mu`), which checks the pair.

    Attributes
    ----------
    scheduler : FlowMatchEulerDiscreteScheduler
    mu : float or None
        ``set_timesteps``'s ``mu``: set exactly when ``use_dynamic_shifting=True``.
    """

    scheduler: Any
    mu: float | None = None

    @classmethod
    def from_scheduler(cls, scheduler: Any, mu: float | None = None) -> FlowSchedule:
        """Check ``scheduler``'s settings and ``mu`` (see :func:`with_mu`) and bind them."""
        config = scheduler.config
        name = type(scheduler).__name__
        dynamic = bool(config.get("use_dynamic_shifting", False))
        if dynamic and mu is None:
            raise ValueError(
                f"mu is required: {name} has use_dynamic_shifting=True, so its grid depends on "
                "mu (set_timesteps(N, mu=mu); Stable Diffusion 3 and Flux pipelines compute it "
                "from the image size with calculate_shift)")
        if mu is not None and not dynamic:
            raise ValueError(
                f"mu applies with use_dynamic_shifting=True only; this {name} shifts by its "
                f"fixed shift={config.get('shift', 1.0)} (pass mu=None)")
        if mu is not None:
            mu = check_real(mu, "mu")
        for option in ("stochastic_sampling", "invert_sigmas"):
            if config.get(option, False):
                raise ValueError(
                    f"{name} with {option}=True is not supported: only its deterministic "
                    "Euler step from noise to data is an ODE step")
        return cls(scheduler, mu)

    def grid(self, num_inference_steps: int) -> FlowGrid:
        """The :class:`FlowGrid` of an ``N``-step sampler (``set_timesteps`` on a copy)."""
        steps = check_int(num_inference_steps, "num_inference_steps")
        sch = type(self.scheduler).from_config(self.scheduler.config)
        if self.mu is None:
            sch.set_timesteps(steps)
        else:
            sch.set_timesteps(steps, mu=self.mu)
        sigmas = sch.sigmas.detach().cpu().to(torch.float64).numpy()
        if not (np.all(np.isfinite(sigmas)) and np.all(np.diff(sigmas) < 0) and sigmas[0] <= 1):
            raise ValueError(f"{type(self.scheduler).__name__}'s grid for {steps} steps is not "
                             f"a decreasing sequence of noise levels in [0, 1]: {sigmas}")
        return FlowGrid(
            sigmas=sigmas,
            timesteps=sch.timesteps.detach().cpu().to(torch.float64).numpy(),
            train_log_sigmas=np.zeros(0),
            prediction_type="flow_prediction",
            method="euler",
            num_train_timesteps=int(sch.config.num_train_timesteps),
        )


@dataclass(frozen=True, eq=False)
class FlowGrid(SigmaGrid):
    """The :class:`~.pf_ode.SigmaGrid` of a flow-matching sampler.

    ``sigmas`` are the scheduler's ``N + 1`` noise levels (the last is 0), ``timesteps`` its
    ``N`` model timesteps; ``prediction_type`` is ``"flow_prediction"`` (the model's output is
    ``dx/dsigma``); ``init_scale`` and ``final_scale`` are 1.
    """

    num_train_timesteps: int = 1000

    def timestep(self, sigma: float) -> float:
        """The scheduler's timestep on the grid; ``sigma * num_train_timesteps`` off it."""
        hits = np.flatnonzero(np.abs(self.sigmas[:-1] - sigma) <= 1e-7 * sigma)
        if hits.size:
            return float(self.timesteps[hits[0]])
        return float(np.float32(sigma) * np.float32(self.num_train_timesteps))

    def posterior_variance(self, i: int) -> float:
        """:meth:`SigmaGrid.posterior_variance` of the equivalent variance-exploding levels
        ``s = sigma / (1 - sigma)`` (the state ``(1 - sigma) x0 + sigma eps`` is ``1 - sigma``
        times ``x0 + s eps``), in the state's units."""
        s0, s1 = float(self.sigmas[i]), float(self.sigmas[i + 1])
        if s1 <= 0:
            return 0.0
        ve1 = s1 / (1 - s1)
        ratio = 1.0 if s0 >= 1 else 1 - (ve1 / (s0 / (1 - s0))) ** 2
        return (1 - s1) ** 2 * ve1**2 * ratio


class FlowTimesteps:
    """The model's input on a flow grid: the state itself at timestep ``t(sigma)``
    (:meth:`FlowGrid.timestep`), float32 as the scheduler's timesteps."""

    def __init__(self, grid: FlowGrid, device: torch.device) -> None:
        self.grid, self.device = grid, device

    def __call__(self, s: torch.Tensor, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        values = [float(v) for v in s.detach().cpu().tolist()]
        if any(not 0 <= v <= 1 for v in values):
            raise ValueError(f"a flow-matching model takes sigma in [0, 1], got {values}")
        slices, batch = states.shape[0], states.shape[1]
        t = torch.tensor([self.grid.timestep(v) for v in values], dtype=torch.float32,
                         device=self.device).repeat_interleave(batch)
        return states.reshape(slices * batch, *states.shape[2:]), t


class FlowRhs(ModelRhs):
    """``f(sigma, X) = v(X, t(sigma))``: the flow-matching ODE, the model's output as it is.

    The :class:`~.model_rhs.ModelRhs` of a :class:`FlowGrid` (vectorised as the engine calls
    it, as :class:`~.pf_ode.ProbabilityFlowRhs`).

    Parameters
    ----------
    model : ModelFn
    grid : FlowGrid
    device : torch.device
    bar : tqdm bar, optional
        Advanced by one per call.
    """

    def __init__(self, model: ModelFn, grid: FlowGrid, device: torch.device,
                 bar: Any = None) -> None:
        super().__init__(model, FlowTimesteps(grid, device), None, bar)
        self.grid, self.device = grid, device
