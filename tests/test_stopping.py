"""Stopping rules as objects the engine asks (``solve(stop=)``): the default rule is the old
``tol``/``rtol`` test bit for bit; the final-value and pymgrit residual rules agree with
independent computations on every backend and schedule; a user's rule stops, diverges and is
checked; the rule's state reaches ``Solution.stop_state`` (on every MPI rank too)."""

from __future__ import annotations

import json
import math
import sys
import warnings

import numpy as np
import pytest

import parareal
from parareal import FinalChange, FineResidual, MaxUpdate, Status, StopRule

from .test_mpi import SCRIPTS, mpirun_rows, needs_mpi

SPAN = (0.0, 2.0)
OPTS = dict(coarse="rk4:1", fine="rk4:20", slices=8)


def f(t, y):
    return np.stack([y[..., 1], -np.sin(y[..., 0])], axis=-1) - 0.1 * y  # vectorised


Y0 = np.array([1.2, 0.3])


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", parareal.NoSpeedupWarning)
        yield


@pytest.mark.parametrize("tol,rtol", [(None, 0.0), (1e-6, 0.0), (0.0, 1e-7), (1e-9, 1e-9),
                                      (0.0, 0.0)])
def test_the_default_rule_is_the_tol_rtol_test_bit_for_bit(tol, rtol):
    a = parareal.solve(f, Y0, SPAN, tol=tol, rtol=rtol, **OPTS)
    b = parareal.solve(f, Y0, SPAN, stop=MaxUpdate(tol, rtol), **OPTS)
    assert np.array_equal(a.y, b.y) and a.iterations == b.iterations
    assert a.status is b.status and a.residuals == b.residuals and a.reason == b.reason
    assert a.stop_state == b.stop_state and a.stop_state["rule"] == "max-update"
    if tol is None:
        assert a.stop_state["tol"] == parareal.default_tolerance(Y0)


def _iterates(**kw):
    seen = []
    sol = parareal.solve(f, Y0, SPAN, tol=0.0, callback=lambda info: seen.append(info.y), **kw)
    return sol, seen


@pytest.mark.parametrize("backend", ["serial", "batched", "threads"])
@pytest.mark.parametrize("schedule", ["synchronous", "pipelined"])
def test_the_fine_residual_rule_is_pymgrits_residual_of_the_previous_iterate(backend, schedule):
    _, iterates = _iterates(**OPTS)
    fine = parareal.RK4(steps=20)
    t = np.linspace(*SPAN, OPTS["slices"] + 1)
    expected = []  # || F(U_n^j) - U_{n+1}^j ||_2 over every boundary, from serial propagations
    for u in iterates[:-1]:
        r = [fine.propagate(f, u[n], t[n], t[n + 1]) - u[n + 1] for n in range(len(t) - 1)]
        expected.append(float(np.linalg.norm(np.concatenate(r))))
    tol = expected[2] * 1.01  # met by the residual of iterate 2, so the run stops at iterate 3
    sol = parareal.solve(f, Y0, SPAN, stop=FineResidual(tol), backend=backend,
                         schedule=schedule, vectorized=backend != "serial", **OPTS)
    assert sol.status is Status.CONVERGED and sol.iterations == 3
    np.testing.assert_allclose(sol.stop_state["residuals"], expected[:3], rtol=1e-12, atol=0)
    assert np.array_equal(sol.y, iterates[3])  # the iterate it stopped at, unchanged
    assert "fine residual" in sol.reason and "of iterate 2" in sol.reason


def test_the_final_change_rule_tests_the_last_boundary_alone_in_the_callers_norm():
    _, iterates = _iterates(**OPTS)
    changes = [float(np.sqrt(np.mean((b[-1] - a[-1]) ** 2))) / 2.0
               for a, b in zip(iterates, iterates[1:])]
    tol = changes[1] * 1.01
    rule = FinalChange(tol, norm=lambda d: float(np.sqrt(np.mean(d ** 2))), scale=2.0)
    sol = parareal.solve(f, Y0, SPAN, stop=rule, **OPTS)
    assert sol.iterations == 2 and sol.status is Status.CONVERGED
    assert sol.stop_state["changes"] == pytest.approx(changes[:2], rel=1e-15)
    # the prediction stops no later than the update rule does
    guess = parareal.solve(f, Y0, SPAN, stop=FinalChange(tol, how="estimate"), **OPTS)
    assert guess.iterations <= parareal.solve(f, Y0, SPAN, stop=FinalChange(tol), **OPTS
                                              ).iterations
    # a rule object can be used again: its state is reset when a run starts
    again = parareal.solve(f, Y0, SPAN, stop=rule, **OPTS)
    assert again.stop_state == sol.stop_state


class StopAt(StopRule):
    """A user's rule: stop at a given iterate, or say it diverged there."""

    name = "stop-at"

    def __init__(self, k, verdict=Status.CONVERGED):
        self.k, self.verdict, self.seen = k, verdict, []

    def start(self):
        self.seen = []

    def check(self, iterate):
        self.seen.append((iterate.iteration, iterate.final.copy()))
        return self.verdict if iterate.iteration == self.k else None

    def state(self):
        return {"rule": self.name, "seen": [k for k, _ in self.seen]}


