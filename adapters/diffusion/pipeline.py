"""``sample_pipeline``: a diffusers pipeline's own sampling, end to end, with any ``sample`` method.

The pipeline's steps outside the sampling loop are the pipeline's own (prompt encoding, the
initial noise drawn from the generator, VAE decoding, the image processor), so that with
``method="serial"`` the images are those of ``pipe(...)`` with the same generator, and SRDS or
Picard reproduce them.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, replace
from typing import Any

import torch

from parareal.validation import check_int, check_real

from .models import ModelFn, wrap_model
from .pipeline_sd3 import stable_diffusion_3
from .prediction import clip_x0, predicted_x0
from .sampler import METHOD_OPTIONS, DiffusionResult, check_method_options, sample
from .schedule import NoiseSchedule

__all__ = ["PIPELINES", "PipelineResult", "sample_pipeline"]

#: The diffusers pipelines :func:`sample_pipeline` runs (by class, subclasses included).
PIPELINES = ("StableDiffusionPipeline", "DDIMPipeline", "DDPMPipeline",
             "StableDiffusion3Pipeline")
#: The pipelines that take a prompt.
_TEXT_PIPELINES = ("StableDiffusionPipeline", "StableDiffusion3Pipeline")
_CONDITIONAL_OUTPUTS = ("pil", "np", "pt", "latent")
_UNCONDITIONAL_OUTPUTS = ("pil", "np", "pt")
#: The arguments of :func:`sample` that ``sample_pipeline`` sets itself.
_OWN = ("model", "scheduler", "x_T", "num_inference_steps", "method", "generator",
        "guidance_scale", "prompt_embeds", "negative_prompt_embeds")
#: DDPMScheduler variances whose ancestral step is DDIM's ``eta = 1`` step.
_DDPM_VARIANCES = ("fixed_small", "fixed_small_log")


@dataclass(frozen=True)
class PipelineResult:
    """Result of :func:`sample_pipeline`.

    Attributes
    ----------
    images : list of PIL.Image.Image, numpy.ndarray or torch.Tensor
        What ``pipe(...).images`` holds for the same ``output_type``: a list of PIL images
        (``"pil"``), a float array ``(batch, height, width, channels)`` in ``[0, 1]`` (``"np"``),
        a tensor (``"pt"``: ``(batch, channels, height, width)`` in ``[0, 1]``) or, for Stable
        Diffusion, the final latents (``"latent"``).
    result : DiffusionResult
        The sampler's result: ``result.sample`` is the final latents (Stable Diffusion) or
        images in ``[-1, 1]`` (unconditional pipelines) before decoding; ``result.status``
        says whether SRDS or Picard met their stopping rule.
    nsfw_content_detected : list of bool, optional
        The pipeline's safety checker's verdict per image (Stable Diffusion with a safety
        checker; flagged images are returned black, as the pipeline returns them); ``None``
        when no checker ran.
    """

    images: Any
    result: DiffusionResult
    nsfw_content_detected: list[bool] | None = None


def _pipeline_kind(pipe: Any) -> str:
    for cls in type(pipe).__mro__:
        if cls.__module__.startswith("diffusers") and cls.__name__ in PIPELINES:
            return cls.__name__
    raise TypeError(
        f"sample_pipeline runs {', '.join(PIPELINES)} (and their subclasses), got "
        f"{type(pipe).__name__}; for another model call sample(unet, scheduler, x_T, ...)"
    )


def _is_ddpm(scheduler: Any) -> bool:
    return any(cls.__name__ == "DDPMScheduler" and cls.__module__.startswith("diffusers")
               for cls in type(scheduler).__mro__)


class _ClippedEpsilon(ModelFn):
    """The noise prediction re-derived from the clipped (or thresholded) clean sample.

    With this model, DDIM's ``eta = 1`` step is ``DDPMScheduler.step``: diffusers' DDPM step
    clips the predicted clean sample ``x0`` and forms the posterior mean from the clipped
    ``x0`` and ``x_t``, which is DDIM's step with the noise ``(x_t - sqrt(ab) x0) / sqrt(1 -
    ab)`` of the clipped ``x0`` (DDIM's ``use_clipped_model_output``). The schedule this model
    goes with predicts ``epsilon``; its own clipping is then a no-op up to round-off.
    """

    def __init__(self, inner: ModelFn, schedule: NoiseSchedule) -> None:
        self.inner = inner
        self.schedule = schedule
        self.evals_per_state = inner.evals_per_state

    def check_sample(self, x_T: torch.Tensor) -> None:
        self.inner.check_sample(x_T)

    def rows(self, start: int, stop: int) -> _ClippedEpsilon:
        return _ClippedEpsilon(self.inner.rows(start, stop), self.schedule)

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = self.inner(x, t)
        schedule = self.schedule
        shape = (-1,) + (1,) * (x.ndim - 1)
        alpha = schedule.alphas_cumprod.to(x.device)[t.long()].reshape(shape)
        sqrt_alpha, sqrt_beta = (alpha**0.5).to(x.dtype), ((1 - alpha) ** 0.5).to(x.dtype)
        x0 = predicted_x0(schedule.prediction_type, x, out, sqrt_alpha, sqrt_beta)
        x0 = clip_x0(x0, schedule)
        return (x - sqrt_alpha * x0) / sqrt_beta


@dataclass(frozen=True)
class _Sampler:
    """How :func:`sample` runs the pipeline's loop, settled before any noise is drawn."""

    scheduler: Any
    steps: int
    method: str
    generator: torch.Generator | None
    options: dict[str, Any]
    clipped: NoiseSchedule | None = None  # DDPM: the model gives the clipped-x0 noise

    def run(self, fn: ModelFn, x_T: torch.Tensor, **extra: Any) -> DiffusionResult:
        if self.clipped is not None:
            fn = _ClippedEpsilon(fn, self.clipped)
        return sample(fn, self.scheduler, x_T, num_inference_steps=self.steps,
                      method=self.method, generator=self.generator, **{**self.options, **extra})


def _sampler(
    scheduler: Any, steps: int, method: str, generator: torch.Generator | None,
    options: dict[str, Any],
) -> _Sampler:
    """The sampler of the pipeline's scheduler; for ``DDPMScheduler.step``, DDIM's eta = 1."""
    if not _is_ddpm(scheduler):
        return _Sampler(scheduler, steps, method, generator, options)
    if "eta" in options:
        raise ValueError(
            "eta does not apply to a DDPMScheduler: the pipeline's DDPM step is ancestral "
            "sampling, which sample_pipeline runs as DDIM's eta = 1 step; for other eta use "
            "a DDIMScheduler (DDIMScheduler.from_config(pipe.scheduler.config))"
        )
    if generator is None and method != "serial":
        raise ValueError(
            f"DDPM sampling is stochastic: method={method!r} needs generator=torch.Generator() "
            "(its step noise is drawn once up front so that the result is the serial sample)"
        )
    config = scheduler.config
    variance = config.get("variance_type", "fixed_small")
    if variance not in _DDPM_VARIANCES:
        raise ValueError(
            f"DDPMScheduler with variance_type={variance!r} is not supported: its step is "
            f"DDIM's eta = 1 step only for variance_type in {_DDPM_VARIANCES}"
        )
    spacing = config.get("timestep_spacing", "leading")
    if spacing != "leading":
        raise ValueError(
            f"DDPMScheduler with timestep_spacing={spacing!r} is not supported: its step goes "
            "to the next timestep of its grid, DDIM's to t - T // N; they agree for "
            "timestep_spacing='leading' only"
        )
    schedule = NoiseSchedule.from_scheduler(scheduler)
    return _Sampler(replace(schedule, prediction_type="epsilon"), steps, method, generator,
                    {**options, "eta": 1.0}, clipped=schedule)


def _check_sample_kwargs(options: dict[str, Any]) -> None:
    """Refuse keyword arguments that :func:`sample` does not take or that are set here."""
    known = set(inspect.signature(sample).parameters) - set(_OWN)
    for name in options:
        if name in _OWN:
            raise TypeError(f"sample_pipeline sets {name} itself; it cannot be passed")
        if name not in known:
            raise TypeError(f"sample_pipeline got an unexpected keyword argument {name!r}; "
                            f"sample takes {', '.join(sorted(known))}")


def _check_generator(generator: Any) -> torch.Generator | None:
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, (list, tuple)):
        raise TypeError(
            "generator must be one torch.Generator (or None); a list of generators, one per "
            "image, is not supported: the sampler draws the step noise for the whole batch"
        )
    raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")


