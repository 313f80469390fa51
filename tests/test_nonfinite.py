"""No task starts on a non-finite state, in any schedule or backend (issue 23).

A propagator that checks its input (scipy's Radau and BDF do; so may a user's) must never
see NaN or inf: the run ends ``Status.DIVERGED`` with the synchronous schedule's result and
reason, whatever the schedule and backend.
"""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest

import parareal
from parareal import RK4, Euler, Propagator, Status
from parareal.backends import Processes

BACKENDS = ["serial", "batched", "threads", "processes"]
SCHEDULES = ["synchronous", "pipelined"]


class Strict(Propagator):
    """A user's propagator that refuses non-finite input, as scipy's implicit solvers do."""

    def __init__(self, inner: Propagator) -> None:
        self.inner = inner

    def __repr__(self) -> str:
        return f"Strict({self.inner!r})"

    @property
    def evals(self) -> int | None:
        return self.inner.evals

    def propagate(self, f, y, t0, t1):
        if not np.all(np.isfinite(y)):
            raise ValueError("Strict: array must not contain infs or NaNs")
        return self.inner.propagate(f, y, t0, t1)


def blow_up(t, y):
    """y' = y**2 (y(0) = 1 blows up at t = 1)."""
    return y * y


def capped(t, y):
    """y' = y**2, but NaN once y passes 50: the fine solution gets there, the coarse not."""
    return np.where(np.abs(y) > 50.0, np.nan, y * y)


CASES = {
    # the coarse sweep itself overflows: iterate 0 is not finite
    "coarse at iterate 0": dict(f=blow_up, span=(0.0, 3.0), coarse=Euler(steps=1),
                                fine=Strict(RK4(steps=10)), slices=24),
    # the coarse sweep is finite, a fine propagation of a later iteration is not
    "fine later": dict(f=capped, span=(0.0, 0.99), coarse=Euler(steps=1),
                                fine=Strict(RK4(steps=40)), slices=8),
}


@pytest.fixture(scope="module")
def processes():
    """One pool of worker processes for every run on the processes backend (a pool started
    for each run would spend most of its time starting interpreters)."""
    with Processes(2) as backend:
        yield backend
    assert not multiprocessing.active_children()


def _solve(case: dict, backend, schedule: str) -> parareal.Solution:
    with np.errstate(over="ignore", invalid="ignore"):
        return parareal.solve(case["f"], np.array([1.0]), case["span"], coarse=case["coarse"],
                              fine=case["fine"], slices=case["slices"], tol=1e-10,
                              backend=backend, schedule=schedule)


@pytest.mark.parametrize("name", sorted(CASES))
def test_synchronous_serial_reference_diverges(name):
    sol = _solve(CASES[name], "serial", "synchronous")
    assert sol.status is Status.DIVERGED
    assert "NaN or inf" in sol.reason
    # the last finite iterate: 0 when the coarse sweep overflows, later when a fine
    # propagation does (once its input has come close enough to the blow-up)
    assert (sol.iterations == 0) == (name == "coarse at iterate 0")


@pytest.mark.filterwarnings("ignore::parareal.NoSpeedupWarning")
@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_every_schedule_and_backend_ends_as_the_synchronous_one(request, name, backend,
                                                               schedule):
    case = CASES[name]
    reference = _solve(case, "serial", "synchronous")
    if backend == "processes":
        backend = request.getfixturevalue("processes")
    sol = _solve(case, backend, schedule)  # a task on NaN would raise Strict's ValueError
    assert sol.status is Status.DIVERGED
    assert sol.iterations == reference.iterations
    np.testing.assert_array_equal(sol.y, reference.y)  # NaN where the reference has NaN
    assert sol.reason == reference.reason


def test_scipy_propagators_return_nan_for_non_finite_input():
    pytest.importorskip("scipy")
    for method in ("Radau", "BDF", "RK45"):
        out = parareal.ScipyIVP(method).propagate(blow_up, np.array([np.nan]), 0.0, 1.0)
        assert np.isnan(out).all()


def test_torchdiffeq_returns_nan_for_non_finite_input():
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchdiffeq")
    out = parareal.TorchDiffEq("dopri5").propagate(
        lambda t, y: -y, torch.tensor([float("inf")], dtype=torch.float64), 0.0, 1.0)
    assert torch.isnan(out).all()


def test_scipy_internal_overflow_is_a_failed_propagation_not_a_crash():
    pytest.importorskip("scipy")
    # finite input so large that Radau's finite-difference Jacobian overflows inside scipy
    with pytest.warns(RuntimeWarning, match="solve_ivp failed"), \
            np.errstate(over="ignore", invalid="ignore"):
        out = parareal.ScipyIVP("Radau").propagate(blow_up, np.array([1e300]), 0.0, 1.0)
    assert np.isnan(out).all()


def test_errors_of_f_inside_scipy_still_propagate():
    pytest.importorskip("scipy")

    def broken(t, y):
        raise KeyError("the user's bug")

    with pytest.raises(KeyError, match="the user's bug"):
        parareal.ScipyIVP("Radau").propagate(broken, np.array([1.0]), 0.0, 1.0)
