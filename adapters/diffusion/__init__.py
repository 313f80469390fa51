"""Diffusion-model sampling as a Parareal problem: SRDS, with serial and Picard baselines.

Import as ``parareal.adapters.diffusion``; see ``docs/diffusion.md``. Needs the ``diffusion``
extra (``pip install 'parareal[diffusion]'``): torch here, diffusers, safetensors,
scikit-learn and scipy for the bundled digits model (:mod:`.digits`).
"""

from ._extra import missing

try:
    import torch  # noqa: F401
except ImportError as _error:
    raise missing("torch", "parareal.adapters.diffusion", _error) from _error

from .checks import SEED_RANGE, check_eta, check_seed, check_x_T  # noqa: E402
from .ddim import DDIMJump, DDIMSteps, ddim_jump  # noqa: E402
from .mixture import GaussianMixture  # noqa: E402
from .models import ModelFn, check_model_output, wrap_model  # noqa: E402
from .pf_ode import (  # noqa: E402
    SUPPORTED_SCHEDULERS,
    OnGrid,
    ProbabilityFlowRhs,
    SigmaGrid,
    check_scheduler,
    sigma_grid,
)
from .pipeline import PIPELINES, PipelineResult, sample_pipeline  # noqa: E402
from .sampler import (  # noqa: E402
    CALL_BUDGET_BYTES,
    DEFAULT_TOL,
    METHOD_OPTIONS,
    METHODS,
    STORE_BUDGET_BYTES,
    DiffusionResult,
    check_method_options,
    default_blocks,
    sample,
)
from .schedule import (  # noqa: E402
    BETA_SCHEDULES,
    PREDICTION_TYPES,
    SPACINGS,
    DDIMGrid,
    NoiseSchedule,
)

__all__ = [
    "BETA_SCHEDULES",
    "CALL_BUDGET_BYTES",
    "DEFAULT_TOL",
    "METHODS",
    "METHOD_OPTIONS",
    "PIPELINES",
    "PREDICTION_TYPES",
    "SEED_RANGE",
    "SPACINGS",
    "STORE_BUDGET_BYTES",
    "SUPPORTED_SCHEDULERS",
    "DDIMGrid",
    "DDIMJump",
    "DDIMSteps",
    "DiffusionResult",
    "GaussianMixture",
    "ModelFn",
    "NoiseSchedule",
    "OnGrid",
    "ProbabilityFlowRhs",
    "SigmaGrid",
    "PipelineResult",
    "check_eta",
    "check_method_options",
    "check_model_output",
    "check_scheduler",
    "check_seed",
    "check_x_T",
    "ddim_jump",
    "default_blocks",
    "sample",
    "sigma_grid",
    "sample_pipeline",
    "wrap_model",
]
