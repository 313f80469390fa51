"""parareal.odeint called as torchdiffeq users call torchdiffeq.odeint (issue 17)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import parareal

torch = pytest.importorskip("torch")
torchdiffeq = pytest.importorskip("torchdiffeq")
scipy_integrate = pytest.importorskip("scipy.integrate")


def oscillator(t, y):  # y'' = -y
    return torch.stack([y[1], -y[0]])


def forced(t, y):
    return torch.stack([y[1], -y[0] - 0.1 * y[1] + torch.sin(t)])


Y0 = torch.tensor([1.0, 0.0], dtype=torch.float64)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -- the default method is torchdiffeq's ---------------------------------------------------------

@pytest.mark.filterwarnings("ignore::parareal.CoarseStabilityWarning")
def test_default_is_as_accurate_as_torchdiffeqs_default():
    t = torch.linspace(0.0, 10.0, 11, dtype=torch.float64)
    exact = torch.stack([torch.cos(t), -torch.sin(t)], dim=1)
    theirs = torchdiffeq.odeint(oscillator, Y0, t)
    ours = parareal.odeint(oscillator, Y0, t)
    their_error = (theirs - exact).abs().max().item()
    assert their_error < 1e-6
    # dopri5 at rtol 1e-7, atol 1e-9 restarted at slice boundaries, plus Parareal's tol 1e-8
    assert (ours - exact).abs().max().item() < 3 * their_error
    torch.testing.assert_close(ours, theirs, rtol=0, atol=5e-7)


def test_numpy_default_is_scipys_dormand_prince_at_torchdiffeqs_tolerances():
    def f(t, y):
        return np.array([y[1], -y[0] - 0.1 * y[1] + np.sin(t)])

    t = np.linspace(0.0, 4.0, 9)
    ours = parareal.odeint(f, np.array([1.0, 0.0]), t, coarse_method="rk4", tol=1e-10)
    ref = scipy_integrate.solve_ivp(f, (0.0, 4.0), [1.0, 0.0], method="RK45", rtol=1e-7,
                                    atol=1e-9, t_eval=t, dense_output=False)
    assert isinstance(ours, np.ndarray) and ours.shape == (9, 2)
    np.testing.assert_allclose(ours, ref.y.T, rtol=0, atol=2e-7)
    exact = scipy_integrate.solve_ivp(f, (0.0, 4.0), [1.0, 0.0], method="DOP853", rtol=1e-13,
                                      atol=1e-13, t_eval=t).y.T
    np.testing.assert_allclose(ours, exact, rtol=0, atol=2e-7)


def test_tolerances_and_method_are_positional_in_torchdiffeqs_order():
    t = torch.linspace(0.0, 2.0, 5, dtype=torch.float64)
    kwargs = dict(coarse_method="rk4", tol=1e-11, slices=4)
    by_name = parareal.odeint(forced, Y0, t, rtol=1e-9, atol=1e-11, method="dopri5",
                              options={"first_step": 0.1}, **kwargs)
    by_position = parareal.odeint(forced, Y0, t, 1e-9, 1e-11, "dopri5", {"first_step": 0.1},
                                  **kwargs)
    assert torch.equal(by_name, by_position)
    default = parareal.odeint(forced, Y0, t, 1e-9, 1e-11, None, **kwargs)
    assert torch.equal(default, parareal.odeint(forced, Y0, t, 1e-9, 1e-11, **kwargs))
    loose = parareal.odeint(forced, Y0, t, 1e-3, 1e-3, "dopri5", **kwargs)
    assert not torch.equal(loose, by_name)  # the positional tolerances are used
    # coarse rk4 (not the default "auto", whose probe is far dearer on torch states): with
    # tol=0 the values are the fine method's, the positional "rk4"
    fixed = parareal.odeint(forced, Y0, t, 1e-9, 1e-11, "rk4", tol=0, coarse_method="rk4")
    torch.testing.assert_close(fixed, torchdiffeq.odeint(forced, Y0, t, method="rk4"),
                               rtol=0, atol=1e-13)


# -- a single time ---------------------------------------------------------------------------------

def test_a_single_time_returns_y0_without_a_solve():
    calls = []

    def f(t, y):
        calls.append(t)
        return -y

    y0 = torch.tensor([[1.0, 2.0]], requires_grad=True)
    out = parareal.odeint(f, y0, torch.tensor([0.5]))
    assert out.shape == (1, 1, 2) and torch.equal(out[0], y0) and not calls
    (grad,) = torch.autograd.grad(out.sum(), y0)
    assert torch.equal(grad, torch.ones_like(y0))
    pair = parareal.odeint(lambda t, y: (-y[0], y[1]), (y0, torch.tensor(3.0)), [0.0])
    assert isinstance(pair, tuple) and pair[0].shape == (1, 1, 2) and pair[1].shape == (1,)
    np.testing.assert_array_equal(parareal.odeint(f, np.ones(3), [2.0]), np.ones((1, 3)))
    assert not calls


# -- tuple states --------------------------------------------------------------------------------

class Coupled(torch.nn.Module):
    """A 2x2 matrix state and a scalar state, coupled, with a parameter."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(0.8, dtype=torch.float64))

    def forward(self, t, state):
        m, s = state
        return (-self.w * m + s * torch.eye(2, dtype=m.dtype), -0.5 * s + m.trace() * 0.1)


