"""Issue 18's hostile inputs that reach the engine: gradients across process boundaries, odd
``y0`` containers, callbacks returning numpy booleans, backends answering with too few results,
and an ``f`` that writes into its argument. Each case failed once (silently) and must not again.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import parareal
from parareal.backends import (
    AUTOGRAD_BACKENDS,
    Batched,
    ConcurrentBackend,
    Executor,
    Processes,
    Threads,
)
from parareal.backends.concurrent import _DirectSession

from .conftest import needs

#: The tests (and parameters) with torch states; the others need nothing but numpy.
TORCH = needs("torch")
try:
    import torch
except ImportError:  # the tests marked TORCH skip
    pass

ROOT = Path(__file__).parent.parent
KW = dict(coarse="rk4:1", fine="rk4:10", slices=4, tol=0.0)


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", parareal.NoSpeedupWarning)
        yield


def _grads(backend, *, vectorized=False):
    """d(sum of the final state)/d(y0, w) for y' = -w * tanh(y)."""
    y0 = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64, requires_grad=True)
    w = torch.tensor(1.3, dtype=torch.float64, requires_grad=True)
    sol = parareal.solve(lambda t, y: -w * torch.tanh(y), y0, (0.0, 2.0), backend=backend,
                         vectorized=vectorized, **KW)
    sol.y[-1].sum().backward()
    return y0.grad.clone(), w.grad.clone(), sol


# -- gradients -------------------------------------------------------------------------------
@TORCH
@pytest.mark.parametrize("backend", ["batched", "threads", "pipelined-threads", "thread-pool"])
def test_gradients_in_this_process_match_the_serial_backend(backend):
    g_y0, g_w, ref = _grads("serial")
    schedule = "synchronous"
    if backend == "pipelined-threads":
        backend, schedule = "threads", "pipelined"
    if backend == "thread-pool":
        backend = Executor(cf.ThreadPoolExecutor(2))
    y0 = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64, requires_grad=True)
    w = torch.tensor(1.3, dtype=torch.float64, requires_grad=True)
    sol = parareal.solve(lambda t, y: -w * torch.tanh(y), y0, (0.0, 2.0), backend=backend,
                         schedule=schedule, **KW)
    sol.y[-1].sum().backward()
    assert torch.equal(sol.y, ref.y)
    assert torch.allclose(y0.grad, g_y0, rtol=0, atol=1e-10)
    assert torch.allclose(w.grad, g_w, rtol=0, atol=1e-10)
    assert float(g_w) != 0.0 and bool((g_y0 != 0).all())


@TORCH
def test_serial_gradients_agree_with_torchdiffeq():
    """The reference the other backends are held to is itself right: torchdiffeq's RK4 with
    the same steps (the serial fine solve) gives the same derivatives."""
    torchdiffeq = pytest.importorskip("torchdiffeq")
    g_y0, g_w, _ = _grads("serial")
    y0 = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64, requires_grad=True)
    w = torch.tensor(1.3, dtype=torch.float64, requires_grad=True)
    out = torchdiffeq.odeint(lambda t, y: -w * torch.tanh(y), y0,
                             torch.tensor([0.0, 2.0], dtype=torch.float64), method="rk4",
                             options={"step_size": 0.05, "perturb": False})
    out[-1].sum().backward()
    assert torch.allclose(y0.grad, g_y0, rtol=1e-6, atol=0)
    assert torch.allclose(w.grad, g_w, rtol=1e-6, atol=0)


@TORCH
@pytest.mark.parametrize("make", [lambda: Processes(2),
                                  lambda: Executor(cf.ProcessPoolExecutor(2))],
                         ids=["processes", "process-pool"])
@pytest.mark.parametrize("source", ["y0", "parameter"])
def test_process_backends_refuse_gradients_before_any_work(make, source):
    backend = make()
    y0 = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=source == "y0")
    w = torch.tensor(1.5, dtype=torch.float64, requires_grad=source == "parameter")
    try:
        with pytest.raises(ValueError) as info:
            parareal.solve(lambda t, y: -w * y, y0, (0.0, 1.0), backend=backend, **KW)
        message = str(info.value)
        assert "gradients do not cross process boundaries" in message
        assert repr(backend) in message
        assert AUTOGRAD_BACKENDS in message
        assert ("y0 requires grad" if source == "y0" else "parameters") in message
        if isinstance(backend, Processes):
            assert backend._pool is None  # no worker process was started
    finally:
        backend.close()
        if isinstance(backend, Executor):
            backend.executor.shutdown()