def _check_prompt(prompt: Any, kind: str) -> int:
    """The number of prompts (1 for an unconditional pipeline, which takes none)."""
    if kind not in _TEXT_PIPELINES:
        if prompt is not None:
            raise ValueError(f"{kind} is unconditional: prompt must be None, got {prompt!r}")
        return 1
    if isinstance(prompt, str):
        return 1
    if (isinstance(prompt, (list, tuple)) and prompt
            and all(isinstance(p, str) for p in prompt)):
        return len(prompt)
    raise TypeError(f"prompt must be a str or a non-empty list of str, got {prompt!r}")


def _check_output_type(output_type: Any, kind: str) -> str:
    allowed = _CONDITIONAL_OUTPUTS if kind in _TEXT_PIPELINES else _UNCONDITIONAL_OUTPUTS
    if output_type not in allowed:
        raise ValueError(f"output_type for {kind} must be one of {allowed}, got {output_type!r}")
    return output_type


def _stable_diffusion(
    pipe: Any, sampler: _Sampler, prompt: str | list[str], negative_prompt: Any,
    guidance_scale: float, per_prompt: int, output_type: str,
) -> PipelineResult:
    unet, steps, generator = pipe.unet, sampler.steps, sampler.generator
    device = pipe.device
    guided = guidance_scale > 1  # the pipeline's do_classifier_free_guidance
    batch = (1 if isinstance(prompt, str) else len(prompt)) * per_prompt
    with torch.no_grad():
        embeds, negative = pipe.encode_prompt(
            prompt, device, per_prompt, guided, negative_prompt=negative_prompt)
        pipe.scheduler.set_timesteps(steps, device=device)  # as the pipeline does
        size = unet.config.sample_size
        height, width = (size, size) if isinstance(size, int) else tuple(size)
        factor = pipe.vae_scale_factor
        state = generator.get_state() if generator is not None else None
        latents = pipe.prepare_latents(batch, unet.config.in_channels, height * factor,
                                       width * factor, embeds.dtype, device, generator)
        latents = _unit_noise(pipe, latents, generator, state)
    fn = wrap_model(unet, guidance_scale=guidance_scale if guided else None,
                    prompt_embeds=embeds, negative_prompt_embeds=negative if guided else None)
    result = sampler.run(fn, latents)
    nsfw = None
    if output_type == "latent":
        return PipelineResult(images=result.sample, result=result)
    with torch.no_grad():
        scaled = result.sample / pipe.vae.config.scaling_factor
        image = pipe.vae.decode(scaled, return_dict=False, generator=generator)[0]
        image, nsfw = pipe.run_safety_checker(image, device, embeds.dtype)
    denormalize = [True] * image.shape[0] if nsfw is None else [not flag for flag in nsfw]
    images = pipe.image_processor.postprocess(
        image, output_type=output_type, do_denormalize=denormalize)
    return PipelineResult(images=images, result=result, nsfw_content_detected=nsfw)


