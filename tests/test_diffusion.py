"""The diffusion adapter: schedules, serial == diffusers, SRDS/Picard == serial, bad input."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from diffusers import DDIMScheduler, DDPMScheduler, UNet2DConditionModel  # noqa: E402
from parareal.adapters.diffusion import (  # noqa: E402
    GaussianMixture,
    NoiseSchedule,
    default_blocks,
    sample,
)

from parareal import Status  # noqa: E402

from .conftest import tiny_unet  # noqa: E402

SPACINGS = ["leading", "trailing", "linspace"]


@pytest.fixture(scope="module")
def unet():
    return tiny_unet()


@pytest.fixture(scope="module")
def cond_unet():
    torch.manual_seed(1)
    model = UNet2DConditionModel(
        sample_size=8, in_channels=2, out_channels=2, block_out_channels=(8, 16),
        layers_per_block=1, norm_num_groups=4, cross_attention_dim=6, attention_head_dim=2,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    )
    return model.eval()


def noise(shape, seed=0, dtype=torch.float32):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def diffusers_loop(model_fn, scheduler, x, steps, eta=0.0, generator=None):
    """diffusers' own sampling loop (the reference)."""
    sch = type(scheduler).from_config(scheduler.config)
    sch.set_timesteps(steps)
    with torch.no_grad():
        for t in sch.timesteps:
            x = sch.step(model_fn(x, t), t, x, eta=eta, generator=generator).prev_sample
    return x


def rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


# -- schedules -------------------------------------------------------------------------------


@pytest.mark.parametrize("beta_schedule", ["linear", "scaled_linear", "squaredcos_cap_v2"])
@pytest.mark.parametrize("set_alpha_to_one", [True, False])
def test_built_schedule_matches_diffusers(beta_schedule, set_alpha_to_one):
    ref = DDIMScheduler(beta_schedule=beta_schedule, set_alpha_to_one=set_alpha_to_one)
    built = NoiseSchedule.build(beta_schedule, set_alpha_to_one=set_alpha_to_one)
    assert torch.equal(built.alphas_cumprod, ref.alphas_cumprod)
    assert torch.equal(built.final_alpha_cumprod, ref.final_alpha_cumprod)


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("steps", [1, 3, 7, 10, 50, 333, 1000])
@pytest.mark.parametrize("offset", [0, 1])
def test_timesteps_match_diffusers(spacing, steps, offset):
    sch = DDIMScheduler(timestep_spacing=spacing, steps_offset=offset)
    ours = NoiseSchedule.from_scheduler(sch).timesteps(steps)
    sch.set_timesteps(steps)
    np.testing.assert_array_equal(ours, sch.timesteps.numpy())


def test_ddpm_scheduler_is_read():
    ddpm = DDPMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction")
    schedule = NoiseSchedule.from_scheduler(ddpm)
    assert torch.equal(schedule.alphas_cumprod, ddpm.alphas_cumprod)
    assert schedule.prediction_type == "v_prediction"
    assert float(schedule.final_alpha_cumprod) == 1.0


def test_scheduler_is_not_modified(unet):
    sch = DDIMScheduler(timestep_spacing="trailing")
    before = dict(sch.config)
    timesteps = sch.timesteps.clone()
    sample(unet, sch, noise((1, 1, 8, 8)), num_inference_steps=4, method="srds")
    assert dict(sch.config) == before
    assert sch.num_inference_steps is None
    assert torch.equal(sch.timesteps, timesteps)