def test_a_users_rule_stops_the_run_and_its_state_is_in_the_solution():
    sol, iterates = _iterates(**OPTS)
    rule = StopAt(3)
    got = parareal.solve(f, Y0, SPAN, stop=rule, **OPTS)
    assert got.iterations == 3 and got.status is Status.CONVERGED
    assert got.stop_state == {"rule": "stop-at", "seen": [0, 1, 2, 3]}
    assert np.array_equal(got.y, iterates[3])
    for k, final in rule.seen:  # the rule saw each iterate's final value
        assert np.array_equal(final, iterates[k][-1])
    assert got.reason == "the stopping rule 'stop-at' was met"


def test_a_rule_that_sees_divergence_returns_the_last_finite_iterate():
    _, iterates = _iterates(**OPTS)
    got = parareal.solve(f, Y0, SPAN, stop=StopAt(2, Status.DIVERGED), **OPTS)
    assert got.status is Status.DIVERGED and got.iterations == 1
    assert np.array_equal(got.y, iterates[1])
    assert "stopping rule 'stop-at' saw NaN or inf at iteration 2" in got.reason
    with pytest.raises(parareal.DivergenceError):
        parareal.odeint(f, Y0, np.linspace(*SPAN, 3), method="rk4",
                        options={"step_size": 0.1}, slices=4,
                        stop=StopAt(1, Status.DIVERGED))


def test_the_final_change_rule_calls_a_non_finite_change_divergence():
    def norm(delta):
        return math.inf

    got = parareal.solve(f, Y0, SPAN, stop=FinalChange(1e-6, norm=norm), **OPTS)
    assert got.status is Status.DIVERGED and got.iterations == 0
    assert got.stop_state["diverged"] is True and got.stop_state["changes"] == ()
    assert got.reason.endswith("saw NaN or inf at iteration 1; the last finite iterate (0) is "
                               "returned")
    first = parareal.solve(f, Y0, SPAN, stop=StopAt(0, Status.DIVERGED), **OPTS)
    assert first.iterations == 0 and first.status is Status.DIVERGED
    assert first.reason.endswith("iteration 0; iterate 0 is returned as it is")
    assert len(first.stats.critical_path_per_iteration) == 1


def test_bad_rules_get_clear_errors():
    with pytest.raises(TypeError, match="stop must be a parareal.StopRule"):
        parareal.solve(f, Y0, SPAN, stop="max-update", **OPTS)
    with pytest.raises(ValueError, match="tol and rtol set the default stopping rule"):
        parareal.solve(f, Y0, SPAN, stop=MaxUpdate(1e-6), tol=1e-6, **OPTS)
    with pytest.raises(ValueError, match="tol must be >= 0"):
        MaxUpdate(-1.0)
    with pytest.raises(ValueError, match="rtol must be >= 0"):
        MaxUpdate(1e-6, rtol=-1.0)
    with pytest.raises(ValueError, match="how must be one of"):
        FinalChange(1e-6, how="guess")
    with pytest.raises(ValueError, match="scale must be a finite number > 0"):
        FinalChange(1e-6, scale=0.0)
    with pytest.raises(TypeError, match="norm must be callable"):
        FinalChange(1e-6, norm=2)
    with pytest.raises(TypeError, match="Can't instantiate abstract class"):
        StopRule()


def test_a_checkpoint_resumes_only_under_the_rule_it_was_written_with(tmp_path):
    path = tmp_path / "run.ckpt"
    parareal.solve(f, Y0, SPAN, stop=FinalChange(1e-9), checkpoint=path, max_iters=2, **OPTS)
    with pytest.raises(ValueError, match=r"the stopping rule differs \(checkpoint FinalChange"):
        parareal.solve(f, Y0, SPAN, stop=FineResidual(1e-9), resume=path, **OPTS)
    with pytest.raises(ValueError, match=r"this run MaxUpdate\(tol, rtol\)"):
        parareal.solve(f, Y0, SPAN, resume=path, **OPTS)
    full = parareal.solve(f, Y0, SPAN, stop=FinalChange(1e-9), **OPTS)
    resumed = parareal.solve(f, Y0, SPAN, stop=FinalChange(1e-9), resume=path, **OPTS)
    assert np.array_equal(full.y, resumed.y) and full.iterations == resumed.iterations


@needs_mpi
def test_every_mpi_rank_gets_the_rules_state(tmp_path):
    proc, rows = mpirun_rows(3, sys.executable, str(SCRIPTS / "mpi_stopping.py"),
                             folder=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [r["rank"] for r in rows] == [0, 1, 2]
    alone = parareal.solve(f, Y0, SPAN, stop=FineResidual(1e-9), **OPTS)
    for row in rows:
        assert row["iterations"] == alone.iterations
        assert row["stop_state"] == json.loads(json.dumps(alone.stop_state))
