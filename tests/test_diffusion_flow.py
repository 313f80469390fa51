"""Flow matching (issue 20): ``FlowMatchEulerDiscreteScheduler`` in ``sample``,
``sample_pipeline`` (Stable Diffusion 3) and ``parareal sample --scheduler flow``, checked
against diffusers' own loops with real diffusers objects."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from diffusers import (  # noqa: E402
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    FlowMatchEulerDiscreteScheduler,
)
from parareal.adapters.diffusion import sample, sample_pipeline  # noqa: E402
from parareal.adapters.diffusion.flow import FlowGrid, FlowSchedule, with_mu  # noqa: E402

from .conftest import tiny_unet  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def unet():
    return tiny_unet(3)


def diffusers_loop(model, scheduler, x, steps, mu=None):
    """diffusers' own sampling loop on a fresh copy of ``scheduler``."""
    sch = FlowMatchEulerDiscreteScheduler.from_config(scheduler.config)
    sch.set_timesteps(steps, **({} if mu is None else {"mu": mu}))
    with torch.no_grad():
        for t in sch.timesteps:
            x = sch.step(model(x, t.expand(x.shape[0])).sample, t, x).prev_sample
    return x


def noise(n=3, seed=0):
    return torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


CONFIGS = [
    ({}, None),
    ({"shift": 3.0}, None),
    ({"use_dynamic_shifting": True}, 0.8),
    ({"use_dynamic_shifting": True, "time_shift_type": "linear"}, 1.5),
    ({"shift": 3.0, "shift_terminal": 0.1}, None),
    ({"use_karras_sigmas": True}, None),
]


@pytest.mark.parametrize("config, mu", CONFIGS)
@pytest.mark.parametrize("steps", [7, 28])
def test_serial_and_srds_equal_diffusers_loop(unet, config, mu, steps):
    scheduler = FlowMatchEulerDiscreteScheduler(**config)
    x_T = noise()
    ref = diffusers_loop(unet, scheduler, x_T.clone(), steps, mu)
    serial = sample(unet, scheduler, x_T, num_inference_steps=steps, method="serial", mu=mu)
    assert serial.sequential_evals == steps
    assert float((serial.sample - ref).abs().max() / ref.abs().max()) <= 1e-5
    if steps == 28 and config:  # SRDS on every grid at 7 steps (5 blocks), the default at 28:
        return  # it replays the serial sampler's steps, whatever the grid (most of the cost)
    exact = sample(unet, scheduler, x_T, num_inference_steps=steps, method="srds", tol=0,
                   mu=mu)
    torch.testing.assert_close(exact.sample, serial.sample, rtol=0, atol=1e-5)


def test_the_grid_is_the_schedulers(unet):
    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True)
    grid = with_mu(scheduler, 0.6).grid(10)
    assert isinstance(grid, FlowGrid) and grid.steps == 10
    reference = FlowMatchEulerDiscreteScheduler.from_config(scheduler.config)
    reference.set_timesteps(10, mu=0.6)
    assert grid.sigmas.tolist() == reference.sigmas.double().tolist()
    assert grid.sigmas[-1] == 0 and grid.init_scale == 1 and grid.final_scale == 1
    for i, t in enumerate(reference.timesteps):
        assert grid.timestep(grid.sigmas[i]) == float(t)
    assert grid.timestep(0.25) == pytest.approx(250.0)  # off the grid: 1000 sigma
    assert scheduler.timesteps.shape[0] == 1000  # only read: set_timesteps ran on a copy


@pytest.mark.parametrize("fine, coarse", [("heun", None), ("rk4", "heun"), (None, "rk4")])
def test_higher_order_propagators_on_the_flow_grid(unet, fine, coarse):
    scheduler, x_T = FlowMatchEulerDiscreteScheduler(shift=2.0), noise(2)
    serial = sample(unet, scheduler, x_T, num_inference_steps=12, method="serial", fine=fine)
    exact = sample(unet, scheduler, x_T, num_inference_steps=12, method="srds", tol=0,
                   fine=fine, coarse=coarse)
    torch.testing.assert_close(exact.sample, serial.sample, rtol=0, atol=1e-5)
    if fine is not None:  # (with the default fine, the serial sample above is the Euler one)
        euler = sample(unet, scheduler, x_T, num_inference_steps=12, method="serial")
        assert serial.sequential_evals > 12
        assert float((serial.sample - euler.sample).abs().max()) > 0


