"""The per-call fast paths keep every number, counter and error of the full checks.

``drive`` accepts an answer of exactly the state's type, dtype and shape after a few identity
tests and sends anything else through ``ArrayOps.coerce_derivative``; the serial backend runs a
steppable propagation with ``f`` itself (no wrapper per call); the driver ticks a lone flight in
one loop; ``Lanes`` arithmetic skips re-conversions. These tests compare each fast path with the
full check on every call, and pin that a bad answer on a *later* call (one that numpy would
broadcast silently) still raises the same clear error.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

import parareal
from parareal import RK4, Euler, Heun, problems
from parareal.backends import Batched, Rhs
from parareal.propagators import drive
from parareal.state import Lanes, NumpyOps, ops_for

from .conftest import diagonal_rhs


def full_check_drive(gen, f, y):
    """The reference: every answer through ``coerce_derivative`` (no fast path)."""
    ops = ops_for(y)
    try:
        t, yr = next(gen)
        while True:
            t, yr = gen.send(ops.coerce_derivative(f(ops.time(t), yr), yr))
    except StopIteration as stop:
        return stop.value


class Sub(np.ndarray):
    """An ndarray subclass: not the exact state type, so it takes the full check."""


def _answers():
    """Functions returning answers of every accepted kind for ``y' = -y`` on numpy states."""
    return {
        "exact": lambda t, y: -y,
        "float32 for float64": lambda t, y: (-y).astype(np.float32),
        "int": lambda t, y: np.full(y.shape, -1, dtype=np.int64),
        "list": lambda t, y: (-y).tolist(),
        "strided view": lambda t, y: np.stack([-y, y])[0],
        "subclass": lambda t, y: (-y).view(Sub),
        "float64 for float32": lambda t, y: (-y).astype(np.float64),
    }


@pytest.mark.parametrize("name", list(_answers()))
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.complex128])
def test_drive_equals_the_full_check_on_every_accepted_answer(name, dtype):
    f = _answers()[name]
    y0 = np.array([1.0, -2.0, 0.5], dtype=dtype)
    if name.startswith("float") and dtype == np.complex128:
        pytest.skip("a real float answer for a complex state: the same case as int")
    prop = RK4(steps=5)
    fast = drive(prop.stepper(y0, 0.0, 1.0), f, y0)
    ref = full_check_drive(prop.stepper(y0, 0.0, 1.0), f, y0)
    assert type(fast) is type(ref) and fast.dtype == ref.dtype == dtype
    assert np.array_equal(fast, ref)
    # the serial backend's propagation and solve_serial take the same path
    assert np.array_equal(parareal.solve_serial(f, y0, (0, 1), propagator=prop)[-1], ref)


def test_drive_on_zero_d_states_where_numpy_returns_scalars():
    y0 = np.array(2.0)
    f = lambda t, y: -0.5 * y  # noqa: E731  (numpy scalars in, numpy scalars out)
    prop = RK4(steps=4)
    assert drive(prop.stepper(y0, 0.0, 1.0), f, y0) == full_check_drive(
        prop.stepper(y0, 0.0, 1.0), f, y0)


def test_drive_casts_torch_answers_like_the_full_check():
    torch = pytest.importorskip("torch")
    y0 = torch.tensor([1.0, -2.0], dtype=torch.float32)
    times = []

    def f(t, y):
        times.append(t)
        return (-y).to(torch.float64)  # cast back to float32 on every call

    prop = RK4(steps=3)
    fast = drive(prop.stepper(y0, 0.0, 1.0), f, y0)
    ref = full_check_drive(prop.stepper(y0, 0.0, 1.0), f, y0)
    assert fast.dtype == torch.float32 and torch.equal(fast, ref)
    assert all(torch.is_tensor(t) and t.ndim == 0 for t in times)


# -- a bad answer on a later call --------------------------------------------------------------

