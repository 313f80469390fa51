"""Concurrent backends: threads, processes, any executor; same answer as serial, faults, cleanup."""

from __future__ import annotations

import concurrent.futures as cf
import importlib.util
import multiprocessing
import os
import threading
import time

import numpy as np
import pytest

import parareal
from parareal import RK4, Euler, problems
from parareal.backends import Executor, Processes, RemoteTraceback, Threads, resolve_backend
from parareal.problems import Problem
from parareal.testing import check_backend, linear_system

from .conftest import diagonal_rhs
from .pool_functions import slow_decay
from .quick_problems import quick_problems

SCHEDULES = ["synchronous", "pipelined"]


def _solve(p, **kw):
    return parareal.solve(p.f, p.y0, p.t_span, coarse=p.coarse, fine=p.fine, slices=p.slices,
                          tol=1e-8, **kw)


def _worker_threads():
    return [t for t in threading.enumerate() if t.name.startswith("parareal-")]


def _within(seconds, fn, *args, **kwargs):
    """Run ``fn`` in a thread; fail (instead of hanging) if it has not returned in time."""
    box = {}

    def target():
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # handed to the test
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{fn.__name__} did not return within {seconds} s"
    if "error" in box:
        raise box["error"]
    return box["value"]


@pytest.fixture(scope="module")
def pool2():
    with Processes(2) as backend:
        yield backend
    assert not multiprocessing.active_children()


@pytest.fixture(scope="module")
def pool1(pool2):
    """One worker process, for torch states: every worker that gets one imports torch (2 s of
    CPU), and what these tests check of them (sent to a process and back, bit for bit) needs
    only one. Closed before pool2, which checks that no worker is left."""
    with Processes(1) as backend:
        yield backend


# -- same answer ---------------------------------------------------------------------------
def _diagonal_problem():
    f, y0 = diagonal_rhs(-np.linspace(0.3, 2.0, 4), forcing=0.5), np.linspace(1, -1, 4)
    return Problem(name="forced-diagonal", f=f, y0=y0, t_span=(0.0, 3.0), coarse=Euler(1),
                   fine=RK4(8), slices=9, description="y' = lam * y + 0.5 cos t, elementwise")


def _check_quick(backend, torch_backend=None, **kw):
    """The quick problems on ``backend``, check_backend's torch cases on ``torch_backend``
    (default: ``backend``)."""
    runs = check_backend(backend, problems=quick_problems(), **kw)
    assert len(runs) == 2 * (len(problems.CORE) + 2)
    if importlib.util.find_spec("torch"):
        assert len(check_backend(torch_backend or backend, device="cpu", **kw)) == 4


@pytest.mark.parametrize("workers,vectorized", [(1, False), (2, True), (3, False)])
def test_threads_pass_check_backend(workers, vectorized):
    # every bundled problem, both schedules: the serial backend's run, bit for bit
    _check_quick(Threads(workers), vectorized=vectorized)
    assert not _worker_threads()


def test_processes_pass_check_backend(pool2, pool1):
    _check_quick(pool2, torch_backend=pool1)


def test_worker_count_does_not_change_the_answer_with_a_vectorised_f():
    p = _diagonal_problem()
    for backend in ("batched", Threads(1), Threads(2), Threads(4), Threads(16)):
        check_backend(backend, problems=[p], tol=0.0)


def test_processes_string_backend_makes_and_ends_its_own_pool():
    before = set(multiprocessing.active_children())
    check_backend("processes", problems=[problems.get("vanderpol", slices=4, t_end=2.0)],
                  schedules=("synchronous",))
    assert set(multiprocessing.active_children()) <= before


def test_a_worker_runs_its_group_batched():
    shapes = []
    lock = threading.Lock()

    def f(t, y):
        with lock:
            shapes.append((threading.current_thread().name, y.shape, np.shape(t)))
        return -y

    sol = parareal.solve(f, np.ones(3), (0, 1), coarse=Euler(1), fine=RK4(2), slices=8, tol=0,
                         max_iters=1, backend=Threads(2), vectorized=True)
    remote = [s for s in shapes if s[0].startswith("parareal-worker")]
    # the 8 slices of the first fine sweep: two groups of 4, one call of f per stage
    assert sorted({s[1] for s in remote}) == [(4, 3)]
    assert len(remote) == 2 * RK4(2).evals
    assert all(s[2] == (4,) for s in remote)
    assert sol.stats.f_evals == sum(s[1][0] for s in shapes)


