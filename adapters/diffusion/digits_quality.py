"""Quality of digits samples and images of them: the Frechet distance of classifier features
(the FID recipe), :func:`sample_quality`, 8-bit conversion and image grids. Re-exported by
:mod:`.digits`, where it is documented.
"""

from __future__ import annotations

import math
import os
import pathlib
from typing import Any

import numpy as np
import torch

from ._extra import missing
from .digits_data import DigitsClassifier, _bundled_classifier, load_digits_data
from .images import _SAVE_OPTIONS, IMAGE_EXTENSIONS, _pillow, image_format

__all__ = [
    "IMAGE_EXTENSIONS",
    "frechet_distance",
    "image_format",
    "sample_quality",
    "save_grid",
    "to_uint8",
]


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
