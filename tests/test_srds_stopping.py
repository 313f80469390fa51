"""SRDS stopping rules: the decision on given histories, and the samples they stop at."""

from __future__ import annotations

import pytest
import torch
from parareal.adapters.diffusion import sample
from parareal.adapters.diffusion.digits import load_digits_model
from parareal.adapters.diffusion.sampler import should_stop

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


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_default_rule_stays_within_tol(seed: int) -> None:
    """The default stop on the bundled model: error to the serial sample at most tol, and the
    estimate never runs longer than the update rule."""
    torch.set_num_threads(1)
    unet, scheduler = load_digits_model()
    x_T = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(seed))
    serial = sample(unet, scheduler, x_T, num_inference_steps=25, method="serial").sample
    default = sample(unet, scheduler, x_T, num_inference_steps=25)
    assert default.converged
    assert float((default.sample - serial).abs().max()) <= TOL
    estimate = sample(unet, scheduler, x_T, num_inference_steps=25, stop="estimate")
    assert estimate.iterations <= default.iterations
    assert estimate.sequential_evals <= default.sequential_evals