# -- serial == diffusers ----------------------------------------------------------------------


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("set_alpha_to_one", [True, False])
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_serial_reproduces_diffusers_step_loop(unet, spacing, set_alpha_to_one, prediction_type):
    sch = DDIMScheduler(timestep_spacing=spacing, set_alpha_to_one=set_alpha_to_one,
                        prediction_type=prediction_type, clip_sample=prediction_type != "epsilon")
    x = noise((2, 1, 8, 8))
    ours = sample(unet, sch, x, num_inference_steps=13, method="serial")
    ref = diffusers_loop(lambda y, t: unet(y, t).sample, sch, x, 13)
    assert rel(ours.sample, ref) < 1e-5
    assert ours.sequential_evals == 13 and ours.total_evals == 13 and ours.converged
    assert ours.status is Status.CONVERGED and ours.chunks == () and ours.max_batch == 2


def test_serial_reproduces_diffusers_with_thresholding(unet):
    sch = DDIMScheduler(thresholding=True, sample_max_value=1.5, dynamic_thresholding_ratio=0.9)
    x = noise((3, 1, 8, 8), seed=3)
    ours = sample(unet, sch, x, num_inference_steps=10, method="serial")
    ref = diffusers_loop(lambda y, t: unet(y, t).sample, sch, x, 10)
    assert rel(ours.sample, ref) < 1e-5


@pytest.mark.parametrize("eta", [0.5, 1.0])
def test_serial_stochastic_matches_diffusers_with_same_generator(unet, eta):
    sch = DDIMScheduler(clip_sample=False)
    x = noise((2, 1, 8, 8))
    ours = sample(unet, sch, x, num_inference_steps=10, method="serial", eta=eta,
                  generator=torch.Generator().manual_seed(7))
    ref = diffusers_loop(lambda y, t: unet(y, t).sample, sch, x, 10, eta=eta,
                         generator=torch.Generator().manual_seed(7))
    assert rel(ours.sample, ref) < 1e-5


def test_serial_guided_matches_diffusers_pipeline_formula(cond_unet):
    sch = DDIMScheduler()
    x = noise((2, 2, 8, 8))
    pos = noise((2, 3, 6), seed=5)
    neg = noise((2, 3, 6), seed=6)
    scale = 4.0

    def guided(y, t):
        out = cond_unet(torch.cat([y, y]), t, encoder_hidden_states=torch.cat([neg, pos])).sample
        u, c = out.chunk(2)
        return u + scale * (c - u)

    ours = sample(cond_unet, sch, x, num_inference_steps=8, method="serial",
                  guidance_scale=scale, prompt_embeds=pos, negative_prompt_embeds=neg)
    ref = diffusers_loop(guided, sch, x, 8)
    assert rel(ours.sample, ref) < 1e-5
    assert ours.total_evals == 16 and ours.sequential_evals == 8


# -- SRDS and Picard reproduce serial ---------------------------------------------------------


@pytest.fixture(scope="module")
def unet64_serial(unet):
    """The float64 copy of ``unet`` and its 16-step serial sample (trailing DDIM), computed
    once for both schedules of the test below."""
    model = copy.deepcopy(unet).double()
    x = noise((2, 1, 8, 8), dtype=torch.float64)
    ser = sample(model, DDIMScheduler(timestep_spacing="trailing"), x, num_inference_steps=16,
                 method="serial")
    return model, x, ser.sample


@pytest.mark.parametrize("pipelined", [True, False])
def test_srds_tol_zero_reproduces_serial_unet_float64(unet64_serial, pipelined):
    model, x, ser = unet64_serial
    sch = DDIMScheduler(timestep_spacing="trailing")
    srds = sample(model, sch, x, num_inference_steps=16, method="srds", tol=0, pipelined=pipelined)
    assert srds.iterations == default_blocks(16) and srds.converged
    assert srds.sample.dtype == torch.float64
    # convolutions may differ in the last bits with batch size: round-off, amplified by the
    # (untrained, hence chaotic) network over 16 steps, stays far below float32 resolution
    assert rel(srds.sample, ser) < 1e-9


