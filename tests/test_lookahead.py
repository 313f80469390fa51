"""The pipelined schedule's lookahead: same iterates, bounded speculative work."""

from __future__ import annotations

import functools

import numpy as np
import pytest

import parareal
from parareal import RK4, Status
from parareal.problems import get

LOOKAHEADS = [0, 1, 2, 3, None]


def _run(problem, schedule, lookahead=parareal.DEFAULT_LOOKAHEAD, **kw):
    args = dict(coarse=problem.coarse, fine=problem.fine, slices=problem.slices, tol=1e-8,
                backend="batched", vectorized=True)
    args.update(kw)
    return parareal.solve(problem.f, problem.y0, problem.t_span, schedule=schedule,
                          lookahead=lookahead, **args)


@functools.cache
def _synchronous(name: str, slices: int) -> parareal.Solution:
    """The synchronous run of a bundled problem, the reference of every lookahead (computed
    once: the tests only read it)."""
    return _run(get(name, slices=slices), "synchronous")


def _fine_bound(slices: int, iterations: int, cap: int, lookahead: int) -> int:
    """Fine tasks F(n, k), n >= k, for every k the lookahead lets start."""
    return sum(slices - k for k in range(min(iterations + lookahead, cap - 1) + 1))


@pytest.mark.parametrize("name,slices", [("brusselator", 32), ("lorenz", 40), ("vanderpol", 20)])
@pytest.mark.parametrize("lookahead", LOOKAHEADS)
def test_iterates_do_not_depend_on_the_lookahead(name, slices, lookahead):
    problem = get(name, slices=slices)
    sync = _synchronous(name, slices)
    piped = _run(problem, "pipelined", lookahead)
    assert piped.iterations == sync.iterations and piped.status is sync.status
    assert piped.residuals == sync.residuals
    assert np.array_equal(piped.y, sync.y)
    if lookahead is not None:
        bound = _fine_bound(slices, piped.iterations, slices, lookahead)
        assert piped.stats.fine_calls <= bound
    assert piped.stats.critical_path <= sync.stats.critical_path


def test_lookahead_zero_is_the_synchronous_latency_and_work():
    problem = get("brusselator", slices=32)
    sync = _synchronous("brusselator", 32)
    zero = _run(problem, "pipelined", 0)
    assert zero.stats.critical_path == sync.stats.critical_path
    assert zero.stats.fine_calls == sync.stats.fine_calls


def test_default_keeps_the_unbounded_latency_on_the_benchmark_problems():
    for name, slices in [("brusselator", 32), ("vanderpol", 20)]:
        problem = get(name, slices=slices)
        default = _run(problem, "pipelined")
        unbounded = _run(problem, "pipelined", None)
        assert default.stats.critical_path == unbounded.stats.critical_path, name


def test_speculative_work_is_bounded_at_many_slices():
    # converges in one iteration: unbounded, the early slices race ahead (about 24x the work;
    # 500 slices: the unbounded run's speculative work grows as the square of the slices)
    problem = get("dahlquist", slices=500, t_end=10.0, coarse=RK4(1), fine=RK4(10))
    sync = _run(problem, "synchronous")
    unbounded = _run(problem, "pipelined", None)
    assert sync.iterations == 1
    assert unbounded.stats.f_evals > 10 * sync.stats.f_evals
    for lookahead in (1, 2):
        bounded = _run(problem, "pipelined", lookahead)
        assert np.array_equal(bounded.y, sync.y)
        assert bounded.stats.f_evals <= (lookahead + 1.5) * sync.stats.f_evals
        # the latency gain is kept: the pipeline's, not the synchronous schedule's
        assert bounded.stats.critical_path == unbounded.stats.critical_path
        assert bounded.stats.critical_path < 0.55 * sync.stats.critical_path


def test_ten_thousand_slices_finish_with_bounded_work():
    problem = get("dahlquist", slices=10_000, t_end=10.0, coarse=RK4(1), fine=RK4(2))
    sol = _run(problem, "pipelined", tol=1e-6)
    assert sol.status is Status.CONVERGED
    assert sol.stats.fine_calls <= _fine_bound(10_000, sol.iterations, 10_000, 2)


@pytest.mark.parametrize("value,exc", [(-1, ValueError), (1.5, TypeError), (True, TypeError),
                                       ("2", TypeError)])
def test_bad_lookahead(value, exc):
    with pytest.raises(exc, match="lookahead"):
        parareal.solve(lambda t, y: -y, np.ones(1), (0, 1), coarse="rk4:1", fine="rk4:2",
                       slices=3, schedule="pipelined", lookahead=value)
