"""Euler and Heun (Karras) schedulers, and engine propagators as diffusion samplers.

Serial equals diffusers' own step loop; SRDS with ``tol=0`` gives the serial sample; Euler in
``sigma`` is DDIM; the engine's methods converge at their order on the probability-flow ODE of
a model whose score is exact; schedulers that are no one-step map are refused.
"""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from diffusers import (  # noqa: E402
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    UniPCMultistepScheduler,
)
from parareal.adapters.diffusion import (  # noqa: E402
    GaussianMixture,
    NoiseSchedule,
    ProbabilityFlowRhs,
    check_scheduler,
    default_blocks,
    sample,
    sigma_grid,
    wrap_model,
)

import parareal  # noqa: E402

from .conftest import tiny_unet  # noqa: E402

SCHEDULERS = [EulerDiscreteScheduler, HeunDiscreteScheduler]


@pytest.fixture(scope="module")
def unet():
    return tiny_unet()


def noise(shape, seed=0, dtype=torch.float32):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def diffusers_loop(model, scheduler, x_T, steps):
    """diffusers' own loop, as its pipelines run it: the reference."""
    sch = type(scheduler).from_config(scheduler.config)
    sch.set_timesteps(steps)
    x = x_T * sch.init_noise_sigma
    with torch.no_grad():
        for t in sch.timesteps:
            out = model(sch.scale_model_input(x, t), t)
            x = sch.step(out, t, x).prev_sample
    return x, len(sch.timesteps)


def rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


def mixture_model(scheduler, seed=0, dim=4):
    """The exact model of a Gaussian mixture for the scheduler's betas and prediction type."""
    schedule = NoiseSchedule(alphas_cumprod=scheduler.alphas_cumprod,
                             final_alpha_cumprod=torch.tensor(1.0),
                             prediction_type=scheduler.config.prediction_type)
    return GaussianMixture.random(dim, 3, seed=seed).model(schedule)


# -- serial == diffusers ---------------------------------------------------------------------


@pytest.mark.parametrize("cls", SCHEDULERS)
@pytest.mark.parametrize("karras", [False, True])
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_serial_reproduces_diffusers_step_loop(unet, cls, karras, prediction_type):
    sch = cls(use_karras_sigmas=karras, prediction_type=prediction_type)
    x = noise((2, 1, 8, 8))
    # 6 steps still cover the first, the interior and the last (sigma -> 0) steps of both
    # schedulers, with and without Karras sigmas
    ours = sample(unet, sch, x, num_inference_steps=6, method="serial")
    ref, calls = diffusers_loop(lambda y, t: unet(y, t).sample, sch, x, 6)
    assert rel(ours.sample, ref) < 1e-5
    assert ours.sequential_evals == calls == (6 if cls is EulerDiscreteScheduler else 11)
    assert ours.converged and ours.method == "serial"


@pytest.mark.parametrize("sch", [
    EulerDiscreteScheduler(timestep_spacing="leading", steps_offset=1),
    EulerDiscreteScheduler(timestep_spacing="trailing", final_sigmas_type="sigma_min"),
    EulerDiscreteScheduler(prediction_type="v_prediction", timestep_type="continuous"),
    EulerDiscreteScheduler(beta_schedule="scaled_linear", use_karras_sigmas=True,
                           prediction_type="sample"),
    HeunDiscreteScheduler(timestep_spacing="leading", clip_sample=True, clip_sample_range=0.5),
    HeunDiscreteScheduler(beta_schedule="squaredcos_cap_v2", timestep_spacing="trailing"),
], ids=["euler-leading", "euler-sigma-min", "euler-continuous", "euler-sample", "heun-clip",
        "heun-cosine"])
def test_serial_reproduces_diffusers_for_other_settings(unet, sch):
    x = noise((2, 1, 8, 8), seed=1)
    ours = sample(unet, sch, x, num_inference_steps=7, method="serial")
    ref, calls = diffusers_loop(lambda y, t: unet(y, t).sample, sch, x, 7)
    assert rel(ours.sample, ref) < 1e-5
    assert ours.sequential_evals == calls


def test_scheduler_is_only_read(unet):
    sch = HeunDiscreteScheduler(use_karras_sigmas=True)
    before = dict(sch.config)
    sigmas = sch.sigmas.clone()
    sample(unet, sch, noise((1, 1, 8, 8)), num_inference_steps=4, method="srds")
    assert dict(sch.config) == before and torch.equal(sch.sigmas, sigmas)
    assert sch.num_inference_steps == 1000  # what its constructor set, not 4