def test_executor_with_thread_and_process_pools():
    brusselator = [problems.get("brusselator", slices=8, t_end=3.0)]  # the first 8 slices
    with cf.ThreadPoolExecutor(2) as pool:
        check_backend(Executor(pool), problems=brusselator, schedules=("pipelined",))
        assert Executor(pool).workers == 2
    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(2, mp_context=ctx) as pool:
        backend = Executor(pool)
        assert backend.workers == 2
        check_backend(backend, problems=brusselator, schedules=("pipelined",))
        # closures and lambdas travel with cloudpickle
        scale = -0.5
        sol = parareal.solve(lambda t, y: scale * y, np.ones(2), (0, 1), coarse=Euler(1),
                             fine=RK4(4), slices=4, backend=backend)
        assert np.allclose(sol.y[-1], np.exp(-0.5), rtol=1e-6)


def test_torch_states_on_threads_and_processes(pool1):
    pytest.importorskip("torch")
    pytest.importorskip("torchdiffeq")
    p = linear_system([-0.5 + 1.0j], slices=4, t_span=(0.0, 2.0), coarse=RK4(1),
                      fine=parareal.TorchDiffEq("dopri5", rtol=1e-7, atol=1e-9))
    for backend in (Threads(2), pool1):  # torch float64 states, an opaque fine propagator
        check_backend(backend, problems=[p], device="cpu", vectorized=False, tol=1e-10)


def test_solve_serial_and_odeint_accept_the_new_backends(pool2):
    p = problems.get("lorenz", slices=6, t_end=0.6)  # the default's first 6 slices
    ref = parareal.solve_serial(p.f, p.y0, p.t_span, propagator=p.fine, slices=p.slices)
    for backend in ("threads", pool2):
        out = parareal.solve_serial(p.f, p.y0, p.t_span, propagator=p.fine, slices=p.slices,
                                    backend=backend)
        assert np.array_equal(out, ref)
    t = np.linspace(0, 2, 5)
    f, y0 = diagonal_rhs(-np.array([0.5, 1.5])), np.ones(2)
    a = parareal.odeint(f, y0, t, method="rk4", options={"step_size": 0.01})
    b = parareal.odeint(f, y0, t, method="rk4", options={"step_size": 0.01}, backend="threads")
    assert np.array_equal(a, b)


def test_stats_report_wall_clock_beside_the_logical_clock():
    p = problems.get("brusselator", slices=8, t_end=3.0)  # the first 8 of its 32 slices
    sol = _solve(p, backend=Threads(2))
    stats = sol.stats
    assert len(stats.wall_time_per_iteration) == len(stats.critical_path_per_iteration)
    assert list(stats.wall_time_per_iteration) == sorted(stats.wall_time_per_iteration)
    assert stats.wall_time_per_iteration[-1] <= stats.wall_time["total"]
    assert {"wait", "workers"} <= set(stats.wall_time)
    assert 0 < stats.wall_time["workers"]
    assert stats.as_dict()["wall_time_per_iteration"] == list(stats.wall_time_per_iteration)
    assert "wait" not in _solve(p).stats.wall_time


# -- scheduling rule -------------------------------------------------------------------------
class _Gate(parareal.Propagator):
    """An opaque propagator that records its order and can hold its first call."""

    def __init__(self, log, gate, label):
        self.log, self.gate, self.label = log, gate, label

    def propagate(self, f, y, t0, t1):
        self.gate.wait(10)
        self.log.append(self.label)
        return y + (t1 - t0) * f(t0, y)


def test_waiting_tasks_run_oldest_iteration_first_then_lowest_slice():
    from parareal.backends import Rhs
    from parareal.engine.driver import Driver
    from parareal.state import ops_for

    y = np.ones(2)
    rhs = Rhs(lambda t, v: -v, ops_for(y), False)
    backend = Threads(1)
    log, gate = [], threading.Event()
    driver = Driver(backend, rhs, backend.open(rhs, Euler(1), y))
    try:
        blocker = _Gate(log, gate, "blocker")
        driver.start("blocker", blocker, y, 0.0, 1.0, remote=True, priority=(-1, 0))
        driver._submit_started()  # the only worker is now busy
        order = [(2, 0), (1, 5), (1, 3), (0, 7), (2, 1)]
        for k, n in order:
            prop = _Gate(log, gate, (k, n))
            driver.start((k, n), prop, y, 0.0, 1.0, remote=True, priority=(k, n))
        driver._submit_started()
        gate.set()
        while not driver.idle:
            driver.step()
    finally:
        driver.close()
    assert log == ["blocker", *sorted(order)]


