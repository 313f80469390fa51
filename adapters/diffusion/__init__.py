"""Diffusion-model sampling as a Parareal problem: SRDS, with serial and Picard baselines.

Import as ``parareal.adapters.diffusion``; see ``docs/diffusion.md``.
"""

from .ddim import DDIMJump, DDIMSteps, ddim_jump
from .mixture import GaussianMixture
from .models import ModelFn, wrap_model
from .sampler import DEFAULT_TOL, METHODS, DiffusionResult, sample
from .schedule import BETA_SCHEDULES, PREDICTION_TYPES, SPACINGS, DDIMGrid, NoiseSchedule

__all__ = [
    "BETA_SCHEDULES",
    "DEFAULT_TOL",
    "METHODS",
    "PREDICTION_TYPES",
    "SPACINGS",
    "DDIMGrid",
    "DDIMJump",
    "DDIMSteps",
    "DiffusionResult",
    "GaussianMixture",
    "ModelFn",
    "NoiseSchedule",
    "ddim_jump",
    "sample",
    "wrap_model",
]