@TORCH
def test_solve_serial_on_processes_refuses_gradients_too():
    y0 = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    with Processes(2) as backend, pytest.raises(ValueError, match="process boundaries"):
        parareal.solve_serial(lambda t, y: -y, y0, (0.0, 1.0), propagator="rk4:4", slices=2,
                              backend=backend)
    y1 = y0.detach().requires_grad_()
    out = parareal.solve_serial(lambda t, y: -y, y1, (0.0, 1.0), propagator="rk4:4",
                                slices=2, backend="threads")
    out[-1].sum().backward()
    assert torch.allclose(y1.grad, torch.exp(torch.tensor(-1.0, dtype=torch.float64)),
                          rtol=1e-4)


@TORCH
def test_process_backends_run_without_grad_and_match_serial():
    """Refusal only where gradients are wanted: under no_grad (or with detached inputs) the
    processes backend runs and gives the serial backend's numbers."""
    w = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    y0 = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    # one worker process: a process boundary all the same, and one start of torch, not two
    with Processes(1) as backend, torch.no_grad():
        sol = parareal.solve(lambda t, y: -w * y, y0, (0.0, 1.0), backend=backend, **KW)
        ref = parareal.solve(lambda t, y: -w * y, y0, (0.0, 1.0), backend="serial", **KW)
    assert not sol.y.requires_grad
    assert torch.equal(sol.y, ref.y)


