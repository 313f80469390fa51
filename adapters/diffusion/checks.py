"""Argument checks shared by :func:`~.sampler.sample`, the ``parareal sample`` command and the
mixture model: each raises a ``TypeError`` or ``ValueError`` naming the argument."""

from __future__ import annotations

import numbers
from typing import Any

import torch

from parareal.validation import check_tolerance

__all__ = ["SEED_RANGE", "check_eta", "check_seed", "check_x_T"]

#: The seeds ``torch.Generator.manual_seed`` takes as distinct generators: ``0 .. 2**64 - 1``
#: (torch also takes negative seeds, but maps ``-s`` to ``2**64 - s``: two names for one seed).
SEED_RANGE = (0, 2**64 - 1)


def check_x_T(x_T: Any) -> None:
    """Refuse an ``x_T`` that :func:`sample` cannot sample from.

    Raises
    ------
    TypeError
        Not a ``torch.Tensor``; not a dense (strided) floating tensor with a batch axis.
    ValueError
        On the ``meta`` device (no values), an empty batch, or NaN/inf values.
    """
    if not isinstance(x_T, torch.Tensor):
        raise TypeError(f"x_T must be a torch.Tensor, got {type(x_T).__name__}")
    if x_T.layout != torch.strided or x_T.is_quantized:
        raise TypeError(f"x_T must be a dense floating tensor, got layout {x_T.layout} and "
                        f"dtype {x_T.dtype}")
    if not x_T.is_floating_point() or x_T.ndim < 1:
        raise TypeError(f"x_T must be a floating tensor with a batch axis, got dtype "
                        f"{x_T.dtype} and shape {tuple(x_T.shape)}")
    if x_T.device.type == "meta":
        raise ValueError("x_T is on the meta device, which holds no values; pass the initial "
                         "noise as a tensor on a real device (cpu, cuda...)")
    if x_T.shape[0] == 0:
        raise ValueError(f"x_T has an empty batch: shape {tuple(x_T.shape)}")
    if not bool(torch.isfinite(x_T).all()):
        raise ValueError("x_T contains NaN or inf")


def check_eta(eta: Any, name: str = "eta") -> float:
    """Return DDIM's ``eta`` as a float in ``[0, 1]`` (errors name it ``name``).

    ``eta = 0`` is deterministic DDIM, ``eta = 1`` DDPM's ancestral noise; above 1 the step
    noise exceeds the posterior's and the DDIM step's ``sqrt(1 - alpha_prev - sigma**2)`` is
    NaN.

    Raises
    ------
    TypeError
        Not a real number (``bool`` included).
    ValueError
        NaN, inf, or outside ``[0, 1]``.
    """
    eta = check_tolerance(eta, name)
    if eta > 1:
        raise ValueError(f"{name} must be in [0, 1] (0: deterministic DDIM, 1: DDPM), got {eta}")
    return eta



def check_seed(seed: Any, name: str = "seed") -> int:
    """Return ``seed`` as an int in :data:`SEED_RANGE` (what ``torch.Generator`` can hold).

    Raises
    ------
    TypeError
        Not an int (``bool`` included).
    ValueError
        Negative, or at least ``2**64`` (torch's ``manual_seed`` would fail deep inside with
        "Overflow when unpacking long long").
    """
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{name} must be an int in [0, 2**64 - 1], got {seed!r}")
    low, high = SEED_RANGE
    if not low <= seed <= high:
        raise ValueError(f"{name} must be in [0, 2**64 - 1] = [0, {high}] (the seeds a "
                         f"torch.Generator holds), got {seed}")
    return int(seed)
