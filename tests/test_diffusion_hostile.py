"""Hostile input to ``sample`` (issue 18): refused before any model call with an error naming
the argument, or sampled correctly -- never a deep traceback, a hang or a silent NaN."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from diffusers import DDIMScheduler, EulerDiscreteScheduler  # noqa: E402
from parareal.adapters.diffusion import (  # noqa: E402
    GaussianMixture,
    NoiseSchedule,
    check_seed,
    sample,
)

from .conftest import tiny_unet  # noqa: E402


@pytest.fixture(scope="module")
def unet():
    return tiny_unet()


@pytest.fixture(scope="module")
def mixture():
    schedule = NoiseSchedule.build()
    return GaussianMixture.random(3, 2, seed=3).model(schedule), schedule


class Counted:
    """A model that counts its calls (to show that a refusal came before any work)."""

    def __init__(self, model):
        self.model, self.calls = model, 0

    def __call__(self, x, t):
        self.calls += 1
        return self.model(x, t)


def noise(shape, seed=0, dtype=torch.float32):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        # eta above 1 made every DDIM step's sqrt(1 - alpha_prev - sigma**2) NaN: DIVERGED
        (dict(eta=1.5), ValueError, r"eta must be in \[0, 1\]"),
        (dict(eta=1.0000001, method="serial"), ValueError, r"eta must be in \[0, 1\]"),
        (dict(eta=-0.1), ValueError, "eta must be >= 0"),
        (dict(eta=float("nan")), ValueError, "eta must be finite"),
        (dict(eta=float("inf")), ValueError, "eta must be finite"),
        (dict(eta="0.5"), TypeError, "eta must be a real number"),
        (dict(eta=None), TypeError, "eta must be a real number"),
        (dict(eta=True), TypeError, "eta must be a real number"),
        (dict(x_T=torch.empty(2, 1, 8, 8, device="meta")), ValueError, "x_T is on the meta"),
        (dict(x_T=noise((2, 1, 8, 8)).to_sparse()), TypeError, "x_T must be a dense"),
        (dict(x_T=torch.zeros(2, 1, 8, 8, dtype=torch.complex64)), TypeError, "x_T must be a "
         "floating tensor"),
        (dict(x_T=torch.zeros(2, 1, 8, 8, dtype=torch.int32)), TypeError, "x_T must be a "
         "floating tensor"),
        (dict(x_T=torch.tensor(1.0)), TypeError, "x_T must be a floating tensor with a batch"),
        (dict(x_T=torch.full((2, 1, 8, 8), float("inf"))), ValueError, "x_T contains NaN or inf"),
        (dict(x_T=[[0.0]]), TypeError, "x_T must be a torch.Tensor"),
        (dict(num_inference_steps=0), ValueError, "num_inference_steps must be >= 1"),
        (dict(num_inference_steps=-5), ValueError, "num_inference_steps must be >= 1"),
        (dict(num_inference_steps=10**9), ValueError, "num_inference_steps must be <= "
         "num_train_timesteps = 1000"),
        (dict(num_inference_steps="10"), TypeError, "num_inference_steps"),
        (dict(num_inference_steps=10.0), TypeError, "num_inference_steps"),
        (dict(max_batch=-1), ValueError, "max_batch must be >= 1"),
        (dict(max_batch="2"), TypeError, "max_batch"),
        (dict(blocks=10**9), ValueError, "blocks must be <= num_inference_steps"),
        (dict(tol=float("nan")), ValueError, "tol must be finite"),
        (dict(tol="1e-3"), TypeError, "tol must be a real number"),
        (dict(progress="yes"), TypeError, "progress must be True or False"),
        (dict(generator="seed"), TypeError, "generator must be a torch.Generator"),
        (dict(backend="nope"), ValueError, "unknown backend 'nope'"),
        (dict(callback=1), TypeError, "callback must be callable"),
        (dict(guidance_scale=float("nan")), ValueError, "guidance_scale must be finite"),
    ],
)
def test_refused_before_any_model_call(unet, kwargs, exc, match):
    model = Counted(unet)
    args = dict(x_T=noise((2, 1, 8, 8)), num_inference_steps=10, method="srds",
                generator=torch.Generator().manual_seed(1))
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        sample(model, DDIMScheduler(), args.pop("x_T"), **args)
    assert model.calls == 0


def test_eta_one_is_still_allowed_and_finite(mixture):
    model, schedule = mixture
    out = sample(model, schedule, noise((2, 3), dtype=torch.float64), num_inference_steps=8,
                 method="srds", eta=1.0, generator=torch.Generator().manual_seed(0))
    assert out.converged and bool(torch.isfinite(out.sample).all())


def test_huge_bounds_are_clamped_not_worked_through(mixture):
    """max_batch, window, max_iters and anderson far above what a run can use are bounded by
    the batch and the steps: the run does the work of the defaults' bound, no more."""
    model, schedule = mixture
    counted = Counted(model)
    x = noise((3, 3), dtype=torch.float64)
    out = sample(counted, schedule, x, num_inference_steps=6, method="picard", window=10**9,
                 max_iters=10**9, anderson=10**9, max_batch=10**18)
    assert out.converged and out.max_batch == 3 and out.iterations <= 6 and counted.calls <= 6
    out = sample(model, schedule, x, num_inference_steps=6, method="srds", max_iters=10**9)
    assert out.converged and out.iterations <= out.blocks