@pytest.mark.parametrize("method", ["rk4", "dopri5"])
def test_tuple_states_come_back_as_tuples_with_torchdiffeqs_values_and_gradients(method):
    func = Coupled()
    m0 = torch.tensor([[1.0, 0.5], [-0.3, 2.0]], dtype=torch.float64, requires_grad=True)
    s0 = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    t = torch.linspace(0.0, 2.0, 6, dtype=torch.float64)
    kwargs = dict(method=method) if method == "rk4" else dict(rtol=1e-10, atol=1e-12)
    # four slices: with tol=0 a run takes an iteration per slice (16 by default for dopri5)
    ours = parareal.odeint(func, (m0, s0), t, tol=0, coarse_method="rk4", slices=4, **kwargs)
    theirs = torchdiffeq.odeint(func, (m0, s0), t, **kwargs)
    assert isinstance(ours, tuple) and len(ours) == 2
    assert ours[0].shape == (6, 2, 2) and ours[1].shape == (6,)
    atol = 1e-13 if method == "rk4" else 1e-8
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=atol)

    def loss(out):
        return out[0].square().sum() + (out[1] * torch.arange(6.0, dtype=out[1].dtype)).sum()

    grads = torch.autograd.grad(loss(ours), (m0, s0, func.w))
    expected = torch.autograd.grad(loss(theirs), (m0, s0, func.w))
    for a, b in zip(grads, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10 if method == "rk4" else 1e-6)


def test_tuple_norm_option_sees_the_tuple():
    seen = []

    def norm(state):
        seen.append(tuple(type(s).__name__ for s in state))
        return max(s.abs().max() for s in state)

    x0 = (torch.tensor(1.0, dtype=torch.float64), torch.ones(2, 2, dtype=torch.float64))
    out = parareal.odeint(lambda t, y: (y[0], -y[1]), x0, torch.tensor([0.0, 1.0]),
                          options={"norm": norm}, coarse_method="rk4")
    assert seen and all(s == ("Tensor", "Tensor") for s in seen)
    torch.testing.assert_close(out[0][-1], torch.tensor(np.e, dtype=torch.float64), rtol=1e-6,
                               atol=0)


def test_bad_tuple_states_are_refused():
    with pytest.raises(TypeError, match="tuple of torch tensors"):
        parareal.odeint(lambda t, y: y, (np.ones(2),), [0.0, 1.0])
    with pytest.raises(TypeError, match="func must return a tuple of 2"):
        parareal.odeint(lambda t, y: y[0], (torch.ones(2), torch.ones(1)), [0.0, 1.0])


# -- what torchdiffeq features are refused ---------------------------------------------------------