BAD_LATER = {
    # numpy would broadcast these into the state without complaint
    "scalar": (lambda y: np.float64(1.0), ValueError, r"shape \(\).*shape \(2,\)"),
    "leading axis": (lambda y: -y[None], ValueError, r"shape \(1, 2\).*shape \(2,\)"),
    "0-d array": (lambda y: np.array(1.0), ValueError, r"shape \(\).*shape \(2,\)"),
    "complex": (lambda y: y * 1j, TypeError, "dtype complex128"),
    "none": (lambda y: None, TypeError, "f returned None"),
    "strings": (lambda y: np.array(["a", "b"]), TypeError, "f returned"),
}
ENTRY_POINTS = ["solve_serial", "serial", "batched (f not vectorised)"]


def _goes_bad_after(calls: int, bad):
    count = [0]

    def f(t, y):
        count[0] += 1
        return -y if count[0] <= calls else bad(y)

    return f


def _run(entry, f):
    y0 = np.array([1.0, 2.0])
    if entry == "solve_serial":
        return parareal.solve_serial(f, y0, (0, 1), propagator=RK4(5), slices=3)
    backend = entry.split()[0]
    return parareal.solve(f, y0, (0, 1), coarse=Euler(1), fine=RK4(5), slices=3,
                          backend=backend, tol=0)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("name", list(BAD_LATER))
@pytest.mark.parametrize("after", [0, 7])
def test_a_bad_answer_raises_the_same_error_on_any_call(entry, name, after):
    bad, exc, match = BAD_LATER[name]
    with pytest.raises(exc, match=match) as info:
        _run(entry, _goes_bad_after(after, bad))
    # the first call and a later one give the very same message
    with pytest.raises(exc) as first:
        _run(entry, _goes_bad_after(0, bad))
    assert str(info.value) == str(first.value)


def test_a_later_float64_answer_for_a_float32_state_is_cast_not_kept():
    count = [0]

    def f(t, y):
        count[0] += 1
        return -y if count[0] % 3 else (-y).astype(np.float64)

    y0 = np.array([1.0, 2.0], dtype=np.float32)
    sol = parareal.solve(f, y0, (0, 1), coarse=Euler(1), fine=RK4(5), slices=3, tol=0)
    ref = parareal.solve(lambda t, y: -y, y0, (0, 1), coarse=Euler(1), fine=RK4(5), slices=3,
                         tol=0)
    assert sol.y.dtype == np.float32 and np.array_equal(sol.y, ref.y)


# -- counters ---------------------------------------------------------------------------------

def test_rhs_counts_the_calls_that_returned_when_f_raises_mid_propagation():
    y0 = np.array([1.0, 2.0])
    count = [0]

    def f(t, y):
        count[0] += 1
        if count[0] == 7:
            raise ArithmeticError("boom")
        return -y

    rhs = Rhs(f, ops_for(y0), vectorized=False)
    with pytest.raises(ArithmeticError, match="boom"):
        rhs.propagate(RK4(steps=3), y0, 0.0, 1.0)
    assert rhs.calls == rhs.evals == 6 and rhs.seconds > 0.0


@pytest.mark.parametrize("backend", ["serial", "batched"])
@pytest.mark.parametrize("schedule", ["synchronous", "pipelined"])
def test_counters_and_wall_time_split_are_kept(backend, schedule):
    f, y0 = diagonal_rhs(-np.linspace(0.3, 2.0, 3), forcing=0.5), np.linspace(1.0, -1.0, 3)
    calls = [0]

    def counted(t, y):
        calls[0] += 1
        return f(t, y)

    sol = parareal.solve(counted, y0, (0, 3), coarse=Heun(1), fine=RK4(6), slices=6, tol=0,
                         backend=backend, schedule=schedule, vectorized=backend == "batched")
    assert sol.stats.f_calls == calls[0]
    if backend == "serial":
        assert sol.stats.f_evals == calls[0]
        # every coarse and fine propagation ran to its end: their f calls, exactly
        assert sol.stats.f_evals == 2 * sol.stats.coarse_calls + 24 * sol.stats.fine_calls
    wall = sol.stats.wall_time
    assert wall["f"] > 0.0 and wall["propagators"] > 0.0
    assert wall["f"] + wall["propagators"] + wall["batching"] <= wall["total"]