def _unconditional(pipe: Any, sampler: _Sampler, batch: int, output_type: str) -> PipelineResult:
    from diffusers.utils.torch_utils import randn_tensor

    unet = pipe.unet
    size = unet.config.sample_size
    size = (size, size) if isinstance(size, int) else tuple(size)
    shape = (batch, unet.config.in_channels, *size)
    x_T = randn_tensor(shape, generator=sampler.generator, device=pipe.device, dtype=unet.dtype)
    result = sampler.run(wrap_model(unet), x_T)
    image = (result.sample / 2 + 0.5).clamp(0, 1)
    if output_type != "pt":
        image = image.cpu().permute(0, 2, 3, 1).numpy()
        if output_type == "pil":
            image = pipe.numpy_to_pil(image)
    return PipelineResult(images=image, result=result)


def _unit_noise(pipe: Any, latents: torch.Tensor, generator: torch.Generator | None,
                state: torch.Tensor | None) -> torch.Tensor:
    """The unit-variance noise behind ``pipe.prepare_latents``'s latents.

    The pipeline multiplies its draw by the scheduler's ``init_noise_sigma``, and so does
    :func:`sample` (for Euler and Heun, where it is not 1): the draw is replayed from the
    generator's state before ``prepare_latents`` (bit for bit the pipeline's), or, without a
    generator, divided back.
    """
    scale = float(pipe.scheduler.init_noise_sigma)
    if scale == 1.0:
        return latents
    if generator is None or state is None:
        return latents / scale
    from diffusers.utils.torch_utils import randn_tensor

    after = generator.get_state()
    generator.set_state(state)
    raw = randn_tensor(latents.shape, generator=generator, device=latents.device,
                       dtype=latents.dtype)
    generator.set_state(after)
    return raw


