"""Bad input gets a clear ValueError/TypeError naming the argument."""

from __future__ import annotations

import numpy as np
import pytest

import parareal
from parareal import RK4, Euler

from .conftest import needs


def f(t, y):
    return -y


GOOD = dict(coarse=Euler(1), fine=RK4(4), slices=4)


def call(**overrides):
    args = dict(f=f, y0=np.ones(2), t_span=(0.0, 1.0), **GOOD)
    args.update(overrides)
    return parareal.solve(args.pop("f"), args.pop("y0"), args.pop("t_span"), **args)


@pytest.mark.parametrize(
    "overrides,exc,match",
    [
        (dict(y0=np.array([1.0, np.nan])), ValueError, "y0 contains NaN or inf"),
        (dict(y0=np.array([np.inf])), ValueError, "y0 contains NaN or inf"),
        (dict(y0="abc"), TypeError, "y0"),
        (dict(y0=np.array(["a"])), TypeError, "y0"),
        (dict(t_span=(1.0, 1.0)), ValueError, "t_span is empty"),
        (dict(t_span=(1.0, 0.0)), ValueError, "t_span is inverted"),
        (dict(t_span=(0.0, 1.0, 2.0)), ValueError, "exactly two"),
        (dict(t_span=5.0), TypeError, "t_span"),
        (dict(t_span=(0.0, np.inf)), ValueError, "finite"),
        (dict(t_span=(0.0, "1")), TypeError, "t_span"),
        (dict(slices=0), ValueError, "slices must be >= 1"),
        (dict(slices=-3), ValueError, "slices must be >= 1"),
        (dict(slices=2.0), TypeError, "slices must be a positive int"),
        (dict(slices=True), TypeError, "slices"),
        (dict(slices="4"), TypeError, "slices"),
        (dict(tol=-1e-3), ValueError, "tol must be >= 0"),
        (dict(rtol=-1.0), ValueError, "rtol must be >= 0"),
        (dict(tol=float("nan")), ValueError, "tol must be finite"),
        (dict(tol="small"), TypeError, "tol"),
        (dict(max_iters=-1), ValueError, "max_iters"),
        (dict(max_iters=1.5), TypeError, "max_iters"),
        (dict(backend="gpu-magic"), ValueError, "unknown backend 'gpu-magic'; known: batched"),
        (dict(backend=3), TypeError, "backend"),
        (dict(schedule="eager"), ValueError, "schedule must be one of"),
        (dict(coarse="rk7"), ValueError, "unknown propagator 'rk7'"),
        (dict(fine=42), TypeError, "fine must be a Propagator"),
        (dict(fine="rk4:x"), ValueError, "steps must be an integer"),
        (dict(fine="rk4:0"), ValueError, "steps must be >= 1"),
        (dict(f=5), TypeError, "f must be callable"),
        (dict(callback=3), TypeError, "callback must be callable"),
        (dict(progress="yes"), TypeError, "progress"),
        (dict(vectorized=1), TypeError, "vectorized"),
        (dict(initial=np.ones((3, 2))), ValueError, "initial must be"),
    ],
)
def test_bad_arguments(overrides, exc, match):
    with pytest.raises(exc, match=match):
        call(**overrides)


@pytest.mark.parametrize(
    "make,exc,match",
    [
        (lambda torch: torch.tensor([float("nan")]), ValueError, "y0 contains NaN or inf"),
        (lambda torch: torch.tensor([1, 2]), TypeError, "y0 must have a floating"),
    ],
    ids=["nan", "int"],
)
def test_bad_torch_y0(make, exc, match):
    torch = pytest.importorskip("torch")
    with pytest.raises(exc, match=match):
        call(y0=make(torch))


def test_unknown_keyword_is_type_error():
    with pytest.raises(TypeError, match="unexpected keyword"):
        call(tolerance=1e-3)


def test_missing_required_keyword_is_type_error():
    with pytest.raises(TypeError):
        parareal.solve(f, np.ones(1), (0, 1), coarse=Euler(1), fine=RK4(2))


@pytest.mark.parametrize("cls", [parareal.Euler, parareal.Heun, parareal.Midpoint, parareal.RK4])
@pytest.mark.parametrize("steps,exc", [(0, ValueError), (-2, ValueError), (1.5, TypeError),
                                       ("3", TypeError), (True, TypeError)])
def test_bad_steps(cls, steps, exc):
    with pytest.raises(exc, match="steps"):
        cls(steps=steps)


def test_bad_rk4_variant():
    with pytest.raises(ValueError, match="variant must be one of"):
        RK4(2, variant="dormand")


def test_f_returning_wrong_shape():
    with pytest.raises(ValueError, match=r"f returned an array of shape \(3,\).*shape \(2,\)"):
        call(f=lambda t, y: np.ones(3))


def test_vectorized_f_returning_wrong_shape():
    with pytest.raises(ValueError, match="batched call"):
        call(f=lambda t, y: y[0], backend="batched", vectorized=True)


def test_f_returning_complex_for_real_state():
    with pytest.raises(TypeError, match="dtype complex128"):
        call(f=lambda t, y: y * 1j)


