"""The probability-flow ODE as an ODE: ``dy/dsigma = (y - x0_hat(y, sigma)) / sigma``.

Every deterministic sampler that :func:`~parareal.adapters.diffusion.sample` supports is a
fixed-step ODE method applied to one equation, in the variables of Karras et al. (2022):

=========================  =================================================================
Karras / diffusers          code
=========================  =================================================================
``sigma``                  the ODE's time; ``sigma = sqrt(1 - alpha_bar) / sqrt(alpha_bar)``
``x`` (Euler/Heun latent)  the state ``y``; a DDIM latent ``x_t`` is ``y * sqrt(alpha_bar_t)``
``D(x; sigma)``            ``x0_hat``: the model's prediction of the clean sample
``dx/dsigma``              :class:`ProbabilityFlowRhs`: ``(y - x0_hat) / sigma``
``scale_model_input``      the model sees ``y / sqrt(sigma**2 + 1)`` at its timestep ``t(sigma)``
``sigma_0 > ... > sigma_N`` :class:`SigmaGrid` ``.sigmas``: the scheduler's noise levels
Euler step (DDIM)          ``parareal.Euler`` on one grid interval
Heun step (Karras Alg. 1)  ``parareal.Heun`` on one grid interval; the step to ``sigma = 0`` is
                           Euler (the right side is ``0 / 0`` there)
=========================  =================================================================

The engine's time is the grid index (``0..N``, as for the DDIM steps), so SRDS blocks are
unions of grid intervals; :class:`OnGrid` maps a grid interval ``[i, j]`` to the noise levels
``[sigma_i, sigma_j]`` and asks ``f`` at noise levels, so ``f(sigma, y)`` is the ODE itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from parareal.propagators import Euler, Propagator, SteppablePropagator, Stepper, drive, resolve
from parareal.validation import check_int

from .model_rhs import ModelRhs, ProbabilityFlowDrift, SigmaTimesteps
from .models import ModelFn
from .schedule import DDIMGrid, NoiseSchedule

__all__ = [
    "FLOW_SCHEDULERS",
    "KARRAS_SCHEDULERS",
    "SUPPORTED_SCHEDULERS",
    "OnGrid",
    "ProbabilityFlowRhs",
    "SigmaGrid",
    "check_scheduler",
    "resolve_propagator",
    "sigma_grid",
]

#: Schedulers sampled through the DDIM steps (:mod:`.ddim`).
DDIM_SCHEDULERS = ("DDIMScheduler", "DDPMScheduler")
#: Schedulers whose own step loop is an Euler or Heun method in ``sigma``.
KARRAS_SCHEDULERS = {"EulerDiscreteScheduler": "euler", "HeunDiscreteScheduler": "heun"}
#: Flow-matching schedulers (:mod:`.flow`; ``FlowSchedule`` is one bound to its ``mu``).
FLOW_SCHEDULERS = ("FlowMatchEulerDiscreteScheduler", "FlowSchedule")
SUPPORTED_SCHEDULERS = DDIM_SCHEDULERS + tuple(KARRAS_SCHEDULERS) + FLOW_SCHEDULERS[:1]
_MULTISTEP = (
    "DPMSolverMultistepScheduler", "DPMSolverMultistepInverseScheduler",
    "UniPCMultistepScheduler", "DEISMultistepScheduler", "PNDMScheduler",
    "LMSDiscreteScheduler", "SASolverScheduler", "KDPM2DiscreteScheduler",
    "DPMSolverSinglestepScheduler", "EDMDPMSolverMultistepScheduler",
)
_STOCHASTIC = (
    "EulerAncestralDiscreteScheduler", "KDPM2AncestralDiscreteScheduler",
    "DPMSolverSDEScheduler", "EDMEulerScheduler", "LCMScheduler", "TCDScheduler",
)
_SUPPORTED_TEXT = (
    f"supported: {', '.join(SUPPORTED_SCHEDULERS)} (each of their steps is a one-step map of "
    "the current latent, which Parareal's propagators must be)"
)


def check_scheduler(scheduler: Any) -> str:
    """The sampler family of ``scheduler``: ``"ddim"``, ``"euler"``, ``"heun"`` or ``"flow"``.

    Raises
    ------
    TypeError
        For any other scheduler, saying why it cannot be a propagator and what is supported.
    """
    if isinstance(scheduler, NoiseSchedule):
        return "ddim"
    name = type(scheduler).__name__
    if name in DDIM_SCHEDULERS:
        return "ddim"
    if name in KARRAS_SCHEDULERS:
        return KARRAS_SCHEDULERS[name]
    if name in FLOW_SCHEDULERS:
        return "flow"
    if name in _MULTISTEP:
        why = (f"{name} is a multistep (or multi-stage stateful) solver: its step uses model "
               "outputs of earlier steps, so it is not a map of the current latent alone")
    elif name in _STOCHASTIC:
        why = (f"{name} is a stochastic (or consistency) sampler, not a probability-flow ODE "
               "method")
    else:
        why = f"unsupported scheduler {name}"
    raise TypeError(
        f"{why}; {_SUPPORTED_TEXT}. Build one of those from the same config, e.g. "
        "EulerDiscreteScheduler.from_config(scheduler.config)"
    )


@dataclass(frozen=True, eq=False)
class SigmaGrid:
    """The noise levels of an ``N``-step sampler and what the model needs at each.

    Attributes
    ----------
    sigmas : numpy.ndarray
        ``N + 1`` decreasing noise levels (float32 values held in float64); the last is the
        sample's (0, or ``sigma_min`` for ``final_sigmas_type="sigma_min"``).
    timesteps : numpy.ndarray
        The model's timestep at ``sigmas[:N]`` (the scheduler's own values).
    train_log_sigmas : numpy.ndarray
        ``log sigma`` of the training timesteps, for the timestep of an off-grid ``sigma``
        (diffusers' ``_sigma_to_t``: linear in ``log sigma``).
    prediction_type : {"epsilon", "v_prediction", "sample"}
    method : {"ddim", "euler", "heun"}
        The scheduler's own sampler (its default fine and coarse method).
    init_scale : float
        ``y_0 = x_T * init_scale`` (``init_noise_sigma``; ``1 / sqrt(alpha_bar)`` for DDIM).
    final_scale : float
        The sample is ``y_N * final_scale`` (1; ``sqrt(final alpha_bar)`` for DDIM).
    clip_sample : bool
        Clamp ``x0_hat`` to ``[-clip_sample_range, clip_sample_range]``.
    clip_sample_range : float
    continuous_timesteps : bool
        The model's timestep is ``0.25 log sigma`` (``timestep_type="continuous"``).
    """

    sigmas: np.ndarray
    timesteps: np.ndarray
    train_log_sigmas: np.ndarray
    prediction_type: str
    method: str
    init_scale: float = 1.0
    final_scale: float = 1.0
    clip_sample: bool = False
    clip_sample_range: float = 1.0
    continuous_timesteps: bool = False

    @property
    def steps(self) -> int:
        """``N``: grid intervals."""
        return len(self.sigmas) - 1

    def timestep(self, sigma: float) -> float:
        """The model's timestep at noise level ``sigma`` (the scheduler's on the grid)."""
        # float32 states carry sigma rounded to float32: match a grid point to that precision
        hits = np.flatnonzero(np.abs(self.sigmas[:-1] - sigma) <= 1e-7 * sigma)
        if hits.size:
            return float(self.timesteps[hits[0]])
        if self.continuous_timesteps:
            return 0.25 * math.log(sigma)
        log_sigmas = self.train_log_sigmas
        log_sigma = math.log(max(sigma, 1e-10))
        low = int(np.clip(np.sum(log_sigma - log_sigmas >= 0) - 1, 0, len(log_sigmas) - 2))
        lo, hi = log_sigmas[low], log_sigmas[low + 1]
        w = float(np.clip((lo - log_sigma) / (lo - hi), 0.0, 1.0))
        return (1 - w) * low + w * (low + 1)

    def noise_level(self, i: int) -> float:
        """``sigma_i``: the noise of the model's input ``i`` in the units of the state ``y``."""
        return float(self.sigmas[i])

    def posterior_variance(self, i: int) -> float:
        """The variance an ancestral step from ``sigma_i`` to ``sigma_{i+1}`` adds (the DDPM
        posterior's, as Euler ancestral's ``sigma_up**2``):
        ``sigma_{i+1}**2 (sigma_i**2 - sigma_{i+1}**2) / sigma_i**2``."""
        s0, s1 = float(self.sigmas[i]), float(self.sigmas[i + 1])
        return s1**2 * (s0**2 - s1**2) / s0**2 if s0 > 0 else 0.0


