"""The batched backend: check_backend and exactness on it, batching of f, numpy and torch."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import parareal
from parareal import RK4, Euler, Heun, Midpoint
from parareal.problems import Problem
from parareal.testing import backend as backend_check
from parareal.testing import check_backend, check_exactness, default_problems

from .conftest import diagonal_rhs
from .quick_problems import quick_problems

BACKENDS = ["serial", "batched"]
SCHEDULES = ["synchronous", "pipelined"]
PROPAGATOR_PAIRS = [(Euler(1), RK4(6)), (Heun(1), Midpoint(5)), (RK4(1), RK4(10))]


def _problem(dim=3):
    lam = -np.linspace(0.3, 2.0, dim)
    y0 = np.linspace(1.0, -1.0, dim)
    return diagonal_rhs(lam, forcing=0.5), y0


@pytest.mark.parametrize("coarse,fine", PROPAGATOR_PAIRS, ids=lambda p: repr(p))
@pytest.mark.parametrize("vectorized", [True, False])
def test_batched_backend_gives_the_serial_iterates(coarse, fine, vectorized):
    # elementwise f: batching does not change a single bit, in any schedule
    f, y0 = _problem()
    p = Problem(name="forced-diagonal", f=f, y0=y0, t_span=(0.0, 3.0), coarse=coarse,
                fine=fine, slices=6, description="y' = lam * y + 0.5 cos t, elementwise")
    check_backend("batched", problems=[p], vectorized=vectorized, tol=0.0)


def test_batched_backend_passes_check_backend_on_the_default_problems(monkeypatch):
    # check_backend's default path (problems=None: the numpy cases, then the torch ones),
    # on the default problems cut to their first slices: every problem kind at a fifth of
    # the cost (the serial references of the full lorenz and heat runs took most of 12 s).
    # A fresh reference cache, so no shortened reference outlives the test.
    quick = quick_problems()
    assert [p.name for p in quick] == [p.name for p in default_problems()]
    monkeypatch.setattr(backend_check, "default_problems", lambda: quick)
    monkeypatch.setattr(backend_check, "_REFERENCES", {})
    runs = check_backend(parareal.Batched())
    # + blow-up and linear (numpy), and the linear one as two torch dtypes where torch is
    torch_cases = 2 if importlib.util.find_spec("torch") else 0
    assert len(runs) == 2 * (len(parareal.problems.CORE) + 2 + torch_cases)


def test_batched_calls_f_once_per_tick_with_per_slice_times():
    shapes, times = [], []

    def f(t, y):
        shapes.append(y.shape)
        times.append(np.array(t))
        return -y

    sol = parareal.solve(f, np.ones((2, 3)), (0, 1), coarse=Euler(1), fine=RK4(3), slices=4,
                         tol=0, backend="batched", vectorized=True)
    assert sol.stats.f_calls == sol.stats.critical_path == len(shapes)
    assert all(s[1:] == (2, 3) for s in shapes)
    assert max(s[0] for s in shapes) == 4  # four slices in flight in the first fine phase
    assert all(t.shape == (s[0],) for t, s in zip(times, shapes, strict=True))
    assert sol.stats.f_evals == sum(s[0] for s in shapes)


def test_non_vectorized_f_works_with_batched_backend():
    f, y0 = _problem()

    def scalar_only(t, y):
        assert np.ndim(t) == 0 and y.shape == y0.shape
        return f(t, y)

    a = parareal.solve(scalar_only, y0, (0, 2), coarse=Euler(1), fine=RK4(4), slices=5,
                       backend="batched")
    b = parareal.solve(f, y0, (0, 2), coarse=Euler(1), fine=RK4(4), slices=5)
    assert np.array_equal(a.y, b.y)
    assert a.stats.f_calls == a.stats.f_evals


def test_vectorized_f_only_ever_sees_batches_even_on_serial_backend():
    def f(t, y):
        assert y.ndim == 2 and t.shape == (y.shape[0],)
        return -y

    sol = parareal.solve(f, np.ones(3), (0, 1), coarse=Euler(1), fine=RK4(3), slices=3,
                         vectorized=True)
    assert sol.converged


def test_backend_instances_are_accepted():
    f, y0 = _problem()
    a = parareal.solve(f, y0, (0, 1), coarse=Euler(1), fine=RK4(3), slices=3,
                       backend=parareal.Batched(), vectorized=True)
    b = parareal.solve(f, y0, (0, 1), coarse=Euler(1), fine=RK4(3), slices=3,
                       backend=parareal.Serial())
    assert np.array_equal(a.y, b.y)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_torch_matches_numpy_and_keeps_dtype(dtype, backend, schedule):
    torch = pytest.importorskip("torch")
    dtype = getattr(torch, dtype)
    lam = -np.linspace(0.3, 2.0, 4)
    lam_t = torch.tensor(lam, dtype=dtype)
    y0 = np.linspace(1.0, -1.0, 4)

    def f_torch(t, y):
        assert isinstance(t, torch.Tensor) and t.dtype == dtype
        return lam_t * y

    sol_t = parareal.solve(f_torch, torch.tensor(y0, dtype=dtype), (0, 2), coarse=Euler(1),
                           fine=RK4(8), slices=5, tol=0, backend=backend, schedule=schedule,
                           vectorized=backend == "batched")
    sol_n = parareal.solve(lambda t, y: lam * y, y0, (0, 2), coarse=Euler(1), fine=RK4(8),
                           slices=5, tol=0)
    assert isinstance(sol_t.y, torch.Tensor)
    assert sol_t.y.dtype == dtype and sol_t.y.shape == (6, 4)
    atol = 1e-6 if dtype == torch.float32 else 1e-14
    np.testing.assert_allclose(sol_t.y.numpy(), sol_n.y, atol=atol)
    ref = parareal.solve_serial(f_torch, torch.tensor(y0, dtype=dtype), (0, 2),
                                propagator=RK4(8), slices=5)
    assert torch.equal(sol_t.y, ref)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex128])
def test_numpy_dtypes_are_kept(dtype):
    lam = np.array([-1.0 + (1j if np.dtype(dtype).kind == "c" else 0)], dtype=dtype)
    sol = check_exactness(lambda t, y: lam * y, np.ones(1, dtype=dtype), (0, 1), Euler(1),
                          RK4(5), 4, backend="batched", vectorized=True)
    assert sol.y.dtype == dtype


def test_multidimensional_state_shape():
    rng = np.random.default_rng(0)
    lam = -rng.uniform(0.1, 2, size=(2, 3, 4))
    sol = check_exactness(lambda t, y: lam * y, rng.standard_normal((2, 3, 4)), (0, 1),
                          Euler(1), RK4(5), 3, backend="batched", vectorized=True)
    assert sol.y.shape == (4, 2, 3, 4)


def test_opaque_propagators_in_both_schedules():
    pytest.importorskip("scipy")
    f, y0 = _problem()
    fine = parareal.ScipyIVP("DOP853", rtol=1e-10, atol=1e-12)
    a = check_exactness(f, y0, (0, 2), RK4(1), fine, 5)
    b = check_exactness(f, y0, (0, 2), RK4(1), fine, 5, schedule="pipelined",
                        backend="batched", vectorized=True)
    assert np.array_equal(a.y, b.y)
    assert b.stats.critical_path < a.stats.critical_path
