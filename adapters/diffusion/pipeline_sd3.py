"""Stable Diffusion 3 in :func:`~.pipeline.sample_pipeline`: the pipeline's own prompt encoding,
initial latents, ``mu`` and decoding around :func:`~.sampler.sample`, and its
``SD3Transformer2DModel`` (with classifier-free guidance in one batch) as the model.

The loop it replaces is ``StableDiffusion3Pipeline.__call__``'s: ``FlowMatchEulerDiscrete``
steps of the transformer's velocity at ``t = 1000 sigma`` (:mod:`.flow`), guidance
``v_uncond + scale * (v_text - v_uncond)`` for ``guidance_scale > 1``.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch

from .models import ModelFn
from .result import DiffusionResult

__all__ = ["SD3Transformer", "pipeline_mu", "stable_diffusion_3"]


class _Sampler(Protocol):
    steps: int
    generator: torch.Generator | None
    options: dict[str, Any]

    def run(self, fn: ModelFn, x_T: torch.Tensor, **extra: Any) -> DiffusionResult:
        ...


class SD3Transformer(ModelFn):
    """An ``SD3Transformer2DModel`` as ``model(x, t)``: the velocity for the prompt embeddings
    (``(batch or 1, sequence, dim)``) and pooled embeddings (``(batch or 1, dim)``), with
    classifier-free guidance in one batch when ``guidance_scale`` is given."""

    def __init__(self, transformer: Any, embeds: tuple[torch.Tensor, torch.Tensor],
                 negative: tuple[torch.Tensor, torch.Tensor] | None = None,
                 guidance_scale: float | None = None) -> None:
        self.transformer, self.embeds, self.negative = transformer, embeds, negative
        self.guidance_scale = guidance_scale
        self.dtype = next(transformer.parameters()).dtype
        self.evals_per_state = 1 if guidance_scale is None else 2

    def rows(self, start: int, stop: int) -> SD3Transformer:
        def part(pair: tuple[torch.Tensor, torch.Tensor] | None) -> Any:
            if pair is None:
                return None
            return tuple(e if e.shape[0] == 1 else e[start:stop] for e in pair)

        return SD3Transformer(self.transformer, part(self.embeds), part(self.negative),
                              self.guidance_scale)

    @staticmethod
    def _rows(emb: torch.Tensor, rows: int) -> torch.Tensor:
        # states are stacked slice-major: (slices * batch) rows, each slice the whole batch
        if emb.shape[0] == 1:
            return emb.expand(rows, *emb.shape[1:])
        return emb.repeat(rows // emb.shape[0], *(1,) * (emb.ndim - 1))

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        rows = x.shape[0]
        text, pooled = (self._rows(e, rows).to(self.dtype) for e in self.embeds)
        if self.guidance_scale is not None:
            assert self.negative is not None
            neg, neg_pooled = (self._rows(e, rows).to(self.dtype) for e in self.negative)
            x, t = torch.cat([x, x]), torch.cat([t, t])
            text, pooled = torch.cat([neg, text]), torch.cat([neg_pooled, pooled])
        out = self.transformer(hidden_states=x.to(self.dtype).clone(), timestep=t.clone(),
                               encoder_hidden_states=text, pooled_projections=pooled,
                               return_dict=False)[0].to(x.dtype)
        if self.guidance_scale is None:
            return out
        uncond, cond = out.chunk(2)
        return uncond + self.guidance_scale * (cond - uncond)


def pipeline_mu(pipe: Any, latents: torch.Tensor) -> float | None:
    """The ``mu`` ``StableDiffusion3Pipeline`` passes to ``set_timesteps`` for ``latents``
    (``calculate_shift`` of the image's token count), or ``None`` without dynamic shifting."""
    config = pipe.scheduler.config
    if not config.get("use_dynamic_shifting", False):
        return None
    from diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3 import (
        calculate_shift,
    )

    patch = pipe.transformer.config.patch_size
    tokens = (latents.shape[-2] // patch) * (latents.shape[-1] // patch)
    return float(calculate_shift(
        tokens, config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096),
        config.get("base_shift", 0.5), config.get("max_shift", 1.16)))


def stable_diffusion_3(
    pipe: Any, sampler: _Sampler, prompt: str | list[str], negative_prompt: Any,
    guidance_scale: float, per_prompt: int, output_type: str,
) -> tuple[Any, DiffusionResult]:
    """``StableDiffusion3Pipeline.__call__`` (default size, no T5-specific options) with
    ``sampler`` as its loop: the images (as ``pipe(...).images``) and the sampler's result.
    ``mu`` is the caller's (``sample_pipeline(..., mu=...)``) or the pipeline's own."""
    transformer, device = pipe.transformer, pipe._execution_device
    guided = guidance_scale > 1  # the pipeline's do_classifier_free_guidance
    batch = (1 if isinstance(prompt, str) else len(prompt)) * per_prompt
    size = pipe.default_sample_size * pipe.vae_scale_factor
    with torch.no_grad():
        embeds, negative, pooled, negative_pooled = pipe.encode_prompt(
            prompt=prompt, prompt_2=None, prompt_3=None, negative_prompt=negative_prompt,
            do_classifier_free_guidance=guided, device=device, num_images_per_prompt=per_prompt)
        latents = pipe.prepare_latents(batch, transformer.config.in_channels, size, size,
                                       embeds.dtype, device, sampler.generator)
    mu = sampler.options.get("mu", pipeline_mu(pipe, latents))
    extra = {} if mu is None else {"mu": mu}
    pipe.scheduler.set_timesteps(sampler.steps, device=device, **extra)  # as the pipeline does
    fn = SD3Transformer(transformer, (embeds, pooled),
                        (negative, negative_pooled) if guided else None,
                        guidance_scale if guided else None)
    result = sampler.run(fn, latents, **extra)
    if output_type == "latent":
        return result.sample, result
    with torch.no_grad():
        scaled = result.sample / pipe.vae.config.scaling_factor + pipe.vae.config.shift_factor
        image = pipe.vae.decode(scaled, return_dict=False)[0]
    return pipe.image_processor.postprocess(image, output_type=output_type), result