def _train_log_sigmas(alphas_cumprod: torch.Tensor) -> np.ndarray:
    sigmas = ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5
    return np.log(sigmas.detach().cpu().numpy().astype(np.float64))


def _karras_grid(scheduler: Any, steps: int, method: str) -> SigmaGrid:
    """Run ``set_timesteps`` on a copy of an Euler or Heun scheduler and read its grid."""
    sch = type(scheduler).from_config(scheduler.config)
    sch.set_timesteps(steps)
    sigmas = sch.sigmas.detach().cpu().to(torch.float64).numpy()
    timesteps = sch.timesteps.detach().cpu().to(torch.float64).numpy()
    if method == "heun":  # [s0, s1, s1, ..., s_{N-1}, s_{N-1}, 0]: first-order points only
        sigmas = np.concatenate([sigmas[:1], sigmas[1::2]])
        timesteps = np.concatenate([timesteps[:1], timesteps[1::2]])
    config = sch.config
    kind = config.get("prediction_type", "epsilon")
    if kind not in ("epsilon", "v_prediction", "sample"):
        raise ValueError(f"prediction_type {kind!r} of {type(scheduler).__name__} is not "
                         "supported; use 'epsilon', 'v_prediction' or 'sample'")
    continuous = config.get("timestep_type", "discrete") == "continuous" and kind == "v_prediction"
    return SigmaGrid(
        sigmas=sigmas,
        timesteps=timesteps,
        train_log_sigmas=_train_log_sigmas(sch.alphas_cumprod),
        prediction_type=kind,
        method=method,
        init_scale=float(sch.init_noise_sigma),
        clip_sample=bool(config.get("clip_sample", False)),
        clip_sample_range=float(config.get("clip_sample_range", 1.0)),
        continuous_timesteps=continuous,
    )


