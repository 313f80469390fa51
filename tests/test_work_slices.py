"""``solve(boundaries="work")``: slices chosen from the work of one loose adaptive solve."""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest

import parareal
from parareal import Status, problems

from .conftest import needs
from .inprocess import run_forked_here

#: The loose solve that places the slices is scipy's, and so is the fine solver here.
SCIPY = needs("scipy")


def transient(t, y):
    """A fast initial transient (rate 1e3) onto a slow decay: equal slices put all the
    work of an adaptive fine solver in the first one."""
    return np.array([-1e3 * (y[0] - np.cos(t)), -0.5 * y[1]])


def _solve(slices=8, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", parareal.NoSpeedupWarning)
        return parareal.solve(transient, np.array([0.0, 1.0]), (0.0, 10.0),
                              fine=parareal.ScipyIVP("Radau", rtol=1e-8, atol=1e-10),
                              slices=slices, **kw)


@functools.cache
def _serial_fine(boundaries: tuple[float, ...]) -> np.ndarray:
    """The serial fine solution over ``boundaries`` (the same for both schedules' slices)."""
    return parareal.solve_serial(transient, np.array([0.0, 1.0]), (0.0, 10.0),
                                 propagator=parareal.ScipyIVP("Radau", rtol=1e-8, atol=1e-10),
                                 slices=len(boundaries) - 1, boundaries=np.array(boundaries))


@SCIPY
@pytest.mark.parametrize("schedule", ["synchronous", "pipelined"])
def test_work_slices_reproduce_the_serial_fine_solution_over_their_boundaries(schedule):
    # 4 slices, not 8: tol = 0 runs every iteration (10 fine solves instead of 36), and the
    # transient still gets a short first slice (t[1] = 0.01 against 2.5 for equal slices)
    sol = _solve(slices=4, boundaries="work", schedule=schedule, tol=0.0)
    assert sol.status is Status.CONVERGED
    t = sol.t
    assert t[0] == 0.0 and t[-1] == 10.0 and np.all(np.diff(t) > 0) and len(t) == 5
    assert not np.allclose(np.diff(t), 10.0 / 4)  # not the equal slices
    assert t[1] < 10.0 / 4  # the transient gets the short first slices
    serial = _serial_fine(tuple(t.tolist()))
    np.testing.assert_array_equal(sol.y, serial)  # exact after N iterations


@SCIPY
def test_work_slices_balance_the_fine_work_of_a_transient():
    equal = _solve()
    work = _solve(boundaries="work")
    assert work.status is Status.CONVERGED and equal.status is Status.CONVERGED
    assert work.stats.speedup_bound > equal.stats.speedup_bound


@SCIPY
def test_work_slices_are_the_same_on_every_backend():
    p = problems.get("robertson")
    runs = [parareal.solve(p.f, p.y0, p.t_span, fine=p.fine, slices=8, jac=p.jacobian,
                           boundaries="work", backend=backend, vectorized=backend != "serial")
            for backend in ("serial", "batched", "threads")]
    for sol in runs[1:]:
        np.testing.assert_array_equal(sol.t, runs[0].t)
        np.testing.assert_array_equal(sol.y, runs[0].y)
        assert sol.stats.critical_path == runs[0].stats.critical_path


@SCIPY
@pytest.mark.parametrize("kw, exc, match", [
    (dict(boundaries="balanced"), ValueError, 'boundaries must be "work"'),
    (dict(boundaries="work", initial=np.zeros((9, 2))), ValueError, "initial cannot be given"),
    (dict(boundaries="work", checkpoint="c.npz"), ValueError, "checkpoint cannot be given"),
    (dict(boundaries="work", resume="c.npz"), ValueError, "resume cannot be given"),
])
def test_bad_work_slices_arguments(kw, exc, match):
    with pytest.raises(exc, match=match):
        _solve(**kw)


def test_work_slices_without_scipy_name_the_extra(tmp_path):
    # a numpy-only install (scipy made unimportable): a clear ImportError before any work,
    # not an AttributeError from inside the run
    code = ("import numpy as np, parareal\n"
            "calls = []\n"
            "def f(t, y):\n"
            "    calls.append(t)\n"
            "    return -y\n"
            "try:\n"
            "    parareal.solve(f, np.ones(2), (0, 1), fine='rk4:4', slices=4,\n"
            "                   boundaries='work')\n"
            "except ImportError as exc:\n"
            "    print(len(calls), exc)\n")
    # forked from this interpreter with parareal forgotten and scipy unimportable: the same
    # first import of parareal as in a fresh numpy-only interpreter, without starting one
    (proc,) = run_forked_here([code], fresh=["parareal"], absent=["scipy"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ("0 boundaries=\"work\" needs scipy (one loose LSODA solve "
                                   "places the slices): pip install 'parareal[scipy]'")