@pytest.fixture(scope="module")
def unet32_serial(unet):
    """The 16-step serial float32 sample of two noises (trailing DDIM) and its own round-off
    level, computed once for both schedules of the test below."""
    sch = DDIMScheduler(timestep_spacing="trailing")
    x = noise((2, 1, 8, 8))
    ser = sample(unet, sch, x, num_inference_steps=16, method="serial").sample
    # the sampler's own sensitivity to float32 round-off: the same samples in a larger batch
    wider = sample(unet, sch, torch.cat([x, x.flip(0)]), num_inference_steps=16,
                   method="serial").sample[:2]
    return x, ser, max(float((wider - ser).abs().max()), 1e-6)


@pytest.mark.parametrize("pipelined", [True, False])
def test_srds_tol_zero_reproduces_serial_unet_float32_to_its_own_round_off(unet, unet32_serial,
                                                                           pipelined):
    sch = DDIMScheduler(timestep_spacing="trailing")
    x, ser, own = unet32_serial
    srds = sample(unet, sch, x, num_inference_steps=16, method="srds", tol=0,
                  pipelined=pipelined).sample
    assert srds.dtype == torch.float32
    assert float((srds - ser).abs().max()) <= 4 * own


@pytest.mark.parametrize("pipelined", [True, False])
@pytest.mark.parametrize("steps,blocks", [(25, None), (10, 3), (7, 7), (12, 1)])
def test_srds_tol_zero_is_bitwise_serial_on_mixture(pipelined, steps, blocks):
    gmm = GaussianMixture.random(6, 4, seed=2)
    sch = DDIMScheduler(clip_sample=False)
    model = gmm.model(NoiseSchedule.from_scheduler(sch))
    x = noise((3, 6), dtype=torch.float64)
    ser = sample(model, sch, x, num_inference_steps=steps, method="serial")
    out = sample(model, sch, x, num_inference_steps=steps, method="srds", blocks=blocks, tol=0,
                 pipelined=pipelined)
    nblocks = blocks or default_blocks(steps)
    assert out.iterations == nblocks and out.converged
    assert torch.equal(out.sample, ser.sample)


def test_srds_converges_early_and_counts():
    gmm = GaussianMixture.random(8, 5, seed=0)
    sch = DDIMScheduler(clip_sample=False)
    model = gmm.model(NoiseSchedule.from_scheduler(sch))
    x = noise((4, 8), dtype=torch.float64)
    ser = sample(model, sch, x, num_inference_steps=100, method="serial")
    pip = sample(model, sch, x, num_inference_steps=100, method="srds", tol=1e-4, blocks=10)
    syn = sample(model, sch, x, num_inference_steps=100, method="srds", tol=1e-4, blocks=10,
                 pipelined=False)
    assert pip.converged and pip.iterations < 10
    assert pip.iterations == syn.iterations and torch.equal(pip.sample, syn.sample)
    assert float((pip.sample - ser.sample).abs().max()) < 1e-3
    assert pip.residuals[-1] <= 1e-4 and len(pip.residuals) == pip.iterations
    # pipelined latency (K+1)*B - K sequential calls; synchronous is longer
    k = pip.iterations
    assert pip.sequential_evals == (k + 1) * 10 - k
    assert syn.sequential_evals > pip.sequential_evals
    assert pip.total_evals == pip.stats.f_evals


def test_srds_tol_zero_pipelined_latency_equals_n():
    gmm = GaussianMixture.random(3, 2, seed=1)
    sch = DDIMScheduler(clip_sample=False)
    model = gmm.model(NoiseSchedule.from_scheduler(sch))
    out = sample(model, sch, noise((2, 3), dtype=torch.float64), num_inference_steps=36,
                 method="srds", tol=0, blocks=6)
    assert out.iterations == 6 and out.sequential_evals == 36  # K*m + B - K with K = B = m


