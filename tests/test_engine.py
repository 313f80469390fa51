"""Properties of the Parareal iteration: exactness, fixed point, corner cases, statuses."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import parareal
from parareal import RK4, Euler, Heun, Status
from parareal.testing import (
    check_exactness,
    check_fixed_point,
    linear_system,
    linear_systems,
    slicings,
)

from .conftest import diagonal_rhs

SCHEDULES = ["synchronous", "pipelined"]


def _linear_system(seed: int, dim: int):
    """``f, y0`` of a stable linear system of size ``dim`` (complex pairs, then a real one)."""
    eigenvalues = [complex(-0.5 - 0.1 * i, 1.0 + i) for i in range(dim // 2)]
    p = linear_system(eigenvalues + [-0.7] * (dim % 2), seed=seed,
                      y0=np.random.default_rng(seed).standard_normal(dim))
    return p.f, p.y0


@settings(max_examples=25, deadline=None)
@given(
    data=st.data(),
    problem=linear_systems(max_dim=5),
    fine_steps=st.integers(1, 6),
    schedule=st.sampled_from(SCHEDULES),
)
def test_first_k_boundaries_exact_after_k_iterations(data, problem, fine_steps, schedule):
    # even and uneven slices; bit for bit after every iterate, converged after N iterations
    grid = data.draw(slicings(problem.t_span, max_slices=9), label="boundaries")
    check_exactness(problem.f, problem.y0, problem.t_span, Euler(1), RK4(fine_steps), grid,
                    schedule=schedule)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_fixed_point_seeded_with_serial_fine(schedule):
    f, y0 = _linear_system(3, 4)
    sol = check_fixed_point(f, y0, (0.0, 3.0), Heun(1), RK4(8), 6, iterations=3,
                            schedule=schedule)
    assert sol.residuals == (0.0, 0.0, 0.0)


def test_warm_start_from_coarse_sweep_matches_cold_start():
    f, y0 = _linear_system(5, 3)
    coarse_sweep = parareal.solve_serial(f, y0, (0.0, 1.0), propagator=Euler(1), slices=5)
    cold = parareal.solve(f, y0, (0, 1), coarse=Euler(1), fine=RK4(4), slices=5, tol=0)
    warm = parareal.solve(
        f, y0, (0, 1), coarse=Euler(1), fine=RK4(4), slices=5, tol=0, initial=coarse_sweep
    )
    assert np.array_equal(cold.y, warm.y)
    assert cold.residuals == warm.residuals


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_one_slice_gives_serial_fine_after_one_iteration(schedule):
    f, y0 = _linear_system(7, 3)
    ref = parareal.solve_serial(f, y0, (0.0, 1.5), propagator=RK4(30), slices=1)
    sol = parareal.solve(
        f, y0, (0.0, 1.5), coarse=Euler(1), fine=RK4(30), slices=1, schedule=schedule
    )
    assert sol.iterations == 1 and sol.converged
    assert np.array_equal(sol.y, ref)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_coarse_equal_fine_converges_in_one_iteration(schedule):
    f, y0 = _linear_system(8, 4)
    ref = parareal.solve_serial(f, y0, (0.0, 2.0), propagator=RK4(5), slices=7)
    sol = parareal.solve(
        f, y0, (0.0, 2.0), coarse=RK4(5), fine=RK4(5), slices=7, tol=1e-300, schedule=schedule
    )
    assert sol.iterations == 1 and sol.status is Status.CONVERGED
    assert sol.residuals == (0.0,)
    assert np.array_equal(sol.y, ref)


def test_tol_zero_runs_exactly_max_iters():
    f, y0 = _linear_system(1, 2)
    sol = parareal.solve(f, y0, (0, 1), coarse=Euler(1), fine=RK4(4), slices=6, tol=0, max_iters=3)
    assert sol.iterations == 3
    assert len(sol.residuals) == 3
    assert sol.status is Status.MAX_ITERS and not sol.converged
    assert len(sol.stats.critical_path_per_iteration) == 4


def test_max_iters_zero_returns_coarse_sweep():
    f, y0 = _linear_system(2, 2)
    coarse = parareal.solve_serial(f, y0, (0, 1), propagator=Euler(2), slices=4)
    sol = parareal.solve(f, y0, (0, 1), coarse=Euler(2), fine=RK4(4), slices=4, max_iters=0)
    assert sol.iterations == 0 and sol.status is Status.MAX_ITERS
    assert np.array_equal(sol.y, coarse)


def test_max_iters_above_slices_is_capped():
    f, y0 = _linear_system(2, 2)
    sol = parareal.solve(f, y0, (0, 1), coarse=Euler(1), fine=RK4(4), slices=3, tol=0,
                         max_iters=50)
    assert sol.iterations == 3 and sol.converged


def test_converges_early_with_tolerance_and_residuals_decrease():
    f = diagonal_rhs(np.array([-1.0, -2.0, -0.5]))
    y0 = np.array([1.0, -1.0, 0.5])
    sol = parareal.solve(f, y0, (0, 4), coarse=RK4(1), fine=RK4(40), slices=16, tol=1e-10)
    assert sol.status is Status.CONVERGED
    assert sol.iterations < 16
    assert sol.residuals[-1] <= 1e-10
    assert all(b < a for a, b in zip(sol.residuals, sol.residuals[1:], strict=False))
    ref = parareal.solve_serial(f, y0, (0, 4), propagator=RK4(40), slices=16)
    assert np.max(np.abs(sol.y - ref)) < 1e-9


def test_relative_tolerance_stops_earlier_on_large_states():
    f = diagonal_rhs(np.array([-1.0]))
    y0 = np.array([1e6])
    common = dict(coarse=RK4(1), fine=RK4(40), slices=16)
    absolute = parareal.solve(f, y0, (0, 4), tol=1e-8, **common)
    relative = parareal.solve(f, y0, (0, 4), tol=0.0, rtol=1e-8, **common)
    assert relative.converged
    assert relative.iterations < absolute.iterations
    scale = float(np.max(np.abs(relative.y)))
    assert relative.residuals[-1] <= 1e-8 * scale


def test_counters_of_synchronous_schedule():
    f = diagonal_rhs(np.array([-1.0]))
    n, steps = 6, 5
    sol = parareal.solve(f, np.array([1.0]), (0, 1), coarse=Euler(1), fine=RK4(steps), slices=n,
                         tol=0, max_iters=n)
    # freezing: iteration k runs fine on slices k-1 .. n-1
    assert sol.stats.fine_calls == sum(n - k for k in range(n))
    # coarse: the initial sweep (n) and then slices k .. n-1 in iteration k
    assert sol.stats.coarse_calls == n + sum(n - k for k in range(1, n + 1))
    assert sol.stats.f_evals == sol.stats.fine_calls * 4 * steps + sol.stats.coarse_calls
    assert sol.stats.critical_path == sol.stats.critical_path_per_iteration[-1]
    assert sol.stats.critical_path_per_iteration[0] == n


def test_pipelined_critical_path_matches_model():
    # unit-cost f, G one step, F m steps: U_n^k ready after about k*m + n - k ticks
    f = diagonal_rhs(np.array([-1.0]))
    n, m = 10, 12
    sol = parareal.solve(f, np.array([1.0]), (0, 1), coarse=Euler(1), fine=Euler(m), slices=n,
                         tol=0, max_iters=4, schedule="pipelined", backend="batched",
                         vectorized=True)
    assert sol.stats.critical_path_per_iteration == tuple(k * m + n - k for k in range(5))
    sync = parareal.solve(f, np.array([1.0]), (0, 1), coarse=Euler(1), fine=Euler(m), slices=n,
                          tol=0, max_iters=4, backend="batched", vectorized=True)
    assert sync.stats.critical_path > sol.stats.critical_path
    assert np.array_equal(sync.y, sol.y)


@pytest.mark.parametrize("backend", ["serial", "batched"])
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_divergence_reported_and_last_finite_iterate_kept(schedule, backend):
    # f returns NaN from the evaluation after iterate 1 was complete on: iterate 1 is finite,
    # a later one is not
    args = dict(coarse=Euler(1), fine=RK4(5), slices=8, tol=0, schedule=schedule,
                backend=backend)
    dry = []
    parareal.solve(lambda t, y: -y, np.array([1.0]), (0, 4), callback=dry.append, **args)
    threshold = dry[1].f_evals
    calls = []

    def f(t, y):
        calls.append(t)
        return -y * (math.nan if len(calls) > threshold else 1.0)

    kept = []
    sol = parareal.solve(f, np.array([1.0]), (0, 4), callback=lambda info: kept.append(info.y),
                         **args)
    assert sol.status is Status.DIVERGED and not sol.converged
    assert 1 <= sol.iterations < 8
    assert np.all(np.isfinite(sol.y))
    assert np.array_equal(sol.y, kept[sol.iterations])
    assert len(sol.residuals) == sol.iterations


def test_divergence_in_coarse_sweep():
    with np.errstate(over="ignore", invalid="ignore"):
        sol = parareal.solve(lambda t, y: y**3, np.array([2.0]), (0, 10), coarse=Euler(1),
                             fine=RK4(10), slices=20)
    assert sol.status is Status.DIVERGED
    assert sol.iterations == 0
    assert sol.residuals == ()


def test_callback_sees_every_iterate_in_order():
    f = diagonal_rhs(np.array([-1.0, -3.0]))
    infos = []
    sol = parareal.solve(f, np.ones(2), (0, 2), coarse=Euler(1), fine=RK4(5), slices=5,
                         tol=0, callback=infos.append)
    assert [i.iteration for i in infos] == list(range(6))
    assert math.isnan(infos[0].residual)
    assert tuple(i.residual for i in infos[1:]) == sol.residuals
    assert [i.critical_path for i in infos] == list(sol.stats.critical_path_per_iteration)


def test_exception_inside_f_reaches_caller():
    def f(t, y):
        if t > 0.5:
            raise RuntimeError("boom at t>0.5")
        return -y

    with pytest.raises(RuntimeError, match="boom at t>0.5"):
        parareal.solve(f, np.ones(2), (0, 1), coarse=Euler(1), fine=RK4(4), slices=4)


def test_progress_prints_one_line_per_iteration(capsys):
    f = diagonal_rhs(np.array([-1.0]))
    sol = parareal.solve(f, np.ones(1), (0, 1), coarse=Euler(1), fine=RK4(4), slices=3, tol=0,
                         progress=True)
    err = capsys.readouterr().err
    assert err.count("parareal: iteration") == sol.iterations + 1


def test_solution_is_frozen_and_typed():
    f = diagonal_rhs(np.array([-1.0]))
    sol = parareal.solve(f, np.ones(1), (0, 1), coarse=Euler(1), fine=RK4(4), slices=3)
    with pytest.raises(AttributeError):
        sol.iterations = 5  # type: ignore[misc]
    assert sol.t.shape == (4,) and sol.t.dtype == np.float64
    assert sol.y.shape == (4, 1)
    assert np.array_equal(sol.y_final, sol.y[-1])
    assert set(sol.stats.wall_time) == {"total", "f", "propagators", "batching", "engine"}
    assert sol.stats.as_dict()["f_evals"] == sol.stats.f_evals


def test_callback_returning_true_stops_as_converged():
    f = diagonal_rhs(np.array([-1.0]))
    sol = parareal.solve(f, np.ones(1), (0, 1), coarse=Euler(1), fine=RK4(4), slices=6, tol=0,
                         callback=lambda info: info.iteration == 2)
    assert sol.iterations == 2 and sol.status is Status.CONVERGED


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_uneven_boundaries_are_exact_too(schedule):
    f = diagonal_rhs(np.array([-1.0, -0.3]), forcing=1.0)  # time-dependent f
    edges = [0.0, 0.1, 0.5, 0.6, 1.4, 2.0]
    sol = check_exactness(f, np.array([1.0, 2.0]), (0, 2), Euler(1), RK4(6), edges,
                          schedule=schedule)
    assert np.array_equal(sol.t, edges)


@pytest.mark.parametrize(
    "edges,match",
    [([0.0, 1.0], "slices \\+ 1"), ([0.0, 0.5, 0.4, 2.0], "increasing"),
     ([0.1, 0.5, 1.0, 2.0], "start at"), ([0.0, 0.5, 1.0, 1.9], "end at")],
)
def test_bad_boundaries(edges, match):
    f = diagonal_rhs(np.array([-1.0]))
    with pytest.raises(ValueError, match=match):
        parareal.solve(f, np.ones(1), (0, 2), coarse=Euler(1), fine=RK4(2), slices=3,
                       boundaries=edges)


def test_divergent_coarse_sweep_reports_path_of_iterate_zero():
    with np.errstate(over="ignore", invalid="ignore"):
        sol = parareal.solve(lambda t, y: y**3, np.array([2.0]), (0, 10), coarse=Euler(1),
                             fine=RK4(10), slices=20)
    assert sol.status is Status.DIVERGED and sol.iterations == 0
    assert len(sol.stats.critical_path_per_iteration) == 1
