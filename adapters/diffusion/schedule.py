"""Noise schedules and the DDIM timestep grid, computed exactly as diffusers computes them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from parareal.validation import check_int

__all__ = [
    "BETA_SCHEDULES",
    "PREDICTION_TYPES",
    "SPACINGS",
    "DDIMGrid",
    "NoiseSchedule",
]

SPACINGS = ("leading", "trailing", "linspace")
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
_SUPPORTED_SCHEDULERS = ("DDIMScheduler", "DDPMScheduler")


def _betas_for_alpha_bar(num: int, max_beta: float = 0.999) -> torch.Tensor:
    """The cosine ("squaredcos_cap_v2") betas, as diffusers' ``betas_for_alpha_bar``."""

    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = [min(1 - alpha_bar((i + 1) / num) / alpha_bar(i / num), max_beta) for i in range(num)]
    return torch.tensor(betas, dtype=torch.float32)


@dataclass(frozen=True, eq=False)
class NoiseSchedule:
    """A variance-preserving noise schedule and the sampler settings that go with it.

    Build one with :meth:`from_scheduler` (from a diffusers ``DDIMScheduler`` or
    ``DDPMScheduler``, without modifying it) or :meth:`build`.

    A ``DDPMScheduler`` is sampled with DDIM steps: ``eta=1`` equals ``DDPMScheduler.step``
    (ancestral sampling) only with ``clip_sample=False`` and no thresholding, since DDPM forms
    its step from the clipped clean sample; :func:`~.pipeline.sample_pipeline` runs that
    clipped step too.

    Attributes
    ----------
    alphas_cumprod : torch.Tensor
        ``alpha_bar_t`` for ``t = 0 .. num_train_timesteps - 1`` (float32, as diffusers keeps it).
    final_alpha_cumprod : torch.Tensor
        ``alpha_bar`` after the last step: 1 if ``set_alpha_to_one`` else ``alphas_cumprod[0]``.
    timestep_spacing : {"leading", "trailing", "linspace"}
    steps_offset : int
    prediction_type : {"epsilon", "v_prediction", "sample"}
    clip_sample : bool
        Clamp the predicted clean sample to ``[-clip_sample_range, clip_sample_range]``.
    clip_sample_range : float
    thresholding : bool
        Dynamic thresholding of the predicted clean sample (Imagen), as diffusers does it.
    dynamic_thresholding_ratio, sample_max_value : float
    """

    alphas_cumprod: torch.Tensor
    final_alpha_cumprod: torch.Tensor
    timestep_spacing: str = "leading"
    steps_offset: int = 0
    prediction_type: str = "epsilon"
    clip_sample: bool = False
    clip_sample_range: float = 1.0
    thresholding: bool = False
    dynamic_thresholding_ratio: float = 0.995
    sample_max_value: float = 1.0

    def __post_init__(self) -> None:
        if self.timestep_spacing not in SPACINGS:
            raise ValueError(
                f"timestep_spacing must be one of {SPACINGS}, got {self.timestep_spacing!r}"
            )
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(
                f"prediction_type must be one of {PREDICTION_TYPES}, got {self.prediction_type!r}"
            )

    @property
    def num_train_timesteps(self) -> int:
        """Number of training timesteps."""
        return int(self.alphas_cumprod.shape[0])

    @classmethod
    def from_scheduler(cls, scheduler: Any) -> NoiseSchedule:
        """Read the schedule of a diffusers ``DDIMScheduler`` or ``DDPMScheduler``.

        The scheduler is only read. A ``DDPMScheduler`` is sampled with DDIM steps
        (``eta = 1`` equals its ancestral step only with ``clip_sample=False`` and no
        thresholding; :func:`sample_pipeline` reproduces the clipped step); its final
        ``alpha_bar`` is 1, as in
        ``DDIMScheduler.from_config(ddpm.config)``.
        """
        name = type(scheduler).__name__
        if name not in _SUPPORTED_SCHEDULERS:
            raise TypeError(
                f"unsupported scheduler {name}; supported: {', '.join(_SUPPORTED_SCHEDULERS)} "
                "(convert others with DDIMScheduler.from_config(scheduler.config))"
            )
        config = scheduler.config
        alphas = scheduler.alphas_cumprod.detach().clone().cpu()
        if name == "DDIMScheduler":
            final = scheduler.final_alpha_cumprod.detach().clone().cpu().to(alphas.dtype)
        else:
            final = torch.tensor(1.0, dtype=alphas.dtype)
        return cls(
            alphas_cumprod=alphas,
            final_alpha_cumprod=final,
            timestep_spacing=config.get("timestep_spacing", "leading"),
            steps_offset=int(config.get("steps_offset", 0)),
            prediction_type=config.get("prediction_type", "epsilon"),
            clip_sample=bool(config.get("clip_sample", False)),
            clip_sample_range=float(config.get("clip_sample_range", 1.0)),
            thresholding=bool(config.get("thresholding", False)),
            dynamic_thresholding_ratio=float(config.get("dynamic_thresholding_ratio", 0.995)),
            sample_max_value=float(config.get("sample_max_value", 1.0)),
        )

    @classmethod
    def build(
        cls,
        beta_schedule: str = "linear",
        *,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.0001,
        beta_end: float = 0.02,
        set_alpha_to_one: bool = True,
        **settings: Any,
    ) -> NoiseSchedule:
        """Build a schedule directly, with diffusers' formulas for the betas.

        ``settings`` are the remaining fields (``timestep_spacing``, ``prediction_type``...).
        """
        if beta_schedule not in BETA_SCHEDULES:
            raise ValueError(
                f"beta_schedule must be one of {BETA_SCHEDULES}, got {beta_schedule!r}"
            )
        n = check_int(num_train_timesteps, "num_train_timesteps")
        if beta_schedule == "linear":
            betas = torch.linspace(beta_start, beta_end, n, dtype=torch.float32)
        elif beta_schedule == "scaled_linear":
            betas = torch.linspace(beta_start**0.5, beta_end**0.5, n, dtype=torch.float32) ** 2
        else:
            betas = _betas_for_alpha_bar(n)
        alphas = torch.cumprod(1.0 - betas, dim=0)
        final = torch.tensor(1.0) if set_alpha_to_one else alphas[0].clone()
        return cls(alphas_cumprod=alphas, final_alpha_cumprod=final, **settings)

    def timesteps(self, num_inference_steps: int) -> np.ndarray:
        """The sampler's timesteps, as diffusers' ``DDIMScheduler.set_timesteps`` makes them."""
        n = self.check_steps(num_inference_steps)
        train = self.num_train_timesteps
        if self.timestep_spacing == "linspace":
            steps = np.linspace(0, train - 1, n).round()[::-1].copy().astype(np.int64)
        elif self.timestep_spacing == "leading":
            ratio = train // n
            steps = (np.arange(0, n) * ratio).round()[::-1].copy().astype(np.int64)
            steps += self.steps_offset
        else:
            ratio = train / n
            steps = np.round(np.arange(train, 0, -ratio)).astype(np.int64) - 1
        return steps

    def check_steps(self, num_inference_steps: Any) -> int:
        """Validate a number of sampling steps: an int in ``[1, num_train_timesteps]``."""
        n = check_int(num_inference_steps, "num_inference_steps")
        if n > self.num_train_timesteps:
            raise ValueError(
                f"num_inference_steps must be <= num_train_timesteps = "
                f"{self.num_train_timesteps}, got {n}"
            )
        return n

    def grid(self, num_inference_steps: int) -> DDIMGrid:
        """The DDIM grid of an ``num_inference_steps``-step sampler."""
        return DDIMGrid(self, num_inference_steps)