@pytest.mark.parametrize("window", [1, 4, 100])
def test_picard_tol_zero_reproduces_serial(window):
    gmm = GaussianMixture.random(5, 3, seed=4)
    sch = DDIMScheduler(clip_sample=False, timestep_spacing="linspace")
    model = gmm.model(NoiseSchedule.from_scheduler(sch))
    x = noise((2, 5), dtype=torch.float64)
    ser = sample(model, sch, x, num_inference_steps=30, method="serial")
    pic = sample(model, sch, x, num_inference_steps=30, method="picard", window=window, tol=0)
    assert pic.converged and pic.iterations <= 30
    assert rel(pic.sample, ser.sample) < 1e-12
    if window == 1:
        assert pic.iterations == 30 and pic.total_evals == 30


def test_picard_default_tolerance_is_close_and_faster():
    gmm = GaussianMixture.random(5, 3, seed=4)
    sch = DDIMScheduler(clip_sample=False)
    model = gmm.model(NoiseSchedule.from_scheduler(sch))
    x = noise((2, 5), dtype=torch.float64)
    ser = sample(model, sch, x, num_inference_steps=100, method="serial")
    pic = sample(model, sch, x, num_inference_steps=100, method="picard", window=20)
    assert pic.converged and pic.sequential_evals < 100
    assert float((pic.sample - ser.sample).abs().max()) < 1e-2


@pytest.mark.parametrize("method,pipelined", [("srds", True), ("srds", False), ("picard", True)])
def test_stochastic_converges_to_serial_stochastic_sample(method, pipelined):
    gmm = GaussianMixture.random(4, 3, seed=5)
    sch = DDIMScheduler(clip_sample=False)
    model = gmm.model(NoiseSchedule.from_scheduler(sch))
    x = noise((3, 4), dtype=torch.float64)
    kwargs = dict(num_inference_steps=16, eta=1.0)
    ser = sample(model, sch, x, method="serial", generator=torch.Generator().manual_seed(3),
                 **kwargs)
    extra = dict(pipelined=pipelined) if method == "srds" else {}
    out = sample(model, sch, x, method=method, tol=0, generator=torch.Generator().manual_seed(3),
                 **extra, **kwargs)
    assert rel(out.sample, ser.sample) < 1e-12
    other = sample(model, sch, x, method="serial", generator=torch.Generator().manual_seed(4),
                   **kwargs)
    assert rel(other.sample, ser.sample) > 1e-3  # the noise matters


def test_srds_guided_conditional_unet(cond_unet):
    sch = DDIMScheduler()
    x = noise((1, 2, 8, 8))
    pos = noise((1, 3, 6), seed=5)
    kwargs = dict(num_inference_steps=9, guidance_scale=3.0, prompt_embeds=pos)
    model = copy.deepcopy(cond_unet).double()
    x, pos = x.double(), pos.double()
    kwargs["prompt_embeds"] = pos
    ser = sample(model, sch, x, method="serial", **kwargs)
    srds = sample(model, sch, x, method="srds", tol=0, **kwargs)
    assert rel(srds.sample, ser.sample) < 1e-9
    assert srds.total_evals == 2 * srds.stats.f_evals


def test_unguided_conditional_unet(cond_unet):
    sch = DDIMScheduler()
    x = noise((2, 2, 8, 8))
    pos = noise((2, 3, 6), seed=5)
    ours = sample(cond_unet, sch, x, num_inference_steps=5, method="serial", prompt_embeds=pos)
    ref = diffusers_loop(lambda y, t: cond_unet(y, t, encoder_hidden_states=pos).sample, sch, x, 5)
    assert rel(ours.sample, ref) < 1e-5 and ours.total_evals == 5


# -- the mixture model ------------------------------------------------------------------------


