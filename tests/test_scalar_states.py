"""A scalar ODE (0-d state) works on every entry point, backend and propagator."""

from __future__ import annotations

import math

import numpy as np
import pytest

import parareal

from .conftest import needs


def _tensor():
    import torch

    return torch.tensor(1.0, dtype=torch.float64)


SCALARS = {
    "0-d array": lambda: np.array(1.0),
    "np.float64": lambda: np.float64(1.0),
    "float": lambda: 1.0,
    "0-d tensor": _tensor,
}
#: The kinds as parameters: the tensor needs torch.
KINDS = [pytest.param(kind, marks=needs("torch")) if "tensor" in kind else kind
         for kind in SCALARS]
#: For odeint, whose default method (dopri5) is scipy's RK45 for numpy, torchdiffeq's for torch.
ODEINT_KINDS = [pytest.param(kind, marks=needs("torch", "torchdiffeq") if "tensor" in kind
                             else needs("scipy")) for kind in SCALARS]
EXPECT = math.exp(-1.0)


def decay(t, y):
    return -y


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "backend,vectorized", [("serial", False), ("batched", False), ("batched", True)]
)
@pytest.mark.parametrize("schedule", ["synchronous", "pipelined"])
def test_solve_scalar(kind, backend, vectorized, schedule):
    sol = parareal.solve(decay, SCALARS[kind](), (0.0, 1.0), coarse="rk4:1", fine="rk4:10",
                         slices=4, tol=0, backend=backend, vectorized=vectorized,
                         schedule=schedule)
    assert tuple(sol.y.shape) == (5,)
    assert parareal.state.is_torch(sol.y) == (kind == "0-d tensor")
    assert tuple(sol.y_final.shape) == ()
    assert abs(float(sol.y_final) - EXPECT) < 1e-8
    serial = parareal.solve_serial(decay, SCALARS[kind](), (0.0, 1.0), propagator="rk4:10",
                                   slices=4)
    assert np.array_equal(np.asarray(sol.y), np.asarray(serial))  # bit for bit


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fine", [pytest.param("scipy:RK45", marks=needs("scipy")),
                                  pytest.param("scipy:Radau", marks=needs("scipy")),
                                  pytest.param("torchdiffeq:dopri5",
                                               marks=needs("torch", "torchdiffeq"))])
def test_adaptive_propagators_take_scalars(kind, fine):
    sol = parareal.solve(decay, SCALARS[kind](), (0.0, 1.0), coarse="rk4:1", fine=fine,
                         slices=3, tol=1e-10)
    assert sol.converged and tuple(sol.y.shape) == (4,)
    assert abs(float(sol.y_final) - EXPECT) < 1e-5


@pytest.mark.parametrize("kind", ODEINT_KINDS)
def test_odeint_scalar(kind):
    t = np.linspace(0.0, 1.0, 6)
    # four slices, not the default 16: with tol=0 a run takes an iteration per slice, and the
    # default coarse ("auto") probes every slice; 4 slices over 5 outputs still do not align
    out = parareal.odeint(decay, SCALARS[kind](), t, tol=0, slices=4)
    assert tuple(out.shape) == (6,)
    np.testing.assert_allclose(np.asarray(out), np.exp(-t), atol=1e-5)


def test_complex_scalar_and_warm_start():
    y0 = np.complex128(1.0)
    lam = -1.0 + 2.0j
    sol = parareal.solve(lambda t, y: lam * y, y0, (0.0, 1.0), coarse="rk4:2", fine="rk4:20",
                         slices=4, tol=0, initial=np.ones(5, dtype=complex))
    assert sol.y.dtype == np.complex128
    assert abs(complex(sol.y_final) - np.exp(lam)) < 1e-8