class Mutating:
    """A model that writes into its input before computing (as ``x.mul_(0.5)`` would)."""

    def __init__(self, model, how):
        self.model, self.how = model, how

    def __call__(self, x, t):
        if self.how == "mul":
            x.mul_(0.5)
        else:
            x.add_(1.0)
        t.add_(0)  # writes into t too (a no-op value, a real in-place call)
        return self.model(x, t)


@pytest.mark.parametrize("how", ["mul", "add"])
@pytest.mark.parametrize("method,scheduler", [("serial", "ddim"), ("srds", "ddim"),
                                              ("picard", "ddim"), ("serial", "euler"),
                                              ("srds", "euler")])
def test_a_model_writing_into_its_input_changes_neither_x_T_nor_the_sample(
        mixture, how, method, scheduler):
    model, schedule = mixture
    sched = schedule if scheduler == "ddim" else EulerDiscreteScheduler()
    mutating = Mutating(model, how)

    def copying(x, t):  # the same model, handed copies
        return mutating(x.clone(), t.clone())

    x = noise((2, 3), dtype=torch.float64)
    keep = x.clone()
    got = sample(mutating, sched, x, num_inference_steps=8, method=method)
    assert torch.equal(x, keep)  # the caller's x_T, bit for bit
    ref = sample(copying, sched, x, num_inference_steps=8, method=method)
    assert torch.equal(got.sample, ref.sample)
    assert got.sequential_evals == ref.sequential_evals


def test_a_unet_writing_into_its_input_changes_no_state(unet):
    original = unet.forward

    def forward(sample_, timestep, *args, **kwargs):
        sample_.mul_(0.5)
        return original(sample_, timestep, *args, **kwargs)

    x = noise((2, 1, 8, 8))
    keep = x.clone()
    clean = sample(unet, DDIMScheduler(), x, num_inference_steps=6, method="srds", tol=0.0)
    unet.forward = forward
    try:
        got = sample(unet, DDIMScheduler(), x, num_inference_steps=6, method="srds", tol=0.0)
    finally:
        del unet.forward
    assert torch.equal(x, keep)

    def halved(x_, t):
        return unet(x_ * 0.5, t).sample

    ref = sample(halved, DDIMScheduler(), x, num_inference_steps=6, method="srds", tol=0.0)
    assert torch.equal(got.sample, ref.sample) and not torch.equal(got.sample, clean.sample)


@pytest.mark.parametrize("method", ["srds", "picard"])
def test_model_errors_name_samples_options_not_vectorized(mixture, method):
    model, schedule = mixture
    calls = []

    def two_rows_only(x, t):
        calls.append(x.shape[0])
        if x.shape[0] > 2:
            raise RuntimeError("this model takes at most 2 rows")
        return model(x, t)

    x = noise((2, 3), dtype=torch.float64)
    with pytest.raises(RuntimeError, match="at most 2 rows") as info:
        sample(two_rows_only, schedule, x, num_inference_steps=8, method=method)
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "vectorized" not in notes
    assert "max_batch=1" in notes and "method='serial'" in notes
    assert calls[0] > 2 and f"x of shape ({calls[0]}, 3)" in notes
    assert len(calls) == 1  # never called again: not on a single state, not by a worker
    # what the note says works
    out = sample(two_rows_only, schedule, noise((3, 3), dtype=torch.float64),
                 num_inference_steps=8, method="serial", max_batch=1)
    assert out.converged and out.sample.shape == (3, 3)


def test_wrong_model_output_notes_the_call(mixture):
    _, schedule = mixture

    def flat(x, t):
        return torch.zeros(x.shape[0], 5, dtype=x.dtype)

    with pytest.raises(ValueError, match="must return the prediction") as info:
        sample(flat, schedule, noise((2, 3)), num_inference_steps=4, method="srds")
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "vectorized" not in notes and "max_batch=1" in notes


@pytest.mark.parametrize("seed,exc,match", [
    (2**64, ValueError, r"seed must be in \[0, 2\*\*64 - 1\]"),
    (2**70, ValueError, r"seed must be in \[0, 2\*\*64 - 1\]"),
    (-1, ValueError, r"seed must be in \[0, 2\*\*64 - 1\]"),
    (1.5, TypeError, "seed must be an int"),
    ("3", TypeError, "seed must be an int"),
    (True, TypeError, "seed must be an int"),
])
def test_seed_out_of_torch_range(seed, exc, match):
    with pytest.raises(exc, match=match):
        check_seed(seed)
    with pytest.raises(exc, match=match):
        GaussianMixture.random(3, 2, seed=seed)


def test_seed_range_ends_are_generators():
    for seed in (0, 2**64 - 1):
        assert check_seed(seed) == seed
        assert GaussianMixture.random(2, 2, seed=seed).dim == 2
