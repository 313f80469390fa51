"""Exact Picard (``method="picard-exact"``): ``tol = 0`` gives the serial sample, the data-unit
guarantee, the secant update's exactness, ``auto`` considers it, and bad options."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from diffusers import EulerDiscreteScheduler, HeunDiscreteScheduler  # noqa: E402
from parareal.adapters.diffusion import auto, sample  # noqa: E402
from parareal.adapters.diffusion.digits import load_digits_model, to_uint8  # noqa: E402
from parareal.adapters.diffusion.methods import REGISTRY, ExactPicard  # noqa: E402
from parareal.adapters.diffusion.secant import LAMBDA_MAX, SecantSweep  # noqa: E402

from .test_diffusion_anderson import mixture, noise  # noqa: E402  (the same mixture model)


@pytest.fixture(scope="module")
def digits():
    torch.set_num_threads(1)
    return load_digits_model()


# -- tol = 0 gives the serial sample --------------------------------------------------------------


@pytest.mark.parametrize("window,anderson", [(None, None), (7, None), (1, None), (None, 3)])
def test_tol_zero_is_bitwise_serial_on_the_mixture(window, anderson):
    """Elementwise model: batching changes no bit, and at the fixed point every point *is* its
    predecessor's DDIM step, so the sample is bitwise the serial one."""
    model, sch = mixture()
    x = noise((3, 5))
    ser = sample(model, sch, x, num_inference_steps=30, method="serial")
    out = sample(model, sch, x, num_inference_steps=30, method="picard-exact", tol=0,
                 window=window, anderson=anderson)
    assert out.converged and out.iterations <= 30 and out.method == "picard-exact"
    assert torch.equal(out.sample, ser.sample)
    if window == 1:
        assert out.iterations == 30 and out.total_evals == 30


def test_tol_zero_reproduces_serial_on_the_digits_model_to_its_own_round_off(digits):
    unet, sch = digits
    x = noise((2, 1, 8, 8), dtype=torch.float32)
    ser = sample(unet, sch, x, num_inference_steps=20, method="serial").sample
    # the sampler's own sensitivity to float32 round-off: the same samples in a larger batch
    wider = sample(unet, sch, torch.cat([x, x.flip(0)]), num_inference_steps=20,
                   method="serial").sample[:2]
    own = max(float((wider - ser).abs().max()), 1e-6)
    out = sample(unet, sch, x, num_inference_steps=20, method="picard-exact", tol=0)
    assert out.converged and out.sample.dtype == torch.float32
    assert float((out.sample - ser).abs().max()) <= 4 * own


# -- the data-unit guarantee ----------------------------------------------------------------------


def test_error_shrinks_with_tol_on_the_mixture():
    model, sch = mixture(seed=1, dim=6)
    x = noise((4, 6), seed=2)
    ser = sample(model, sch, x, num_inference_steps=60, method="serial").sample
    errors, calls = [], []
    for tol in (1e-2, 1e-4, 1e-6, 1e-9):
        out = sample(model, sch, x, num_inference_steps=60, method="picard-exact", tol=tol)
        assert out.converged
        errors.append(float((out.sample - ser).abs().max()))
        calls.append(out.sequential_evals)
        assert errors[-1] <= 10 * tol
    assert calls == sorted(calls) and calls[-1] < 60
    assert errors[-1] <= errors[0]


def test_default_is_the_serial_sample_to_8_bit_pixels_on_the_digits_model(digits):
    unet, sch = digits
    same = total = 0
    xs = [noise((2, 1, 8, 8), seed=seed, dtype=torch.float32) for seed in range(3)]
    # one serial run for the three references (its 25 sequential calls dominate the cost);
    # batching moves a sample by float32 round-off only, far below half a pixel level
    serial = sample(unet, sch, torch.cat(xs), num_inference_steps=25, method="serial").sample
    for x, ser in zip(xs, serial.split(2)):
        ser = to_uint8(ser)
        out = sample(unet, sch, x, num_inference_steps=25, method="picard-exact")
        assert out.converged and out.sequential_evals < 25
        got = to_uint8(out.sample)
        assert int(np.abs(got.astype(int) - ser.astype(int)).max()) <= 1
        same += int((got == ser).sum())
        total += got.size
    assert same / total >= 0.99


def test_a_chunked_batch_agrees_with_the_whole_batch():
    """Slopes are per sample; the window slides on the chunk's worst sample, so chunks may stop
    at other iterations: the samples agree to the tolerance, and bitwise with ``tol = 0``."""
    model, sch = mixture(seed=1, dim=6)
    x = noise((4, 6), seed=3)
    for tol, bound in ((1e-8, 1e-7), (0.0, 0.0)):
        whole = sample(model, sch, x, num_inference_steps=40, method="picard-exact", tol=tol)
        split = sample(model, sch, x, num_inference_steps=40, method="picard-exact", tol=tol,
                       max_batch=1)
        assert len(split.chunks) == 4
        assert float((whole.sample - split.sample).abs().max()) <= bound


# -- the secant update ----------------------------------------------------------------------------