def _ddim_grid(schedule: NoiseSchedule, steps: int) -> SigmaGrid:
    """The DDIM grid in ``sigma``: the model inputs' noise levels, then the final one.

    For ``leading`` spacing every DDIM step lands on the next model input, and Euler on this
    grid is DDIM; for ``linspace``/``trailing`` DDIM's steps land between them (its "previous
    timestep" rule), and Euler on this grid is the consistent variant.
    """
    if schedule.thresholding:
        raise ValueError("dynamic thresholding is a DDIM-step feature; engine propagators "
                         "(fine=/coarse=) need a schedule without thresholding")
    grid = DDIMGrid(schedule, steps)
    alphas = schedule.alphas_cumprod.to(torch.float64)
    final = float(schedule.final_alpha_cumprod)
    points = [float(alphas[int(t)]) for t in grid.timesteps] + [final]
    sigmas = np.array([math.sqrt((1 - a) / a) for a in points])
    return SigmaGrid(
        sigmas=sigmas,
        timesteps=grid.timesteps.astype(np.float64),
        train_log_sigmas=_train_log_sigmas(schedule.alphas_cumprod.to(torch.float64)),
        prediction_type=schedule.prediction_type,
        method="euler",
        init_scale=1 / math.sqrt(points[0]),
        final_scale=math.sqrt(final),
        clip_sample=schedule.clip_sample,
        clip_sample_range=schedule.clip_sample_range,
    )


def sigma_grid(scheduler: Any, num_inference_steps: int) -> SigmaGrid:
    """The :class:`SigmaGrid` of ``scheduler`` for ``num_inference_steps`` steps.

    The scheduler is only read (``set_timesteps`` runs on a copy). A flow-matching scheduler
    comes bound to its ``mu`` (:func:`.flow.with_mu`, as :func:`~.sampler.sample` binds it).
    """
    method = check_scheduler(scheduler)
    if method == "flow":
        if not hasattr(scheduler, "grid"):
            raise TypeError(f"bind {type(scheduler).__name__} to its mu first: "
                            "flow.with_mu(scheduler, mu) (sample does)")
        return scheduler.grid(num_inference_steps)  # type: ignore[no-any-return]
    if method == "ddim":
        schedule = (scheduler if isinstance(scheduler, NoiseSchedule)
                    else NoiseSchedule.from_scheduler(scheduler))
        return _ddim_grid(schedule, schedule.check_steps(num_inference_steps))
    steps = check_int(num_inference_steps, "num_inference_steps")
    train = int(scheduler.config.num_train_timesteps)
    if steps > train:
        raise ValueError(
            f"num_inference_steps must be <= num_train_timesteps = {train}, got {steps}")
    return _karras_grid(scheduler, steps, method)


class ProbabilityFlowRhs(ModelRhs):
    """``f(sigma, Y)``: the probability-flow ODE ``dy/dsigma = (y - x0_hat) / sigma``.

    The :class:`~.model_rhs.ModelRhs` of a :class:`SigmaGrid` (nothing of its own but the
    preset): vectorised as the engine calls it, ``sigma`` of shape ``(S,)`` and states
    ``(S, B, ...)`` (one model call on ``S * B`` inputs); a 0-d ``sigma`` with states
    ``(B, ...)`` is one request. The arithmetic is diffusers' (``scale_model_input``, then
    ``x0_hat`` and the derivative in ``EulerDiscreteScheduler.step``'s order of operations),
    in the state's dtype.

    Parameters
    ----------
    model : ModelFn
    grid : SigmaGrid
    device : torch.device
    bar : tqdm bar, optional
        Advanced by one per call.
    """

    def __init__(self, model: ModelFn, grid: SigmaGrid, device: torch.device,
                 bar: Any = None) -> None:
        super().__init__(model, SigmaTimesteps(grid, device), ProbabilityFlowDrift(grid), bar)
        self.grid, self.device = grid, device


