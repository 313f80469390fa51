"""parareal.odeint as a drop-in for torchdiffeq.odeint."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import parareal

from .conftest import needs

#: The tests against torchdiffeq (all but the numpy ones: numpy inputs, bad times, blow-up).
TORCH = needs("torch", "torchdiffeq")
try:
    import torch
    import torchdiffeq
except ImportError:  # the tests marked TORCH skip
    pass
else:
    Y0 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    T = torch.linspace(0.0, 4.0, 13, dtype=torch.float64)
    #: Six output intervals: on a fixed grid the default is a slice per interval, and with
    #: tol=0 a run takes one iteration (and one coarse="auto" probe) per slice.
    T6 = torch.linspace(0.0, 4.0, 7, dtype=torch.float64)


def rhs(t, y):
    return torch.stack([y[1], -y[0] - 0.1 * y[1] + torch.sin(t)])


@TORCH
@pytest.mark.parametrize("method", ["euler", "midpoint", "rk4"])
@pytest.mark.parametrize("slices", [None, 4, 1])
def test_fixed_grid_matches_torchdiffeq_to_round_off(method, slices):
    expected = torchdiffeq.odeint(rhs, Y0, T6, method=method)
    # with tol=0 the values are the fine ones whatever the coarse: the default ("auto", whose
    # probe on torch states is most of a run's cost) for rk4, rk4 for the other methods
    coarse = "auto" if method == "rk4" else "rk4"
    got = parareal.odeint(rhs, Y0, T6, method=method, slices=slices, tol=0,
                          coarse_method=coarse)
    assert got.shape == expected.shape and got.dtype == expected.dtype
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-13)


@TORCH
@pytest.mark.parametrize("schedule", ["synchronous", "pipelined"])
def test_step_size_option_matches_torchdiffeq(schedule):
    # 8 steps of 0.25 (two per output interval): the default is a slice per step
    t = torch.linspace(0.0, 2.0, 5, dtype=torch.float64)
    expected = torchdiffeq.odeint(rhs, Y0, t, method="rk4", options={"step_size": 0.25})
    # the default coarse ("auto") in one schedule, rk4 in the other (tol=0: fine values)
    coarse = "auto" if schedule == "synchronous" else "rk4"
    got = parareal.odeint(rhs, Y0, t, method="rk4", options={"step_size": 0.25}, tol=0,
                          schedule=schedule, coarse_method=coarse)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-13)


@TORCH
def test_adaptive_method_agrees_within_tolerance():
    expected = torchdiffeq.odeint(rhs, Y0, T, method="dopri5", rtol=1e-9, atol=1e-11)
    got = parareal.odeint(rhs, Y0, T, method="dopri5", rtol=1e-9, atol=1e-11, tol=1e-10,
                          slices=4)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-7)


@TORCH
def test_float32_and_converged_early():
    y0 = Y0.to(torch.float32)
    t = T6.to(torch.float32)  # six slices, not twelve: half the default coarse's probe
    expected = torchdiffeq.odeint(rhs, y0, t, method="rk4")
    got = parareal.odeint(rhs, y0, t, method="rk4", tol=1e-6)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


@TORCH
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


# -- outcomes: no silent wrong answers -------------------------------------------------------

def stiff_oscillator(t, y):  # y'' = -25 y
    return torch.stack([y[1], -25.0 * y[0]])


@TORCH
def test_unconverged_run_warns_with_iterations_and_residual():
    t = torch.linspace(0.0, 2.5, 26, dtype=torch.float64)
    with pytest.warns(parareal.ConvergenceWarning) as record:
        out, sol = parareal.odeint(stiff_oscillator, Y0, t, max_iters=2, slices=25,
                                   coarse_method="midpoint", return_solution=True)
    warning = [w.message for w in record if isinstance(w.message, parareal.ConvergenceWarning)]
    assert len(warning) == 1 and issubclass(parareal.ConvergenceWarning, UserWarning)
    assert warning[0].iterations == 2 == sol.iterations
    assert warning[0].residual == sol.residuals[-1] > 1e-8
    assert "max_iters" in str(warning[0]) and warning[0].solution is sol
    assert sol.status is parareal.Status.MAX_ITERS
    assert torch.equal(out, sol.y)


@TORCH
def test_divergence_raises_with_the_solution_attached():
    # Euler over slices of length 10 amplifies by |1 + 50i| = 50 per slice: inf by slice 182
    t = torch.linspace(0.0, 2000.0, 201, dtype=torch.float64)
    with pytest.raises(parareal.DivergenceError, match="diverged") as info:
        with pytest.warns(parareal.CoarseStabilityWarning):
            parareal.odeint(stiff_oscillator, Y0, t, method="rk4", slices=200, max_iters=1,
                            coarse_method="euler")
    assert isinstance(info.value, FloatingPointError)
    assert info.value.solution.status is parareal.Status.DIVERGED


@needs("scipy")  # the default method, dopri5, is scipy's RK45 for numpy
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_blow_up_of_the_ode_itself_raises():
    t = np.linspace(0.0, 2.0, 9)   # y' = y^2, y(0) = 1 blows up at t = 1
    with pytest.raises(parareal.DivergenceError):
        parareal.odeint(lambda s, y: y * y, np.array([1.0]), t, options={"step_size": 0.01},
                        check_stability=False)


@TORCH
def test_converged_run_is_silent_and_returns_its_solution():
    with warnings.catch_warnings():
        warnings.simplefilter("error", parareal.ConvergenceWarning)
        warnings.simplefilter("error", parareal.CoarseStabilityWarning)
        warnings.simplefilter("ignore", parareal.NoSpeedupWarning)  # about speed, not values
        out, sol = parareal.odeint(rhs, Y0, T6, method="rk4", slices=6, tol=1e-10,
                                   return_solution=True)
    assert sol.status is parareal.Status.CONVERGED
    np.testing.assert_array_equal(sol.t, T6.numpy())
    assert torch.equal(out, sol.y)


@TORCH
@pytest.mark.filterwarnings("ignore::parareal.ConvergenceWarning")
def test_unstable_default_coarse_is_warned_about_and_rk4_is_not():
    t = torch.linspace(0.0, 10.0, 101, dtype=torch.float64)
    with pytest.warns(parareal.CoarseStabilityWarning, match="coarse_method"):
        parareal.odeint(stiff_oscillator, Y0, t, method="rk4", slices=100, tol=1e-6,
                        max_iters=1, coarse_method="euler")
    with warnings.catch_warnings():
        warnings.simplefilter("error", parareal.CoarseStabilityWarning)
        warnings.simplefilter("error", parareal.ConvergenceWarning)
        out = parareal.odeint(stiff_oscillator, Y0, t, method="rk4", coarse_method="rk4",
                              slices=100, tol=1e-9)
    expected = torchdiffeq.odeint(stiff_oscillator, Y0, t, method="rk4")
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-7)


@TORCH
def test_stability_check_can_be_turned_off():
    t = torch.linspace(0.0, 2.5, 26, dtype=torch.float64)
    calls = []

    def counted(s, y):
        calls.append(1)
        return stiff_oscillator(s, y)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", parareal.ConvergenceWarning)
        warnings.simplefilter("error", parareal.CoarseStabilityWarning)
        # an explicit coarse: the check probes it (three calls of f, and a warning for Euler
        # here) when on; coarse_method="auto" is never checked, so the default would not tell
        _, sol = parareal.odeint(counted, Y0, t, method="rk4", max_iters=1, check_stability=False,
                                 coarse_method="euler", return_solution=True)
    assert len(calls) == sol.stats.f_evals  # no probe calls


# -- torchdiffeq compatibility -----------------------------------------------------------------

@TORCH
@pytest.mark.parametrize("method", ["euler", "midpoint", "rk4"])
def test_decreasing_t_matches_torchdiffeq(method):
    t = torch.linspace(4.0, 0.0, 7, dtype=torch.float64)
    expected = torchdiffeq.odeint(rhs, Y0, t, method=method)
    # the default coarse ("auto") for rk4, rk4 for the others (tol=0: fine values)
    coarse = "auto" if method == "rk4" else "rk4"
    got, sol = parareal.odeint(rhs, Y0, t, method=method, tol=0, coarse_method=coarse,
                               return_solution=True)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-13)
    np.testing.assert_array_equal(sol.t, t.numpy())


@TORCH
def test_decreasing_t_adaptive_and_numpy():
    t = torch.linspace(3.0, 0.0, 7, dtype=torch.float64)
    expected = torchdiffeq.odeint(rhs, Y0, t, method="dopri5", rtol=1e-9, atol=1e-11)
    # coarse rk4: the default ("auto") runs backwards in test_decreasing_t_matches_torchdiffeq
    # and on dopri5 in test_adaptive_method_agrees_within_tolerance; its probe is dear here
    got = parareal.odeint(rhs, Y0, t, method="dopri5", rtol=1e-9, atol=1e-11, tol=1e-10,
                          slices=4, coarse_method="rk4")
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-7)
    back = np.linspace(1.0, 0.0, 6)
    out = parareal.odeint(lambda s, y: [y[1], -y[0]], np.array([np.cos(1.0), -np.sin(1.0)]),
                          back, tol=0, options={"step_size": 0.01})
    np.testing.assert_allclose(out[:, 0], np.cos(back), atol=1e-9)


@TORCH
def test_gradients_flow_to_y0_and_parameters_as_in_torchdiffeq():
    w = torch.tensor(1.3, dtype=torch.float64, requires_grad=True)
    y0 = Y0.clone().requires_grad_()

    def f(s, y):
        return torch.stack([y[1], -w * w * y[0]])

    t = torch.linspace(0.0, 2.0, 9, dtype=torch.float64)
    parareal.odeint(f, y0, t, method="rk4", tol=0, coarse_method="rk4").square().sum().backward()
    ours = (w.grad.clone(), y0.grad.clone())
    w.grad, y0.grad = None, None
    torchdiffeq.odeint(f, y0, t, method="rk4").square().sum().backward()
    torch.testing.assert_close(ours[0], w.grad, rtol=1e-12, atol=0)
    torch.testing.assert_close(ours[1], y0.grad, rtol=1e-12, atol=0)


@TORCH
@pytest.mark.parametrize("reverse", [False, True])
def test_gradients_with_respect_to_t_agree_with_torchdiffeq(reverse):
    w = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)

    def f(s, y):
        return torch.stack([y[1], -w * y[0] - 0.1 * y[1] + torch.sin(s)])

    t = torch.linspace(0.0, 2.0, 6, dtype=torch.float64)
    t = (t.flip(0) if reverse else t).requires_grad_()
    y0 = Y0.clone().requires_grad_()
    weights = torch.linspace(0.5, 2.0, 12, dtype=torch.float64).reshape(6, 2)
    # the t gradient is the ODE's, dy(t_i)/dt_i = f(t_i, y_i) (for fixed-grid methods too,
    # where torchdiffeq differentiates its scheme instead): compare with dopri5, held tight
    kwargs = dict(rtol=1e-10, atol=1e-12)
    # four slices: with tol=0 a run takes an iteration per slice (16 by default)
    ours = torch.autograd.grad(
        (parareal.odeint(f, y0, t, tol=0, coarse_method="rk4", slices=4, **kwargs)
         * weights).sum(),
        (t, y0, w))
    reference = torch.autograd.grad(
        (torchdiffeq.odeint(f, y0, t, **kwargs) * weights).sum(), (t, y0, w))
    for got, expected in zip(ours, reference, strict=True):
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-7)
    with torch.no_grad():  # no gradient can be asked for: the values only
        # dopri5's default tolerances: whether a graph is kept does not depend on them
        out = parareal.odeint(f, y0, t, tol=0, coarse_method="rk4", slices=4)
    assert not out.requires_grad


@TORCH
def test_options_are_checked_and_unknown_keys_warned_about():
    with pytest.raises(TypeError, match=r"options\['step_size'\]"):
        parareal.odeint(rhs, Y0, T, method="rk4", options={"step_size": "x"})
    with pytest.raises(ValueError, match=r"options\['step_size'\]"):
        parareal.odeint(rhs, Y0, T, method="rk4", options={"step_size": -0.1})
    with pytest.raises(ValueError, match="grid_constructor"):
        parareal.odeint(rhs, Y0, T, method="rk4", options={"grid_constructor": lambda f, y, t: t})
    with pytest.raises(ValueError, match="perturb"):
        parareal.odeint(rhs, Y0, T, method="rk4", options={"perturb": True})
    with pytest.warns(UserWarning, match="Unexpected arguments"):
        parareal.odeint(rhs, Y0, T6, method="rk4", options={"stepsize": 0.1}, tol=1e-6)
    with pytest.raises(TypeError, match="options must be a dict"):
        parareal.odeint(rhs, Y0, T, method="rk4", options=[("step_size", 0.1)])


@TORCH
@pytest.mark.parametrize("method", ["RK45", "LSODA"])
def test_scipy_method_names_point_to_what_exists(method):
    with pytest.raises(ValueError, match="euler, heun, midpoint, rk4") as info:
        parareal.odeint(lambda s, y: -y, np.ones(2), [0.0, 1.0], method=method)
    assert "ScipyIVP" in str(info.value)
    with pytest.raises(ValueError, match="dopri5"):
        parareal.odeint(rhs, Y0, T, method=method)


@TORCH
def test_coarse_method_accepts_steps_and_propagators():
    a = parareal.odeint(rhs, Y0, T, method="rk4", coarse_method="rk4:3", tol=0)
    b = parareal.odeint(rhs, Y0, T, method="rk4", coarse_method=parareal.Heun(steps=2), tol=0)
    expected = torchdiffeq.odeint(rhs, Y0, T, method="rk4")
    torch.testing.assert_close(a, expected, rtol=0, atol=1e-13)
    torch.testing.assert_close(b, expected, rtol=0, atol=1e-13)
    with pytest.raises(ValueError, match="coarse_method"):
        parareal.odeint(rhs, Y0, T, coarse_method="rk5")
    with pytest.raises(ValueError, match="steps must be an integer"):
        parareal.odeint(rhs, Y0, T, coarse_method="rk4:x")


@pytest.mark.parametrize(
    "t,exc,match",
    [
        ([0.0, 1.0, 0.5], ValueError, "strictly increasing or strictly decreasing"),
        ([0.0, 0.0, 1.0], ValueError, "strictly"),
        ([0.0, 1j], TypeError, "real"),
        (["a", "b"], TypeError, "real"),
        (None, TypeError, "t must be"),
    ],
)
def test_bad_times(t, exc, match):
    with pytest.raises(exc, match=match):
        parareal.odeint(lambda s, y: -y, np.ones(2), t)


@TORCH
@pytest.mark.parametrize("backend,schedule", [("serial", "synchronous"), ("batched", "pipelined")])
def test_solve_gradient_equals_the_serial_solves(backend, schedule):
    y0 = Y0.clone().requires_grad_()
    sol = parareal.solve(rhs, y0, (0.0, 2.0), coarse="rk4:1", fine="rk4:10", slices=4, tol=0,
                         backend=backend, schedule=schedule)
    (grad,) = torch.autograd.grad(sol.y_final.square().sum(), y0)
    serial = parareal.solve_serial(rhs, y0, (0.0, 2.0), propagator="rk4:10", slices=4)
    (expected,) = torch.autograd.grad(serial[-1].square().sum(), y0)
    torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-14)


@TORCH
@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(check_stability=1), TypeError, "check_stability must be True or False"),
        (dict(return_solution="yes"), TypeError, "return_solution must be True or False"),
        (dict(coarse_method=3), TypeError, "coarse_method must be a str"),
        (dict(coarse_method="rk4:0"), ValueError, "coarse_method steps must be >= 1"),
        (dict(lookahead=-1, schedule="pipelined"), ValueError, "lookahead"),
    ],
)
def test_bad_new_odeint_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        parareal.odeint(rhs, Y0, T, **kwargs)