@pytest.mark.parametrize("method", ["picard", "picard-exact"])
@pytest.mark.parametrize("config, mu", [CONFIGS[0], CONFIGS[2], CONFIGS[5]])
def test_picard_with_tol_0_equals_serial_sampling(unet, method, config, mu):
    scheduler, x_T = FlowMatchEulerDiscreteScheduler(**config), noise(2)
    serial = sample(unet, scheduler, x_T, num_inference_steps=9, method="serial", mu=mu)
    exact = sample(unet, scheduler, x_T, num_inference_steps=9, method=method, tol=0,
                   window=4, mu=mu)
    assert exact.converged and exact.sequential_evals <= 9
    torch.testing.assert_close(exact.sample, serial.sample, rtol=0, atol=1e-5)
    default = sample(unet, scheduler, x_T, num_inference_steps=9, method=method, mu=mu)
    assert default.converged and default.sequential_evals < 9  # noise or data units
    assert float((default.sample - serial.sample).abs().max()) < 0.1


def test_flow_posterior_variance_is_the_ve_one_in_flow_units():
    """Picard's noise-unit tolerance on a flow grid: the variance of an ancestral step between
    the equivalent variance-exploding levels s = sigma / (1 - sigma), times (1 - sigma)^2."""
    grid = with_mu(FlowMatchEulerDiscreteScheduler(shift=3.0), None).grid(8)
    variances = [grid.posterior_variance(i) for i in range(8)]
    assert variances[0] == pytest.approx(float(grid.sigmas[1]) ** 2)  # from pure noise
    assert variances[-1] == 0  # to sigma = 0
    for i in range(1, 7):
        s0, s1 = (float(v) for v in grid.sigmas[i:i + 2])
        v0, v1 = s0 / (1 - s0), s1 / (1 - s1)
        assert variances[i] == pytest.approx((1 - s1) ** 2 * v1**2 * (v0**2 - v1**2) / v0**2)
        assert 0 < variances[i] < s1**2


def test_errors_name_the_argument(unet):
    x_T = noise(1)
    flow = FlowMatchEulerDiscreteScheduler()
    dynamic = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True)
    with pytest.raises(ValueError, match="mu is required"):
        sample(unet, dynamic, x_T, num_inference_steps=4, method="serial")
    with pytest.raises(ValueError, match="mu applies with use_dynamic_shifting=True only"):
        sample(unet, flow, x_T, num_inference_steps=4, method="serial", mu=0.5)
    with pytest.raises(ValueError, match="mu applies to FlowMatchEulerDiscreteScheduler"):
        sample(unet, DDIMScheduler(), x_T, num_inference_steps=4, method="serial", mu=0.5)
    with pytest.raises(ValueError, match="mu must be finite"):
        sample(unet, dynamic, x_T, num_inference_steps=4, method="serial", mu=float("nan"))
    with pytest.raises(TypeError, match="mu must be"):
        sample(unet, dynamic, x_T, num_inference_steps=4, method="serial", mu="1")
    for option in ("stochastic_sampling", "invert_sigmas"):
        with pytest.raises(ValueError, match=option):
            sample(unet, FlowMatchEulerDiscreteScheduler(**{option: True}), x_T,
                   num_inference_steps=4, method="serial")
    with pytest.raises(ValueError, match="eta"):
        sample(unet, flow, x_T, num_inference_steps=4, method="serial", eta=0.5)
    with pytest.raises(TypeError, match="FlowMatchEulerDiscreteScheduler") as info:
        sample(unet, DPMSolverMultistepScheduler(), x_T, num_inference_steps=4)
    assert "DDIMScheduler" in str(info.value) and "EulerDiscreteScheduler" in str(info.value)
    with pytest.raises(ValueError, match="bound to mu"):
        with_mu(FlowSchedule.from_scheduler(dynamic, 0.5), 0.7)


