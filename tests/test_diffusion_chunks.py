"""Large batches are sampled in chunks of at most ``max_batch`` (item 6 of issue 7)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from diffusers import DDIMScheduler, UNet2DConditionModel  # noqa: E402
from parareal.adapters.diffusion import (  # noqa: E402
    CALL_BUDGET_BYTES,
    GaussianMixture,
    NoiseSchedule,
    default_blocks,
    sample,
)

from parareal import Status  # noqa: E402

from .conftest import tiny_unet  # noqa: E402


def noise(shape, seed=0, dtype=torch.float64):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


class Counting:
    """A model that records the batch size of every call."""

    def __init__(self, model):
        self.model, self.sizes = model, []

    def __call__(self, x, t):
        self.sizes.append(x.shape[0])
        return self.model(x, t)


def mixture(dim=4, seed=0, **settings):
    sch = DDIMScheduler(clip_sample=False, **settings)
    return GaussianMixture.random(dim, 3, seed=seed).model(NoiseSchedule.from_scheduler(sch)), sch


@pytest.fixture(scope="module")
def unet():
    return tiny_unet()


def test_serial_chunks_are_bitwise_the_unsplit_sample_on_a_batch_invariant_model():
    model, sch = mixture()
    x = noise((8, 4))
    whole = sample(model, sch, x, num_inference_steps=12, method="serial")
    counting = Counting(model)
    split = sample(counting, sch, x, num_inference_steps=12, method="serial", max_batch=3)
    assert sorted(set(counting.sizes)) == [2, 3] and len(counting.sizes) == 3 * 12
    assert counting.sizes[:12] == [3] * 12 and counting.sizes[-12:] == [2] * 12
    assert torch.equal(split.sample, whole.sample)
    assert split.max_batch == 3 and [c.sample.shape[0] for c in split.chunks] == [3, 3, 2]
    assert split.sequential_evals == 36 and split.total_evals == 12 and split.iterations == 0
    assert split.status is Status.CONVERGED and split.converged and split.stats is None
    # the chunks' samples are views of the whole sample
    assert split.chunks[1].sample.data_ptr() == split.sample[3:].data_ptr()


def test_automatic_chunks_bound_the_model_calls_and_keep_the_result():
    # 64 float64 features = 512 bytes a state: serial calls hold at most 1024 states
    model, sch = mixture(dim=64, seed=1)
    x = noise((2500, 64), seed=1)
    counting = Counting(model)
    split = sample(counting, sch, x, num_inference_steps=3, method="serial")
    assert CALL_BUDGET_BYTES // 512 == 1024
    assert counting.sizes == [834] * 3 + [833] * 6  # 3 chunks, as equal as possible
    whole = sample(model, sch, x, num_inference_steps=3, method="serial", max_batch=2500)
    assert torch.equal(split.sample, whole.sample) and whole.chunks == ()
    # a small request stays whole
    small = Counting(model)
    sample(small, sch, x[:16], num_inference_steps=3, method="serial")
    assert small.sizes == [16] * 3


def test_automatic_chunks_shrink_with_the_states_per_call():
    # SRDS stacks at most B + 4 states per sample in one call: chunks of 2**19 / (8 (B + 4))
    calls = default_blocks(100) + 4
    model, sch = mixture(dim=8, seed=2)
    x = noise((1000, 8), seed=2)
    counting = Counting(model)
    out = sample(counting, sch, x, num_inference_steps=100, method="srds", tol=1e-3)
    per_chunk = CALL_BUDGET_BYTES // (8 * 8 * calls)
    assert out.max_batch <= per_chunk and len(out.chunks) == -(-1000 // per_chunk)
    assert max(counting.sizes) <= per_chunk * calls
    assert out.converged


def test_real_unet_large_batch_is_split_and_equals_the_unsplit_sample(unet):
    # a float32 8x8 image is 256 bytes: serial chunks of at most 2048 samples
    sch = DDIMScheduler()
    x = noise((2100, 1, 8, 8), dtype=torch.float32)
    counting = Counting(lambda y, t: unet(y, t).sample)
    split = sample(counting, sch, x, num_inference_steps=2, method="serial")
    assert counting.sizes == [1050] * 4
    whole = sample(unet, sch, x, num_inference_steps=2, method="serial", max_batch=2100)
    # convolutions may round differently with the batch size: compare to float32 round-off
    torch.testing.assert_close(split.sample, whole.sample, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method,extra", [("srds", {"pipelined": True}),
                                          ("srds", {"pipelined": False}), ("picard", {})])
def test_parallel_methods_with_tol_zero_give_the_serial_sample_in_chunks(method, extra):
    model, sch = mixture(seed=4, timestep_spacing="trailing")
    x = noise((7, 4), seed=4)
    serial = sample(model, sch, x, num_inference_steps=16, method="serial")
    whole = sample(model, sch, x, num_inference_steps=16, method=method, tol=0, **extra)
    split = sample(model, sch, x, num_inference_steps=16, method=method, tol=0, max_batch=3,
                   **extra)
    assert [c.sample.shape[0] for c in split.chunks] == [3, 2, 2]
    if method == "srds":  # bitwise, as unsplit
        assert torch.equal(split.sample, serial.sample)
    else:  # Picard sums the drifts: serial to round-off, as unsplit
        torch.testing.assert_close(split.sample, serial.sample, rtol=1e-12, atol=1e-12)
    assert split.iterations == max(c.iterations for c in split.chunks)
    assert split.sequential_evals == sum(c.sequential_evals for c in split.chunks)
    assert split.converged and all(c.converged for c in split.chunks)
    if method == "srds":
        # every chunk ran the same B iterations: the largest change per iteration over the
        # chunks is the whole batch's change
        assert split.residuals == whole.residuals
        assert split.total_evals == whole.total_evals


def test_stochastic_serial_chunks_draw_the_unsplit_noise():
    model, sch = mixture(seed=5)
    x = noise((9, 4), seed=5)
    gen_whole, gen_split = torch.Generator().manual_seed(11), torch.Generator().manual_seed(11)
    whole = sample(model, sch, x, num_inference_steps=10, method="serial", eta=1.0,
                   generator=gen_whole)
    split = sample(model, sch, x, num_inference_steps=10, method="serial", eta=1.0,
                   generator=gen_split, max_batch=4)
    assert len(split.chunks) == 3
    assert torch.equal(split.sample, whole.sample)
    # the generator ends where the unsplit draw leaves it
    assert torch.equal(gen_split.get_state(), gen_whole.get_state())


def test_stochastic_serial_chunks_without_a_generator_use_the_global_one():
    model, sch = mixture(seed=5)
    x = noise((9, 4), seed=5)
    torch.manual_seed(3)
    whole = sample(model, sch, x, num_inference_steps=10, method="serial", eta=0.5)
    after_whole = torch.rand(1)
    torch.manual_seed(3)
    split = sample(model, sch, x, num_inference_steps=10, method="serial", eta=0.5,
                   max_batch=2)
    assert len(split.chunks) == 5
    assert torch.equal(split.sample, whole.sample)
    assert torch.equal(torch.rand(1), after_whole)


@pytest.mark.parametrize("method", ["srds", "picard"])
def test_stochastic_parallel_chunks_converge_to_the_unsplit_serial_sample(method):
    model, sch = mixture(seed=6)
    x = noise((5, 4), seed=6)
    serial = sample(model, sch, x, num_inference_steps=16, method="serial", eta=1.0,
                    generator=torch.Generator().manual_seed(2))
    split = sample(model, sch, x, num_inference_steps=16, method=method, eta=1.0, tol=0,
                   generator=torch.Generator().manual_seed(2), max_batch=2)
    assert len(split.chunks) == 3
    torch.testing.assert_close(split.sample, serial.sample, rtol=1e-12, atol=1e-12)


def test_statuses_aggregate_to_the_worst_chunk():
    model, sch = mixture(seed=7)
    x = noise((4, 4), seed=7)
    x[3] = 50.0  # a sample far from the data: its own chunk needs more iterations

    def model_nan_for_far_samples(y, t):
        out = model(y, t)
        far = (y.abs().amax(dim=1) > 20).reshape(-1, 1)
        return torch.where(far, torch.full_like(out, float("nan")), out)

    out = sample(model_nan_for_far_samples, sch, x, num_inference_steps=9, method="picard",
                 max_batch=2)
    assert [c.status for c in out.chunks] == [Status.CONVERGED, Status.DIVERGED]
    assert out.status is Status.DIVERGED and not out.converged
    capped = sample(model, sch, x, num_inference_steps=9, method="srds", tol=0, max_iters=1,
                    max_batch=2)
    assert capped.status is Status.MAX_ITERS


def test_guided_conditional_unet_slices_per_sample_prompt_embeddings():
    torch.manual_seed(1)
    cond = UNet2DConditionModel(
        sample_size=8, in_channels=2, out_channels=2, block_out_channels=(8, 16),
        layers_per_block=1, norm_num_groups=4, cross_attention_dim=6, attention_head_dim=2,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    ).eval().double()
    x = noise((5, 2, 8, 8), seed=8)
    pos, neg = noise((5, 3, 6), seed=9), noise((5, 3, 6), seed=10)
    kwargs = dict(num_inference_steps=4, method="serial", guidance_scale=3.0, prompt_embeds=pos,
                  negative_prompt_embeds=neg)
    whole = sample(cond, DDIMScheduler(), x, **kwargs)
    split = sample(cond, DDIMScheduler(), x, max_batch=2, **kwargs)
    assert len(split.chunks) == 3
    # each chunk must see its own samples' embeddings: swapping them changes the result
    torch.testing.assert_close(split.sample, whole.sample, rtol=1e-10, atol=1e-10)
    other = sample(cond, DDIMScheduler(), x, **{**kwargs, "prompt_embeds": pos.flip(0)})
    assert float((other.sample - whole.sample).abs().max()) > 1e-3


def test_callback_needs_one_chunk():
    model, sch = mixture()
    x = noise((6, 4))
    with pytest.raises(ValueError, match="callback needs the whole batch in one chunk.*"
                                         "max_batch=6"):
        sample(model, sch, x, num_inference_steps=9, callback=lambda k, y: None, max_batch=5)
    seen = []
    sample(model, sch, x, num_inference_steps=9, callback=lambda k, y: seen.append(y.shape),
           max_batch=6)
    assert seen and all(shape == (6, 4) for shape in seen)