def resolve_propagator(value: Any, name: str) -> SteppablePropagator:
    """A fixed-step engine propagator (instance or spec such as ``"heun"``) for ``name``."""
    prop = resolve(value, name=name)
    if not isinstance(prop, SteppablePropagator):
        raise TypeError(
            f"{name} must be a fixed-step propagator (parareal.Euler, Heun, Midpoint, RK4 or "
            f"a SteppablePropagator): its steps are taken on the scheduler's grid of noise "
            f"levels; got {prop!r}"
        )
    return prop


class OnGrid(Propagator):
    """An engine propagator stepping on the sampler's (non-uniform) grid of noise levels.

    Time is the grid index. From index ``a`` to ``b`` the fine form (``across=False``) takes
    ``method.steps`` equal sub-steps (in ``sigma``) on every grid interval
    ``[sigma_i, sigma_{i+1}]``, ``a <= i < b``; the coarse form (``across=True``) takes them
    across ``[sigma_a, sigma_b]`` at once. A sub-step that ends at ``sigma = 0`` is an Euler
    step, as in Karras et al. (2022, Alg. 1) and diffusers' Heun scheduler: the right side is
    ``0 / 0`` there. ``f`` is asked at noise levels: it is :class:`ProbabilityFlowRhs`.

    Parameters
    ----------
    method : SteppablePropagator
        ``parareal.Euler()``, ``Heun()``, ``RK4(steps=2)``...
    grid : SigmaGrid
    across : bool
        One propagation per block instead of per grid interval.
    """

    steppable: ClassVar[bool] = True

    def __init__(self, method: SteppablePropagator, grid: SigmaGrid, *,
                 across: bool = False) -> None:
        self.method, self.grid, self.across = method, grid, bool(across)
        self._euler = Euler()

    def __repr__(self) -> str:
        return f"OnGrid({self.method!r}, steps={self.grid.steps}, across={self.across})"

    def _indices(self, s0: Any, s1: Any) -> tuple[int, int]:
        out = []
        for value in (float(s0), float(s1)):
            index = int(round(value))
            if abs(value - index) > 1e-6 or not 0 <= index <= self.grid.steps:
                raise ValueError(
                    f"OnGrid works on grid indices 0..{self.grid.steps}, got {value}")
            out.append(index)
        return out[0], out[1]

    def _points(self, a: int, b: int) -> list[int]:
        return [a, b] if self.across else list(range(a, b + 1))

    def calls(self, a: int = 0, b: int | None = None) -> int:
        """Calls of ``f`` from grid index ``a`` to ``b`` (default: the whole grid)."""
        b = self.grid.steps if b is None else b
        points, total = self._points(a, b), 0
        for j in points[1:]:
            total += self.method.steps * self.method.stages
            if self.grid.sigmas[j] == 0:
                total -= self.method.stages - 1
        return total

    def stepper(self, y: Any, s0: Any, s1: Any) -> Stepper:
        a, b = self._indices(s0, s1)
        sigmas, method = self.grid.sigmas, self.method
        points = self._points(a, b)
        for i, j in zip(points[:-1], points[1:]):
            t0, t1 = float(sigmas[i]), float(sigmas[j])
            h = (t1 - t0) / method.steps
            for k in range(method.steps):
                last = k == method.steps - 1
                inner = self._euler if last and t1 == 0 else method
                y = yield from inner.step(y, t0 + k * h, h)
        return y

    def propagate(self, f: Any, y: Any, t0: float, t1: float) -> Any:
        return drive(self.stepper(y, t0, t1), f, y)


def default_method(grid: SigmaGrid) -> SteppablePropagator:
    """The scheduler's own sampler as an engine propagator (Euler; Heun for Heun)."""
    from parareal.propagators import Heun

    return Heun() if grid.method == "heun" else Euler()


def propagators(
    grid: SigmaGrid, fine: Any, coarse: Any
) -> tuple[OnGrid, OnGrid]:
    """The fine and coarse :class:`OnGrid` propagators (defaults: the scheduler's method)."""
    fine_method = default_method(grid) if fine is None else resolve_propagator(fine, "fine")
    coarse_method = (default_method(grid) if coarse is None
                     else resolve_propagator(coarse, "coarse"))
    return OnGrid(fine_method, grid), OnGrid(coarse_method, grid, across=True)
