"""``coarse="auto"`` (:class:`parareal.AutoCoarse`): what it records, determinism and backend
invariance, convergence to the serial fine solution, the kind of propagator it picks on stiff
and non-stiff problems, its cost, its arguments and edge cases."""

from __future__ import annotations

import functools
import importlib.util
import sys
import warnings

import numpy as np
import pytest

import parareal
from parareal import AutoCoarse, CoarseCandidate, CoarseChoice, Status
from parareal.problems import get as get_problem

from .conftest import needs

BACKENDS = ["serial", "batched", "threads"]


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", parareal.NoSpeedupWarning)
        # explicit candidates blowing up on stiff problems overflow inside f, by design
        warnings.filterwarnings("ignore", "(overflow|invalid value) encountered",
                                RuntimeWarning)
        yield


# -- problems -------------------------------------------------------------------------------
def oscillator(t, y):
    """``y'' = -y`` as a first-order system; one state or a batch, same bits."""
    torch = sys.modules.get("torch")  # a tensor means torch is loaded
    if torch is not None and torch.is_tensor(y):
        return torch.stack([y[..., 1], -y[..., 0]], dim=-1)
    return np.stack([y[..., 1], -y[..., 0]], axis=-1)


_LAM = np.array([-1e4, -1.0])
_Q = np.array([[0.6, -0.8], [0.8, 0.6]])  # orthogonal: a coupled stiff system
STIFF_A = _Q @ np.diag(_LAM) @ _Q.T


def stiff_linear(t, y):
    """``A y`` with eigenvalues -1e4 and -1, column by column (batch-invariant bits)."""
    return y[..., 0:1] * STIFF_A[:, 0] + y[..., 1:2] * STIFF_A[:, 1]


def stiff_jac(t, y):
    return STIFF_A


def _robertson_case():
    p = get_problem("robertson", t_end=1.0, slices=8)
    return dict(f=p.f, y0=p.y0, t_span=p.t_span, fine=p.fine, slices=8, jac=p.jacobian)


CASES = {
    # name: (arguments of solve, stiff?)
    "oscillator": (lambda: dict(f=oscillator, y0=np.array([1.0, 0.0]),
                                t_span=(0.0, 2 * np.pi), fine=parareal.RK4(50), slices=8),
                   False),
    # fine steps h = 1/4800: |h lam| = 2.08, inside RK4's stability interval (2.78); half the
    # span of (0, 1) with RK4(600), the same h, the same kind of choice (a Rosenbrock2), at
    # half the cost of every run of this case
    "stiff-linear": (lambda: dict(f=stiff_linear, y0=np.array([1.0, 1.0]), t_span=(0.0, 0.5),
                                  fine=parareal.RK4(300), slices=8, jac=stiff_jac), True),
    "robertson": (_robertson_case, True),
}
#: The cases whose fine propagator is scipy's (Radau, the test-set default).
SCIPY_CASES = {"robertson"}


def cases(names):
    """``names`` as parameters, the scipy ones marked."""
    return [pytest.param(name, marks=needs("scipy")) if name in SCIPY_CASES else name
            for name in names]


def run(case, backend="serial", **kw):
    args = dict(CASES[case][0]())
    f, y0, t_span = args.pop("f"), args.pop("y0"), args.pop("t_span")
    args.update(kw)
    return parareal.solve(f, y0, t_span, backend=backend, vectorized=backend == "batched",
                          **args)


@functools.cache
def default_run(case):
    """``run(case)``, computed once per module: most tests read this one run (solutions are
    read-only here); those that check determinism make their own runs next to it."""
    return run(case)


@functools.cache
def serial_fine(case, slices=None):
    args = CASES[case][0]()
    out = parareal.solve_serial(args["f"], args["y0"], args["t_span"],
                                propagator=args["fine"], slices=slices or args["slices"])
    out.setflags(write=False)  # computed once, shared
    return out