def test_auto_runs_on_a_dynamically_shifted_flow_scheduler(unet):
    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True)
    x_T = noise(2)
    out = sample(unet, scheduler, x_T, num_inference_steps=9, method="auto", mu=0.9)
    serial = sample(unet, scheduler, x_T, num_inference_steps=9, method="serial", mu=0.9)
    assert out.method in ("serial", "srds") and out.reason
    torch.testing.assert_close(out.sample, serial.sample, rtol=0, atol=1e-2)


# -- the bundled flow-matching digits model --------------------------------------------------

@pytest.fixture(scope="module")
def flow_model():
    pytest.importorskip("safetensors")
    from parareal.adapters.diffusion.digits import load_digits_flow_model

    return load_digits_flow_model()


@pytest.fixture(scope="module")
def flow_serial_28(flow_model, tmp_path_factory):
    """64 noises (seed 2) and their serial 28-step samples: the digits of the quality test,
    and the serial reference of the first 4 for the SRDS test at 28 steps. Computed once per
    session, also when xdist runs the two tests on different workers (float32 values
    survive the JSON round trip exactly)."""
    from .session_once import once_per_session

    unet, scheduler = flow_model
    x_T = noise(64, seed=2)

    def serial():
        return sample(unet, scheduler, x_T, num_inference_steps=28,
                      method="serial").sample.tolist()

    return x_T, torch.tensor(once_per_session(tmp_path_factory, "flow_serial_28", serial),
                             dtype=torch.float32)


# 50 steps, not 100: measured 23 sequential calls of 50 (3 iterations), 28 of 100 at twice the cost;
# 4 samples at 28 steps, not 8: measured 17 sequential calls (19 for 8) and a largest difference
# of 0.02 of a pixel level (the bound is 2), at half the cost
@pytest.mark.parametrize("steps,n", [(28, 4), (50, 2)])
def test_srds_needs_fewer_sequential_calls_than_steps(flow_model, flow_serial_28, steps, n):
    unet, scheduler = flow_model
    if steps == 28:  # the serial samples of the quality test (batch size changes round-off only)
        x_T, serial = (x[:n] for x in flow_serial_28)
    else:
        x_T = noise(n, seed=1)
        serial = sample(unet, scheduler, x_T, num_inference_steps=steps, method="serial").sample
    srds = sample(unet, scheduler, x_T, num_inference_steps=steps, method="srds")
    assert srds.converged and srds.sequential_evals < steps
    assert float((srds.sample - serial).abs().max()) <= 2 / 255


def test_the_bundled_flow_model_draws_digits(flow_serial_28):
    from parareal.adapters.diffusion.digits import sample_quality

    quality = sample_quality(flow_serial_28[1])
    assert quality["confidence"] > 0.8 and quality["frechet_distance"] < 40
    assert min(quality["predicted_classes"]) >= 1  # every digit appears


def test_cli_samples_the_flow_model(tmp_path, capsys):
    from parareal.cli import main

    out = tmp_path / "flow.png"
    # 2 samples, not 4: the same 14 sequential calls of 20 and 0.006 of a pixel level from the
    # serial sample (0.02 with 4), at about half the cost
    argv = ["sample", "--scheduler", "flow", "--method", "srds", "--steps", "20", "--n", "2",
            "--shift", "2", "--out", str(out), "--compare-serial", "--json"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["scheduler"] == "flow" and summary["shift"] == 2.0 and out.is_file()
    assert summary["sequential_evals"] < 20 and summary["max_abs_diff_vs_serial"] < 2 / 255
    assert main(["sample", "--scheduler", "flow", "--method", "serial", "--steps", "5",
                 "--n", "2", "--mu", "0.5", "--out", str(out)]) == 0
    assert "flow-matching Euler steps" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--scheduler", "ddim", "--mu", "1"], "--mu applies to --scheduler flow"),
    (["--scheduler", "euler", "--shift", "2"], "--shift applies to --scheduler flow"),
    (["--scheduler", "flow", "--shift", "0"], "--shift must be a finite number > 0"),
    (["--scheduler", "heun", "--method", "picard"], "one model call per step"),
])
def test_cli_flow_errors(tmp_path, capsys, argv, message):
    from parareal.cli import main

    assert main(["sample", *argv, "--out", str(tmp_path / "x.png")]) == 2
    assert message in capsys.readouterr().err