def test_mixture_noise_prediction_is_exact_score():
    gmm = GaussianMixture.random(3, 4, seed=9)
    schedule = NoiseSchedule.build()
    model = gmm.model(schedule)
    x = noise((6, 3), dtype=torch.float64).requires_grad_(True)
    t = torch.tensor([0, 10, 100, 400, 800, 999])
    alpha = schedule.alphas_cumprod.double()[t][:, None]
    # log density of the noised mixture, differentiated by autograd
    var = alpha * gmm.stds[None] ** 2 + (1 - alpha)
    diff = x[:, None, :] - alpha.sqrt()[:, :, None] * gmm.means[None]
    logp = torch.logsumexp(gmm.weights.log()[None] - 1.5 * torch.log(2 * math.pi * var)
                           - (diff**2).sum(-1) / (2 * var), dim=1)
    (score,) = torch.autograd.grad(logp.sum(), x)
    eps = model(x.detach(), t)
    torch.testing.assert_close(eps, -(1 - alpha).sqrt() * score, rtol=1e-9, atol=1e-10)


def test_mixture_serial_samples_have_the_mixture_statistics():
    gmm = GaussianMixture.random(2, 3, seed=11)
    sch = DDIMScheduler(clip_sample=False)
    x = noise((4000, 2), dtype=torch.float64, seed=2)
    out = sample(gmm.model(NoiseSchedule.from_scheduler(sch)), sch, x, num_inference_steps=100,
                 method="serial").sample
    data = gmm.sample(4000, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(out.mean(0), data.mean(0), atol=0.05, rtol=0)
    torch.testing.assert_close(out.std(0), data.std(0), atol=0.05, rtol=0)


@pytest.mark.parametrize("prediction_type", ["v_prediction", "sample"])
def test_mixture_prediction_types_give_the_same_sampler(prediction_type):
    gmm = GaussianMixture.random(3, 2, seed=3)
    x = noise((2, 3), dtype=torch.float64)
    base = NoiseSchedule.build()
    other = NoiseSchedule.build(prediction_type=prediction_type)
    a = sample(gmm.model(base), base, x, num_inference_steps=20, method="serial").sample
    b = sample(gmm.model(other), other, x, num_inference_steps=20, method="serial").sample
    # the sampler's coefficients are float32 square roots (as diffusers'), the mixture's are
    # float64: converting eps to v or x0 and back agrees to float32 resolution
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(num_inference_steps=0), ValueError, "num_inference_steps must be >= 1"),
        (dict(num_inference_steps=1001), ValueError, "num_train_timesteps"),
        (dict(num_inference_steps=2.5), TypeError, "num_inference_steps"),
        (dict(blocks=11), ValueError, "blocks must be <="),
        (dict(blocks=0), ValueError, "blocks must be >= 1"),
        (dict(method="ddpm"), ValueError, "method must be one of"),
        (dict(method="picard", blocks=2), ValueError, "blocks applies"),
        (dict(window=2), ValueError, "window applies"),
        (dict(tol=-1.0), ValueError, "tol must be >= 0"),
        (dict(tol_mode="pixels"), ValueError, "tol_mode must be one of"),
        (dict(eta=0.5), ValueError, "needs a torch.Generator"),
        (dict(eta=0.5, method="picard"), ValueError, "needs a torch.Generator"),
        (dict(eta=-1.0), ValueError, "eta must be >= 0"),
        (dict(generator=3), TypeError, "generator"),
        (dict(max_iters=0), ValueError, "max_iters"),
        (dict(guidance_scale=2.0), ValueError, "UNet2DConditionModel"),
        (dict(prompt_embeds=torch.zeros(1, 2, 6)), ValueError, "UNet2DConditionModel"),
        (dict(x_T=torch.zeros(1, 3, 8, 8)), ValueError, r"takes \(batch, 1, 8, 8\)"),
        (dict(x_T=torch.zeros(1, 1, 16, 16)), ValueError, r"takes \(batch, 1, 8, 8\)"),
        (dict(x_T=np.zeros((1, 1, 8, 8))), TypeError, "x_T must be a torch.Tensor"),
        (dict(x_T=torch.full((1, 1, 8, 8), float("nan"))), ValueError, "NaN"),
        (dict(x_T=torch.zeros(0, 1, 8, 8)), ValueError, "empty batch"),
        (dict(max_batch=0), ValueError, "max_batch must be >= 1"),
        (dict(max_batch=2.0), TypeError, "max_batch"),
        (dict(pipelined="yes"), TypeError, "pipelined must be True, False or None"),
        # options that do not apply to the method (item 10 of issue 7)
        (dict(method="serial", tol=-1.0), ValueError,
         "tol applies to methods 'srds', 'picard' and 'picard-exact', not to method 'serial'"),
        (dict(method="serial", tol=1e-3), ValueError, "tol applies"),
        (dict(method="serial", tol_mode="data"), ValueError, "tol_mode applies"),
        (dict(method="serial", max_iters=3), ValueError, "max_iters applies"),
        (dict(method="serial", blocks=3), ValueError,
         "blocks applies to method 'srds' only, not to method 'serial'"),
        (dict(method="serial", window=3), ValueError,
         "window applies to methods 'picard' and 'picard-exact'"),
        (dict(method="serial", pipelined=False), ValueError, "pipelined applies"),
        (dict(method="picard", pipelined=False), ValueError, "pipelined applies"),
        (dict(method="picard", pipelined=True), ValueError, "pipelined applies"),
        (dict(method="serial", callback=print), ValueError, "callback applies"),
    ],
)
def test_bad_sample_arguments(unet, kwargs, exc, match):
    args = dict(x_T=noise((1, 1, 8, 8)), num_inference_steps=10)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        sample(unet, DDIMScheduler(), args.pop("x_T"), **args)


