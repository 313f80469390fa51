"""parareal.odeint as a drop-in for torchdiffeq.odeint."""

from __future__ import annotations

import numpy as np
import pytest

import parareal

torch = pytest.importorskip("torch")
torchdiffeq = pytest.importorskip("torchdiffeq")


def rhs(t, y):
    return torch.stack([y[1], -y[0] - 0.1 * y[1] + torch.sin(t)])


Y0 = torch.tensor([1.0, 0.0], dtype=torch.float64)
T = torch.linspace(0.0, 4.0, 13, dtype=torch.float64)


@pytest.mark.parametrize("method", ["euler", "midpoint", "rk4"])
@pytest.mark.parametrize("slices", [None, 4, 1])
def test_fixed_grid_matches_torchdiffeq_to_round_off(method, slices):
    expected = torchdiffeq.odeint(rhs, Y0, T, method=method)
    got = parareal.odeint(rhs, Y0, T, method=method, slices=slices, tol=0)
    assert got.shape == expected.shape and got.dtype == expected.dtype
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-13)


@pytest.mark.parametrize("schedule", ["synchronous", "pipelined"])
def test_step_size_option_matches_torchdiffeq(schedule):
    t = torch.linspace(0.0, 2.0, 5, dtype=torch.float64)
    expected = torchdiffeq.odeint(rhs, Y0, t, method="rk4", options={"step_size": 0.125})
    got = parareal.odeint(rhs, Y0, t, method="rk4", options={"step_size": 0.125}, tol=0,
                          schedule=schedule)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-13)


def test_adaptive_method_agrees_within_tolerance():
    expected = torchdiffeq.odeint(rhs, Y0, T, method="dopri5", rtol=1e-9, atol=1e-11)
    got = parareal.odeint(rhs, Y0, T, method="dopri5", rtol=1e-9, atol=1e-11, tol=1e-10)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-7)


def test_float32_and_converged_early():
    y0 = Y0.to(torch.float32)
    t = T.to(torch.float32)
    expected = torchdiffeq.odeint(rhs, y0, t, method="rk4")
    got = parareal.odeint(rhs, y0, t, method="rk4", tol=1e-6)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_vectorized_batched_odeint():
    def batched(t, y):
        return torch.stack([y[..., 1], -y[..., 0] - 0.1 * y[..., 1] + torch.sin(t)], dim=-1)

    expected = torchdiffeq.odeint(rhs, Y0, T, method="rk4")
    got = parareal.odeint(batched, Y0, T, method="rk4", tol=0, backend="batched",
                          vectorized=True, schedule="pipelined")
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-13)


def test_numpy_inputs():
    def f(t, y):
        return np.array([y[1], -y[0]])

    t = np.linspace(0, 1, 6)
    got = parareal.odeint(f, np.array([1.0, 0.0]), t, method="rk4", tol=0)
    assert isinstance(got, np.ndarray) and got.shape == (6, 2)
    np.testing.assert_allclose(got[:, 0], np.cos(t), atol=1e-5)