def sample_pipeline(
    pipe: Any,
    prompt: str | list[str] | None = None,
    *,
    num_inference_steps: int,
    method: str,
    guidance_scale: float | None = None,
    negative_prompt: str | list[str] | None = None,
    generator: torch.Generator | None = None,
    num_images_per_prompt: int = 1,
    output_type: str = "pil",
    **sample_kwargs: Any,
) -> PipelineResult:
    """Run a diffusers pipeline with :func:`sample` as its sampling loop.

    Everything but the loop is the pipeline's own: for ``StableDiffusionPipeline`` the prompt
    encoding (``pipe.encode_prompt``), the initial latents (``pipe.prepare_latents`` with
    ``generator``, scaled by the scheduler's ``init_noise_sigma``), classifier-free guidance
    (one batch, as the pipeline runs it), VAE decoding, the safety checker when the pipeline
    has one and ``pipe.image_processor.postprocess``; for ``DDIMPipeline``/``DDPMPipeline`` the
    initial noise (``randn_tensor`` with ``generator``) and the conversion to images. The
    step noise of stochastic sampling is drawn from ``generator`` after the initial noise, in
    step order, as the pipeline's loop draws it. So ``method="serial"`` gives the images of
    ``pipe(prompt, num_inference_steps=..., guidance_scale=..., generator=<same seed>, ...)``
    (to within round-off: one 8-bit level), and ``"srds"`` reproduces them (to its
    tolerance; ``tol=0``: to round-off). ``StableDiffusion3Pipeline`` (flow matching,
    :mod:`.pipeline_sd3`): its prompt encoding (both CLIP encoders, T5 when it has one), its
    latents, ``mu`` (``calculate_shift`` of the image size when the scheduler shifts
    dynamically; ``mu=`` overrides it, as in ``pipe(..., mu=)``), guidance and decoding; its
    default size, without skip-layer guidance or IP adapters.

    Like ``pipe(...)``, it sets the timesteps of ``pipe.scheduler`` (``set_timesteps``); the
    pipeline is otherwise only read. The sampler is :func:`sample` with ``pipe.scheduler``
    (any scheduler it accepts) except for a ``DDPMScheduler``, whose ancestral step is run as
    DDIM's ``eta = 1`` step with the noise prediction re-derived from the clipped clean
    sample (DDIM's ``use_clipped_model_output``): the same update as ``DDPMScheduler.step``
    for its ``"leading"`` timestep spacing and ``"fixed_small"``/``"fixed_small_log"``
    variances (others are refused).

    Parameters
    ----------
    pipe : StableDiffusionPipeline, StableDiffusion3Pipeline, DDIMPipeline or DDPMPipeline
        A diffusers pipeline (see :data:`PIPELINES`); images have the UNet's ``sample_size``
        (the pipeline's default height and width).
    prompt : str or list of str, optional
        Stable Diffusion: required. Unconditional pipelines: must be ``None``.
    num_inference_steps : int
        ``N``, as for ``pipe(...)``.
    method : {"serial", "srds", "picard"}
        As for :func:`sample`.
    guidance_scale : float, optional
        Stable Diffusion: classifier-free guidance scale (default 7.5, the pipeline's; 7.0
        for Stable Diffusion 3);
        guidance runs when it is ``> 1``, as in the pipeline. Unconditional pipelines: must
        be ``None``.
    negative_prompt : str or list of str, optional
        Stable Diffusion with guidance: the negative prompt (default: the empty prompt).
    generator : torch.Generator, optional
        Draws the initial noise (and the step noise of stochastic sampling: DDIM ``eta > 0``,
        DDPM); needed for stochastic sampling with SRDS and Picard. A list of generators is
        refused.
    num_images_per_prompt : int
        Images per prompt; for unconditional pipelines the batch size (``pipe(batch_size=)``).
    output_type : {"pil", "np", "pt", "latent"}
        As for the pipeline: ``"latent"`` for Stable Diffusion only.
    **sample_kwargs
        Passed to :func:`sample` (``blocks``, ``tol``, ``max_iters``, ``eta``, ``max_batch``,
        ``progress``, ``mu``...); ``eta`` is refused with a ``DDPMScheduler`` (its step is
        ``eta = 1``).

    Returns
    -------
    PipelineResult
        ``images`` as ``pipe(...).images`` holds them, ``result`` the :class:`DiffusionResult`
        (status, iterations, model calls), ``nsfw_content_detected`` as the pipeline's.

    Raises
    ------
    TypeError, ValueError
        Naming the argument: an unsupported pipeline or scheduler, a prompt for an
        unconditional pipeline (or none for Stable Diffusion), a bad ``output_type``,
        ``guidance_scale`` or ``generator``, and whatever :func:`sample` refuses.
    """
    kind = _pipeline_kind(pipe)
    check_int(num_inference_steps, "num_inference_steps")
    _check_sample_kwargs(sample_kwargs)
    check_method_options(method, {name: value for name, value in sample_kwargs.items()
                                  if name in METHOD_OPTIONS})
    prompts = _check_prompt(prompt, kind)
    per_prompt = check_int(num_images_per_prompt, "num_images_per_prompt")
    output_type = _check_output_type(output_type, kind)
    generator = _check_generator(generator)
    if kind not in _TEXT_PIPELINES:
        for name, value in (("guidance_scale", guidance_scale),
                            ("negative_prompt", negative_prompt)):
            if value is not None:
                raise ValueError(f"{name} applies to {' and '.join(_TEXT_PIPELINES)}, "
                                 f"not to {kind}")
        sampler = _sampler(pipe.scheduler, num_inference_steps, method, generator, sample_kwargs)
        return _unconditional(pipe, sampler, prompts * per_prompt, output_type)
    default_scale = 7.0 if kind == "StableDiffusion3Pipeline" else 7.5  # the pipelines' own
    scale = (default_scale if guidance_scale is None
             else check_real(guidance_scale, "guidance_scale"))
    if negative_prompt is not None and scale <= 1:
        raise ValueError("negative_prompt applies with guidance (guidance_scale > 1) only")
    if kind == "StableDiffusion3Pipeline":
        sampler = _sampler(pipe.scheduler, num_inference_steps, method, generator, sample_kwargs)
        images, result = stable_diffusion_3(pipe, sampler, prompt,  # type: ignore[arg-type]
                                            negative_prompt, scale, per_prompt, output_type)
        return PipelineResult(images=images, result=result)
    if pipe.unet.config.get("time_cond_proj_dim") is not None:
        raise ValueError(
            "UNets with a guidance embedding (time_cond_proj_dim, e.g. LCM) are not supported"
        )
    sampler = _sampler(pipe.scheduler, num_inference_steps, method, generator, sample_kwargs)
    return _stable_diffusion(pipe, sampler, prompt, negative_prompt,  # type: ignore[arg-type]
                             scale, per_prompt, output_type)
