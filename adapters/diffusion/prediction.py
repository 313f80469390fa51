"""The clean sample ``x0_hat`` a model's output predicts, written once for every sampler: the
DDIM step (:mod:`.ddim`), the probability-flow ODE (:mod:`.pf_ode`) and the DDPM pipeline's
clipped-``x0`` noise (:mod:`.pipeline`); and the schedule's clipping or dynamic thresholding of
``x0_hat`` (``DDIMScheduler``'s ``clip_sample`` / ``thresholding``).

The operation order is diffusers' at each site (``DDIMScheduler.step`` for the DDIM variables,
``EulerDiscreteScheduler.step`` for the probability-flow ones), so samples are bit for bit
those of the code each site had before.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["PREDICTION_KINDS", "clip_x0", "predicted_x0"]

#: The prediction types a model may have (``prediction_type`` of a diffusers scheduler).
PREDICTION_KINDS = ("epsilon", "v_prediction", "sample")


def predicted_x0(
    kind: str, x: torch.Tensor, out: torch.Tensor, sqrt_alpha: Any, sqrt_beta: Any, *,
    input_var: Any = None,
) -> torch.Tensor:
    """``x0_hat`` from the model output ``out`` at the state ``x = sqrt_alpha x0 + sqrt_beta eps``.

    Parameters
    ----------
    kind : {"epsilon", "v_prediction", "sample"}
        What ``out`` predicts (anything else is read as ``v_prediction``, as diffusers does
        after its own check).
    x : torch.Tensor
        The state.
    out : torch.Tensor
        The model's output.
    sqrt_alpha, sqrt_beta : tensor or float
        The state's coefficients of the clean sample and of the noise. ``sqrt_alpha=None``
        means 1: the probability-flow variables ``y = x0 + sigma eps`` (``sqrt_beta = sigma``).
    input_var : tensor, optional
        The model saw ``x / sqrt(input_var)`` (the probability-flow ODE's
        ``scale_model_input``: ``input_var = sigma**2 + 1``); its ``v`` is in the units of
        that input. ``None``: the model saw ``x``.

    Returns
    -------
    torch.Tensor
        epsilon: ``(x - sqrt_beta out) / sqrt_alpha``; sample: ``out``; v_prediction:
        ``sqrt_alpha x - sqrt_beta out``, or with ``input_var`` (and ``sqrt_alpha = 1``)
        ``x / input_var - sqrt_beta / sqrt(input_var) out``.
    """
    if kind == "epsilon":
        x0 = x - sqrt_beta * out
        return x0 if sqrt_alpha is None else x0 / sqrt_alpha
    if kind == "sample":
        return out
    if input_var is None:
        alpha_x = x if sqrt_alpha is None else sqrt_alpha * x
        return alpha_x - sqrt_beta * out
    alpha_x = x / input_var if sqrt_alpha is None else sqrt_alpha * x / input_var
    return alpha_x - sqrt_beta / input_var**0.5 * out


def threshold_x0(x0: torch.Tensor, ratio: float, max_value: float) -> torch.Tensor:
    """Dynamic thresholding per sample (first axis), as ``DDIMScheduler._threshold_sample``."""
    dtype = x0.dtype
    batch = x0.shape[0]
    flat = x0.reshape(batch, -1)
    if dtype not in (torch.float32, torch.float64):
        flat = flat.float()
    s = torch.quantile(flat.abs(), ratio, dim=1)
    s = torch.clamp(s, min=1, max=max_value).unsqueeze(1)
    flat = torch.clamp(flat, -s, s) / s
    return flat.reshape(x0.shape).to(dtype)


def clip_x0(x0: torch.Tensor, schedule: Any) -> torch.Tensor:
    """``x0_hat`` thresholded (``schedule.thresholding``) or clipped (``clip_sample``) as the
    DDIM scheduler does; unchanged otherwise."""
    if schedule.thresholding:
        return threshold_x0(x0, schedule.dynamic_thresholding_ratio, schedule.sample_max_value)
    if schedule.clip_sample:
        return x0.clamp(-schedule.clip_sample_range, schedule.clip_sample_range)
    return x0
