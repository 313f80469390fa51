"""Tolerances that follow the state's dtype (issue 17): ``tol=None``, ``default_tolerance``,
``ToleranceWarning``."""

from __future__ import annotations

import functools
import sys
import warnings

import numpy as np
import pytest

import parareal
from parareal import ToleranceWarning, default_tolerance, problems
from parareal.tolerance import RESOLUTION, resolve_tolerance, smallest_tolerance

from .conftest import needs

EPS32 = float(np.finfo(np.float32).eps)
DEMO = ["dahlquist", "dahlquist-complex", "brusselator", "lorenz", "vanderpol", "heat"]


class TorchValue:
    """A parameter made from torch when the test runs (``build(torch)``), so that collecting
    the module needs no torch; :func:`torch_param` skips it where torch is missing."""

    def __init__(self, build):
        self.build = build

    def make(self):
        import torch

        return self.build(torch)


def torch_param(build, id):
    return pytest.param(TorchValue(build), marks=needs("torch"), id=id)


def value(param):
    """A parameter as the test uses it (a :class:`TorchValue` made now)."""
    return param.make() if isinstance(param, TorchValue) else param


def test_float64_default_is_the_historical_one():
    assert default_tolerance(np.float64) == 1e-8
    assert default_tolerance(np.ones(3) * 1e5) == 1e-8
    assert default_tolerance(np.complex128) == 1e-8
    assert default_tolerance(np.longdouble) == 1e-8


def test_torch_float64_default_is_the_historical_one():
    torch = pytest.importorskip("torch")
    assert default_tolerance(torch.float64) == 1e-8


@pytest.mark.parametrize("dtype, eps", [
    (np.float32, EPS32), (np.complex64, EPS32), ("float16", float(np.finfo(np.float16).eps)),
    *[pytest.param(TorchValue(lambda torch, n=name: getattr(torch, n)), eps,
                   marks=needs("torch"), id=f"torch.{name}")
      for name, eps in (("float32", EPS32), ("complex64", EPS32), ("bfloat16", 2.0**-7),
                        ("float16", 2.0**-10))],
])
def test_lower_precision_default_is_a_multiple_of_eps_times_the_scale(dtype, eps):
    dtype = value(dtype)
    assert default_tolerance(dtype) == pytest.approx(RESOLUTION * eps)
    assert default_tolerance(dtype, scale=100.0) == pytest.approx(100 * RESOLUTION * eps)
    assert smallest_tolerance(dtype, scale=2.0) < default_tolerance(dtype, scale=2.0)


def test_state_gives_its_scale():
    assert default_tolerance(np.full(3, -50.0, dtype=np.float32)) == pytest.approx(
        50 * RESOLUTION * EPS32)
    assert default_tolerance(np.zeros(3, dtype=np.float32)) == default_tolerance(np.float32)


def test_a_torch_state_gives_its_scale():
    torch = pytest.importorskip("torch")
    assert default_tolerance(torch.full((2, 2), 50.0)) == pytest.approx(50 * RESOLUTION * EPS32)


@pytest.mark.parametrize("bad", [np.int64, torch_param(lambda torch: torch.int32, "torch.int32"),
                                 "banana", None, 3.0, True, [1.0]])
def test_bad_dtype_is_a_type_error_naming_the_argument(bad):
    bad = value(bad)
    with pytest.raises(TypeError, match="dtype_or_state"):
        default_tolerance(bad)


def test_bad_scale():
    with pytest.raises(ValueError, match="scale"):
        default_tolerance(np.float32, scale=0.0)
    with pytest.raises(TypeError, match="scale"):
        default_tolerance(np.float32, scale="big")


def test_bad_tol_names_it():
    f = lambda t, y: -y  # noqa: E731
    with pytest.raises(TypeError, match="tol"):
        parareal.solve(f, np.ones(1), (0, 1), coarse="rk4:1", fine="rk4:4", slices=2, tol="x")
    with pytest.raises(ValueError, match="tol"):
        parareal.solve(f, np.ones(1), (0, 1), coarse="rk4:1", fine="rk4:4", slices=2, tol=-1.0)


def _run(p, y0, f=None, **kw):
    return parareal.solve(f or p.f, y0, p.t_span, coarse=p.coarse, fine=p.fine,
                          slices=p.slices, backend="batched", vectorized=True, **kw)


def _torch_f(f):
    torch = sys.modules["torch"]  # the state is a tensor: torch is loaded
    return lambda t, y: torch.from_numpy(np.asarray(f(t.numpy(), y.numpy())))


@functools.cache
def _float64_default(name):
    """The float64 run with the default tolerance, once per problem (read-only here)."""
    p = problems.get(name)
    return _run(p, p.y0)


@functools.cache
def _serial_fine(name):
    p = problems.get(name)
    out = parareal.solve_serial(p.f, p.y0, p.t_span, propagator=p.fine, slices=p.slices)
    out.setflags(write=False)
    return out


@functools.cache
def _float32_at_float64_tol(name):
    """The numpy float32 run at tol=1e-8 (the same for both kinds of
    test_float32_converges_like_float64_at_float32_accuracy), with the warnings it gave."""
    p = problems.get(name)
    y32 = p.y0.astype(np.complex64 if p.y0.dtype.kind == "c" else np.float32)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        sol = _run(p, y32, tol=1e-8)
    return sol, tuple(w.category for w in record)