# -- which path runs -------------------------------------------------------------------------

def test_serial_backend_calls_f_straight_from_drive_without_a_wrapper():
    callers = []

    def f(t, y):
        callers.append(sys._getframe(1).f_code.co_name)
        return -y

    parareal.solve(f, np.ones(2), (0, 1), coarse=Euler(1), fine=RK4(4), slices=3,
                   backend="serial", tol=0)
    # the first call alone goes through the check that f leaves y unchanged
    assert callers[0] == "__call__" and set(callers[1:]) == {"drive"}
    callers.clear()
    parareal.solve_serial(f, np.ones(2), (0, 1), propagator=RK4(4), slices=3)
    assert set(callers) == {"drive"}


def test_good_answers_skip_the_full_check(monkeypatch):
    checked = [0]
    full = NumpyOps.coerce_derivative

    def counting(self, dy, y, *, batched=False):
        checked[0] += 1
        return full(self, dy, y, batched=batched)

    monkeypatch.setattr(NumpyOps, "coerce_derivative", counting)
    y64 = np.ones(2)
    parareal.solve(lambda t, y: -y, y64, (0, 1), coarse=Euler(1), fine=RK4(4), slices=3,
                   backend="serial", tol=0)
    assert checked[0] == 0
    # an answer of another dtype takes the full check (and its cast) on every call
    sol = parareal.solve(lambda t, y: (-y).astype(np.float64), np.ones(2, dtype=np.float32),
                         (0, 1), coarse=Euler(1), fine=RK4(4), slices=3, backend="serial",
                         tol=0)
    assert checked[0] == sol.stats.f_calls


def test_serial_backend_keeps_an_overridden_propagate():
    used = []

    class Logged(RK4):
        def propagate(self, f, y, t0, t1):
            used.append((t0, t1))
            return super().propagate(f, y, t0, t1)

    f, y0 = diagonal_rhs(np.array([-1.0, -0.5])), np.array([1.0, 2.0])
    sol = parareal.solve(f, y0, (0, 1), coarse=Euler(1), fine=Logged(4), slices=4, tol=0,
                         backend="serial")
    assert len(used) == sol.stats.fine_calls
    ref = parareal.solve(f, y0, (0, 1), coarse=Euler(1), fine=RK4(4), slices=4, tol=0)
    assert np.array_equal(sol.y, ref.y)


@pytest.mark.parametrize("schedule", ["synchronous", "pipelined"])
def test_lone_flights_keep_the_clock_next_to_opaque_propagations(schedule):
    """Opaque fine propagations are released later than they ran: a lone coarse flight must
    not be ticked past such a release (the batched backend's clock must equal the serial's)."""
    pytest.importorskip("scipy")
    f, y0 = diagonal_rhs(-np.linspace(0.3, 2.0, 3), forcing=0.5), np.linspace(1.0, -1.0, 3)
    # a cheap adaptive fine solve: its releases fall inside coarse flights
    fine = parareal.ScipyIVP(method="RK45", rtol=1e-3, atol=1e-3)
    runs = {
        backend: parareal.solve(f, y0, (0, 3), coarse=RK4(2), fine=fine, slices=6, tol=0,
                                backend=backend, schedule=schedule,
                                vectorized=backend == "batched")
        for backend in ("serial", "batched")
    }
    serial, batched = runs["serial"], runs["batched"]
    assert batched.stats.critical_path == serial.stats.critical_path
    assert (batched.stats.critical_path_per_iteration
            == serial.stats.critical_path_per_iteration)
    assert batched.residuals == serial.residuals and np.array_equal(batched.y, serial.y)