def test_unsupported_scheduler_class(unet):
    from diffusers import DPMSolverMultistepScheduler

    with pytest.raises(TypeError, match="supported: DDIMScheduler, DDPMScheduler"):
        sample(unet, DPMSolverMultistepScheduler(), noise((1, 1, 8, 8)), num_inference_steps=4)


def test_unsupported_prediction_type_and_spacing():
    with pytest.raises(ValueError, match="prediction_type must be one of"):
        NoiseSchedule.build(prediction_type="flow")
    with pytest.raises(ValueError, match="timestep_spacing must be one of"):
        NoiseSchedule.build(timestep_spacing="karras")
    with pytest.raises(ValueError, match="beta_schedule must be one of"):
        NoiseSchedule.build("sigmoid")


def test_conditional_unet_input_errors(cond_unet):
    x = noise((2, 2, 8, 8))
    with pytest.raises(ValueError, match="needs prompt_embeds"):
        sample(cond_unet, DDIMScheduler(), x, num_inference_steps=3)
    with pytest.raises(ValueError, match="prompt_embeds has shape"):
        sample(cond_unet, DDIMScheduler(), x, num_inference_steps=3,
               prompt_embeds=torch.zeros(2, 3, 5))
    with pytest.raises(TypeError, match="prompt_embeds must be a torch.Tensor"):
        sample(cond_unet, DDIMScheduler(), x, num_inference_steps=3, prompt_embeds=[1.0])


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(guidance_scale=float("nan")), ValueError, "guidance_scale must be finite"),
        (dict(guidance_scale=float("inf")), ValueError, "guidance_scale must be finite"),
        (dict(guidance_scale=-float("inf")), ValueError, "guidance_scale must be finite"),
        (dict(guidance_scale=2 + 1j), TypeError, "guidance_scale must be a real number"),
        (dict(guidance_scale="7.5"), TypeError, "guidance_scale must be a real number"),
        (dict(guidance_scale=True), TypeError, "guidance_scale must be a real number"),
        (dict(prompt_embeds=torch.full((2, 3, 6), float("nan"))), ValueError,
         "prompt_embeds contains NaN or inf"),
        (dict(prompt_embeds=torch.full((2, 3, 6), float("inf"))), ValueError,
         "prompt_embeds contains NaN or inf"),
        (dict(prompt_embeds=torch.ones(2, 3, 6, dtype=torch.long)), TypeError,
         "prompt_embeds must be a floating tensor"),
        (dict(guidance_scale=2.0, negative_prompt_embeds=torch.full((2, 3, 6), float("nan"))),
         ValueError, "negative_prompt_embeds contains NaN or inf"),
        (dict(guidance_scale=2.0, negative_prompt_embeds=torch.zeros(2, 4, 6)), ValueError,
         r"negative_prompt_embeds has shape \(2, 4, 6\) but prompt_embeds has shape "
         r"\(2, 3, 6\)"),
        (dict(guidance_scale=2.0, negative_prompt_embeds=torch.zeros(1, 3, 6)), ValueError,
         r"negative_prompt_embeds has shape \(1, 3, 6\) but prompt_embeds has shape"),
        (dict(negative_prompt_embeds=torch.zeros(2, 3, 6)), ValueError,
         "negative_prompt_embeds apply with guidance_scale only"),
    ],
)
def test_guidance_and_embedding_errors(cond_unet, kwargs, exc, match):
    args = dict(prompt_embeds=noise((2, 3, 6), seed=5))
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        sample(cond_unet, DDIMScheduler(), noise((2, 2, 8, 8)), num_inference_steps=3, **args)