# -- Stable Diffusion 3 ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def sd3_folder(tmp_path_factory):
    pytest.importorskip("transformers")
    return tmp_path_factory.mktemp("sd3")


def sd3(folder, **config):
    from .tiny_pipelines import tiny_sd3_pipeline

    return tiny_sd3_pipeline(folder, **config)


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("config", [{}, {"use_dynamic_shifting": True}])
@pytest.mark.parametrize("guidance_scale", [7.0, 1.0])
def test_sd3_pipeline_equals_its_own_call(sd3_folder, config, guidance_scale):
    pipe = sd3(sd3_folder, **config)
    prompt, steps = ["a photo of a cat", "a blue dog"], 10
    ref = pipe(prompt, num_inference_steps=steps, guidance_scale=guidance_scale,
               generator=seeded(), output_type="np").images
    for method, options in (("serial", {}), ("srds", {"tol": 0}), ("srds", {})):
        out = sample_pipeline(pipe, prompt, num_inference_steps=steps, method=method,
                              guidance_scale=guidance_scale, generator=seeded(),
                              output_type="np", **options)
        assert out.images.shape == ref.shape
        limit = 0 if method == "serial" else 1e-5
        assert float(np.abs(out.images - ref).max()) <= limit, (method, options)


def test_sd3_pipeline_latents_negative_prompt_and_mu(sd3_folder):
    pipe = sd3(sd3_folder, use_dynamic_shifting=True)
    kwargs = dict(num_inference_steps=6, negative_prompt="red", num_images_per_prompt=2)
    ref = pipe("a cat", output_type="latent", mu=0.3, generator=seeded(1), **kwargs).images
    out = sample_pipeline(pipe, "a cat", method="serial", output_type="latent", mu=0.3,
                          generator=seeded(1), **kwargs)
    assert ref.shape[0] == 2
    torch.testing.assert_close(out.images, ref, rtol=0, atol=0)
    assert out.result.sequential_evals == 6 and out.result.total_evals == 12
    default = sample_pipeline(pipe, "a cat", method="serial", output_type="latent",
                              generator=seeded(1), **kwargs)
    assert float((default.images - ref).abs().max()) > 0  # the pipeline's own mu differs
    with pytest.raises(ValueError, match="mu applies with use_dynamic_shifting=True only"):
        sample_pipeline(sd3(sd3_folder), "a cat", method="serial", mu=0.3, **kwargs)


def test_flow_training_script_tiny_run(tmp_path, monkeypatch, capsys):
    """The script's ``main`` in this process (its output files are the point, not the
    process: torch and diffusers are not imported again in a fresh interpreter)."""
    from pathlib import Path

    from parareal.adapters.diffusion.digits import load_digits_flow_model

    from tests.inprocess import run_main

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "model"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    status = run_main(root / "examples" / "train_digits_flow.py", "--quick", "--steps", "2",
                      "--out", str(out))
    assert status == 0, capsys.readouterr().err
    assert {p.name for p in out.iterdir()} == {"digits_flow.safetensors", "digits_flow.json"}
    config = json.loads((out / "digits_flow.json").read_text())
    assert "serial_euler5_16" in config["training"]["sample_quality"]
    unet, scheduler = load_digits_flow_model(out / "digits_flow.safetensors")
    assert type(scheduler).__name__ == "FlowMatchEulerDiscreteScheduler"
