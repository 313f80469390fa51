"""SRDS stopping rules: the decision on given histories, and the samples they stop at."""

from __future__ import annotations

import pytest

# every test here needs the adapter, which needs torch and diffusers (and the bundled model,
# safetensors)
torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("safetensors")

from parareal.adapters.diffusion import sample  # noqa: E402
from parareal.adapters.diffusion.digits import load_digits_model  # noqa: E402
from parareal.adapters.diffusion.methods.srds import should_stop  # noqa: E402

TOL = 1 / 255


@pytest.mark.parametrize(
    ("updates", "stop", "expected"),
    [
        ([], "update", False),
        ([], "estimate", False),
        ([0.5], "estimate", False),  # one change: no ratio yet
        ([0.0], "estimate", True),  # no change at all: exact
        ([0.2, 3e-3], "update", True),
        ([0.2, 5e-3], "update", False),
        # rho = 0.16, predicted error 6.4e-3 * 0.16 / 0.84 = 1.2e-3 <= tol: stop one early
        ([0.2, 0.04, 6.4e-3], "estimate", True),
        ([0.2, 0.04, 6.4e-3], "update", False),
        # rho = 0.5: predicted error = d_k = 5e-3 > tol
        ([0.01, 5e-3], "estimate", False),
        # growing changes never stop the estimate, even when the last one is small
        ([1e-3, 2e-3], "estimate", False),
        ([1e-3, 2e-3], "update", True),
    ],
)
def test_decision_on_histories(updates: list[float], stop: str, expected: bool) -> None:
    assert should_stop(updates, TOL, stop) is expected


def test_unknown_rule_is_refused() -> None:
    unet, scheduler = load_digits_model()
    x_T = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="stop must be one of"):
        sample(unet, scheduler, x_T, num_inference_steps=10, stop="ratio")
    with pytest.raises(ValueError, match="stop"):
        sample(unet, scheduler, x_T, num_inference_steps=10, method="serial", stop="update")


SEEDS = (0, 1, 2)


def start(seed: int) -> torch.Tensor:
    """The bundled model's start noise for ``seed``, one sample."""
    return torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def serial_samples(tmp_path_factory) -> list:
    """The serial 25-step samples of every seed, from one batched run once per session.

    The 25 sequential model calls are most of each test's cost; batching moves a sample by
    float32 round-off only (~1e-6), far below ``TOL``.
    """
    from .session_once import once_per_session

    def compute() -> list:
        torch.set_num_threads(1)
        unet, scheduler = load_digits_model()
        x_T = torch.cat([start(seed) for seed in SEEDS])
        return sample(unet, scheduler, x_T, num_inference_steps=25,
                      method="serial").sample.tolist()

    return once_per_session(tmp_path_factory, "srds_stopping_serial", compute)


@pytest.mark.parametrize("seed", SEEDS)
def test_default_rule_stays_within_tol(seed: int, serial_samples: list) -> None:
    """The default stop on the bundled model: error to the serial sample at most tol, and the
    estimate never runs longer than the update rule."""
    torch.set_num_threads(1)
    unet, scheduler = load_digits_model()
    x_T = start(seed)
    serial = torch.tensor(serial_samples[SEEDS.index(seed)]).unsqueeze(0)
    default = sample(unet, scheduler, x_T, num_inference_steps=25)
    assert default.converged
    assert float((default.sample - serial).abs().max()) <= TOL
    estimate = sample(unet, scheduler, x_T, num_inference_steps=25, stop="estimate")
    assert estimate.iterations <= default.iterations
    assert estimate.sequential_evals <= default.sequential_evals


def test_default_blocks_and_lookahead() -> None:
    from parareal.adapters.diffusion.sampler import default_blocks, srds_lookahead

    assert [default_blocks(n) for n in (1, 2, 4, 25, 100, 1000)] == [1, 2, 4, 10, 20, 63]
    # 20 blocks of 5 DDIM steps, one-call jumps: ceil(20 / 4) = 5; one-step blocks: no bound
    assert srds_lookahead([5] * 20, [1] * 20) == 5
    assert srds_lookahead([50] * 2, [1] * 2) == 2
    assert srds_lookahead([1] * 8, [1] * 8) is None


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda f: f[0](0), ValueError, "steps must be >= 1"),
        (lambda f: f[0](2.5), TypeError, "steps"),
        (lambda f: f[1]([], []), ValueError, "one count per block"),
        (lambda f: f[1]([5, 5], [1]), ValueError, "one count per block"),
        (lambda f: f[1]([5, 0], [1, 1]), ValueError, "fine_calls must be >= 1"),
        (lambda f: f[1]([5, 5], [1, "1"]), TypeError, "coarse_calls"),
    ],
)
def test_default_blocks_and_lookahead_refuse_bad_input(call, error, match) -> None:
    from parareal.adapters.diffusion.sampler import default_blocks, srds_lookahead

    with pytest.raises(error, match=match):
        call((default_blocks, srds_lookahead))