def test_f_may_not_corrupt_the_times_of_a_group():
    """A vectorised f that writes into its ``t`` must not change later times of the group."""
    f, y0 = diagonal_rhs(-np.linspace(0.3, 2.0, 3), forcing=0.5), np.linspace(1.0, -1.0, 3)

    def scribbling(t, y):
        out = f(t, y)
        t[...] = -1.0
        return out

    kwargs = dict(coarse=Euler(1), fine=RK4(4), slices=5, tol=0, backend="batched",
                  vectorized=True)
    assert np.array_equal(parareal.solve(scribbling, y0, (0, 2), **kwargs).y,
                          parareal.solve(f, y0, (0, 2), **kwargs).y)


# -- Lanes ------------------------------------------------------------------------------------

@pytest.mark.parametrize("op", ["+", "-", "*", "/"])
@pytest.mark.parametrize("other", [0.375, 3, np.float64(0.1), "lanes", "array", "array32"])
def test_lanes_arithmetic_equals_per_slice_floats(op, other):
    values = [0.1, 0.7, 2.5]
    lanes = Lanes(values)
    stacked = np.array([[1.0, -2.0], [0.3, 0.6], [7.0, 1e-3]])
    if other == "lanes":
        other, per = Lanes([0.2, 0.4, 0.9]), [0.2, 0.4, 0.9]
    elif other == "array":
        other, per = stacked, list(stacked)
    elif other == "array32":
        other, per = stacked.astype(np.float32), list(stacked.astype(np.float32))
    else:
        per = [other] * 3
    apply = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
             "/": lambda a, b: a / b}[op]
    for result, reflected in ((apply(lanes, other), False), (apply(other, lanes), True)):
        expected = [apply(b, float(v)) if reflected else apply(float(v), b)
                    for v, b in zip(values, per, strict=True)]
        got = result.values if isinstance(result, Lanes) else result
        if isinstance(result, Lanes):
            assert got.dtype == np.float64
        else:
            assert got.dtype == np.asarray(other).dtype
        assert np.array_equal(np.asarray(got), np.array(expected, dtype=got.dtype))


def test_lanes_refuse_bools_and_strings():
    lanes = Lanes([1.0, 2.0])
    for bad in (True, "x", None):
        with pytest.raises(TypeError):
            lanes + bad
    assert np.array_equal((-lanes).values, [-1.0, -2.0])


def test_numpy_max_abs_keeps_nan_and_empty():
    ops = ops_for(np.ones(2))
    assert np.isnan(ops.max_abs(np.array([1.0, np.nan, 3.0])))
    assert ops.max_abs(np.array([-4.0, 3.0])) == 4.0
    assert ops.max_abs(np.zeros(0)) == 0.0
    assert ops.max_abs(np.float64(-2.5)) == 2.5


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("backend", ["serial", "batched"])
def test_a_non_finite_update_in_a_late_slice_is_divergence(bad, backend):
    """The residual is one reduction over all slices: a NaN or inf that is not in the first
    slice still stops the run as diverged, with the last finite iterate."""
    args = dict(coarse=Euler(1), fine=RK4(4), slices=8, tol=0, backend=backend,
                vectorized=backend == "batched")
    evals = [0]

    def f(t, y):
        evals[0] += y.size  # states of one number: evaluations, batched or not
        out = -y
        if evals[0] > 400:  # after the first iterates, spoil the slices past t = 3
            out = np.where(np.asarray(t)[..., None] > 3.0, bad, out)
        return out.reshape(y.shape)

    kept = []
    sol = parareal.solve(f, np.array([1.0]), (0, 4), callback=lambda i: kept.append(i.y),
                         **args)
    assert sol.status is parareal.Status.DIVERGED
    assert 1 <= sol.iterations and len(sol.residuals) == sol.iterations
    assert all(np.isfinite(r) for r in sol.residuals)
    assert np.all(np.isfinite(sol.y)) and np.array_equal(sol.y, kept[sol.iterations])