def test_heun_on_an_euler_grid_is_diffusers_heun_on_the_same_grid(unet):
    euler = EulerDiscreteScheduler(use_karras_sigmas=True)
    x = noise((2, 1, 8, 8), seed=2)
    # 6 steps: first, interior and final (Euler-only) Heun steps, as the comparisons above
    ours = sample(unet, euler, x, num_inference_steps=6, method="serial", fine=parareal.Heun())
    heun = HeunDiscreteScheduler(use_karras_sigmas=True, beta_start=0.0001, beta_end=0.02)
    assert sigma_grid(heun, 6).sigmas.tolist() == sigma_grid(euler, 6).sigmas.tolist()
    ref, calls = diffusers_loop(lambda y, t: unet(y, t).sample, heun, x, 6)
    assert rel(ours.sample, ref) < 1e-5 and ours.sequential_evals == calls == 11
    plain = sample(unet, euler, x, num_inference_steps=6, method="serial")
    assert rel(plain.sample, ref) > 1e-3  # a different sampler: Euler's own steps


# -- SRDS reproduces serial ------------------------------------------------------------------


@pytest.mark.parametrize("cls", SCHEDULERS)
@pytest.mark.parametrize("karras", [False, True])
@pytest.mark.parametrize("pipelined", [True, False])
def test_srds_tol_zero_is_bitwise_serial_on_mixture(cls, karras, pipelined):
    sch = cls(use_karras_sigmas=karras, prediction_type="v_prediction")
    model = mixture_model(sch)
    x = noise((3, 4), dtype=torch.float64)
    ser = sample(model, sch, x, num_inference_steps=12, method="serial")
    out = sample(model, sch, x, num_inference_steps=12, method="srds", blocks=4, tol=0,
                 pipelined=pipelined)
    assert out.iterations == 4 and out.converged
    assert torch.equal(out.sample, ser.sample)


@pytest.mark.parametrize("cls", SCHEDULERS)
def test_srds_tol_zero_reproduces_serial_unet_float32_to_its_own_round_off(unet, cls):
    sch = cls(use_karras_sigmas=True)
    x = noise((2, 1, 8, 8))
    ser = sample(unet, sch, x, num_inference_steps=9, method="serial").sample
    wider = sample(unet, sch, torch.cat([x, x.flip(0)]), num_inference_steps=9,
                   method="serial").sample[:2]
    own = max(float((wider - ser).abs().max()), 1e-6 * float(ser.abs().max()))
    srds = sample(unet, sch, x, num_inference_steps=9, method="srds", tol=0).sample
    assert srds.dtype == torch.float32
    assert float((srds - ser).abs().max()) <= 4 * own


def test_srds_default_tolerance_converges_early_to_the_serial_sample():
    sch = HeunDiscreteScheduler(use_karras_sigmas=True)
    model = mixture_model(sch, seed=3)
    x = noise((8, 4), dtype=torch.float64)
    ser = sample(model, sch, x, num_inference_steps=25, method="serial")
    out = sample(model, sch, x, num_inference_steps=25, method="srds")
    assert out.converged and out.iterations < 5
    assert out.sequential_evals < ser.sequential_evals
    assert float((out.sample - ser.sample).abs().max()) < 1 / 255


# -- engine propagators ----------------------------------------------------------------------


@pytest.mark.parametrize("set_alpha_to_one", [True, False])
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_euler_in_sigma_is_ddim(set_alpha_to_one, prediction_type):
    sch = DDIMScheduler(clip_sample=False, set_alpha_to_one=set_alpha_to_one,
                        prediction_type=prediction_type)
    model = GaussianMixture.random(4, 3, seed=5).model(NoiseSchedule.from_scheduler(sch))
    x = noise((3, 4), dtype=torch.float64)
    ddim = sample(model, sch, x, num_inference_steps=20, method="serial")
    euler = sample(model, sch, x, num_inference_steps=20, method="serial", fine="euler")
    # equal up to the float32 rounding of DDIM's coefficients (diffusers computes them so)
    assert rel(euler.sample, ddim.sample) < 1e-6
    heun = sample(model, sch, x, num_inference_steps=20, method="serial", fine="heun")
    assert rel(heun.sample, ddim.sample) > 1e-4  # Heun on DDIM's grid: another sampler


def test_engine_methods_converge_at_their_order():
    sch = EulerDiscreteScheduler(use_karras_sigmas=True, final_sigmas_type="sigma_min")
    model = mixture_model(sch)
    x = noise((8, 4), dtype=torch.float64)
    # reference: 128 RK4 substeps, 4x finer than the finest rk4 run (its error ~1/256 of
    # theirs); the measured orders agree to 3 decimals with a 256-substep reference
    ref = sample(model, sch, x, num_inference_steps=64, method="serial",
                 fine=parareal.RK4(steps=2)).sample
    orders, errors = {}, {}
    for name in ("euler", "heun", "rk4"):
        errs = [float((sample(model, sch, x, num_inference_steps=n, method="serial",
                              fine=name).sample - ref).abs().max()) for n in (8, 16, 32)]
        orders[name] = [math.log2(errs[i] / errs[i + 1]) for i in range(2)]
        errors[name] = errs[-1]
    assert all(0.8 < p < 1.4 for p in orders["euler"]), orders
    assert all(1.8 < p < 3.0 for p in orders["heun"]), orders
    assert errors["rk4"] < errors["heun"] / 10 < errors["euler"] / 20, errors


