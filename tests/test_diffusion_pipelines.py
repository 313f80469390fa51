"""``sample_pipeline`` against the diffusers pipelines themselves, on tiny offline pipelines.

The Stable Diffusion pipeline is built from small configs with seeded random weights: a tiny
CLIP text encoder with a tokenizer made from a vocabulary written here, a tiny VAE and a tiny
conditional UNet. Nothing is downloaded. Images are compared in 8-bit levels.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from diffusers import (  # noqa: E402
    DDIMPipeline,
    DDIMScheduler,
    DDPMPipeline,
    DDPMScheduler,
    UNet2DModel,
)
from parareal.adapters.diffusion import (  # noqa: E402
    PipelineResult,
    sample,
    sample_pipeline,
)

from parareal import Status  # noqa: E402

from .tiny_pipelines import write_tokenizer_files  # noqa: E402

STEPS = 10
PROMPT = "a photo of a red cat"


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def sd_pipe(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel

    folder = tmp_path_factory.mktemp("tokenizer")
    size = write_tokenizer_files(folder)
    tokenizer = transformers.CLIPTokenizer(
        str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=16)
    torch.manual_seed(0)
    text_encoder = transformers.CLIPTextModel(transformers.CLIPTextConfig(
        bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=32, intermediate_size=37,
        num_attention_heads=4, num_hidden_layers=2, vocab_size=size, max_position_embeddings=16))
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16),
        layers_per_block=1, norm_num_groups=4, attention_head_dim=4, cross_attention_dim=32,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"))
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
        norm_num_groups=4, sample_size=16, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    assert tokenizer(PROMPT).input_ids[1:-1] != tokenizer("a photo of a blue dog").input_ids[1:-1]
    return pipe


@pytest.fixture(scope="module")
def sd_reference(sd_pipe):
    """``sd_pipe(PROMPT)``'s own image (10 steps, seed 0, numpy) with its scheduler of the
    moment and a guidance scale, computed once per scheduler config and scale for the module:
    several tests compare against the same one."""
    cache = {}

    def reference(guidance_scale: float = 7.5) -> np.ndarray:
        scheduler = sd_pipe.scheduler
        key = (type(scheduler).__name__, json.dumps(dict(scheduler.config), sort_keys=True,
                                                    default=str), guidance_scale)
        if key not in cache:
            cache[key] = sd_pipe(PROMPT, num_inference_steps=STEPS, guidance_scale=guidance_scale,
                                 generator=seeded(), output_type="np").images
        return cache[key]

    return reference


@pytest.fixture(scope="module")
def pixel_unet():
    torch.manual_seed(0)
    return UNet2DModel(
        sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16),
        layers_per_block=1, norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"))


def ddim_pipe(unet, **config):
    pipe = DDIMPipeline(unet=unet, scheduler=DDIMScheduler(num_train_timesteps=100, **config))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def ddpm_pipe(unet, **config):
    pipe = DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=100, **config))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def levels(a, b) -> float:
    """Largest difference in 8-bit levels (images in [0, 1])."""
    a = a.numpy() if isinstance(a, torch.Tensor) else np.asarray(a, dtype=np.float64)
    b = b.numpy() if isinstance(b, torch.Tensor) else np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape
    return float(np.abs(a - b).max()) * 255


METHODS = [("serial", {}), ("srds", {}), ("srds", {"tol": 0})]


# -- Stable Diffusion ------------------------------------------------------------------------

@pytest.mark.parametrize("method, options", METHODS)
@pytest.mark.parametrize("guidance_scale", [7.5, 1.0])
def test_stable_diffusion_equals_the_pipeline(sd_pipe, sd_reference, method, options,
                                              guidance_scale):
    expected = sd_reference(guidance_scale)
    assert expected.shape == (1, 16, 16, 3) and expected.std() > 0.05  # not a flat image
    out = sample_pipeline(sd_pipe, PROMPT, num_inference_steps=STEPS, method=method,
                          guidance_scale=guidance_scale, generator=seeded(), output_type="np",
                          **options)
    assert isinstance(out, PipelineResult)
    assert isinstance(out.images, np.ndarray) and out.images.dtype == expected.dtype
    assert levels(out.images, expected) <= 1
    assert out.result.method == method and out.result.status is Status.CONVERGED
    assert out.result.sample.shape == (1, 4, 8, 8)  # the latents
    assert out.result.total_evals >= STEPS * (2 if guidance_scale > 1 else 1)
    assert out.nsfw_content_detected is None


def test_stable_diffusion_prompt_and_guidance_matter(sd_pipe, sd_reference):
    """The comparison above is not vacuous: another prompt, scale or seed changes the image."""
    def run(prompt=PROMPT, scale=7.5, seed=0):
        return sample_pipeline(sd_pipe, prompt, num_inference_steps=STEPS, method="serial",
                               guidance_scale=scale, generator=seeded(seed),
                               output_type="np").images

    base = sd_reference(7.5)  # what run() gives, to 1 level (test_..._equals_the_pipeline)
    assert levels(run(prompt="a photo of a blue dog"), base) > 1
    assert levels(run(scale=3.0), base) > 1
    assert levels(run(seed=1), base) > 1


def test_stable_diffusion_batch_negative_prompt_and_eta(sd_pipe):
    prompts = [PROMPT, "a photo of a blue dog"]
    kwargs = dict(num_inference_steps=STEPS, num_images_per_prompt=2,
                  negative_prompt=["dog", "red"], output_type="np", eta=1.0)
    expected = sd_pipe(prompts, generator=seeded(3), **kwargs).images
    assert expected.shape[0] == 4
    out = sample_pipeline(sd_pipe, prompts, method="srds", tol=0, generator=seeded(3), **kwargs)
    assert levels(out.images, expected) <= 1
    assert out.result.iterations >= 1


def test_stable_diffusion_with_a_ddpm_scheduler(sd_pipe):
    """The pipeline's loop with DDPMScheduler.step (ancestral, clipped), guided, in SRDS."""
    ddim = sd_pipe.scheduler
    sd_pipe.scheduler = DDPMScheduler.from_config(ddim.config, clip_sample=True)
    try:
        kwargs = dict(num_inference_steps=STEPS, output_type="np")
        expected = sd_pipe(PROMPT, generator=seeded(2), **kwargs).images
        out = sample_pipeline(sd_pipe, PROMPT, method="srds", tol=0, generator=seeded(2),
                              **kwargs)
    finally:
        sd_pipe.scheduler = ddim
    assert levels(out.images, expected) <= 1