# -- faults and cleanup ----------------------------------------------------------------------
class Boom(Exception):
    pass


def _raising_f(after):
    count = {"n": 0}

    def f(t, y):
        count["n"] += 1
        if count["n"] > after and t > 0.5:
            raise Boom(f"f failed at t={float(t):.3f}")
        return -y

    return f


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_exception_on_a_thread_worker_reaches_the_caller_and_no_thread_is_left(schedule):
    start = time.perf_counter()
    with pytest.raises(Boom, match="f failed at t="):
        _within(30, parareal.solve, _raising_f(50), np.ones(2), (0, 1), coarse=Euler(1),
                fine=RK4(20), slices=8, backend=Threads(2), schedule=schedule)
    assert time.perf_counter() - start < 10
    assert not _worker_threads()


def test_exception_on_a_process_worker_has_its_traceback_as_cause(pool2):
    parent = os.getpid()

    def f(t, y):
        if t > 0.5 and os.getpid() != parent:
            raise Boom(f"f failed at t={float(t):.3f}")
        return -y

    with pytest.raises(Boom, match="f failed at t=") as info:
        _within(60, parareal.solve, f, np.ones(2), (0, 1), coarse=Euler(1), fine=RK4(5),
                slices=4, backend=pool2)
    cause = info.value.__cause__
    assert isinstance(cause, RemoteTraceback)
    assert "in f" in str(cause) and "Traceback of the worker" in str(cause)
    # the pool is still usable afterwards
    check_backend(pool2, problems=[problems.get("dahlquist")], schedules=("synchronous",))


def test_unpicklable_exception_still_reaches_the_caller(pool2):
    class Unpicklable(Exception):
        def __init__(self):
            super().__init__("carries a lock")
            self.lock = threading.Lock()

    def f(t, y):
        raise Unpicklable()

    with pytest.raises(Exception, match="carries a lock"):
        _within(60, parareal.solve, f, np.ones(2), (0, 1), coarse=Euler(1), fine=RK4(2),
                slices=2, backend=pool2)


def test_a_worker_process_that_dies_gives_a_clear_error():
    parent = os.getpid()

    def f(t, y):
        if os.getpid() != parent:
            os._exit(3)
        return -y

    before = set(multiprocessing.active_children())
    with Processes(1) as backend:  # one worker to die, then one in the new pool
        with pytest.raises(RuntimeError, match="worker process of backend 'processes' died"):
            _within(60, parareal.solve, f, np.ones(2), (0, 1), coarse=Euler(1), fine=RK4(4),
                    slices=4, backend=backend)
        # a new pool replaces the broken one
        check_backend(backend, problems=[problems.get("dahlquist")], schedules=("synchronous",))
    assert set(multiprocessing.active_children()) <= before


def test_converged_run_stops_its_speculative_work():
    calls = []

    def f(t, y):
        calls.append(threading.current_thread().name)
        time.sleep(0.0005)
        return -y

    sol = _within(60, parareal.solve, f, np.ones(2), (0, 2), coarse=RK4(2), fine=RK4(40),
                  slices=12, tol=1e-6, backend=Threads(2), schedule="pipelined", lookahead=None)
    assert sol.converged
    count = len(calls)
    time.sleep(0.2)
    assert len(calls) == count  # nothing runs on after the return
    assert not _worker_threads()


# -- bad input -------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [Threads, Processes])
def test_bad_workers(cls):
    with pytest.raises(ValueError, match="workers"):
        cls(0)
    with pytest.raises(TypeError, match="workers"):
        cls("2")
    with pytest.raises(TypeError, match="workers"):
        cls(2.0)


def test_bad_executor_and_start_method():
    with pytest.raises(TypeError, match="concurrent.futures.Executor"):
        Executor(object())
    with pytest.raises(TypeError, match="concurrent.futures.Executor"):
        Executor(cf.ThreadPoolExecutor)  # the class, not an instance
    with pytest.raises(ValueError, match="start_method"):
        Processes(2, start_method="threads")
    with pytest.raises(ValueError, match="workers applies"):
        resolve_backend("serial", 2)


