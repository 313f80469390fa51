"""Picard with Anderson acceleration (``anderson=``): exactness, fewer sequential calls, the
causal mixing itself, and bad input."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from diffusers import DDIMScheduler  # noqa: E402
from parareal.adapters.diffusion import GaussianMixture, NoiseSchedule, sample  # noqa: E402
from parareal.adapters.diffusion.anderson import PrefixAnderson  # noqa: E402
from parareal.adapters.diffusion.digits import load_digits_model  # noqa: E402


def mixture(seed: int = 4, dim: int = 5):
    sch = DDIMScheduler(clip_sample=False, timestep_spacing="linspace")
    return GaussianMixture.random(dim, 3, seed=seed).model(NoiseSchedule.from_scheduler(sch)), sch


def noise(shape, seed=0, dtype=torch.float64):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("window", [1, 7, 30])
@pytest.mark.parametrize("memory", [1, 3])
def test_tol_zero_reproduces_serial(window, memory):
    model, sch = mixture()
    x = noise((2, 5))
    ser = sample(model, sch, x, num_inference_steps=30, method="serial").sample
    out = sample(model, sch, x, num_inference_steps=30, method="picard", window=window, tol=0,
                 anderson=memory)
    assert out.converged and out.iterations <= 30
    assert float((out.sample - ser).abs().max()) <= 1e-12 * float(ser.abs().max())


def test_fewer_sequential_calls_at_the_same_tolerance_on_the_digits_model():
    torch.set_num_threads(1)
    unet, sch = load_digits_model()
    xs = [noise((1, 1, 8, 8), seed=seed, dtype=torch.float32) for seed in range(2)]
    # one serial run for both references: the 50 sequential calls are most of the test's cost,
    # and batching moves a sample by float32 round-off only (~1e-6, far below the 2e-4 bound)
    serial = sample(unet, sch, torch.cat(xs), num_inference_steps=50, method="serial").sample
    for x, ser in zip(xs, serial.split(1)):
        runs = {m: sample(unet, sch, x, num_inference_steps=50, method="picard", window=50,
                          tol=1e-4, tol_mode="data", anderson=m) for m in (None, 3)}
        assert all(r.converged for r in runs.values())
        assert runs[3].sequential_evals < runs[None].sequential_evals
        for r in runs.values():
            assert float((r.sample - ser).abs().max()) < 2e-4


def test_a_chunked_batch_equals_the_whole_batch():
    """Each sample mixes with its own coefficients: splitting the batch changes nothing."""
    model, sch = mixture(seed=1, dim=6)
    x = noise((4, 6), seed=3)
    whole = sample(model, sch, x, num_inference_steps=40, method="picard", window=40,
                   tol=1e-8, tol_mode="data", anderson=3)
    split = sample(model, sch, x, num_inference_steps=40, method="picard", window=40,
                   tol=1e-8, tol_mode="data", anderson=3, max_batch=1)
    assert len(split.chunks) == 4
    for i, chunk in enumerate(split.chunks):
        alone = sample(model, sch, x[i:i + 1], num_inference_steps=40, method="picard",
                       window=40, tol=1e-8, tol_mode="data", anderson=3)
        assert torch.equal(chunk.sample, alone.sample)
    assert float((whole.sample - split.sample).abs().max()) < 1e-7


def test_mixing_is_causal_and_keeps_the_first_point():
    """A point's update depends only on the points before it; the first point is G's."""
    acc = PrefixAnderson(2)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(5, 2, 3, generator=g, dtype=torch.float64)
    acc.update(1, x0, x0 + 0.1 * torch.randn(5, 2, 3, generator=g, dtype=torch.float64))
    x1 = torch.randn(5, 2, 3, generator=g, dtype=torch.float64)
    g1 = x1 + 0.05 * torch.randn(5, 2, 3, generator=g, dtype=torch.float64)
    twin = PrefixAnderson(2)
    twin.history, twin.previous = list(acc.history), acc.previous
    out = acc.update(1, x1, g1)
    assert torch.equal(out[0], g1[0]) and not torch.equal(out, g1)
    # change the last point's inputs only: the earlier points' outputs stay bit for bit
    x2, g2 = x1.clone(), g1.clone()
    x2[-1] += 1.0
    g2[-1] -= 1.0
    other = twin.update(1, x2, g2)
    assert torch.equal(other[:-1], out[:-1]) and not torch.equal(other[-1], out[-1])


@pytest.mark.parametrize(
    ("memory", "error"), [(0, ValueError), (2.0, TypeError), (True, TypeError)])
def test_bad_memory_is_refused(memory, error):
    with pytest.raises(error, match="memory"):
        PrefixAnderson(memory)


def test_no_history_or_non_finite_mixing_falls_back_to_picard():
    acc = PrefixAnderson(3)
    x = torch.zeros(4, 1, 2)
    g = torch.ones(4, 1, 2)
    assert torch.equal(acc.update(1, x, g), g)  # no history yet
    x2 = torch.full((4, 1, 2), float("nan"))
    assert torch.equal(acc.update(1, x2, g), g)  # NaN differences: plain Picard update


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(method="srds", anderson=2), ValueError,
         "anderson applies to methods 'picard' and 'picard-exact'"),
        (dict(method="picard", anderson=0), ValueError, "anderson"),
        (dict(method="picard", anderson=1.5), TypeError, "anderson"),
    ],
)
def test_bad_anderson_is_refused(kwargs, error, match):
    model, sch = mixture()
    with pytest.raises(error, match=match):
        sample(model, sch, noise((1, 5)), num_inference_steps=10, **kwargs)
