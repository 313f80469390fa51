"""A small bundled diffusion model of scikit-learn's handwritten digits, and quality metrics.

The assets (``assets/``, shipped as package data) hold a DDPM-trained ``UNet2DModel`` of the
8x8 digits of :func:`sklearn.datasets.load_digits` (``digits_unet.safetensors`` and its
``digits_unet.json``: UNet config, scheduler config, training metadata) and a small classifier
(``digits_classifier.safetensors`` / ``.json``) whose penultimate features give a Frechet
distance between sets of samples, the FID recipe on a scale that runs in milliseconds. Both are
made by ``examples/train_digits.py``; see ``docs/model_card.md``.

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

from __future__ import annotations

import functools
import json
import math
import os
import pathlib
from typing import Any

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

__all__ = [
    "ASSETS",
    "CLASSIFIER_WEIGHTS",
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
    "load_digits_labels",
    "load_digits_model",
    "load_digits_scheduler",
    "sample_quality",
    "save_grid",
    "to_uint8",
]

#: Folder of the bundled weights and their JSON configs (package data).
ASSETS: pathlib.Path = pathlib.Path(__file__).resolve().parent / "assets"
#: The bundled diffusion model's weights (its config is ``digits_unet.json`` beside it).
UNET_WEIGHTS: pathlib.Path = ASSETS / "digits_unet.safetensors"
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
    path = _check_file(weights, UNET_WEIGHTS)
    config = _read_json(path, ASSETS / "digits_unet.json")
    scheduler = load_digits_scheduler(weights)
    try:
        unet = UNet2DModel.from_config(config["unet"])
    except Exception as err:
        raise ValueError(
            f"cannot build the digits model from the config for {path}: {err}"
        ) from err
    _load_state(unet, path, "digits model")
    return unet.float().eval(), scheduler


def load_digits_scheduler(weights: str | os.PathLike[str] | None = None) -> DDIMScheduler:
    """The DDIM scheduler of :func:`load_digits_model`, from the config alone (the weights are
    not read): cheap, for checking arguments such as the number of steps first.

    Raises
    ------
    FileNotFoundError, ValueError
        As :func:`load_digits_model` for a missing weights file or an unreadable config.
    """
    path = _check_file(weights, UNET_WEIGHTS)
    config = _read_json(path, ASSETS / "digits_unet.json")
    try:
        return DDIMScheduler.from_config(config["scheduler"])
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


def _as_float64(feats: torch.Tensor | np.ndarray, name: str) -> np.ndarray:
    if isinstance(feats, torch.Tensor):
        feats = feats.detach().cpu().double().numpy()
    array = np.asarray(feats, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] < 2:
        raise ValueError(f"{name} must have shape (n >= 2, d), got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or inf")
    return array


def frechet_distance(
    feats_a: torch.Tensor | np.ndarray, feats_b: torch.Tensor | np.ndarray
) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (the FID formula).

    ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 sqrtm(S_a S_b))`` in float64, with
    :func:`scipy.linalg.sqrtm` (real part; ``1e-6 I`` added to both covariances when the
    product is singular, as the reference FID code does).

    Parameters
    ----------
    feats_a, feats_b : torch.Tensor or numpy.ndarray
        Shapes ``(n_a, d)`` and ``(n_b, d)``, ``n >= 2``.

    Returns
    -------
    float
        Non-negative (round-off below zero is clipped).
    """
    try:
        from scipy import linalg
    except ImportError as err:
        raise missing("scipy", "frechet_distance", err) from err

    a = _as_float64(feats_a, "feats_a")
    b = _as_float64(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: {a.shape[1]} and {b.shape[1]}")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a = np.atleast_2d(np.cov(a, rowvar=False))
    cov_b = np.atleast_2d(np.cov(b, rowvar=False))
    root = linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(root).all():
        offset = np.eye(cov_a.shape[0]) * 1e-6
        root = linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    root = np.real(root)
    diff = mu_a - mu_b
    value = diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(root)
    return max(float(value), 0.0)


def _images(samples: torch.Tensor, name: str = "samples") -> torch.Tensor:
    if not isinstance(samples, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(samples).__name__}")
    if samples.ndim == 3:
        samples = samples.unsqueeze(1)
    if samples.ndim != 4 or samples.shape[1] != 1:
        raise ValueError(f"{name} must have shape (n, 1, H, W) or (n, H, W), got "
                         f"{tuple(samples.shape)}")
    return samples


def sample_quality(
    samples: torch.Tensor,
    *,
    reference: torch.Tensor | None = None,
    classifier: DigitsClassifier | None = None,
) -> dict[str, Any]:
    """Quality of digit samples, measured with the bundled classifier.

    Parameters
    ----------
    samples : torch.Tensor
        Images in [-1, 1], shape ``(n, 1, 8, 8)`` (or ``(n, 8, 8)``), ``n >= 2``.
    reference : torch.Tensor, optional
        Real images to compare with; default the held-out digits
        (``load_digits_data("heldout")``, 270 images).
    classifier : DigitsClassifier, optional
        The feature extractor (default: the bundled one, :func:`load_classifier`).

    Returns
    -------
    dict
        ``frechet_distance``: Frechet distance between the classifier's penultimate features
        of ``samples`` and of ``reference`` (lower is better; small sets bias it upwards, so
        compare numbers made with the same ``n``); ``confidence``: mean max softmax
        probability on ``samples``; ``predicted_classes``: list of 10 counts of the predicted
        labels.
    """
    samples = _images(samples)
    reference = load_digits_data("heldout") if reference is None else _images(reference,
                                                                                "reference")
    classifier = _bundled_classifier() if classifier is None else classifier
    with torch.no_grad():
        feats = classifier.features(samples.detach().cpu())
        ref_feats = classifier.features(reference.detach().cpu())
        probs = torch.softmax(classifier.head(feats), dim=1)
    counts = torch.bincount(probs.argmax(dim=1), minlength=probs.shape[1])
    return {
        "frechet_distance": frechet_distance(feats, ref_feats),
        "confidence": float(probs.max(dim=1).values.mean()),
        "predicted_classes": [int(c) for c in counts],
    }


# ------------------------------------------------------------------------------------- images


def to_uint8(samples: torch.Tensor) -> np.ndarray:
    """Map images in [-1, 1] to 8-bit grey levels: ``((x + 1) * 127.5).round().clamp(0, 255)``.

    Parameters
    ----------
    samples : torch.Tensor
        Shape ``(n, 1, H, W)`` or ``(n, H, W)``; computed in the tensor's own dtype.

    Returns
    -------
    numpy.ndarray
        uint8, shape ``(n, H, W)``.

    Raises
    ------
    ValueError
        If ``samples`` contains NaN.
    """
    images = _images(samples).detach().cpu()
    if not images.is_floating_point():
        images = images.float()
    if bool(torch.isnan(images).any()):
        raise ValueError("samples contain NaN")
    levels = ((images + 1) * 127.5).round().clamp(0, 255)
    return levels[:, 0].to(torch.uint8).numpy()


#: Image formats :func:`save_grid` writes, by file extension (where Pillow can write them).
IMAGE_EXTENSIONS: dict[str, str] = {
    ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".gif": "GIF",
    ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP",
}
#: Options passed to Pillow per format: near-lossless JPEG, lossless WebP.
_SAVE_OPTIONS: dict[str, dict[str, Any]] = {"JPEG": {"quality": 95}, "WEBP": {"lossless": True}}


def _pillow() -> Any:
    try:
        from PIL import Image
    except ImportError as err:
        raise missing("Pillow", "writing images", err) from err
    return Image


def image_format(path: str | os.PathLike[str]) -> str:
    """The Pillow format that :func:`save_grid` writes to ``path``, from its extension.

    Parameters
    ----------
    path : path
        The image file; its extension (any case) names the format: ``.png``, ``.jpg`` /
        ``.jpeg`` (quality 95), ``.bmp``, ``.gif``, ``.tif`` / ``.tiff``, ``.webp``
        (lossless), each where the installed Pillow can write it.

    Returns
    -------
    str
        The Pillow format name, e.g. ``"PNG"``.

    Raises
    ------
    TypeError
        ``path`` is not a string or path.
    ValueError
        ``path`` is empty, or has no extension or one of another format; the message lists
        the supported extensions.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"the image path must be a string or path, got {type(path).__name__}")
    name = os.fspath(path)
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"the image path must be a non-empty file name, got {name!r}")
    image = _pillow()
    savable = image.registered_extensions()
    supported = {ext: fmt for ext, fmt in IMAGE_EXTENSIONS.items()
                 if savable.get(ext) == fmt and fmt in image.SAVE}
    suffix = pathlib.Path(name).suffix.lower()
    if suffix not in supported:
        what = f"extension {suffix!r}" if suffix else "no extension"
        raise ValueError(
            f"cannot write an image to {name!r}: {what}; supported: {', '.join(supported)}"
        )
    return supported[suffix]


def save_grid(
    samples: torch.Tensor,
    path: str | os.PathLike[str],
    *,
    scale: int = 4,
    nrow: int | None = None,
) -> None:
    """Write images as a grey grid, in the format that the file extension names.

    Parameters
    ----------
    samples : torch.Tensor
        Images in [-1, 1], shape ``(n, 1, H, W)`` or ``(n, H, W)``; mapped with
        :func:`to_uint8`.
    path : path
        The image file to write (its folder must exist); its extension picks the format
        (:func:`image_format`: ``.png``, ``.jpg``, ``.bmp``, ``.gif``, ``.tif``, ``.webp``).
    scale : int
        Every pixel becomes a ``scale x scale`` block (nearest neighbour).
    nrow : int, optional
        Images per row (default ``ceil(sqrt(n))``). Tiles are separated by 1-pixel grey (128)
        lines.

    Raises
    ------
    ValueError
        An unknown or missing extension (checked first), NaN samples, a bad ``scale`` or
        ``nrow``.
    OSError
        The folder does not exist, is not a folder or is not writable, or writing fails.
    """
    fmt = image_format(path)
    image = _pillow()
    levels = to_uint8(samples)
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive int, got {scale!r}")
    n, height, width = levels.shape
    if n == 0:
        raise ValueError("no images to save")
    cols = math.ceil(math.sqrt(n)) if nrow is None else int(nrow)
    if cols < 1:
        raise ValueError(f"nrow must be >= 1, got {nrow!r}")
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    th, tw = height * scale, width * scale
    grid = np.full((rows * th + rows - 1, cols * tw + cols - 1), 128, dtype=np.uint8)
    tiles = levels.repeat(scale, axis=1).repeat(scale, axis=2)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        grid[r * (th + 1):r * (th + 1) + th, c * (tw + 1):c * (tw + 1) + tw] = tile

    target = pathlib.Path(os.fspath(path))
    folder = target.parent
    if not folder.exists():
        raise OSError(f"cannot write {target}: folder {folder} does not exist")
    if not folder.is_dir():
        raise OSError(f"cannot write {target}: {folder} is not a folder")
    if not os.access(folder, os.W_OK):
        raise OSError(f"cannot write {target}: folder {folder} is not writable")
    try:
        image.fromarray(grid).save(target, format=fmt, **_SAVE_OPTIONS.get(fmt, {}))
    except OSError as err:
        raise OSError(f"cannot write {target}: {err}") from err
