"""Propagators: convergence order, agreement with scipy and torchdiffeq, steppable protocol."""

from __future__ import annotations

import numpy as np
import pytest

import parareal
from parareal import RK4, Euler, Heun, Midpoint

FIXED = [(Euler, 1), (Heun, 2), (Midpoint, 2), (RK4, 4)]


def f(t, y):
    return np.array([y[1], -y[0]]) + np.array([0.0, np.cos(2 * t)])


def exact(t):
    # y'' + y = cos 2t, y(0)=1, y'(0)=0
    c = 1 + 1 / 3
    return np.array([c * np.cos(t) - np.cos(2 * t) / 3, -c * np.sin(t) + 2 * np.sin(2 * t) / 3])


@pytest.mark.parametrize("cls,order", FIXED)
def test_convergence_order(cls, order):
    y0 = exact(0.0)
    errs = [np.max(np.abs(cls(steps=n).propagate(f, y0, 0.0, 2.0) - exact(2.0)))
            for n in (20, 40, 80)]
    rates = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    assert np.all(np.abs(rates - order) < 0.2), rates


@pytest.mark.parametrize("variant", ["classic", "3/8"])
def test_rk4_variants_are_fourth_order(variant):
    y0 = exact(0.0)
    e1 = np.max(np.abs(RK4(20, variant=variant).propagate(f, y0, 0, 2) - exact(2.0)))
    e2 = np.max(np.abs(RK4(40, variant=variant).propagate(f, y0, 0, 2) - exact(2.0)))
    assert abs(np.log2(e1 / e2) - 4) < 0.2


@pytest.mark.parametrize("cls,order", FIXED)
def test_stepper_yields_stages_times_steps_requests(cls, order):
    prop = cls(steps=3)
    gen = prop.stepper(np.ones(2), 0.0, 1.0)
    count = 0
    try:
        t, y = next(gen)
        while True:
            count += 1
            assert 0.0 <= t <= 1.0
            t, y = gen.send(f(t, y))
    except StopIteration as stop:
        assert np.array_equal(stop.value, prop.propagate(f, np.ones(2), 0.0, 1.0))
    assert count == prop.evals == 3 * prop.stages


def test_propagators_keep_no_state_between_calls():
    prop = RK4(5)
    a = prop.propagate(f, np.ones(2), 0.0, 1.0)
    prop.propagate(f, np.zeros(2), 3.0, 7.0)
    assert np.array_equal(prop.propagate(f, np.ones(2), 0.0, 1.0), a)


def test_registry_specs():
    assert parareal.propagators.from_spec("RK4:20") == RK4(20)
    assert parareal.propagators.from_spec("euler") == Euler(1)
    assert repr(parareal.propagators.from_spec("heun:3")) == "Heun(steps=3)"
    assert parareal.propagators.from_spec("scipy:Radau").method == "Radau"
    with pytest.raises(ValueError, match="needs a method"):
        parareal.propagators.from_spec("scipy")


@pytest.mark.parametrize("method", ["RK45", "DOP853", "Radau", "BDF", "LSODA"])
def test_scipy_ivp_agrees_with_exact(method):
    pytest.importorskip("scipy")
    prop = parareal.ScipyIVP(method, rtol=1e-10, atol=1e-12)
    out = prop.propagate(f, exact(0.0), 0.0, 2.0)
    np.testing.assert_allclose(out, exact(2.0), atol=1e-6)


def test_scipy_ivp_keeps_shape_and_torch_kind():
    pytest.importorskip("scipy")
    torch = pytest.importorskip("torch")
    prop = parareal.ScipyIVP("DOP853", rtol=1e-10, atol=1e-12)
    y = prop.propagate(lambda t, y: -y, np.ones((2, 2)), 0.0, 1.0)
    np.testing.assert_allclose(y, np.exp(-1.0) * np.ones((2, 2)), rtol=1e-8)
    yt = prop.propagate(lambda t, y: -y, torch.ones(3, dtype=torch.float32), 0.0, 1.0)
    assert isinstance(yt, torch.Tensor) and yt.dtype == torch.float32


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