@pytest.mark.parametrize("fine,coarse", [("heun", "euler"), (parareal.RK4(), parareal.Heun()),
                                         (parareal.Euler(steps=2), "rk4")])
def test_srds_with_engine_propagators_reproduces_their_serial_sampler(fine, coarse):
    sch = EulerDiscreteScheduler(use_karras_sigmas=True)
    model = mixture_model(sch, seed=7)
    x = noise((3, 4), dtype=torch.float64)
    ser = sample(model, sch, x, num_inference_steps=9, method="serial", fine=fine)
    out = sample(model, sch, x, num_inference_steps=9, method="srds", tol=0, fine=fine,
                 coarse=coarse)
    assert out.iterations == default_blocks(9) and torch.equal(out.sample, ser.sample)


def test_fine_counts_and_spec_strings():
    sch = EulerDiscreteScheduler()
    model = mixture_model(sch)
    x = noise((2, 4), dtype=torch.float64)
    rk4 = sample(model, sch, x, num_inference_steps=6, method="serial", fine=parareal.RK4())
    spec = sample(model, sch, x, num_inference_steps=6, method="serial", fine="rk4")
    assert torch.equal(rk4.sample, spec.sample)
    assert rk4.sequential_evals == 5 * 4 + 1  # the step to sigma = 0 is an Euler step
    two = sample(model, sch, x, num_inference_steps=6, method="serial", fine="heun:2")
    assert two.sequential_evals == 6 * 4 - 1


def test_prediction_types_give_the_same_ode():
    x = noise((5, 4), dtype=torch.float64)
    derivatives = []
    for kind in ("epsilon", "v_prediction", "sample"):
        sch = EulerDiscreteScheduler(prediction_type=kind)
        grid = sigma_grid(sch, 10)
        rhs = ProbabilityFlowRhs(wrap_model(mixture_model(sch)), grid, x.device)
        sigmas = torch.tensor(grid.sigmas[:3], dtype=torch.float64)
        derivatives.append(rhs(sigmas, torch.stack([x, 2 * x, 3 * x])))
    # the model's alpha_bar and the grid's float32 sigma agree to float32 precision
    assert rel(derivatives[1], derivatives[0]) < 1e-6
    assert rel(derivatives[2], derivatives[0]) < 1e-6
    assert float(derivatives[0].abs().min()) > 0


# -- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize("cls,why", [
    (DPMSolverMultistepScheduler, "multistep"),
    (UniPCMultistepScheduler, "multistep"),
    (EulerAncestralDiscreteScheduler, "stochastic"),
])
def test_unsupported_schedulers_say_why_and_what_is_supported(unet, cls, why):
    with pytest.raises(TypeError, match=why) as info:
        sample(unet, cls(), noise((1, 1, 8, 8)), num_inference_steps=4)
    for name in ("DDIMScheduler", "DDPMScheduler", "EulerDiscreteScheduler",
                 "HeunDiscreteScheduler"):
        assert name in str(info.value)
    assert check_scheduler(HeunDiscreteScheduler()) == "heun"


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(method="picard", scheduler=HeunDiscreteScheduler()), ValueError,
     "Picard iterations need one model call per step"),
    (dict(eta=0.5, method="serial"), ValueError, "eta applies to DDIM steps only"),
    (dict(method="serial", coarse="euler"), ValueError, "coarse applies to method 'srds'"),
    (dict(method="picard", fine="euler", scheduler=DDIMScheduler()), ValueError,
     "fine applies to methods 'serial' and 'srds'"),
    (dict(method="srds", fine=parareal.ScipyIVP()), TypeError, "fixed-step propagator"),
    (dict(method="srds", coarse=3), TypeError, "coarse must be a Propagator"),
    (dict(method="srds", fine="simpson"), ValueError, "unknown propagator"),
    (dict(num_inference_steps=1001), ValueError,
     "num_inference_steps must be <= num_train_timesteps = 1000"),
])
def test_bad_arguments(unet, kwargs, exc, match):
    args = dict(scheduler=EulerDiscreteScheduler(), num_inference_steps=4)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        sample(unet, args.pop("scheduler"), noise((1, 1, 8, 8)), **args)


def test_callback_sees_samples_in_data_units_on_a_ddim_grid():
    sch = DDIMScheduler(clip_sample=False, set_alpha_to_one=False)
    model = GaussianMixture.random(4, 3, seed=5).model(NoiseSchedule.from_scheduler(sch))
    x = noise((3, 4), dtype=torch.float64)
    seen = []
    out = sample(model, sch, x, num_inference_steps=9, method="srds", tol=0, fine="euler",
                 callback=lambda k, s: seen.append(s.clone()))
    assert len(seen) == default_blocks(9) + 1 and torch.equal(seen[-1], out.sample)