def test_guidance_and_embeddings_cannot_be_added_to_a_model_fn(cond_unet):
    from parareal.adapters.diffusion import wrap_model

    fn = wrap_model(cond_unet, prompt_embeds=noise((1, 3, 6)))
    with pytest.raises(ValueError, match="cannot be added to a ModelFn"):
        sample(fn, DDIMScheduler(), noise((1, 2, 8, 8)), num_inference_steps=3,
               guidance_scale=2.0)


# -- model outputs (item 11 of issue 7) -------------------------------------------------------


@pytest.mark.parametrize(
    "make,exc,match",
    [
        (lambda x: None, TypeError,
         r"model\(x, t\) returned None; it must return the prediction as a tensor of x's "
         r"shape \(6, 1, 8, 8\)"),
        (lambda x: "eps", TypeError, r"returned a str; .*shape \(6, 1, 8, 8\)"),
        (lambda x: (x,), TypeError, r"returned a tuple; .*shape \(6, 1, 8, 8\)"),
        (lambda x: x.numpy(), TypeError, r"returned a ndarray"),
        # a flattened output with the right number of elements is refused, not reinterpreted
        (lambda x: x.reshape(x.shape[0], 64), ValueError,
         r"returned a tensor of shape \(6, 64\) and dtype torch.float32; it must return the "
         r"prediction as a tensor of x's shape \(6, 1, 8, 8\)"),
        (lambda x: x[:, :, :4], ValueError, r"shape \(6, 1, 4, 8\).*\(6, 1, 8, 8\)"),
        (lambda x: x[:3], ValueError, r"shape \(3, 1, 8, 8\).*\(6, 1, 8, 8\)"),
        (lambda x: torch.cat([x, x], 1), ValueError, r"shape \(6, 2, 8, 8\)"),
        (lambda x: x.to(torch.int64), TypeError, "must return a floating tensor"),
    ],
)
def test_bad_model_outputs_are_named(unet, make, exc, match):
    def model(x, t):
        return make(unet(x, t).sample)

    with pytest.raises(exc, match=match):
        sample(model, DDIMScheduler(), noise((6, 1, 8, 8)), num_inference_steps=9,
               method="serial")


@pytest.mark.parametrize("method", ["srds", "picard"])
def test_flattened_output_is_refused_in_stacked_calls(unet, method):
    # the parallel methods stack states of several blocks or steps in one call: a flattened
    # output of the stack used to be reshaped silently into the stack's shape
    calls = []

    def model(x, t):
        calls.append(x.shape[0])
        out = unet(x, t).sample
        return out if len(calls) == 1 else out.reshape(x.shape[0], -1)

    with pytest.raises(ValueError, match=r"returned a tensor of shape \((\d+), 64\) .*"
                                         r"x's shape \(\1, 1, 8, 8\)"):
        sample(model, DDIMScheduler(), noise((2, 1, 8, 8)), num_inference_steps=9,
               method=method)


