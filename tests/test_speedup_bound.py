"""``Stats.serial_fine_cost``, ``Stats.speedup_bound``, :class:`parareal.NoSpeedupWarning` and
``Solution.reason``."""

from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pytest

import parareal
from parareal import NoSpeedupWarning, Status

BACKENDS = ["serial", "batched", "threads"]
SCHEDULES = ["synchronous", "pipelined"]


def decay(t, y):
    """Dahlquist ``y' = -y``: one state or a batch."""
    return -y


def solve(coarse="rk4:1", fine="rk4:100", slices=8, backend="serial", **kw):
    return parareal.solve(decay, np.array([1.0]), (0.0, 4.0), coarse=coarse, fine=fine,
                          slices=slices, backend=backend, vectorized=backend == "batched",
                          **kw)


def quiet(**kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoSpeedupWarning)
        return solve(**kw)


# == 1. the bound ==========================================================================
@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fine,slices", [(parareal.RK4(100), 8), (parareal.RK4(30), 5),
                                         (parareal.Rosenbrock2(50), 4)])
@pytest.mark.parametrize("tol", [1e-8, 0.0])
def test_speedup_bound_is_serial_fine_cost_over_critical_path(tol, fine, slices, backend,
                                                              schedule):
    sol = quiet(fine=fine, slices=slices, backend=backend, schedule=schedule, tol=tol)
    stats = sol.stats
    ticks = fine.evals + getattr(fine, "jac_evals", 0)  # calls of f and Jacobians per slice
    assert stats.serial_fine_cost == slices * ticks
    assert stats.speedup_bound == stats.serial_fine_cost / stats.critical_path


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("max_iters", [0, 1, 3, 8])
def test_synchronous_critical_path_is_the_textbook_count(max_iters, backend):
    """Coarse sweep ``N g``, then per iteration ``k`` one fine slice ``m`` and the coarse
    sweep over the ``N - k`` slices not yet exact: ``N g + sum_k (m + (N - k) g)``."""
    N, g, m = 8, 4, 400
    sol = quiet(max_iters=max_iters, tol=0.0, backend=backend)
    K = sol.iterations
    assert K == max_iters
    assert sol.stats.critical_path == N * g + sum(m + (N - k) * g for k in range(1, K + 1))
    if K == 0:  # no fine propagation finished: nothing to compare with
        assert math.isnan(sol.stats.serial_fine_cost) and math.isnan(sol.stats.speedup_bound)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bound_is_the_same_on_every_backend(backend):
    ref = solve()
    sol = solve(backend=backend)
    assert sol.stats.speedup_bound == ref.stats.speedup_bound
    assert sol.stats.serial_fine_cost == ref.stats.serial_fine_cost


def test_bound_with_an_adaptive_fine_counts_its_measured_calls():
    pytest.importorskip("scipy")
    sol = quiet(fine=parareal.ScipyIVP("RK45", rtol=1e-8, atol=1e-10))
    stats = sol.stats
    assert math.isfinite(stats.serial_fine_cost) and stats.serial_fine_cost > 0
    assert stats.speedup_bound == stats.serial_fine_cost / stats.critical_path


# == 2. NoSpeedupWarning ===================================================================
def test_no_warning_for_a_run_that_pays():
    with warnings.catch_warnings():
        warnings.simplefilter("error", NoSpeedupWarning)
        sol = solve()
    assert sol.status is Status.CONVERGED
    assert sol.iterations < 8
    assert sol.stats.speedup_bound >= 1.0


def test_warning_when_coarse_costs_as_much_as_fine():
    with pytest.warns(NoSpeedupWarning) as record:
        sol = solve(coarse="rk4:20", fine="rk4:20")
    assert sol.stats.speedup_bound < 1.0
    warning = record[0].message
    assert warning.speedup_bound == sol.stats.speedup_bound
    assert warning.iterations == sol.iterations
    assert warning.slices == 8
    assert warning.solution is sol
    text = str(warning)
    assert "speed-up bound" in text and "Advice" in text
    assert f"{sol.stats.speedup_bound:.2f}" in text


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_warning_when_only_exactness_converged(schedule):
    with pytest.warns(NoSpeedupWarning, match="every slice became exact") as record:
        sol = solve(tol=0.0, schedule=schedule)
    assert sol.status is Status.CONVERGED and sol.iterations == 8
    warning = record[0].message
    assert warning.iterations == 8 and warning.slices == 8
    assert "coarse" in str(warning)  # the advice names the coarse propagator to change


def test_warning_names_the_auto_choice():
    with pytest.warns(NoSpeedupWarning, match="coarse='auto' chose"):
        solve(coarse="auto", fine="rk4:10", tol=0.0)


def test_no_warning_for_a_diverged_run():
    with warnings.catch_warnings():
        warnings.simplefilter("error", NoSpeedupWarning)
        warnings.filterwarnings("ignore", "overflow", RuntimeWarning)
        sol = parareal.solve(lambda t, y: y**2, np.array([1.0]), (0.0, 4.0), coarse="rk4:1",
                             fine="rk4:10", slices=4)
    assert sol.status is Status.DIVERGED


# == 3. Solution.reason ====================================================================
def test_reason_of_a_converged_run_gives_the_update():
    sol = solve()
    assert sol.status is Status.CONVERGED
    assert "met the tolerance" in sol.reason


def test_reason_of_a_max_iters_run_gives_the_cap():
    sol = solve(max_iters=1, tol=1e-14)
    assert sol.status is Status.MAX_ITERS
    assert "max_iters = 1" in sol.reason


def test_reason_of_an_exact_run_says_so():
    sol = quiet(tol=0.0)
    assert "every slice became exact" in sol.reason


def test_reason_of_a_diverged_run_names_the_boundary():
    # y' = y^2, y(0) = 1 blows up at t = 1: inside the second of four slices of [0, 4]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "overflow", RuntimeWarning)
        sol = parareal.solve(lambda t, y: y**2, np.array([1.0]), (0.0, 4.0), coarse="rk4:1",
                             fine="rk4:10", slices=4)
    assert sol.status is Status.DIVERGED
    match = re.search(r"boundary (\d+) \(t = ([^)]+)\)", sol.reason)
    assert match, sol.reason
    n, t = int(match.group(1)), float(match.group(2))
    assert 1 <= n <= 4 and t == pytest.approx(sol.t[n])
    # the coarse sweep itself failed: iterate 0 is returned as it is; the boundary named is
    # its first non-finite one
    assert sol.iterations == 0
    assert np.isfinite(sol.y[:n]).all() and not np.isfinite(sol.y[n]).all()
