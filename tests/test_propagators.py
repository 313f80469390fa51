"""Propagators: every built-in one passes check_propagator; registry, scipy and torchdiffeq."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

import parareal
from parareal import RK4, Euler, Heun, Midpoint, ScipyIVP, TorchDiffEq
from parareal.testing import check_propagator, propagators
from parareal.testing.propagator import DTYPES

FIXED = [Euler(1), Euler(3), Midpoint(2), Heun(1), Heun(4), RK4(1), RK4(20),
         RK4(3, variant="3/8")]
SCIPY = ["RK45", "RK23", "DOP853", "Radau", "BDF", "LSODA"]
COMPLEX_SCIPY = {"RK45", "RK23", "DOP853", "BDF"}  # Radau and LSODA refuse complex states


@pytest.mark.parametrize("prop", FIXED, ids=repr)
def test_fixed_step_propagators_pass_check_propagator(prop):
    # kinds, dtypes, determinism, no state, evals, stepper and groups equal propagate, order
    report = check_propagator(prop)
    assert report.declared_order == prop.order
    assert abs(report.measured_order - prop.order) < 0.3
    assert "grouped path equals propagate" in report.checked and not report.skipped


@settings(max_examples=10, deadline=None)
@given(propagators(max_steps=5))
def test_every_drawn_builtin_passes_check_propagator(prop):
    check_propagator(prop, torch=False)


@pytest.mark.parametrize("method", SCIPY)
def test_scipy_ivp_passes_check_propagator(method):
    pytest.importorskip("scipy")
    dtypes = DTYPES if method in COMPLEX_SCIPY else ("float64", "float32")
    # rtol 1e-8 (errors 6e-12 (Radau) to 4e-8 (BDF)): at 1e-10 a float32 torch state, whose f
    # rounds to float32, makes the float64 solver take thousands of steps (RK23: 3 s)
    report = check_propagator(ScipyIVP(method, rtol=1e-8, atol=1e-10), dtypes=dtypes)
    assert "accuracy within tolerance" in report.checked and report.error < 1e-6


@pytest.mark.parametrize("method,order", [("dopri5", None), ("rk4", 4), ("euler", 1)])
def test_torchdiffeq_passes_check_propagator(method, order):
    pytest.importorskip("torchdiffeq")
    # fixed-grid methods take one step per propagation: their order is measured by shrinking
    # the propagation; dopri5 gets the tolerance-based check
    report = check_propagator(TorchDiffEq(method), order=order)
    assert ("order of accuracy" if order else "accuracy within tolerance") in report.checked


def test_scipy_ivp_refuses_complex_states_with_radau():
    pytest.importorskip("scipy")
    with pytest.raises(AssertionError, match="complex domain"):
        check_propagator(ScipyIVP("Radau"), torch=False)


def test_registry_specs():
    assert parareal.propagators.from_spec("RK4:20") == RK4(20)
    assert parareal.propagators.from_spec("euler") == Euler(1)
    assert repr(parareal.propagators.from_spec("heun:3")) == "Heun(steps=3)"
    assert parareal.propagators.from_spec("scipy:Radau").method == "Radau"
    with pytest.raises(ValueError, match="needs a method"):
        parareal.propagators.from_spec("scipy")


def test_scipy_ivp_failure_gives_nan_and_diverged_status():
    pytest.importorskip("scipy")
    prop = parareal.ScipyIVP("RK45", options={"max_step": 1e-3})
    with pytest.warns(RuntimeWarning, match="solve_ivp failed"), \
            np.errstate(over="ignore", invalid="ignore"):
        sol = parareal.solve(lambda t, y: y**2, np.array([1.0]), (0.0, 2.0), coarse=Euler(1),
                             fine=prop, slices=2, tol=0)
    assert sol.status is parareal.Status.DIVERGED


def test_stiff_problem_with_implicit_fine():
    pytest.importorskip("scipy")
    lam = np.array([-1000.0, -1.0])
    sol = parareal.solve(lambda t, y: lam * y, np.ones(2), (0.0, 1.0),
                         coarse=parareal.ScipyIVP("Radau", rtol=1e-3, atol=1e-6),
                         fine=parareal.ScipyIVP("Radau", rtol=1e-10, atol=1e-12),
                         slices=5, tol=1e-9)
    assert sol.converged
    np.testing.assert_allclose(sol.y_final, np.exp(lam), atol=1e-8)


def test_torchdiffeq_wrapper_matches_torchdiffeq():
    torch = pytest.importorskip("torch")
    torchdiffeq = pytest.importorskip("torchdiffeq")
    prop = parareal.TorchDiffEq("dopri5", rtol=1e-9, atol=1e-11)
    y0 = torch.tensor([1.0, 0.5], dtype=torch.float64)

    def g(t, y):
        return -y * (1 + t)

    got = prop.propagate(g, y0, 0.2, 1.3)
    want = torchdiffeq.odeint(g, y0, torch.tensor([0.2, 1.3], dtype=torch.float64),
                              method="dopri5", rtol=1e-9, atol=1e-11)[-1]
    assert torch.equal(got, want)
    np_out = prop.propagate(lambda t, y: -y, np.ones(2), 0.0, 1.0)
    assert isinstance(np_out, np.ndarray)
    np.testing.assert_allclose(np_out, np.exp(-1.0), rtol=1e-7)