@pytest.mark.parametrize("output_type", ["pil", "pt", "latent"])
def test_stable_diffusion_output_types(sd_pipe, output_type):
    kwargs = dict(num_inference_steps=STEPS, output_type=output_type)
    expected = sd_pipe(PROMPT, generator=seeded(), **kwargs).images
    out = sample_pipeline(sd_pipe, PROMPT, method="serial", generator=seeded(), **kwargs)
    if output_type == "pil":
        assert isinstance(out.images, list) and len(out.images) == 1
        assert out.images[0].size == expected[0].size == (16, 16)
        assert levels(np.asarray(out.images[0]) / 255, np.asarray(expected[0]) / 255) <= 1
    else:
        assert isinstance(out.images, torch.Tensor) and out.images.shape == expected.shape
        assert torch.allclose(out.images, expected, atol=1e-5)
        if output_type == "latent":
            assert out.images is out.result.sample


def test_stable_diffusion_leaves_the_pipeline_usable(sd_pipe, sd_reference):
    before = sd_reference()  # the pipeline's own call, with its default guidance scale 7.5
    sample_pipeline(sd_pipe, PROMPT, num_inference_steps=4, method="srds", generator=seeded())
    after = sd_pipe(PROMPT, num_inference_steps=STEPS, generator=seeded(), output_type="np")
    assert levels(before, after.images) == 0


# -- DDIMPipeline and DDPMPipeline -----------------------------------------------------------

@pytest.mark.parametrize("method, options", METHODS + [("picard", {"tol": 0})])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_pipeline(pixel_unet, method, options, eta):
    pipe = ddim_pipe(pixel_unet)
    expected = pipe(batch_size=2, num_inference_steps=STEPS, eta=eta, generator=seeded(),
                    output_type="np").images
    assert expected.std() > 0.05
    out = sample_pipeline(pipe, num_inference_steps=STEPS, method=method, eta=eta,
                          num_images_per_prompt=2, generator=seeded(), output_type="np",
                          **options)
    assert levels(out.images, expected) <= 1
    assert out.result.status is Status.CONVERGED