@pytest.mark.parametrize("method", ["serial", "srds", "picard"])
def test_model_output_of_another_float_dtype_is_cast(unet, method):
    sch = DDIMScheduler()
    x = noise((2, 1, 8, 8))
    ref = sample(unet, sch, x, num_inference_steps=6, method=method)
    out = sample(lambda y, t: unet(y, t).sample.double(), sch, x, num_inference_steps=6,
                 method=method)
    assert out.sample.dtype == torch.float32
    assert torch.equal(out.sample, ref.sample)


def test_unknown_keyword(unet):
    with pytest.raises(TypeError, match="unexpected keyword"):
        sample(unet, DDIMScheduler(), noise((1, 1, 8, 8)), num_inference_steps=3, steps=3)


def test_serial_reproduces_a_diffusers_ddim_pipeline_end_to_end(unet):
    from diffusers import DDIMPipeline

    scheduler = DDIMScheduler(timestep_spacing="trailing", set_alpha_to_one=False)
    pipe = DDIMPipeline(unet=unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    images = pipe(batch_size=2, generator=torch.Generator().manual_seed(0), eta=0.0,
                  num_inference_steps=12, output_type="np").images
    # the pipeline draws x_T with the same generator first
    x_T = torch.randn((2, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    ours = sample(pipe.unet, pipe.scheduler, x_T, num_inference_steps=12, method="srds", tol=0)
    ours_images = (ours.sample / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(ours_images, images, atol=2e-3)


@pytest.mark.parametrize("method", ["srds", "picard"])
def test_callback_sees_the_final_sample_estimates(method):
    gmm = GaussianMixture.random(3, 2, seed=8)
    sch = DDIMScheduler(clip_sample=False)
    model = gmm.model(NoiseSchedule.from_scheduler(sch))
    x = noise((2, 3), dtype=torch.float64)
    seen = []
    out = sample(model, sch, x, num_inference_steps=16, method=method, tol=0,
                 callback=lambda k, y: seen.append((k, y.clone())))
    ser = sample(model, sch, x, num_inference_steps=16, method="serial")
    assert [k for k, _ in seen] == list(range(seen[0][0], seen[0][0] + len(seen)))
    assert torch.equal(seen[-1][1], out.sample)
    assert rel(seen[-1][1], ser.sample) < 1e-12
    with pytest.raises(TypeError, match=r"callback must be callable as callback\(iteration, "
                                        r"sample\), got 3"):
        sample(model, sch, x, num_inference_steps=4, method=method, callback=3)


def test_srds_on_other_backends_gives_the_same_sample():
    from diffusers import DDIMScheduler
    from parareal.adapters.diffusion import GaussianMixture, NoiseSchedule, sample

    sch = DDIMScheduler(clip_sample=False)
    model = GaussianMixture.random(4, 3, seed=0).model(NoiseSchedule.from_scheduler(sch))
    x = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ref = sample(model, sch, x, num_inference_steps=25, method="srds", tol=0)
    from parareal.backends import Threads

    for backend in ("threads", Threads(2), "serial"):
        out = sample(model, sch, x, num_inference_steps=25, method="srds", tol=0,
                     backend=backend)
        assert torch.equal(out.sample, ref.sample)
        assert out.iterations == ref.iterations and out.residuals == ref.residuals
    with pytest.raises(ValueError, match="backend"):
        sample(model, sch, x, num_inference_steps=25, method="serial", backend="threads")
    with pytest.raises(ValueError, match="unknown backend"):
        sample(model, sch, x, num_inference_steps=25, method="srds", backend="gpu")