def test_unpicklable_f_is_a_type_error_naming_it_before_any_work():
    lock = threading.Lock()
    calls = []

    def f(t, y):
        calls.append(t)
        with lock:
            return -y

    before = set(multiprocessing.active_children())
    with pytest.raises(TypeError, match="f cannot be pickled"):
        parareal.solve(f, np.ones(2), (0, 1), coarse=Euler(1), fine=RK4(2), slices=2,
                       backend="processes")
    assert calls == []
    assert set(multiprocessing.active_children()) <= before


def test_unpicklable_propagator_is_a_type_error_naming_it():
    class Holding(RK4):
        def __init__(self):
            super().__init__(2)
            self.lock = threading.Lock()

    with pytest.raises(TypeError, match="fine propagator"):
        parareal.solve(lambda t, y: -y, np.ones(2), (0, 1), coarse=Euler(1), fine=Holding(),
                       slices=2, backend="processes")


def test_one_processes_instance_runs_one_solve_at_a_time(pool2):
    results = []
    # slow_decay: 50 ms per call, the solve takes over half a second, the second one comes
    # during it (from tests/pool_functions.py, so that pool2's workers need not import this one)
    first = threading.Thread(target=lambda: results.append(parareal.solve(
        slow_decay, np.ones(1), (0, 1), coarse=Euler(1), fine=RK4(1), slices=2, backend=pool2)))
    first.start()
    try:
        deadline = time.time() + 10
        while not pool2._busy.locked() and time.time() < deadline:
            time.sleep(0.01)
        with pytest.raises(RuntimeError, match="one solve at a time"):
            parareal.solve(lambda t, y: -y, np.ones(1), (0, 1), coarse=Euler(1),
                           fine=RK4(1), slices=2, backend=pool2)
    finally:
        first.join(30)
    assert len(results) == 1 and results[0].converged


def test_cuda_streams_without_cuda_names_threads():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(RuntimeError, match="threads"):
        parareal.backends.CudaStreams()
    with pytest.raises(RuntimeError, match="threads"):
        parareal.solve(lambda t, y: -y, np.ones(1), (0, 1), coarse=Euler(1), fine=RK4(1),
                       slices=2, backend="cuda-streams")


def test_waiting_tasks_of_one_propagator_merge_into_a_workers_share():
    from parareal.backends import Rhs
    from parareal.engine.driver import Driver
    from parareal.state import ops_for

    seen = []

    def f(t, y):
        if threading.current_thread().name.startswith("parareal-worker"):
            seen.append(y.shape[0])
        return -y

    y = np.ones(2)
    rhs = Rhs(f, ops_for(y), True)
    backend = Threads(1)
    gate = threading.Event()
    driver = Driver(backend, rhs, backend.open(rhs, Euler(1), y))
    fine = RK4(1)
    results = {}
    try:
        driver.start("blocker", _Gate([], gate, "blocker"), y, 0.0, 1.0, remote=True,
                     priority=(-1, 0))
        driver._submit_started()
        for n in range(5):  # started in five different ticks: five waiting tasks
            driver.start(n, fine, y * (n + 1), float(n), n + 1.0, remote=True, priority=(0, n))
            driver._submit_started()
        gate.set()
        while not driver.idle:
            results.update(driver.step())
    finally:
        driver.close()
    assert seen == [1] + [5] * fine.evals  # the blocker, then one task: a call per stage
    for n in range(5):  # each propagation as if alone
        alone = RK4(1).propagate(lambda t, v: -v, y * (n + 1), float(n), n + 1.0)
        assert np.array_equal(results[n], alone)


def test_bad_backend_arguments_of_solve_serial_and_executor():
    with pytest.raises(ValueError, match="unknown backend"):
        parareal.solve_serial(lambda t, y: -y, np.ones(1), (0, 1), propagator="rk4:2",
                              backend="gpu")
    with pytest.raises(TypeError, match="backend"):
        parareal.solve_serial(lambda t, y: -y, np.ones(1), (0, 1), propagator="rk4:2",
                              backend=3)
    with cf.ThreadPoolExecutor(1) as pool:
        with pytest.raises(ValueError, match="workers"):
            Executor(pool, workers=0)
        with pytest.raises(TypeError, match="workers"):
            Executor(pool, workers=1.5)
