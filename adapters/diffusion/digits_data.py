"""The bundled digits model's data and weights: scikit-learn's 8x8 digits split into train and
held-out, the DDPM-trained ``UNet2DModel`` and its DDIM scheduler, and the small classifier
whose features the quality metrics use (:mod:`.digits_quality`). Re-exported by
:mod:`.digits`, where it is documented.
"""

from __future__ import annotations

import functools
import json
import os
import pathlib
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from ._extra import import_failure, missing

try:  # before diffusers, which needs it too
    from safetensors.torch import load_file
except ImportError as _error:
    raise missing("safetensors", "parareal.adapters.diffusion.digits", _error) from _error
try:
    from diffusers import DDIMScheduler, UNet2DModel
except (ImportError, RuntimeError) as _error:
    # diffusers' lazy loader wraps a missing dependency's ImportError in RuntimeError
    if import_failure(_error) is None:
        raise
    raise missing("diffusers", "parareal.adapters.diffusion.digits", _error) from _error

if TYPE_CHECKING:  # imported where the flow model is loaded: it imports scipy.stats (1 s),
    from diffusers import FlowMatchEulerDiscreteScheduler  # which DDIM sampling never needs

__all__ = [
    "ASSETS",
    "CLASSIFIER_WEIGHTS",
    "FLOW_WEIGHTS",
    "HELDOUT_FRACTION",
    "SPLIT_SEED",
    "SPLITS",
    "UNET_WEIGHTS",
    "DigitsClassifier",
    "load_classifier",
    "load_digits_data",
    "load_digits_flow_model",
    "load_digits_flow_scheduler",
    "load_digits_labels",
    "load_digits_model",
    "load_digits_scheduler",
]

#: Folder of the bundled weights and their JSON configs (package data).
ASSETS: pathlib.Path = pathlib.Path(__file__).resolve().parent / "assets"
#: The bundled diffusion model's weights (its config is ``digits_unet.json`` beside it).
UNET_WEIGHTS: pathlib.Path = ASSETS / "digits_unet.safetensors"
#: The bundled flow-matching model's weights (its config is ``digits_flow.json`` beside it).
FLOW_WEIGHTS: pathlib.Path = ASSETS / "digits_flow.safetensors"
#: The bundled classifier's weights (its config is ``digits_classifier.json`` beside it).
CLASSIFIER_WEIGHTS: pathlib.Path = ASSETS / "digits_classifier.safetensors"

SPLITS = ("train", "heldout")
#: Seed of the permutation that splits the 1797 digits into train and held-out.
SPLIT_SEED = 0
#: Fraction of the digits held out (rounded: 270 of 1797).
HELDOUT_FRACTION = 0.15

_DEFAULT_CLASSIFIER = {"in_features": 64, "hidden": [128, 64], "classes": 10}