@pytest.mark.parametrize("name", [
    "callback_step", "callback_accept_step", "callback_reject_step",
    "callback_step_adjoint", "callback_accept_step_adjoint", "callback_reject_step_adjoint",
])
def test_step_callbacks_are_refused_by_name(name):
    class Func(torch.nn.Module):
        def forward(self, t, y):
            return -y

    func = Func()
    setattr(func, name, lambda t0, y0, dt: None)
    with pytest.raises(ValueError, match=name):
        parareal.odeint(func, torch.ones(2), torch.tensor([0.0, 1.0]))


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("kwargs", [
    dict(),
    dict(method="rk4", options={"step_size": 0.01, "interp": "cubic"}),
], ids=["dopri5", "rk4"])
def test_event_located_on_the_fine_solution_as_torchdiffeq_does(reverse, kwargs):
    y0 = Y0.clone().requires_grad_()
    t = torch.tensor([0.0, -0.5 if reverse else 0.5], dtype=torch.float64)  # event beyond

    def event(s, y):
        return y[0] - 0.3

    their_t, theirs = torchdiffeq.odeint(oscillator, y0, t, event_fn=event, **kwargs)
    our_t, ours = parareal.odeint(oscillator, y0, t, event_fn=event, coarse_method="rk4",
                                  **kwargs)
    exact = (-1.0 if reverse else 1.0) * np.arccos(0.3)
    assert abs(their_t.item() - exact) < 1e-6 and abs(our_t.item() - exact) < 1e-6
    assert ours.shape == (2, 2) and torch.equal(ours[0], y0)
    atol = 1e-13 if kwargs else 1e-6  # the same steps for rk4; dopri5 restarts at slices
    torch.testing.assert_close(our_t, their_t, rtol=0, atol=atol)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=atol)
    grads = [torch.autograd.grad(out[-1].sum(), y0)[0] for out in (ours, theirs)]
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=atol)


def test_event_with_tuple_state_and_bad_event_arguments():
    x0 = (torch.tensor(1.0, dtype=torch.float64), torch.tensor([0.0], dtype=torch.float64))
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    event_t, (x, v) = parareal.odeint(lambda s, y: (y[1][0], -y[0][None]), x0, t,
                                      event_fn=lambda s, y: y[0] - 0.3, coarse_method="rk4")
    assert abs(event_t.item() - np.arccos(0.3)) < 1e-6
    assert x.shape == (2,) and v.shape == (2, 1) and abs(x[-1].item() - 0.3) < 1e-6
    with pytest.raises(ValueError, match="two distinct times"):
        parareal.odeint(oscillator, Y0, torch.linspace(0, 1, 3), event_fn=lambda s, y: y[0])
    with pytest.raises(ValueError, match="step_size"):
        parareal.odeint(oscillator, Y0, t, method="rk4", event_fn=lambda s, y: y[0])
    with pytest.raises(TypeError, match="event_fn needs a torch"):
        parareal.odeint(lambda s, y: -y, np.ones(2), [0.0, 1.0], event_fn=lambda s, y: y[0])
    with pytest.raises(RuntimeError, match="did not change sign"):  # after the last window
        parareal.odeint(lambda s, y: torch.zeros_like(y), torch.ones(1, dtype=torch.float64),
                        t, event_fn=lambda s, y: y[0] + 1.0, coarse_method="rk4", slices=2)


@pytest.mark.parametrize("method", ["rk4", "heun2", "dopri5"])
def test_perturb_is_refused_for_every_method(method):
    with pytest.raises(ValueError, match="perturb"):
        parareal.odeint(forced, Y0, torch.tensor([0.0, 1.0], dtype=torch.float64),
                        method=method, options={"step_size": 0.1, "perturb": True})


