"""Model wrappers: a common ``model(x, t)`` interface for callables and diffusers UNets."""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["ModelFn", "wrap_model"]


class ModelFn:
    """The model output for a stack of states: ``fn(x, t)`` with ``x`` of shape ``(M, ...)``
    and ``t`` a long tensor of ``M`` timesteps.

    Attributes
    ----------
    evals_per_state : int
        Network evaluations per state (2 with classifier-free guidance).
    """

    evals_per_state: int = 1

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def check_sample(self, x_T: torch.Tensor) -> None:
        """Raise ``ValueError`` if ``x_T`` does not fit the model."""


class _Callable(ModelFn):
    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        self.fn = fn

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.fn(x, t)


class _UNet(ModelFn):
    """A diffusers ``UNet2DModel``: ``unet(x, t).sample``."""

    def __init__(self, unet: Any) -> None:
        self.unet = unet
        self.dtype = next(unet.parameters()).dtype

    def check_sample(self, x_T: torch.Tensor) -> None:
        config = self.unet.config
        channels = config.in_channels
        size = config.sample_size
        size = (size, size) if isinstance(size, int) else tuple(size)
        if x_T.ndim != 4 or x_T.shape[1] != channels or tuple(x_T.shape[2:]) != size:
            raise ValueError(
                f"x_T has shape {tuple(x_T.shape)}, but {type(self.unet).__name__} takes "
                f"(batch, {channels}, {size[0]}, {size[1]})"
            )

    def forward(self, x: torch.Tensor, t: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        out = self.unet(x.to(self.dtype), t, **kwargs).sample
        return out.to(x.dtype)

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.forward(x, t)


class _ConditionalUNet(_UNet):
    """A diffusers ``UNet2DConditionModel`` with prompt embeddings and optional guidance.

    With ``guidance_scale`` the unconditional and conditional halves run in one batch:
    ``eps = eps_uncond + scale * (eps_cond - eps_uncond)`` (diffusers' pipelines).
    """

    def __init__(
        self,
        unet: Any,
        prompt_embeds: torch.Tensor,
        negative_prompt_embeds: torch.Tensor | None,
        guidance_scale: float | None,
    ) -> None:
        super().__init__(unet)
        self.prompt_embeds = prompt_embeds
        self.guidance_scale = guidance_scale
        if guidance_scale is not None:
            if negative_prompt_embeds is None:
                negative_prompt_embeds = torch.zeros_like(prompt_embeds)
            self.negative_prompt_embeds = negative_prompt_embeds
            self.evals_per_state = 2

    def check_sample(self, x_T: torch.Tensor) -> None:
        super().check_sample(x_T)
        dim = self.unet.config.cross_attention_dim
        embeds = [("prompt_embeds", self.prompt_embeds)]
        if self.guidance_scale is not None:
            embeds.append(("negative_prompt_embeds", self.negative_prompt_embeds))
        for name, emb in embeds:
            if emb.ndim != 3 or emb.shape[-1] != dim or emb.shape[0] not in (1, x_T.shape[0]):
                raise ValueError(
                    f"{name} has shape {tuple(emb.shape)}; expected (1 or {x_T.shape[0]}, "
                    f"sequence length, {dim})"
                )

    @staticmethod
    def _rows(emb: torch.Tensor, rows: int) -> torch.Tensor:
        # states are stacked slice-major: (slices * batch) rows, each slice the whole batch
        if emb.shape[0] == 1:
            return emb.expand(rows, -1, -1)
        return emb.repeat(rows // emb.shape[0], 1, 1)

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        rows = x.shape[0]
        cond = self._rows(self.prompt_embeds, rows).to(self.dtype)
        if self.guidance_scale is None:
            return self.forward(x, t, encoder_hidden_states=cond)
        uncond = self._rows(self.negative_prompt_embeds, rows).to(self.dtype)
        out = self.forward(
            torch.cat([x, x]), torch.cat([t, t]), encoder_hidden_states=torch.cat([uncond, cond])
        )
        out_uncond, out_cond = out.chunk(2)
        return out_uncond + self.guidance_scale * (out_cond - out_uncond)


def _diffusers_class(model: Any) -> str | None:
    for cls in type(model).__mro__:
        if cls.__module__.startswith("diffusers") and cls.__name__ in (
            "UNet2DModel",
            "UNet2DConditionModel",
        ):
            return cls.__name__
    return None


def wrap_model(
    model: Any,
    *,
    guidance_scale: float | None = None,
    prompt_embeds: torch.Tensor | None = None,
    negative_prompt_embeds: torch.Tensor | None = None,
) -> ModelFn:
    """Wrap ``model`` as a :class:`ModelFn`.

    Parameters
    ----------
    model : callable or diffusers UNet
        Any callable ``model(x, t)`` returning the prediction (noise, v or sample, as the
        schedule's ``prediction_type`` says); a diffusers ``UNet2DModel``; or a
        ``UNet2DConditionModel`` (then ``prompt_embeds`` is required).
    guidance_scale : float, optional
        Classifier-free guidance scale (conditional UNets only).
    prompt_embeds, negative_prompt_embeds : torch.Tensor, optional
        Text embeddings ``(batch or 1, sequence, dim)``, e.g. from ``pipe.encode_prompt``; the
        negative ones default to zeros when guidance is on.
    """
    if isinstance(model, ModelFn):
        return model
    kind = _diffusers_class(model)
    if guidance_scale is not None:
        if isinstance(guidance_scale, bool) or not isinstance(guidance_scale, numbers.Real):
            raise TypeError(f"guidance_scale must be a number or None, got {guidance_scale!r}")
        guidance_scale = float(guidance_scale)
    if kind == "UNet2DConditionModel":
        if prompt_embeds is None:
            raise ValueError("UNet2DConditionModel needs prompt_embeds (e.g. pipe.encode_prompt)")
        for name, value in (("prompt_embeds", prompt_embeds),
                            ("negative_prompt_embeds", negative_prompt_embeds)):
            if value is not None and not isinstance(value, torch.Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
        return _ConditionalUNet(model, prompt_embeds, negative_prompt_embeds, guidance_scale)
    extras = (guidance_scale, prompt_embeds, negative_prompt_embeds)
    if any(value is not None for value in extras):
        what = kind or "a plain model callable"
        raise ValueError(
            f"guidance_scale and prompt embeddings need a UNet2DConditionModel; got {what}"
        )
    if kind == "UNet2DModel":
        return _UNet(model)
    if not callable(model):
        raise TypeError(
            "model must be a callable model(x, t), a diffusers UNet2DModel or "
            f"UNet2DConditionModel, got {type(model).__name__}"
        )
    return _Callable(model)