# --------------------------------------------------------------------------------------- data


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """All digits in [-1, 1] (n, 1, 8, 8), their labels, and the split permutation."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise missing("scikit-learn", "the digits data set", err) from err

    bunch = load_digits()
    images = torch.as_tensor(np.asarray(bunch.images, dtype=np.float32) / 8.0 - 1.0)
    labels = torch.as_tensor(np.asarray(bunch.target, dtype=np.int64))
    order = np.random.default_rng(SPLIT_SEED).permutation(len(images))
    return images.unsqueeze(1), labels, order


def _split_index(split: str) -> np.ndarray:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    _, _, order = _digits()
    heldout = round(HELDOUT_FRACTION * len(order))
    return np.sort(order[:heldout] if split == "heldout" else order[heldout:])


def load_digits_data(split: str = "train") -> torch.Tensor:
    """The 8x8 handwritten digits of scikit-learn, rescaled to [-1, 1].

    Pixel values ``0..16`` become ``v / 8 - 1``. The 1797 images are split once by a seeded
    permutation (:data:`SPLIT_SEED`): 270 (15 %) are held out, 1527 are for training.

    Parameters
    ----------
    split : {"train", "heldout"}

    Returns
    -------
    torch.Tensor
        Shape ``(n, 1, 8, 8)``, float32, a fresh copy (in dataset order within the split).

    Raises
    ------
    ValueError
        For an unknown split name.
    """
    index = _split_index(split)
    images, _, _ = _digits()
    return images[torch.as_tensor(index)].clone()


def load_digits_labels(split: str = "train") -> torch.Tensor:
    """The class labels (0..9, int64) of :func:`load_digits_data` ``(split)``, in its order."""
    index = _split_index(split)
    _, labels, _ = _digits()
    return labels[torch.as_tensor(index)].clone()


# ------------------------------------------------------------------------------------ loading


def _check_file(path: str | os.PathLike[str] | None, default: pathlib.Path) -> pathlib.Path:
    resolved = pathlib.Path(default if path is None else os.fspath(path))
    if not resolved.is_file():
        raise FileNotFoundError(f"no weights file at {resolved}")
    return resolved


def _read_json(weights: pathlib.Path, default: pathlib.Path) -> dict[str, Any]:
    """The JSON config beside ``weights`` (same stem), else the bundled default config."""
    config = weights.with_suffix(".json")
    if not config.is_file():
        config = default
    if not config.is_file():
        raise FileNotFoundError(f"no model config at {weights.with_suffix('.json')} or {default}")
    try:
        data = json.loads(config.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read model config {config}: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"cannot read model config {config}: not a JSON object")
    return data


def _load_state(model: nn.Module, path: pathlib.Path, what: str) -> None:
    """Load safetensors weights into ``model`` (strict), turning every failure into ValueError."""
    try:
        state = load_file(str(path))
        for name, tensor in state.items():
            if not tensor.is_floating_point():
                raise ValueError(f"tensor {name!r} has dtype {tensor.dtype}, expected floating")
        model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    except Exception as err:  # safetensors raises its own error types; all mean "bad file"
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"cannot load {what} weights from {path}: {reason}") from err


def load_digits_model(
    weights: str | os.PathLike[str] | None = None,
) -> tuple[UNet2DModel, DDIMScheduler]:
    """The bundled digits diffusion model and its DDIM scheduler.

    Parameters
    ----------
    weights : path, optional
        A ``.safetensors`` file (default: the bundled ``assets/digits_unet.safetensors``). The
        UNet and scheduler are built from the JSON of the same name beside it, or from the
        bundled ``digits_unet.json`` when there is none (weights of the same architecture).

    Returns
    -------
    (UNet2DModel, DDIMScheduler)
        The model in eval mode, float32, on the CPU; a fresh scheduler (1000 training steps,
        linear betas 1e-4..0.02, epsilon prediction, ``clip_sample=False``).

    Raises
    ------
    FileNotFoundError
        The weights file (or every config) is missing; the message names the path.
    ValueError
        ``"cannot load digits model weights from <path>: <reason>"`` for a corrupt or
        unreadable file or weights that do not fit the architecture.
    """
    scheduler = load_digits_scheduler(weights)
    return _load_unet(weights, UNET_WEIGHTS), scheduler


def _load_unet(weights: str | os.PathLike[str] | None, default: pathlib.Path) -> UNet2DModel:
    """The ``UNet2DModel`` of ``weights`` (default ``default``) and its JSON config."""
    path = _check_file(weights, default)
    config = _read_json(path, default.with_suffix(".json"))
    try:
        unet = UNet2DModel.from_config(config["unet"])
    except Exception as err:
        raise ValueError(
            f"cannot build the digits model from the config for {path}: {err}"
        ) from err
    _load_state(unet, path, "digits model")
    return unet.float().eval()


def load_digits_flow_model(
    weights: str | os.PathLike[str] | None = None,
) -> tuple[UNet2DModel, FlowMatchEulerDiscreteScheduler]:
    """The bundled flow-matching digits model and its ``FlowMatchEulerDiscreteScheduler``.

    The same UNet as :func:`load_digits_model`, trained by rectified flow matching
    (``examples/train_digits_flow.py``): at timestep ``t = 1000 sigma`` it predicts the
    velocity ``noise - x0`` of ``x = (1 - sigma) x0 + sigma noise``. Parameters, return value
    and errors as :func:`load_digits_model` (default weights ``assets/digits_flow.safetensors``,
    config ``digits_flow.json``; the scheduler: 1000 training timesteps, ``shift=1``).
    """
    scheduler = load_digits_flow_scheduler(weights)
    return _load_unet(weights, FLOW_WEIGHTS), scheduler


def load_digits_flow_scheduler(
    weights: str | os.PathLike[str] | None = None,
) -> FlowMatchEulerDiscreteScheduler:
    """The scheduler of :func:`load_digits_flow_model`, from the config alone (cheap)."""
    try:
        from diffusers import FlowMatchEulerDiscreteScheduler
    except (ImportError, RuntimeError) as err:  # as for the module's own imports above
        if import_failure(err) is None:
            raise
        raise missing("diffusers", "the digits flow model", err) from err
    return _scheduler(FlowMatchEulerDiscreteScheduler, weights, FLOW_WEIGHTS, "digits_flow.json")


def load_digits_scheduler(weights: str | os.PathLike[str] | None = None) -> DDIMScheduler:
    """The DDIM scheduler of :func:`load_digits_model`, from the config alone (the weights are
    not read): cheap, for checking arguments such as the number of steps first.

    Raises
    ------
    FileNotFoundError, ValueError
        As :func:`load_digits_model` for a missing weights file or an unreadable config.
    """
    return _scheduler(DDIMScheduler, weights, UNET_WEIGHTS, "digits_unet.json")


def _scheduler(cls: Any, weights: str | os.PathLike[str] | None, default: pathlib.Path,
               config_name: str) -> Any:
    """The scheduler ``cls`` from the config beside ``weights`` (``default``: the bundled one),
    without reading the weights; ``ValueError`` for an unreadable config."""
    path = _check_file(weights, default)
    config = _read_json(path, ASSETS / config_name)
    try:
        return cls.from_config(config["scheduler"])
    except Exception as err:
        raise ValueError(
            f"cannot build the digits model from the config for {path}: {err}"
        ) from err


class DigitsClassifier(nn.Module):
    """A small MLP classifier of 8x8 digits in [-1, 1] (64 -> 128 -> 64 -> 10, SiLU).

    Parameters
    ----------
    in_features : int
        Pixels per image (64).
    hidden : sequence of int
        Hidden layer widths; the last one is the feature dimension of :meth:`features`.
    classes : int
    dropout : float
        Dropout after each hidden activation (active in training mode only).
    """

    def __init__(
        self,
        in_features: int = 64,
        hidden: tuple[int, ...] | list[int] = (128, 64),
        classes: int = 10,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for size in hidden:
            layers += [nn.Linear(width, size), nn.SiLU(), nn.Dropout(dropout)]
            width = size
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, classes)
        self.in_features = in_features

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer features, shape ``(n, hidden[-1])``, of images ``(n, 1, 8, 8)``."""
        return self.body(x.reshape(x.shape[0], -1).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits, shape ``(n, classes)``."""
        return self.head(self.features(x))


def load_classifier(weights: str | os.PathLike[str] | None = None) -> DigitsClassifier:
    """The bundled digits classifier (eval mode, float32), used by :func:`sample_quality`.

    Parameters
    ----------
    weights : path, optional
        A ``.safetensors`` file (default ``assets/digits_classifier.safetensors``); its
        architecture comes from the JSON of the same name beside it, or the bundled one.

    Raises
    ------
    FileNotFoundError, ValueError
        As :func:`load_digits_model`.
    """
    path = _check_file(weights, CLASSIFIER_WEIGHTS)
    config = _read_json(path, ASSETS / "digits_classifier.json")
    arch = {**_DEFAULT_CLASSIFIER, **config.get("architecture", {})}
    try:
        model = DigitsClassifier(int(arch["in_features"]), [int(h) for h in arch["hidden"]],
                                 int(arch["classes"]))
    except (TypeError, ValueError, KeyError) as err:
        raise ValueError(f"cannot build the classifier from the config for {path}: {err}") from err
    _load_state(model, path, "digits classifier")
    return model.float().eval()


@functools.lru_cache(maxsize=1)
def _bundled_classifier() -> DigitsClassifier:
    return load_classifier()


# ------------------------------------------------------------------------------------ metrics