# == 1. what it records ====================================================================
@pytest.mark.parametrize("case", cases(sorted(CASES)))
def test_default_coarse_is_auto_and_its_choice_is_recorded(case):
    sol = default_run(case)
    choice = sol.coarse_choice
    assert isinstance(choice, CoarseChoice)
    names = [c.propagator for c in choice.candidates]
    assert repr(choice.propagator) in names
    assert all(isinstance(c, CoarseCandidate) for c in choice.candidates)
    assert isinstance(choice.reason, str) and repr(choice.propagator) in choice.reason
    assert any(np.isfinite(c.predicted_critical_path) for c in choice.candidates)
    chosen = choice.candidates[names.index(repr(choice.propagator))]
    # the winner has the smallest finite prediction
    assert chosen.predicted_critical_path == min(c.predicted_critical_path
                                                 for c in choice.candidates)
    assert chosen.ticks == choice.propagator.evals + getattr(choice.propagator, "jac_evals", 0)
    assert 0 < choice.probe_ticks <= sol.stats.critical_path
    assert choice.fine_ticks > 0
    # the default candidates, every one measured
    assert names == [repr(c) for c in AutoCoarse().with_jacobian(
        CASES[case][0]().get("jac")).candidates]


# == 2. deterministic and backend-invariant ================================================
@pytest.mark.parametrize("case", cases(sorted(CASES)))
def test_auto_is_bitwise_the_same_on_every_backend_and_run(case):
    runs = {b: default_run(case) if b == "serial" else run(case, b) for b in BACKENDS}
    runs["serial-again"] = run(case)  # a second run of its own
    ref = runs["serial"]
    assert ref.status is Status.CONVERGED
    for name, sol in runs.items():
        assert repr(sol.coarse_choice.propagator) == repr(ref.coarse_choice.propagator), name
        assert sol.coarse_choice.candidates == ref.coarse_choice.candidates, name
        assert sol.iterations == ref.iterations, name
        assert sol.stats.critical_path == ref.stats.critical_path, name
        assert sol.y.tobytes() == ref.y.tobytes(), name


@pytest.mark.parametrize("schedule", ["synchronous", "pipelined"])
def test_pipelined_schedule_gives_the_same_iterates(schedule):
    ref = default_run("oscillator")
    sol = run("oscillator", schedule=schedule)
    assert repr(sol.coarse_choice.propagator) == repr(ref.coarse_choice.propagator)
    assert sol.iterations == ref.iterations
    assert sol.y.tobytes() == ref.y.tobytes()


# == 3. converges to the serial fine solution ===============================================
@pytest.mark.parametrize("case", cases(sorted(CASES)))
def test_auto_converges_to_serial_fine(case):
    sol = default_run(case)
    serial = serial_fine(case)
    assert sol.status is Status.CONVERGED
    scale = np.max(np.abs(serial))
    # a contraction stopped at an update <= tol is within a few tol of its fixed point
    assert np.max(np.abs(sol.y - serial)) <= 1e-6 * scale


@pytest.mark.parametrize("case", ["oscillator", "stiff-linear"])
def test_auto_with_tol_zero_reproduces_serial_fine_bitwise(case):
    sol = run(case, tol=0.0)
    assert sol.iterations == CASES[case][0]()["slices"]
    assert sol.y.tobytes() == serial_fine(case).tobytes()


# == 4. what it picks ======================================================================
@pytest.mark.parametrize("case", cases(["stiff-linear", "robertson"]))
def test_auto_picks_an_l_stable_linearly_implicit_coarse_on_a_stiff_problem(case):
    sol = default_run(case)
    chosen = sol.coarse_choice.propagator
    assert isinstance(chosen, (parareal.Rosenbrock2, parareal.LinearlyImplicitEuler))
    assert chosen.stability == "L"
    assert chosen.has_jac  # solve's jac= reached the candidates