def test_first_point_is_its_step_and_a_fixed_point_is_kept():
    sweep = SecantSweep(4)
    x = noise((4, 2, 3), seed=1)
    phi = noise((4, 2, 3), seed=2)
    new = sweep.update(0, x, phi)
    assert torch.equal(new[0], phi[0])  # x_b has converged: no correction
    # Picard's update when there is no history: x'_{j+1} = phi_j + (x'_j - x_j)
    torch.testing.assert_close(new[1], phi[1] + (new[0] - x[1]))
    # at the fixed point (x_{j+1} = phi_j) the update returns phi itself, bit for bit
    fixed = torch.cat([x[:1], phi[:-1]])
    sweep.moves(0, phi - fixed[1:].new_zeros(()).expand_as(phi))
    assert torch.equal(sweep.update(0, fixed, phi), phi)


def test_slopes_are_secants_clipped():
    sweep = SecantSweep(3)
    x = torch.zeros(3, 1, 2)
    sweep.update(0, x, torch.zeros(3, 1, 2))
    sweep.moves(0, torch.ones(3, 1, 2))
    x2 = torch.ones(3, 1, 2)
    phi2 = torch.stack([0.5 * torch.ones(1, 2), 5.0 * torch.ones(1, 2), -torch.ones(1, 2)])
    lam = sweep.slopes(0, x2, phi2)
    assert lam[0].item() == 1.0  # the first point never moves: Picard's slope
    assert lam[1].item() == LAMBDA_MAX and lam[2].item() == 0.0


# -- auto -----------------------------------------------------------------------------------------


def test_auto_considers_it_among_the_exact_methods(monkeypatch):
    assert "picard-exact" in auto.EXACT_METHODS and REGISTRY["picard-exact"].exact
    model, sch = mixture()
    x = noise((2, 5))
    # a fixed cost per call: the fewest sequential calls win
    monkeypatch.setattr(auto, "_time_call", lambda fn, xx, t: 1.0 + 1e-6 * xx.shape[0])
    monkeypatch.setattr(auto, "PREDICT_EXACT_PICARD", False)
    auto.clear_cache()
    off = sample(model, sch, x, num_inference_steps=100, method="auto")
    assert "picard-exact" not in off.predicted_s and off.method == "srds"  # switched off
    monkeypatch.setattr(auto, "PREDICT_EXACT_PICARD", True)  # the default
    auto.clear_cache()
    on = sample(model, sch, x, num_inference_steps=100, method="auto")
    assert "picard-exact" in on.predicted_s and on.method == "picard-exact"
    assert "picard-exact: 10 calls over the whole grid (estimate)" in on.reason
    direct = sample(model, sch, x, num_inference_steps=100, method="picard-exact")
    assert torch.equal(direct.sample, on.sample)
    # serial wins where a call costs in proportion to its rows
    monkeypatch.setattr(auto, "_time_call", lambda fn, xx, t: 0.1 * xx.shape[0])
    auto.clear_cache()
    assert sample(model, sch, x, num_inference_steps=100, method="auto").method == "serial"
    auto.clear_cache()


def test_auto_plan():
    assert [auto.exact_picard_iterations(n) for n in (1, 5, 25, 100, 1000)] == [1, 5, 10, 10, 12]
    rows = auto.exact_picard_rows(100, 10)
    assert len(rows) == 10 and rows[:5] == (100,) * 5 and rows == tuple(sorted(rows, reverse=True))
    assert min(rows) >= 1


# -- bad options ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        (dict(window=0), ValueError, "window"),
        (dict(anderson=0), ValueError, "anderson"),
        (dict(tol=-1.0), ValueError, "tol"),
        (dict(max_iters=0), ValueError, "max_iters"),
        (dict(callback=3), TypeError, "callback must be callable"),
        (dict(tol_mode="noise"), ValueError,
         "tol_mode applies to methods 'srds' and 'picard', not to method 'picard-exact'"),
        (dict(blocks=3), ValueError, "blocks applies to method 'srds' only"),
    ],
)
def test_bad_options(kwargs, error, message):
    model, sch = mixture()
    with pytest.raises(error, match=message):
        sample(model, sch, noise((1, 5)), num_inference_steps=10, method="picard-exact", **kwargs)


def test_one_model_call_per_step_only():
    model, _ = mixture()
    with pytest.raises(ValueError, match="Picard iterations need one model call per step"):
        sample(model, HeunDiscreteScheduler(), noise((1, 5)), num_inference_steps=10,
               method="picard-exact")


def test_euler_steps_with_tol_0_give_the_serial_sample():
    model, _ = mixture()
    scheduler, x_T = EulerDiscreteScheduler(), noise((2, 5))
    serial = sample(model, scheduler, x_T, num_inference_steps=12, method="serial")
    exact = sample(model, scheduler, x_T, num_inference_steps=12, method="picard-exact", tol=0)
    assert exact.converged and exact.sequential_evals <= 12
    torch.testing.assert_close(exact.sample, serial.sample, rtol=0, atol=1e-5)


def test_options_and_defaults():
    m = ExactPicard(100)
    assert m.window == 100 and m.mode == "data" and m.tol == 3e-4 and m.exact
    assert m.rows_per_call == 100 and m.states_kept == 3 * 100 + 1 + 200
    assert ExactPicard(100, window=500).window == 100
    assert ExactPicard.options() == ("window", "anderson", "tol", "max_iters", "callback")