@pytest.mark.parametrize("name", DEMO)
def test_float64_default_run_is_unchanged(name):
    p = problems.get(name)
    default, legacy = _float64_default(name), _run(p, p.y0, tol=1e-8)
    assert default.iterations == legacy.iterations and np.array_equal(default.y, legacy.y)


@pytest.mark.parametrize("kind", ["numpy", pytest.param("torch", marks=needs("torch"))])
@pytest.mark.parametrize("name", DEMO)
def test_float32_converges_like_float64_at_float32_accuracy(name, kind):
    p = problems.get(name)
    ref = _serial_fine(name)
    scale = float(np.abs(ref).max())
    k64 = _float64_default(name).iterations
    y32 = p.y0.astype(np.complex64 if p.y0.dtype.kind == "c" else np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", parareal.NoSpeedupWarning)  # about speed, not tol
        if kind == "numpy":
            sol = _run(p, y32)
            y = sol.y
        else:
            import torch

            sol = _run(p, torch.from_numpy(y32), f=_torch_f(p.f))
            y = sol.y.numpy()
    assert sol.converged and y.dtype == y32.dtype
    assert 1 <= sol.iterations <= k64 + 1 < p.slices  # not by exactness
    # as close to the float64 serial fine solution as float32 holds (the float32 serial fine
    # solution itself is 0.5 to 43 eps * max|U| away on these problems)
    assert np.abs(y - ref).max() <= 100 * EPS32 * scale
    # and the float64 tolerance would have run (nearly) every slice, with a warning
    stuck, warned = _float32_at_float64_tol(name)
    assert ToleranceWarning in warned
    assert stuck.iterations >= min(p.slices, k64 + 2)


def test_warning_names_dtype_tolerance_and_smallest():
    with pytest.warns(ToleranceWarning) as record:
        resolve_tolerance(1e-9, 0.0, np.full(2, 10.0, dtype=np.float32))
    warning = record[0].message
    assert warning.dtype == "float32" and warning.tol == 1e-9
    assert warning.smallest == pytest.approx(smallest_tolerance(np.float32, scale=10.0))
    assert "float32" in str(warning) and "1e-09" in str(warning)
    assert f"{warning.smallest:.3g}" in str(warning)
    assert issubclass(ToleranceWarning, UserWarning)


@pytest.mark.parametrize("y0", [
    np.ones(2, np.float32),
    torch_param(lambda torch: torch.ones(2, dtype=torch.bfloat16), "torch.bfloat16"),
    np.ones(2, np.float64) * 1e3])
def test_tiny_explicit_tolerances_warn_from_solve(y0):
    y0 = value(y0)
    tol = 1e-15 if y0.dtype == np.float64 else 1e-8
    with pytest.warns(ToleranceWarning):
        parareal.solve(lambda t, y: -y, y0, (0, 1), coarse="euler:1", fine="euler:2",
                       slices=2, tol=tol)


@pytest.mark.parametrize("tol, rtol", [(0.0, 0.0), (1e-4, 0.0), (0.0, 1e-5), (None, 0.0)])
def test_sensible_tolerances_do_not_warn(tol, rtol):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", parareal.NoSpeedupWarning)  # about speed, not tol
        parareal.solve(lambda t, y: -y, np.ones(2, np.float32), (0, 1), coarse="euler:1",
                       fine="euler:2", slices=2, tol=tol, rtol=rtol)
        resolve_tolerance(1e-12, 0.0, np.ones(2))  # float64: 1e-12 is fine


def test_tol_zero_runs_max_iters_without_warning():
    torch = pytest.importorskip("torch")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", parareal.NoSpeedupWarning)  # about speed, not tol
        sol = parareal.solve(lambda t, y: -y, torch.ones(2), (0, 1), coarse="euler:1",
                             fine="euler:4", slices=4, tol=0.0, rtol=0.0, max_iters=3)
    assert sol.iterations == 3


def test_default_follows_growing_states():
    # float32 Lorenz grows from max|y0| = 1 to 47: the default's relative part follows it
    tol, rtol = resolve_tolerance(None, 0.0, np.ones(3, np.float32))
    assert tol == pytest.approx(RESOLUTION * EPS32) and rtol == pytest.approx(RESOLUTION * EPS32)
    assert resolve_tolerance(None, 1e-3, np.ones(3, np.float32))[1] == 1e-3
    assert resolve_tolerance(None, 0.0, np.ones(3)) == (1e-8, 0.0)


@pytest.mark.parametrize("name", ["brusselator", "dahlquist-complex"])
def test_cli_default_tol_follows_the_same_rule(capsys, name):
    from tests.test_cli import run_json

    # a fixed coarse instead of the default "auto" (whose probe was 3/4 of the time): the
    # iterations still follow tol by the decade here (rk4:1: 6, 7, 8 at 1e-6, 1e-8, 1e-10 on
    # both problems), so another default would show
    coarse = ("--coarse", "rk4:1")
    default = run_json(capsys, name, *coarse)
    explicit = run_json(capsys, name, *coarse, "--tol", "1e-8")  # float64: the same run
    assert default["iterations"] == explicit["iterations"]
    assert default["residuals"] == explicit["residuals"] and default["error"] == explicit["error"]