@pytest.mark.parametrize("fine,slices", [(parareal.RK4(50), 8), (parareal.RK4(200), 16)])
def test_auto_picks_rk4_on_a_non_stiff_oscillator(fine, slices):
    sol = parareal.solve(oscillator, np.array([1.0, 0.0]), (0.0, 2 * np.pi), fine=fine,
                         slices=slices)
    assert isinstance(sol.coarse_choice.propagator, parareal.RK4)
    assert sol.status is Status.CONVERGED
    assert sol.stats.speedup_bound > 1.0


@needs("scipy")
def test_explicit_candidates_that_blow_up_are_marked_not_finite():
    sol = default_run("robertson")
    rows = {c.propagator: c for c in sol.coarse_choice.candidates}
    blown = [r for name, r in rows.items() if name.startswith("RK4") and
             r.note == "not finite on the probe"]
    assert blown, rows
    assert all(r.predicted_critical_path == np.inf for r in blown)
    assert not any(r.note for name, r in rows.items() if name.startswith("Rosenbrock2"))


# == 5. what it costs ======================================================================
@pytest.mark.parametrize("case", ["oscillator", "stiff-linear"])
def test_probe_work_is_counted(case):
    sol = default_run(case)
    m = CASES[case][0]()["fine"].evals
    stats = sol.stats
    assert stats.f_evals > stats.fine_calls * m  # the coarse and probe work came on top
    assert stats.critical_path_per_iteration[0] > 0
    assert stats.critical_path == stats.critical_path_per_iteration[-1]
    assert stats.coarse_calls > sol.iterations * CASES[case][0]()["slices"]


# == 6. arguments ==========================================================================
def test_restricted_candidates_restrict_the_choice():
    candidates = [parareal.RK4(2), parareal.Rosenbrock2(4)]
    sol = run("oscillator", coarse=AutoCoarse(candidates=candidates))
    assert sol.coarse_choice.propagator in candidates
    assert [c.propagator for c in sol.coarse_choice.candidates] == [repr(c) for c in candidates]
    only = run("stiff-linear", coarse=AutoCoarse(candidates=[parareal.Rosenbrock2(4)]))
    assert only.coarse_choice.propagator == parareal.Rosenbrock2(4).with_jacobian(stiff_jac)


@pytest.mark.parametrize("bad,error", [
    ([], ValueError),
    ([3], TypeError),
    ([parareal.RK4(2), "rk4:4"], TypeError),
    ([parareal.ScipyIVP("RK45")], TypeError),  # no fixed calls per slice
    ("rk4:2", TypeError),
    (parareal.RK4(2), TypeError),
])
def test_bad_candidates_are_refused(bad, error):
    with pytest.raises(error, match="candidates|candidate"):
        AutoCoarse(candidates=bad)


def test_bad_initial_is_refused():
    with pytest.raises(TypeError, match="initial"):
        AutoCoarse(initial="scipy:LSODA")


@pytest.mark.parametrize("coarse", ["auto", " AUTO ", AutoCoarse()], ids=repr)
def test_auto_spellings_give_the_same_run(coarse):
    ref = default_run("oscillator")
    sol = run("oscillator", coarse=coarse)
    assert repr(sol.coarse_choice.propagator) == repr(ref.coarse_choice.propagator)
    assert sol.iterations == ref.iterations
    assert sol.stats.critical_path == ref.stats.critical_path
    assert sol.y.tobytes() == ref.y.tobytes()


def test_auto_equality_and_repr():
    assert AutoCoarse() == AutoCoarse()
    assert repr(AutoCoarse()) == "AutoCoarse()"
    restricted = AutoCoarse(candidates=[parareal.RK4(2)])
    assert restricted != AutoCoarse()
    assert "RK4(steps=2)" in repr(restricted)