@pytest.mark.parametrize("output_type", ["pil", "pt"])
def test_ddim_pipeline_output_types(pixel_unet, output_type):
    pipe = ddim_pipe(pixel_unet)
    expected = pipe(num_inference_steps=STEPS, generator=seeded(), output_type=output_type).images
    out = sample_pipeline(pipe, num_inference_steps=STEPS, method="srds",
                          generator=seeded(), output_type=output_type)
    if output_type == "pil":
        assert isinstance(out.images, list) and out.images[0].size == expected[0].size
        assert levels(np.asarray(out.images[0]) / 255, np.asarray(expected[0]) / 255) <= 1
    else:
        assert isinstance(out.images, torch.Tensor) and out.images.shape == expected.shape
        assert levels(out.images, expected) <= 1


DDPM_CONFIGS = [
    {},  # clip_sample=True: the clip is active at the early, noisy steps
    {"prediction_type": "v_prediction"},
    {"thresholding": True, "sample_max_value": 1.5},
    {"clip_sample": False},
    {"variance_type": "fixed_small_log", "steps_offset": 1},
]


@pytest.mark.parametrize("config", DDPM_CONFIGS)
@pytest.mark.parametrize("method", ["serial", "srds"])
def test_ddpm_pipeline(pixel_unet, config, method):
    pipe = ddpm_pipe(pixel_unet, **config)
    expected = pipe(batch_size=2, num_inference_steps=STEPS, generator=seeded(1),
                    output_type="np").images
    assert expected.std() > 0.05
    options = {"tol": 0} if method == "srds" else {}
    out = sample_pipeline(pipe, num_inference_steps=STEPS, method=method,
                          num_images_per_prompt=2, generator=seeded(1), output_type="np",
                          **options)
    assert levels(out.images, expected) <= 1


