"""Gander-Vandewalle bounds on Dahlquist, and the speedup model."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import parareal
from parareal import RK4, Euler, Heun
from parareal import theory as th
from parareal.testing import check_convergence_bound, dahlquist_problems

from .conftest import needs


@pytest.mark.parametrize("lam", [-1.0, -5.0, -0.2 + 1.5j, 2.0j, -1.0 + 4.0j])
@pytest.mark.parametrize("coarse", [Euler(1), Heun(1), RK4(1)], ids=repr)
@pytest.mark.parametrize("slices", [4, 10])
def test_gander_vandewalle_bounds_hold_on_dahlquist(lam, coarse, slices):
    report = check_convergence_bound(lam, (0.0, 4.0), coarse, RK4(20), slices)
    assert report.errors[-1] == 0.0 and report.margin <= 1


@settings(max_examples=20, deadline=None)
@given(dahlquist_problems(), st.sampled_from(["synchronous", "pipelined"]))
def test_gander_vandewalle_bounds_hold_on_random_dahlquist_problems(p, schedule):
    check_convergence_bound(p.lam, p.t_span, p.coarse, p.fine, p.slices, y0=p.y0[0].item(),
                            schedule=schedule)


def test_stability_factors_are_the_known_polynomials():
    z = -0.3 + 0.4j
    assert th.stability_factor(Euler(1), z, 1.0) == pytest.approx(1 + z)
    assert th.stability_factor(Heun(1), z, 1.0) == pytest.approx(1 + z + z**2 / 2)
    assert th.stability_factor(RK4(1), z, 1.0) == pytest.approx(
        1 + z + z**2 / 2 + z**3 / 6 + z**4 / 24
    )
    assert th.stability_factor(RK4(2), z, 1.0) == pytest.approx(
        (1 + z / 2 + (z / 2) ** 2 / 2 + (z / 2) ** 3 / 6 + (z / 2) ** 4 / 24) ** 2
    )


def test_linear_bound_is_infinite_for_unstable_coarse():
    b = th.dahlquist_bounds(-10.0, t_span=(0, 1), slices=2, coarse=Euler(1), fine=RK4(50),
                            iterations=2)
    assert abs(b.r_coarse) >= 1 and np.isinf(b.linear[1])
    assert b.superlinear[2] == 0.0


def test_speedup_model_formula_and_limit():
    # S = 1 / ((K+1) c + K/P)
    assert th.speedup_model(2, workers=10, coarse_cost=1, fine_cost=20) == pytest.approx(
        1 / (3 / 20 + 2 / 10)
    )
    assert th.speedup_model(0, workers=4, coarse_cost=1, fine_cost=8) == pytest.approx(8)
    for k in range(1, 8):
        s = th.speedup_model(k, workers=16, coarse_cost=1, fine_cost=40)
        assert s <= th.speedup_limit(k, slices=16, coarse_cost=1, fine_cost=40)
    with pytest.raises(ValueError, match="workers"):
        th.speedup_model(1, workers=0, coarse_cost=1, fine_cost=2)
    with pytest.raises(ValueError, match="coarse_cost"):
        th.speedup_model(1, workers=2, coarse_cost=0, fine_cost=2)
    with pytest.raises(TypeError, match="iterations"):
        th.speedup_model(1.5, workers=2, coarse_cost=1, fine_cost=2)


def test_helpers_on_a_solution():
    f = lambda t, y: -y  # noqa: E731
    coarse, fine = Euler(1), RK4(10)
    sol = parareal.solve(f, np.ones(1), (0, 2), coarse=coarse, fine=fine, slices=8, tol=1e-8)
    s = th.model_speedup(sol, coarse=coarse, fine=fine)
    assert s == pytest.approx(th.speedup_model(sol.iterations, workers=8, coarse_cost=1,
                                               fine_cost=40))
    cps = th.critical_path_speedup(sol, fine=fine)
    assert cps == pytest.approx(8 * 40 / sol.stats.critical_path)
    with pytest.raises(ValueError, match="fixed cost"):
        th.model_speedup(sol, coarse=coarse, fine=parareal.ScipyIVP())


# -- coarse stability ---------------------------------------------------------------------------

def test_jacobian_eigenvalues_of_a_linear_system(rng):
    a = rng.standard_normal((5, 5))
    y0 = rng.standard_normal(5)
    got = th.jacobian_eigenvalues(lambda t, y: a @ y, 0.0, y0)
    want = np.linalg.eigvals(a)
    assert got.shape == want.shape
    distance = np.abs(got[:, None] - want[None, :])  # as multisets: each matched once
    assert np.all(distance.min(axis=0) < 1e-6) and np.all(distance.min(axis=1) < 1e-6)


def test_jacobian_eigenvalues_vectorized_torch_and_size_limit():
    torch = pytest.importorskip("torch")
    lam = torch.tensor([-1.0, -3.0, 2.0], dtype=torch.float64)
    got = th.jacobian_eigenvalues(lambda t, y: lam * y, 0.5, torch.ones(3, dtype=torch.float64),
                                      vectorized=True)
    np.testing.assert_allclose(np.sort(got.real), [-3.0, -1.0, 2.0], atol=1e-6)
    assert th.jacobian_eigenvalues(lambda t, y: -y, 0.0, np.ones(100), max_size=64) is None


@pytest.mark.parametrize("omega,dt,slices", [(5.0, 0.1, 100), (1.0, 0.5, 20), (2.0, 0.01, 50)])
def test_euler_on_an_oscillation_grows_like_its_stability_factor(omega, dt, slices):
    a = np.array([[0.0, 1.0], [-omega**2, 0.0]])
    grid = np.arange(slices + 1) * dt
    report = th.coarse_stability(lambda t, y: a @ y, np.array([1.0, 0.0]), grid, "euler")
    expected = abs(1 + 1j * omega * dt) ** slices
    np.testing.assert_allclose(report.excess, expected, rtol=1e-4)
    assert report.stable == (expected <= th.EXCESS_GROWTH_LIMIT)
    np.testing.assert_allclose(abs(report.worst), omega, rtol=1e-5)
    rk4 = th.coarse_stability(lambda t, y: a @ y, np.array([1.0, 0.0]), grid, "rk4")
    assert rk4.stable == (omega * dt < 2.8)


def test_growing_modes_are_compared_with_the_ode_growth():
    # y' = y: Euler under-predicts the growth; nothing to warn about
    report = th.coarse_stability(lambda t, y: y, np.ones(1), np.linspace(0, 5, 11), "euler")
    assert report.stable and report.excess <= 1.0
    # a stiff decay outside Euler's stability region: |1 - 50 * 0.1| = 4 per slice
    report = th.coarse_stability(lambda t, y: -50 * y, np.ones(1), np.linspace(0, 1, 11),
                                     "euler")
    assert not report.stable
    np.testing.assert_allclose(report.excess, 4.0**10, rtol=1e-4)


@pytest.mark.parametrize("lam,dt,exc", [(-1.0, 1j, TypeError), ("x", 1.0, TypeError),
                                        (-1.0, float("nan"), ValueError)])
def test_stability_factor_bad_input(lam, dt, exc):
    with pytest.raises(exc, match="dt|lam"):
        th.stability_factor("rk4", lam, dt)


# -- coarse_stability with propagators that cannot take complex states (issue 17) -------------

#: A stiff linear system: eigenvalues -1000, -1 and -500 +- 50i (a stiff damped rotation).
STIFF = np.array([[-1000.0, 1.0, 0.0, 0.0], [0.0, -1.0, 0.0, 0.0],
                  [0.0, 0.0, -500.0, 50.0], [0.0, 0.0, -50.0, -500.0]])
#: Tolerances so loose that every step is accepted: the method's own stability decides.
LOOSE = {"rtol": 1e3, "atol": 1e3, "options": {"first_step": 0.05, "max_step": 0.1}}


def _stiff_stability(coarse):
    grid = np.linspace(0.0, 1.0, 11)  # dt = 0.1: dt * 1000 far outside explicit stability
    return th.coarse_stability(lambda t, y: STIFF @ y, np.ones(4), grid, coarse)


@needs("scipy")
@pytest.mark.parametrize("method", ["Radau", "BDF", "LSODA"])
def test_coarse_stability_probes_real_only_scipy_methods(method):
    # these refuse complex states; the probe used to raise scipy's "y0 is complex"
    report = _stiff_stability(parareal.ScipyIVP(method))
    assert report is not None and report.stable
    assert report.worst_factor <= 1.0


@needs("scipy")
def test_coarse_stability_implicit_stable_explicit_unstable_on_stiff_system():
    radau = _stiff_stability(parareal.ScipyIVP("Radau", **LOOSE))
    rk45 = _stiff_stability(parareal.ScipyIVP("RK45", **LOOSE))
    assert radau.stable and radau.excess <= 1.0
    assert not rk45.stable and rk45.excess > 1e10 and rk45.worst.real == -1000.0
    # adaptive RK45 at its own tolerances shrinks its steps until stable: right to pass it
    assert _stiff_stability(parareal.ScipyIVP("RK45")).stable


@needs("scipy")
@pytest.mark.parametrize("lam", [-1000.0, -500.0 + 50.0j, 2.0j, -0.5 + 3.0j])
def test_stability_factor_real_probe_matches_complex_propagation(lam):
    # RK45 takes complex states: the real-form probe must give the complex answer
    prop = parareal.ScipyIVP("RK45", rtol=1e-10, atol=1e-12)
    direct = prop.propagate(lambda t, y: lam * y, np.array([1.0 + 0.0j]), 0.0, 0.1)[0]
    assert th.stability_factor(prop, lam, 0.1) == pytest.approx(direct, rel=1e-7, abs=1e-10)
    assert th.stability_factor(RK4(3), lam, 0.01) == pytest.approx(
        RK4(3).propagate(lambda t, y: lam * y, np.array([1.0 + 0.0j]), 0.0, 0.01)[0],
        rel=1e-14)