# == 7. edge cases =========================================================================
def test_one_slice_is_a_trivial_choice_and_converges():
    sol = run("oscillator", slices=1)
    assert sol.status is Status.CONVERGED
    assert sol.coarse_choice.candidates == ()
    assert sol.coarse_choice.propagator == AutoCoarse().initial
    assert sol.y.tobytes() == serial_fine("oscillator", slices=1).tobytes()


def test_max_iters_zero_is_the_initial_guess_alone():
    sol = run("oscillator", max_iters=0)
    assert sol.status is Status.MAX_ITERS
    assert sol.iterations == 0
    assert sol.coarse_choice.candidates == ()
    assert sol.stats.fine_calls == 0
    # the initial guess is a loose solve: close to the truth, not exact (scipy's LSODA at
    # rtol 1e-3; without scipy, Rosenbrock2(steps=8) over each slice)
    exact = np.stack([np.cos(sol.t), -np.sin(sol.t)], axis=-1)
    error = np.max(np.abs(sol.y - exact))
    assert 0 < error < (1e-2 if importlib.util.find_spec("scipy") else 0.1)


def test_given_initial_is_used_and_a_choice_still_made():
    slices = 8
    initial = np.tile(np.array([1.0, 0.0]), (slices + 1, 1))  # a poor guess: y0 everywhere
    sol = run("oscillator", initial=initial)
    assert sol.status is Status.CONVERGED
    assert sol.coarse_choice.candidates  # a real choice, made from the given guess
    assert np.max(np.abs(sol.y - serial_fine("oscillator"))) <= 1e-6
    zero = run("oscillator", initial=initial, max_iters=0)
    assert zero.y.tobytes() == initial.tobytes()


def test_resume_from_an_auto_checkpoint_converges(tmp_path):
    """The resumed run probes again from the checkpoint's iterate, so its choice (and its
    bits) may differ from an uninterrupted run; it converges to the same solution."""
    path = tmp_path / "auto.npz"
    first = run("oscillator", max_iters=1, checkpoint=path)
    assert first.status is Status.MAX_ITERS
    resumed = run("oscillator", resume=path)
    assert resumed.status is Status.CONVERGED
    assert resumed.iterations > 1
    serial = serial_fine("oscillator")
    assert np.max(np.abs(resumed.y - serial)) <= 1e-6
    # the first boundaries are exact after k iterations, resumed or not
    assert resumed.y[:2].tobytes() == serial[:2].tobytes()


# == 8. state kinds ========================================================================
@pytest.mark.parametrize("kind", ["numpy-float32",
                                  pytest.param("torch-float64", marks=needs("torch"))])
def test_auto_works_for_other_state_kinds(kind):
    y0 = np.array([1.0, 0.0])
    if kind == "numpy-float32":
        y0 = y0.astype(np.float32)
    else:
        import torch

        y0 = torch.tensor(y0)
    sol = parareal.solve(oscillator, y0, (0.0, 2 * np.pi), fine=parareal.RK4(50), slices=8)
    assert sol.status is Status.CONVERGED
    assert type(sol.y) is type(y0) and sol.y.dtype == y0.dtype
    assert isinstance(sol.coarse_choice.propagator, parareal.Propagator)
    y = sol.y if isinstance(sol.y, np.ndarray) else sol.y.numpy()
    exact = np.stack([np.cos(sol.t), -np.sin(sol.t)], axis=-1)
    assert np.max(np.abs(y - exact)) < (1e-4 if kind == "numpy-float32" else 1e-6)


def test_torch_stiff_auto_uses_autograd_jacobians():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    A = torch.tensor(STIFF_A)

    def f(t, y):
        return y @ A.T

    sol = parareal.solve(f, torch.tensor([1.0, 1.0], dtype=torch.float64), (0.0, 0.25),
                         fine=parareal.RK4(150), slices=8)
    assert sol.status is Status.CONVERGED
    assert isinstance(sol.coarse_choice.propagator,
                      (parareal.Rosenbrock2, parareal.LinearlyImplicitEuler))
    assert sol.stats.jac_calls > 0