class DDIMGrid:
    """The grid of an ``N``-step DDIM sampler: grid point ``i`` is the input of step ``i``.

    Step ``i`` (``0 <= i < N``) evaluates the model at ``timesteps[i]`` and moves from
    ``alpha_bar(timesteps[i])`` to ``alpha_bar(timesteps[i] - T // N)`` (or the final
    ``alpha_bar`` when that is negative) -- diffusers' ``DDIMScheduler.step`` rule, which for
    ``linspace``/``trailing`` spacing need not land on ``timesteps[i + 1]``. Grid point ``N`` is
    the sample. A jump from point ``a`` to point ``b > a`` (the SRDS coarse step) uses the model
    at ``timesteps[a]`` and lands where step ``b - 1`` lands.
    """

    def __init__(self, schedule: NoiseSchedule, num_inference_steps: int) -> None:
        n = schedule.check_steps(num_inference_steps)
        self.schedule = schedule
        self.steps = n
        self.timesteps = schedule.timesteps(n)
        stride = schedule.num_train_timesteps // n
        alphas = schedule.alphas_cumprod
        self._alpha_from = [alphas[int(t)] for t in self.timesteps]
        self._alpha_to = [
            alphas[int(t) - stride] if int(t) - stride >= 0 else schedule.final_alpha_cumprod
            for t in self.timesteps
        ]
        self._coefficients: dict[tuple[int, int, float], tuple[float, ...]] = {}

    def coefficients(self, a: int, b: int, eta: float) -> tuple[float, ...]:
        """``(sqrt(ab_t), sqrt(1 - ab_t), sqrt(ab_prev), direction, std)`` for a jump a -> b.

        Computed with the schedule's float32 tensors in the order ``DDIMScheduler.step`` uses,
        then turned into Python floats (exact float32 values), so that multiplying a state by
        them rounds exactly as diffusers does.
        """
        key = (a, b, eta)
        cached = self._coefficients.get(key)
        if cached is not None:
            return cached
        alpha_t = self._alpha_from[a]
        alpha_prev = self._alpha_to[b - 1]
        beta_t = 1 - alpha_t
        beta_prev = 1 - alpha_prev
        variance = (beta_prev / beta_t) * (1 - alpha_t / alpha_prev)
        std = eta * variance ** (0.5)
        direction = (1 - alpha_prev - std**2) ** (0.5)
        values = tuple(
            float(v)
            for v in (alpha_t ** (0.5), beta_t ** (0.5), alpha_prev ** (0.5), direction, std)
        )
        self._coefficients[key] = values
        return values

    def noise_level(self, i: int) -> float:
        """``sqrt(1 - alpha_bar)`` at the model input of step ``i``."""
        return float((1 - self._alpha_from[i]) ** 0.5)

    def posterior_variance(self, i: int) -> float:
        """DDPM posterior variance of step ``i`` (the ``eta = 1`` DDIM variance)."""
        return self.coefficients(i, i + 1, 1.0)[4] ** 2
