"""Diffusion results say when they failed: ``status`` (item 2 of issue 7)."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from diffusers import DDIMScheduler  # noqa: E402
from parareal.adapters.diffusion import (  # noqa: E402
    DiffusionResult,
    GaussianMixture,
    NoiseSchedule,
    sample,
)
from parareal.adapters.diffusion.methods.srds import SRDS, srds_rule  # noqa: E402

from parareal import Status  # noqa: E402
from parareal.state import ops_for  # noqa: E402
from parareal.stopping import Iterate  # noqa: E402

METHODS = [("serial", {}), ("srds", {"pipelined": True}), ("srds", {"pipelined": False}),
           ("picard", {})]


def mixture(seed=0, dim=4):
    sch = DDIMScheduler(clip_sample=False)
    return GaussianMixture.random(dim, 3, seed=seed).model(NoiseSchedule.from_scheduler(sch)), sch


def x_T(batch=3, dim=4, seed=0):
    return torch.randn(batch, dim, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64)


def poisoned(model, value, below=None, at=None):
    """``model``, but returning ``value`` (NaN or inf) at timesteps below ``below`` or at
    timestep ``at``."""

    def f(x, t):
        out = model(x, t)
        bad = t < below if below is not None else t == at
        return torch.where(bad.reshape(-1, *[1] * (x.ndim - 1)), torch.full_like(out, value),
                           out)

    return f


@pytest.mark.parametrize("method,extra", METHODS)
def test_converged_runs_say_so(method, extra):
    model, sch = mixture()
    out = sample(model, sch, x_T(), num_inference_steps=16, method=method, **extra)
    assert out.status is Status.CONVERGED and out.converged
    assert bool(torch.isfinite(out.sample).all())


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
@pytest.mark.parametrize("method,extra", METHODS)
def test_model_returning_nan_or_inf_everywhere_is_diverged(method, extra, value):
    model, sch = mixture()
    x = x_T()
    out = sample(poisoned(model, value, below=10_000), sch, x, num_inference_steps=16,
                 method=method, **extra)
    assert out.status is Status.DIVERGED and not out.converged
    if method == "picard":
        # stops at the first non-finite iterate (one model call) and keeps the last finite one
        assert out.sequential_evals == 1 and out.iterations == 0 and out.residuals == ()
        assert torch.equal(out.sample, x)
    if method == "serial":
        assert not bool(torch.isfinite(out.sample).all())  # the output as it is


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
@pytest.mark.parametrize("method,extra", METHODS)
def test_model_failing_late_is_diverged_with_the_last_finite_estimate(method, extra, value):
    # NaN/inf at one timestep that only fine steps use (grid index 13 of 16; SRDS's 4 coarse
    # jumps start at 0, 4, 8, 12): the parallel methods have finite iterates before the
    # failure, and must neither present them as converged nor return a non-finite one
    model, sch = mixture(seed=3)
    at = int(NoiseSchedule.from_scheduler(sch).timesteps(16)[13])
    if method == "srds":
        extra = {**extra, "blocks": 4}
    out = sample(poisoned(model, value, at=at), sch, x_T(), num_inference_steps=16,
                 method=method, **extra)
    assert out.status is Status.DIVERGED and not out.converged
    if method == "serial":
        assert not bool(torch.isfinite(out.sample).all())
    else:
        assert bool(torch.isfinite(out.sample).all())
        assert all(math.isfinite(r) for r in out.residuals)
        assert len(out.residuals) == out.iterations


def test_srds_coarse_sweep_not_finite_returns_iterate_zero_as_it_is():
    model, sch = mixture(seed=3)
    out = sample(poisoned(model, float("nan"), below=500), sch, x_T(), num_inference_steps=16)
    assert out.status is Status.DIVERGED and out.iterations == 0
    assert not bool(torch.isfinite(out.sample).all())


def test_picard_stops_as_soon_as_a_value_is_not_finite():
    # Picard's old convergence test compared NaN errors with the tolerance and reported
    # converged=True; it also ran on to the iteration cap
    model, sch = mixture(seed=1)
    calls = []

    def f(x, t):
        calls.append(1)
        return poisoned(model, float("nan"), below=300)(x, t)

    out = sample(f, sch, x_T(), num_inference_steps=40, method="picard", window=8, tol=1e-3)
    assert out.status is Status.DIVERGED and not out.converged
    assert len(calls) == out.sequential_evals
    # the window reaches step 28 (t < 300) after a few iterations; it stops there, far before
    # the 40-iteration cap
    assert out.sequential_evals <= 10


@pytest.mark.parametrize("method,extra", [("srds", {}), ("picard", {})])
def test_max_iters_status(method, extra):
    model, sch = mixture(seed=2)
    out = sample(model, sch, x_T(), num_inference_steps=25, method=method, tol=0, max_iters=1)
    assert out.status is Status.MAX_ITERS and not out.converged and out.iterations == 1


def test_srds_all_iterations_is_converged():
    # B iterations make every block exact: converged even with tol = 0
    model, sch = mixture(seed=2)
    out = sample(model, sch, x_T(), num_inference_steps=25, method="srds", tol=0, max_iters=5,
                 blocks=5)
    assert out.status is Status.CONVERGED and out.iterations == 5
    # with more blocks than iterations the same cap is not converged
    capped = sample(model, sch, x_T(), num_inference_steps=25, method="srds", tol=0,
                    max_iters=5, blocks=8)
    assert capped.status is Status.MAX_ITERS and capped.iterations == 5


def rule_for(tol=1e-3):
    """SRDS's stopping rule (the engine's FinalChange in SRDS's measure) for a 4-step grid."""
    grid = NoiseSchedule.build().grid(4)
    return srds_rule(SRDS(4, tol=tol, tol_mode="data", blocks=2, pipelined=True,
                          stop="update"), grid)