def test_auto_coarse_is_passed_on_to_solve_untouched():
    """odeint does not judge ``"auto"`` itself: it fails or works exactly as ``solve`` does."""
    t = torch.linspace(0.0, 1.0, 3, dtype=torch.float64)
    try:
        parareal.solve(forced, Y0, (0.0, 1.0), coarse="auto", fine="rk4:4", slices=2)
    except (TypeError, ValueError) as exc:
        with pytest.raises(type(exc)) as info:
            parareal.odeint(forced, Y0, t, method="rk4", coarse_method="auto")
        assert str(info.value) == str(exc)
    else:
        expected = torchdiffeq.odeint(forced, Y0, t, method="rk4")
        got = parareal.odeint(forced, Y0, t, method="rk4", coarse_method="auto", tol=0)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-13)


# -- slices are chosen from the work, not from len(t) ---------------------------------------------

# the default coarse ("auto": its probe is most of the run's cost) in one schedule, rk4 in the
# other: with tol=0 the values are the fine ones whatever the coarse
@pytest.mark.parametrize("schedule,coarse", [("synchronous", "auto"), ("pipelined", "rk4")])
def test_many_slices_for_few_outputs_still_give_the_serial_fine_values(schedule, coarse):
    t = torch.tensor([0.0, 0.5, 1.0, 1.5, 3.0, 4.0], dtype=torch.float64)  # non-uniform
    # 8 steps: room for 8 slices over 5 outputs (the auto probe's cost grows with the slices)
    options = {"step_size": 0.5}
    expected = torchdiffeq.odeint(forced, Y0, t, method="rk4", options=options)
    got, sol = parareal.odeint(forced, Y0, t, method="rk4", options=options, slices=8,
                               tol=0, schedule=schedule, coarse_method=coarse,
                               return_solution=True)
    assert sol.t.size == 9 and sol.iterations == 8
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-13)
    with pytest.raises(ValueError, match="slices must be <= 8"):
        parareal.odeint(forced, Y0, t, method="rk4", options=options, slices=9)


def test_default_slices_do_not_follow_len_t_and_outputs_are_fine_values():
    t = torch.linspace(3.0, 0.0, 4, dtype=torch.float64)  # backwards in time
    tight = dict(rtol=1e-10, atol=1e-12)
    expected = torchdiffeq.odeint(forced, Y0, t, **tight)
    got, sol = parareal.odeint(forced, Y0, t, **tight, coarse_method="rk4", tol=1e-11,
                               return_solution=True)
    assert sol.t.size == parareal.odeint_api.DEFAULT_SLICES + 1
    assert sol.t[0] == 3.0 and sol.t[-1] == 0.0 and np.all(np.diff(sol.t) < 0)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-8)
    # 61 outputs: far more than the default slices, whose count would otherwise follow them
    many = torch.linspace(0.0, 3.0, 61, dtype=torch.float64)
    _, sol = parareal.odeint(forced, Y0, many, method="rk4", coarse_method="rk4", tol=1e-9,
                             return_solution=True)
    assert sol.t.size == parareal.odeint_api.DEFAULT_SLICES + 1


def test_fill_in_evaluations_are_counted():
    calls = []

    def counted(t, y):
        calls.append(1)
        return forced(t, y)

    t = torch.linspace(0.0, 2.0, 41, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", parareal.ConvergenceWarning)
        out, sol = parareal.odeint(counted, Y0, t, method="rk4", slices=4, max_iters=1,
                                   check_stability=False, return_solution=True)
    assert out.shape == (41, 2) and len(calls) == sol.stats.f_evals


def test_float32_default_tolerance_follows_the_dtype():
    t = torch.linspace(0.0, 4.0, 9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # converged: no ConvergenceWarning
        ours, sol = parareal.odeint(forced, Y0.float(), t, coarse_method="rk4",
                                    return_solution=True)
    assert ours.dtype == torch.float32 and sol.status is parareal.Status.CONVERGED
    assert sol.iterations < sol.t.size - 1  # not merely exact after every slice
    reference = torchdiffeq.odeint(forced, Y0, t.double(), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ours.double(), reference, rtol=0, atol=2e-5)
    with pytest.warns(parareal.ConvergenceWarning):  # an explicit tol is taken as given
        parareal.odeint(forced, Y0.float(), t, coarse_method="rk4", tol=1e-12, max_iters=3)