def test_ddpm_needs_the_clipped_model_output(pixel_unet):
    """DDIM's plain eta = 1 step is not DDPMScheduler.step when the clip is active: the DDPM
    test above fails without sample_pipeline's clipped noise prediction."""
    pipe = ddpm_pipe(pixel_unet)
    expected = pipe(num_inference_steps=STEPS, generator=seeded(), output_type="np").images
    generator = seeded()
    x_T = torch.randn(1, 3, 8, 8, generator=generator)
    plain = sample(pixel_unet, pipe.scheduler, x_T, num_inference_steps=STEPS, method="serial",
                   eta=1.0, generator=generator).sample
    image = (plain / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    assert levels(image, expected) > 10


# -- errors ----------------------------------------------------------------------------------

def test_errors(pixel_unet):
    ddim, ddpm = ddim_pipe(pixel_unet), ddpm_pipe(pixel_unet)
    run = dict(num_inference_steps=4, method="serial")
    with pytest.raises(TypeError, match="StableDiffusionPipeline, DDIMPipeline, DDPMPipeline"):
        sample_pipeline(pixel_unet, **run)
    with pytest.raises(ValueError, match="unconditional: prompt must be None"):
        sample_pipeline(ddim, "a cat", **run)
    with pytest.raises(ValueError, match="guidance_scale applies to StableDiffusionPipeline"):
        sample_pipeline(ddim, guidance_scale=7.5, **run)
    with pytest.raises(ValueError, match="output_type for DDIMPipeline must be one of"):
        sample_pipeline(ddim, output_type="latent", **run)
    with pytest.raises(TypeError, match="one torch.Generator"):
        sample_pipeline(ddim, generator=[seeded(), seeded()], **run)
    with pytest.raises(TypeError, match="unexpected keyword argument 'guidance_rescale'"):
        sample_pipeline(ddim, guidance_rescale=0.7, **run)
    with pytest.raises(TypeError, match="sets x_T itself"):
        sample_pipeline(ddim, x_T=torch.zeros(1, 3, 8, 8), **run)
    with pytest.raises(ValueError, match="tol applies to methods"):
        sample_pipeline(ddim, tol=0.1, **run)
    with pytest.raises(ValueError, match="method must be one of"):
        sample_pipeline(ddim, num_inference_steps=4, method="fast")
    with pytest.raises(TypeError, match="num_inference_steps"):
        sample_pipeline(ddim, num_inference_steps=4.5, method="serial")
    with pytest.raises(ValueError, match="num_images_per_prompt"):
        sample_pipeline(ddim, num_images_per_prompt=0, **run)
    with pytest.raises(ValueError, match="eta does not apply to a DDPMScheduler"):
        sample_pipeline(ddpm, eta=0.0, **run)
    with pytest.raises(ValueError, match="needs generator"):
        sample_pipeline(ddpm, num_inference_steps=4, method="srds")
    for config, match in (({"timestep_spacing": "trailing"}, "timestep_spacing='trailing'"),
                          ({"variance_type": "fixed_large"}, "variance_type='fixed_large'")):
        with pytest.raises(ValueError, match=match):
            sample_pipeline(ddpm_pipe(pixel_unet, **config), **run)


def test_errors_do_not_consume_the_generator(pixel_unet):
    generator = seeded()
    state = generator.get_state()
    with pytest.raises(ValueError):
        sample_pipeline(ddim_pipe(pixel_unet), num_inference_steps=4, method="serial",
                        generator=generator, blocks=2)
    with pytest.raises(ValueError):
        sample_pipeline(ddpm_pipe(pixel_unet, variance_type="learned"), num_inference_steps=4,
                        method="serial", generator=generator)
    assert torch.equal(generator.get_state(), state)


def test_stable_diffusion_errors(sd_pipe):
    run = dict(num_inference_steps=4, method="serial")
    with pytest.raises(TypeError, match="prompt must be a str or a non-empty list"):
        sample_pipeline(sd_pipe, **run)
    with pytest.raises(TypeError, match="prompt must be a str or a non-empty list"):
        sample_pipeline(sd_pipe, [], **run)
    with pytest.raises(ValueError, match="negative_prompt applies with guidance"):
        sample_pipeline(sd_pipe, PROMPT, negative_prompt="dog", guidance_scale=1.0, **run)
    with pytest.raises(ValueError, match="guidance_scale"):
        sample_pipeline(sd_pipe, PROMPT, guidance_scale=float("nan"), **run)
    with pytest.raises(ValueError, match="output_type for StableDiffusionPipeline"):
        sample_pipeline(sd_pipe, PROMPT, output_type="jpeg", **run)


def test_docs_example_shows_its_checked_output():
    """docs/diffusion.md's DDIMPipeline example shows its output in a text block, which
    tests/test_docs.py runs and compares."""
    from tests.doccheck import python_snippets

    shown = [expected for doc, _, code, expected in python_snippets()
             if doc == "diffusion.md" and "DDIMPipeline(unet" in code]
    assert len(shown) == 1
    assert shown[0] is not None and shown[0].split() == "converged 4 (2, 8, 8, 3) True".split()


@pytest.mark.parametrize("name,karras", [("euler", False), ("euler", True), ("heun", False)])
@pytest.mark.parametrize("method", ["serial", "srds"])
def test_stable_diffusion_with_euler_and_heun_schedulers(sd_pipe, sd_reference, name, karras,
                                                         method):
    """Schedulers whose init_noise_sigma is not 1: the latents are drawn and scaled once."""
    from diffusers import EulerDiscreteScheduler, HeunDiscreteScheduler

    original = sd_pipe.scheduler
    cls = {"euler": EulerDiscreteScheduler, "heun": HeunDiscreteScheduler}[name]
    sd_pipe.scheduler = cls.from_config(original.config, use_karras_sigmas=karras)
    try:
        assert float(sd_pipe.scheduler.init_noise_sigma) > 1
        expected = sd_reference()  # the same for both methods
        out = sample_pipeline(sd_pipe, PROMPT, num_inference_steps=STEPS, method=method,
                              generator=seeded(), output_type="np")
        assert levels(out.images, expected) <= 1
        assert out.result.status is Status.CONVERGED
    finally:
        sd_pipe.scheduler = original