def test_f_returning_wrong_kind():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="torch tensor"):
        call(f=lambda t, y: torch.ones(2))
    with pytest.raises(TypeError, match="return a torch.Tensor"):
        call(y0=torch.ones(2), f=lambda t, y: np.ones(2))


def test_f_returning_float64_for_float32_state_is_cast():
    sol = call(y0=np.ones(2, dtype=np.float32), f=lambda t, y: -np.ones(2))
    assert sol.y.dtype == np.float32


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(method="RK99"), ValueError, "method must be one of"),
        (dict(rtol=-1), ValueError, "rtol"),
        (dict(atol=0), ValueError, "atol"),
        (dict(options=[1]), TypeError, "options"),
        (dict(options={"rtol": 1}), ValueError, "options may not set"),
    ],
)
def test_bad_scipy_ivp(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        parareal.ScipyIVP(**kwargs)


def test_bad_torchdiffeq_method():
    pytest.importorskip("torchdiffeq")
    with pytest.raises(ValueError, match="method must be one of"):
        parareal.TorchDiffEq(method="nope")


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(t=[]), ValueError, "at least one"),
        (dict(t=[0.0, 1.0, 0.5]), ValueError, "strictly increasing"),
        (dict(t=[[0.0, 1.0]]), ValueError, "1-D"),
        (dict(method=3), TypeError, "method"),
        # (without torchdiffeq: "unknown method 'dopri5' ... need pip install 'parareal[torch]'")
        pytest.param(dict(method="dopri5"), ValueError, "needs a torch tensor",
                     marks=needs("torchdiffeq")),
        (dict(coarse_method="dopri5"), ValueError, "coarse_method"),
        (dict(method="rk4", slices=5), ValueError, "slices must be <="),
        (dict(slices=0), ValueError, "slices"),
        (dict(method="rk4", options={"step_size": -1.0}), ValueError, "step_size"),
        (dict(backend="nope"), ValueError, "unknown backend"),
        (dict(tolerance=1), TypeError, "unexpected keyword"),
    ],
)
def test_bad_odeint_arguments(kwargs, exc, match):
    args = dict(func=f, y0=np.ones(2), t=[0.0, 0.5, 1.0])
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        parareal.odeint(args.pop("func"), args.pop("y0"), args.pop("t"), **args)


# -- what f returns, and how it is called ------------------------------------------------------

@pytest.mark.parametrize("value", [None, "abc", b"x", object(), {"a": 1}])
@pytest.mark.parametrize("backend,vectorized", [("serial", False), ("batched", True)])
def test_f_returning_a_non_array_is_a_type_error(value, backend, vectorized):
    with pytest.raises(TypeError, match="f returned"):
        call(f=lambda t, y: value, backend=backend, vectorized=vectorized)


def test_f_returning_none_for_a_torch_state_is_a_type_error():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="NoneType"):
        call(f=lambda t, y: None, y0=torch.ones(2, dtype=torch.float64))


@pytest.mark.parametrize("backend", ["serial", "batched"])
def test_non_vectorised_f_with_vectorized_true_is_explained(backend):
    def scalar_only(t, y):  # written for one state of shape (2,)
        return np.array([y[1], -y[0]])

    with pytest.raises(ValueError, match="vectorized=True, but f is not vectorised") as info:
        call(f=scalar_only, backend=backend, vectorized=True)
    assert "(B, *y0.shape)" in str(info.value)
    assert isinstance(info.value.__cause__, IndexError)


def test_wrong_batched_shape_explains_vectorized():
    with pytest.raises(ValueError, match="vectorized=True"):
        call(f=lambda t, y: y[0], backend="batched", vectorized=True)


def test_genuine_errors_inside_a_vectorised_f_propagate_unchanged():
    def broken(t, y):
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        call(f=broken, backend="batched", vectorized=True)


def test_callback_error_names_the_signature():
    with pytest.raises(TypeError, match="IterationInfo"):
        call(callback=3)


# -- warm starts ---------------------------------------------------------------------------------

def test_complex_initial_with_real_y0_is_refused():
    initial = np.ones((5, 2), dtype=complex) * (1 + 1j)
    with pytest.raises(TypeError, match="imaginary part would be dropped"):
        call(initial=initial)


def test_complex_torch_initial_with_real_y0_is_refused():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="imaginary part would be dropped"):
        call(y0=torch.ones(2, dtype=torch.float64),
             initial=torch.ones(5, 2, dtype=torch.complex128))


def test_real_initial_with_complex_y0_is_fine():
    sol = call(y0=np.ones(2, dtype=complex), initial=np.ones((5, 2)), tol=0)
    assert sol.y.dtype == np.complex128


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_initial_is_refused(bad):
    initial = np.ones((5, 2))
    initial[2, 1] = bad
    with pytest.raises(ValueError, match="initial contains NaN or inf"):
        call(initial=initial)


def test_initial_of_strings_is_refused():
    with pytest.raises(TypeError, match="initial must hold numbers"):
        call(initial=np.full((5, 2), "a"))