@TORCH
def test_odeint_with_a_module_refuses_processes_and_is_right_on_serial():
    torchdiffeq = pytest.importorskip("torchdiffeq")
    torch.manual_seed(0)

    class Field(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(2, 2).double()

        def forward(self, t, y):
            return torch.tanh(self.lin(y))

    field = Field()
    t = torch.linspace(0, 1, 5, dtype=torch.float64)
    options = {"step_size": 0.05}
    with Processes(2) as backend, pytest.raises(ValueError, match="process boundaries"):
        parareal.odeint(field, torch.tensor([1.0, -0.5], dtype=torch.float64), t,
                        method="rk4", options=options, backend=backend)
    y0 = torch.tensor([1.0, -0.5], dtype=torch.float64, requires_grad=True)
    parareal.odeint(field, y0, t, method="rk4", options=options)[-1].sum().backward()
    y1 = y0.detach().clone().requires_grad_()
    torchdiffeq.odeint(field, y1, t, method="rk4", options=options)[-1].sum().backward()
    assert torch.allclose(y0.grad, y1.grad, rtol=1e-9, atol=1e-12)


@TORCH
def test_worker_threads_follow_the_callers_grad_mode():
    """A new thread starts with grad mode on: under no_grad the fine results of worker
    threads must not carry a graph (it held activations alive and made Solution.y require
    grad)."""
    w = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        sol = parareal.solve(lambda t, y: -w * y, torch.ones(3, dtype=torch.float64),
                             (0.0, 1.0), backend=Threads(2), **KW)
    assert not sol.y.requires_grad


@TORCH
@pytest.mark.skipif(shutil.which("mpiexec") is None, reason="no mpiexec")
def test_mpi_on_two_ranks_refuses_gradients_on_every_rank_and_one_rank_gives_them(
        tmp_path_factory):
    pytest.importorskip("mpi4py")
    from .test_mpi import pair_job

    # in the 2-rank job of tests/scripts/mpi_pair.py (tests/scripts/mpi_grad.py), whose ranks
    # import torch for that job's own torch checks: on both (MPI(comm=COMM_WORLD), the two)
    # the refusal, then on each rank alone (MPI(comm=COMM_SELF), a communicator of one rank)
    # the gradients
    rows = pair_job(tmp_path_factory)["grad"]
    w = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    ref = parareal.solve(lambda t, y: -w * y, torch.tensor([1.0, 2.0], dtype=torch.float64),
                         (0.0, 1.0), coarse="rk4:1", fine="rk4:10", slices=4)
    ref.y[-1].sum().backward()
    assert [row["rank"] for row in rows] == [0, 1]
    assert [row["refused"] for row in rows] == [True, True]  # refused on every rank
    for row in rows:  # a single rank gives them
        assert abs(row["grad"] - float(w.grad)) < 1e-10


# -- y0 containers ---------------------------------------------------------------------------
@pytest.mark.parametrize("y0, error, words", [
    pytest.param(lambda: torch.empty(3, device="meta"), ValueError, "'meta' device",
                 marks=TORCH, id="meta"),
    pytest.param(lambda: np.ma.masked_array([1.0, 2.0], mask=[False, True]), TypeError,
                 "MaskedArray", id="masked"),
    pytest.param(lambda: torch.tensor([1.0, 0.0]).to_sparse(), TypeError, "dense",
                 marks=TORCH, id="sparse"),
])
def test_y0_that_holds_no_plain_numbers_is_refused_before_f_runs(y0, error, words):
    calls = []

    def f(t, y):
        calls.append(t)
        return -y

    with pytest.raises(error, match=words) as info:
        parareal.solve(f, y0(), (0.0, 1.0), **KW)
    assert "y0" in str(info.value) and not calls


@TORCH
def test_odeint_refuses_a_meta_y0_too():
    with pytest.raises(ValueError, match="y0 is on the 'meta' device"):
        parareal.odeint(lambda t, y: -y, torch.empty(2, device="meta"), torch.linspace(0, 1, 3))


# -- callbacks -------------------------------------------------------------------------------
def _tensor(value):
    """A 0-d tensor made when the test runs (the parameter is skipped without torch)."""
    return pytest.param(lambda: torch.tensor(value), value, marks=TORCH,
                        id=f"torch.tensor({value})")


@pytest.mark.parametrize("answer, stops", [
    (np.True_, True), (np.bool_(False), False), _tensor(True),
    (np.array([True]), True), _tensor(False), (True, True), (1, False),
    ("yes", False), (None, False),
])
def test_a_callback_stops_the_run_on_any_boolean_true(answer, stops):
    if callable(answer):
        answer = answer()
    y0 = np.array([1.0, 0.5])

    def callback(info):
        return answer if info.iteration == 1 else None

    sol = parareal.solve(lambda t, y: -y, y0, (0.0, 1.0), coarse="rk4:1", fine="rk4:10",
                         slices=6, tol=0.0, callback=callback)
    assert sol.iterations == (1 if stops else 6)
    assert sol.status is parareal.Status.CONVERGED
    if stops:
        assert sol.reason == "the callback asked to stop"


# -- backends that answer with too few results ----------------------------------------------
class _ShortBatched(Batched):
    def evaluate(self, rhs, requests):
        return super().evaluate(rhs, requests)[:-1]


class _ShortSession(_DirectSession):
    def result(self, future):
        result = super().result(future)
        result.values = result.values[:-1]
        return result


class _ShortThreads(ConcurrentBackend):
    name = "short-threads"

    def open(self, rhs, propagator, y0):
        return _ShortSession(cf.ThreadPoolExecutor(2), 2, self.name, rhs, owned=True)


@pytest.mark.parametrize("backend", [_ShortBatched(), _ShortThreads(2)], ids=["evaluate",
                                                                              "tasks"])
def test_a_backend_returning_too_few_results_is_named_with_the_counts(backend):
    with pytest.raises(TypeError) as info:
        parareal.solve(lambda t, y: -y, np.ones(2), (0.0, 1.0), backend=backend,
                       vectorized=True, **KW)
    message = str(info.value)
    assert repr(backend) in message and "one result per request" in message
    assert re.search(r"returned \d+ results.* for \d+ requests", message)


# -- an f that writes into y -----------------------------------------------------------------
def _scaling(kind):
    if kind == "numpy":
        def f(t, y):
            y *= 1.0001
            return -y
        return f, np.ones(3)

    def g(t, y):
        return -y.mul_(1.0001)
    return g, torch.ones(3, dtype=torch.float64)


@pytest.mark.parametrize("kind", ["numpy", pytest.param("torch", marks=TORCH)])
@pytest.mark.parametrize("backend, vectorized", [("serial", False), ("batched", True),
                                                 ("threads", False)])
def test_an_f_that_writes_into_y_is_refused_on_its_first_call(kind, backend, vectorized):
    f, y0 = _scaling(kind)
    with pytest.raises(ValueError, match="f modified its argument y in place") as info:
        parareal.solve(f, y0, (0.0, 1.0), backend=backend, vectorized=vectorized, **KW)
    assert "vectorised" not in str(info.value)  # not mistaken for a batching problem


def test_an_f_that_writes_into_y_is_refused_by_odeint():
    f, y0 = _scaling("numpy")
    with pytest.raises(ValueError, match="in place"):
        parareal.odeint(f, y0, np.linspace(0.0, 1.0, 3), method="rk4")


def test_an_f_that_rewrites_the_same_values_or_copies_is_accepted_and_exact():
    def f(t, y):
        y[...] = y  # the same values: harmless
        z = y.copy()
        z *= -1.0
        return z

    y0 = np.array([1.0, -0.25, 2.0])
    sol = parareal.solve(f, y0, (0.0, 1.0), **KW)
    serial = parareal.solve_serial(f, y0, (0.0, 1.0), propagator="rk4:10", slices=4)
    assert np.array_equal(sol.y, serial)


# -- found by a hostile-input campaign of our own ---------------------------------------------
@pytest.mark.parametrize("backend, vectorized", [("serial", False), ("batched", True),
                                                 ("threads", False)])
@pytest.mark.parametrize("payload", [np.zeros(2), "boom"])
def test_stopiteration_from_f_is_an_error_never_a_converged_wrong_answer(backend, vectorized,
                                                                         payload):
    def f(t, y):
        if np.any(np.asarray(t) > 0.5):
            raise StopIteration(payload)
        return -y

    with pytest.raises(RuntimeError, match="f raised StopIteration") as info:
        parareal.solve(f, np.array([1.0, 0.5]), (0.0, 1.0), backend=backend,
                       vectorized=vectorized, **KW)
    assert isinstance(info.value.__cause__, StopIteration)
    with pytest.raises(RuntimeError, match="f raised StopIteration"):
        parareal.solve_serial(f, np.array([1.0, 0.5]), (0.0, 1.0), propagator="rk4:4",
                              slices=4)


@TORCH
def test_torchdiffeq_failures_are_failed_propagations_and_f_errors_pass_unchanged():
    pytest.importorskip("torchdiffeq")
    with pytest.warns(RuntimeWarning, match="torchdiffeq failed"):
        sol = parareal.solve(lambda t, y: y * y, np.array([2.0]), (0.0, 1.0), coarse="rk4:1",
                             fine="torchdiffeq:dopri5", slices=4)
    assert sol.status is parareal.Status.DIVERGED
    assert "underflow" in sol.reason and np.all(np.isfinite(sol.y))
    # two slices up to 0.6 (the blow-up is at 0.5) and rtol 1e-3: the second slice's dopri5
    # fails as with the defaults, in fewer steps, and the first's does not
    with pytest.warns(RuntimeWarning), pytest.raises(parareal.DivergenceError,
                                                     match="underflow"):
        parareal.odeint(lambda t, y: y * y, torch.tensor([2.0], dtype=torch.float64),
                        torch.tensor([0.0, 0.6], dtype=torch.float64), rtol=1e-3, slices=2)

    def bad(t, y):
        raise KeyError("mine")

    with pytest.raises(KeyError, match="mine"):
        parareal.solve(bad, np.array([2.0]), (0.0, 1.0), coarse="rk4:1",
                       fine="torchdiffeq:dopri5", slices=4)


@pytest.mark.parametrize("call, words", [
    (lambda: parareal.RK4(steps=10**30), "steps must be <= 100_000_000"),
    (lambda: parareal.BackwardEuler(steps=10**12), "steps must be <="),
    (lambda: parareal.solve(lambda t, y: -y, np.ones(2), (0, 1), coarse="rk4:1",
                            fine="rk4:1000000000000", slices=4), "steps must be <="),
    (lambda: parareal.solve(lambda t, y: -y, np.ones(2), (0, 1), coarse="rk4:1",
                            fine="rk4:4", slices=10**9), "slices must be <= 1_000_000"),
    pytest.param(lambda: parareal.odeint(lambda t, y: -y, torch.ones(2, dtype=torch.float64),
                                         torch.linspace(0, 1, 3, dtype=torch.float64),
                                         method="rk4", options={"step_size": 1e-300}),
                 "options\\['step_size'\\]", marks=TORCH, id="odeint-step-size"),
    (lambda: __import__("parareal.problems").problems.get("heat", points=10**9),
     "points must be <="),
])
def test_work_is_bounded_before_it_starts(call, words):
    with pytest.raises(ValueError, match=words) as info:
        call()
    assert len(str(info.value)) < 400  # a huge value is cut, not echoed


def test_auto_iteration_prediction_survives_huge_contraction_factors():
    from parareal.engine.auto import predict_iterations

    assert predict_iterations(1.0, 1e300, 0.5, slices=400, max_iters=400, tol=1e-8) == 400


@pytest.mark.parametrize("jac", [
    pytest.param(lambda t, y: -np.eye(2) + 0j, id="dense"),
    pytest.param(lambda t, y: __import__("scipy.sparse").sparse.csr_matrix(-np.eye(2) + 0j),
                 marks=needs("scipy"), id="sparse")])
def test_a_complex_jacobian_for_a_real_state_is_refused(jac):
    with pytest.raises(TypeError, match="jac returned complex values"):
        parareal.solve(lambda t, y: -y, np.array([1.0, 0.5]), (0, 1), fine="rk4:4", slices=4,
                       coarse=parareal.BackwardEuler(jac=jac))
    sol = parareal.solve(lambda t, y: -y, np.array([1.0, 0.5 + 1j]), (0, 1), fine="rk4:4",
                         slices=4, coarse=parareal.BackwardEuler(jac=jac))
    assert sol.status is parareal.Status.CONVERGED


@pytest.mark.parametrize("boundaries", [["0", "0.25", "0.5", "0.75", "1"],
                                        [0, 0.25j, 0.5, 0.75, 1], [0, None, 0.5, 0.75, 1]])
def test_boundaries_must_be_real_numbers(boundaries):
    with pytest.raises(TypeError, match="boundaries must be a 1-D sequence of real numbers"):
        parareal.solve(lambda t, y: -y, np.ones(2), (0, 1), boundaries=boundaries, **KW)


@TORCH
@pytest.mark.parametrize("backend, vectorized", [("serial", False), ("batched", True)])
def test_f_answering_on_another_device_is_named(backend, vectorized):
    with pytest.raises(TypeError, match="f returned a tensor on device meta for a state on cpu"):
        parareal.solve(lambda t, y: torch.empty(y.shape, device="meta"), torch.ones(2),
                       (0, 1), backend=backend, vectorized=vectorized, **KW)


@TORCH
def test_odeint_refuses_meta_times():
    with pytest.raises(ValueError, match="t is on the 'meta' device"):
        parareal.odeint(lambda t, y: -y, torch.ones(2), torch.tensor([0.0, 1.0], device="meta"))


@pytest.mark.parametrize("make", [cf.ThreadPoolExecutor, cf.ProcessPoolExecutor])
def test_a_shut_down_executor_is_named(make):
    pool = make(2)
    pool.shutdown()
    with pytest.raises(ValueError, match="executor: the .* has been shut down"):
        parareal.solve(lambda t, y: -y, np.ones(2), (0, 1), backend=Executor(pool), **KW)


def test_ctrl_c_ends_a_threads_run_whose_f_never_returns(tmp_path):
    script = tmp_path / "stuck.py"
    script.write_text(textwrap.dedent("""
        import time, numpy as np, parareal
        from parareal.backends import Threads
        def f(t, y):
            if t > 0.5:
                print("stuck", flush=True)
                while True:
                    time.sleep(0.05)
            return -y
        parareal.solve(f, np.array([1.0]), (0, 1), coarse="rk4:1", fine="rk4:4", slices=4,
                       backend=Threads(2), schedule="pipelined")
    """))
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=path))
    try:
        assert proc.stdout.readline().startswith("stuck")
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        start = time.monotonic()
        _, err = proc.communicate(timeout=30)
        assert time.monotonic() - start < 15
    finally:
        proc.kill()
    assert proc.returncode != 0 and "KeyboardInterrupt" in err


def test_solve_serial_warns_when_its_values_are_not_finite():
    with pytest.warns(RuntimeWarning, match="solve_serial: .* NaN or inf at boundary 1"):
        out = parareal.solve_serial(lambda t, y: 100.0 * y * y, np.array([2.0]), (0, 1),
                                    propagator="rk4:4", slices=4)
    assert not np.all(np.isfinite(out))