def iterate(k, final):
    """What the engine shows a rule of iterate ``k`` with ``final`` at the last boundary."""
    values = [torch.zeros_like(final), final]
    return Iterate(iteration=k, update=0.0, t=np.array([0.0, 4.0]), ops=ops_for(final),
                   _value=values.__getitem__)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_srds_stopping_rule_treats_a_non_finite_final_sample_as_divergence(bad):
    rule = rule_for(tol=1.0)
    good = torch.zeros(2, 3, dtype=torch.float64)
    assert rule.check(iterate(0, good)) is None and not rule.diverged
    # converged: 0.5 <= 1
    assert rule.check(iterate(1, good + 0.5)) is Status.CONVERGED and rule.changes == [0.5]
    rule.start()
    rule.check(iterate(0, good))
    broken = good.clone()
    broken[1, 2] = bad
    # divergence: the engine returns the last finite iterate; no change is added
    assert rule.check(iterate(1, broken)) is Status.DIVERGED and rule.diverged
    assert rule.changes == [] and torch.equal(rule.last, good)


def test_srds_stopping_rule_treats_an_overflowing_change_as_divergence():
    rule = rule_for(tol=1.0)
    big = torch.full((1, 2), 3e38, dtype=torch.float32)
    rule.check(iterate(0, big))
    assert rule.check(iterate(1, -big)) is Status.DIVERGED and rule.diverged  # inf change


def test_result_status_and_converged_must_agree():
    fields = dict(sample=torch.zeros(1), iterations=0, sequential_evals=0, total_evals=0,
                  residuals=())
    with pytest.raises(ValueError, match="contradicts"):
        DiffusionResult(converged=True, status=Status.DIVERGED, **fields)
    with pytest.raises(TypeError, match="parareal.Status"):
        DiffusionResult(converged=True, status="converged", **fields)
    assert DiffusionResult(converged=False, status=Status.MAX_ITERS, **fields).status.value == (
        "max_iters")