# -- the pipelined schedule's ticks -------------------------------------------------------------

class _CountingRK4(RK4):
    """RK4 that counts the sub-step coroutines made (``step`` calls), for every instance."""

    made = 0

    def step(self, y, t, h):
        _CountingRK4.made += 1
        return super().step(y, t, h)


class _RequestsPerTick(Batched):
    """The batched backend, recording how many requests each tick evaluates."""

    def __init__(self):
        self.sizes = []

    def evaluate(self, rhs, requests):
        self.sizes.append(len(requests))
        return super().evaluate(rhs, requests)


@pytest.mark.parametrize("schedule", ["synchronous", "pipelined"])
def test_pipelined_ticks_cost_one_stacked_coroutine_like_synchronous_ones(schedule):
    """Propagations that start one by one (pipelined) still run as one stacked coroutine per
    tick: fine and coarse RK4 lanes of every slice and iteration advance together and regroup
    only between sub-steps. Before, every propagation had its own coroutine (about 25 per tick
    on this case) and its own request in the tick's batch."""
    p = problems.get("brusselator", t_end=12.0, slices=32, coarse=RK4(steps=1),
                              fine=RK4(steps=20))
    backend = _RequestsPerTick()
    _CountingRK4.made = 0
    sol = parareal.solve(p.f, np.array(p.y0), p.t_span, coarse=_CountingRK4(steps=1),
                         fine=_CountingRK4(steps=20), slices=32, tol=1e-10, backend=backend,
                         schedule=schedule, vectorized=True)
    ticks = sol.stats.critical_path
    assert sol.stats.f_calls == ticks == len(backend.sizes)  # one call of f per tick
    assert set(backend.sizes) == {1}  # one request, one coroutine in flight per tick
    # a sub-step coroutine lasts its four ticks: one is made every four ticks
    assert _CountingRK4.made * 4 == ticks
    if schedule == "pipelined":
        assert sol.stats.f_evals / ticks > 20  # while evaluating many states per tick


def test_kinds_of_steps_regroup_between_sub_steps_and_keep_every_bit():
    """Propagations started at different ticks, with different step counts and methods, give
    the bits and the release ticks of each one run alone; RK4s of any step count share their
    coroutines (one per tick phase), other methods have their own."""
    from parareal.engine.driver import Driver
    from parareal.state import ops_for

    f = diagonal_rhs(-np.linspace(0.3, 2.0, 3), forcing=0.5)
    rng = np.random.default_rng(7)
    props = [RK4(1), RK4(3), RK4(2), RK4(2, variant="3/8"), Heun(3), Euler(5)]
    y0 = np.linspace(1.0, -1.0, 3)
    backend = _RequestsPerTick()
    driver = Driver(backend, Rhs(f, ops_for(y0), vectorized=True))
    expected, released = {}, {}
    plan = {tick: [(i, props[rng.integers(len(props))]) for i in range(rng.integers(0, 4))]
            for tick in range(0, 40, 2)}
    while plan or not driver.idle:
        for i, prop in plan.pop(driver.clock, []):
            y = y0 * (1.0 + 0.1 * i) + driver.clock
            t0, t1 = 0.05 * driver.clock, 0.05 * driver.clock + 0.3 + 0.01 * i
            key = (driver.clock, i)
            expected[key] = (prop.propagate(f, y, t0, t1), driver.clock + prop.evals)
            driver.start(key, prop, y, t0, t1)
        if driver.idle:  # nothing in flight until the next planned start
            driver.clock = min(plan)
            continue
        for key, value in driver.step():
            released[key] = (value, driver.clock)
    assert released.keys() == expected.keys()
    for key, (value, tick) in expected.items():
        assert np.array_equal(released[key][0], value) and released[key][1] == tick
    # RK4 (4 phases), RK4 3/8 (4), Heun (2), Euler (1): never more requests in a tick
    assert max(backend.sizes) <= 11
