"""A small bundled diffusion model of scikit-learn's handwritten digits, and quality metrics.

The assets (``assets/``, shipped as package data) hold a DDPM-trained ``UNet2DModel`` of the
8x8 digits of :func:`sklearn.datasets.load_digits` (``digits_unet.safetensors`` and its
``digits_unet.json``: UNet config, scheduler config, training metadata) and a small classifier
(``digits_classifier.safetensors`` / ``.json``) whose penultimate features give a Frechet
distance between sets of samples, the FID recipe on a scale that runs in milliseconds. Both are
made by ``examples/train_digits.py``; see ``docs/model_card.md``. The same UNet trained by flow
matching (``digits_flow.safetensors`` / ``.json``, :func:`load_digits_flow_model`, sampled with
``FlowMatchEulerDiscreteScheduler``) is made by ``examples/train_digits_flow.py``.

Weights are read with :func:`safetensors.torch.load_file` (no pickle). scikit-learn, scipy and
Pillow are imported only inside the functions that need them; a missing one (or a missing
diffusers or safetensors) is an ``ImportError`` naming the extra to install
(``pip install 'parareal[diffusion]'``).

Example
-------
>>> import torch
>>> from parareal.adapters.diffusion import sample
>>> from parareal.adapters.diffusion.digits import load_digits_model, sample_quality
>>> unet, scheduler = load_digits_model()
>>> x_T = torch.randn(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))
>>> out = sample(unet, scheduler, x_T, num_inference_steps=100, method="serial")
>>> sample_quality(out.sample)["confidence"] > 0.5
True
"""

from .digits_data import (
    ASSETS,
    CLASSIFIER_WEIGHTS,
    FLOW_WEIGHTS,
    HELDOUT_FRACTION,
    SPLIT_SEED,
    SPLITS,
    UNET_WEIGHTS,
    DigitsClassifier,
    _digits,  # noqa: F401 (private names that lived here)
    _split_index,  # noqa: F401
    load_classifier,
    load_digits_data,
    load_digits_flow_model,
    load_digits_flow_scheduler,
    load_digits_labels,
    load_digits_model,
    load_digits_scheduler,
)
from .digits_quality import (
    IMAGE_EXTENSIONS,
    frechet_distance,
    image_format,
    sample_quality,
    save_grid,
    to_uint8,
)

__all__ = [
    "ASSETS",
    "CLASSIFIER_WEIGHTS",
    "FLOW_WEIGHTS",
    "HELDOUT_FRACTION",
    "IMAGE_EXTENSIONS",
    "SPLIT_SEED",
    "SPLITS",
    "UNET_WEIGHTS",
    "DigitsClassifier",
    "frechet_distance",
    "image_format",
    "load_classifier",
    "load_digits_data",
    "load_digits_flow_model",
    "load_digits_flow_scheduler",
    "load_digits_labels",
    "load_digits_model",
    "load_digits_scheduler",
    "sample_quality",
    "save_grid",
    "to_uint8",
]
