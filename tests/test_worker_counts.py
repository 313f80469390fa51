"""Worker counts: a run never starts more workers than it has slices, and warns when it would
start four per CPU core or more; the answer is the serial backend's, bit for bit.

Real thread and process pools. The warning depends on the cores this process may use, so the
tests that count it pin the process to one core (``os.sched_setaffinity``, restored after):
then four workers or more warn, whatever the machine.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import threading
import warnings

import numpy as np
import pytest

import parareal
from parareal import OversubscriptionWarning
from parareal.backends import Executor, Processes, Threads
from parareal.backends.concurrent import default_workers, run_workers

# f in a module of its own: a spawned worker that unpickles it imports numpy alone, not this
# module (pytest and all: 0.3 s of CPU per worker, and these tests start 11)
from .pool_functions import damped as f

OPTS = {"coarse": "rk4:1", "fine": "rk4:6", "tol": 0.0}
SPAN = (0.0, 2.0)
Y0 = np.linspace(0.5, 1.5, 4)

#: Where a test's pool sizes, not how its processes start, are the point: fork (no fresh
#: interpreter per worker: 0.4 s of CPU each), where the platform has it.
FORK = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"

needs_affinity = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"),
                                    reason="needs os.sched_setaffinity")


@pytest.fixture
def one_core():
    """Pin this process (and the workers it starts) to one CPU core."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before)})
    try:
        assert default_workers() == 1
        yield
    finally:
        os.sched_setaffinity(0, before)


def solve(backend, slices):
    return parareal.solve(f, Y0, SPAN, **OPTS, slices=slices, backend=backend)


def test_run_workers_caps_at_the_slices():
    assert run_workers(10**6, 8) == 8
    assert run_workers(3, 8) == 3
    assert run_workers(5, None) == 5


@needs_affinity
def test_a_million_processes_for_4_slices_start_at_most_4_and_warn(one_core):
    # four slices: the fewest that warn on one core (each spawned worker costs ~0.5 s)
    serial = solve("serial", 4)
    before = set(multiprocessing.active_children())
    with Processes(10**6) as backend:
        with pytest.warns(OversubscriptionWarning, match=r"starts 4 workers on 1 CPU core"):
            sol = solve(backend, 4)
        started = set(multiprocessing.active_children()) - before
        assert 1 <= len(started) <= 4
        assert backend._pool_size == 4
    assert np.array_equal(sol.y, serial.y) and sol.residuals == serial.residuals


@needs_affinity
def test_fork_pools_are_sized_by_the_slices_not_the_workers(one_core):
    """'fork' starts every process of a pool at once: the pool must hold 8, not 64."""
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork start method")
    serial = solve("serial", 8)
    before = set(multiprocessing.active_children())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OversubscriptionWarning)
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads running
        with Processes(64, start_method="fork") as backend:
            sol = solve(backend, 8)
            started = set(multiprocessing.active_children()) - before
    assert 1 <= len(started) <= 8
    assert np.array_equal(sol.y, serial.y)


@needs_affinity
def test_a_later_run_with_more_slices_gets_a_larger_pool(one_core):
    # forked workers (where there is fork): the pools' sizes are the backend's, whatever
    # starts their processes, and five spawned interpreters would cost 2 s of CPU
    serial2, serial3 = solve("serial", 2), solve("serial", 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OversubscriptionWarning)
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads running
        with Processes(10, start_method=FORK) as backend:
            first = solve(backend, 2)
            assert backend._pool_size == 2
            second = solve(backend, 3)
            assert backend._pool_size == 3
            third = solve(backend, 2)  # the larger pool is kept; 2 workers used
            assert backend._pool_size == 3
    assert np.array_equal(first.y, serial2.y) and np.array_equal(third.y, serial2.y)
    assert np.array_equal(second.y, serial3.y)


@needs_affinity
def test_two_processes_do_not_warn_and_threads_warn_alike(one_core):
    with warnings.catch_warnings():
        warnings.simplefilter("error", OversubscriptionWarning)
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads running
        with Processes(2, start_method=FORK) as backend:  # the warning is the same as spawn's
            solve(backend, 8)
        solve(Threads(3), 8)  # under four per core
    with pytest.warns(OversubscriptionWarning, match=r"Threads\(workers=1000\)' starts 6"):
        sol = solve(Threads(1000), 6)
    assert np.array_equal(sol.y, solve("serial", 6).y)


def test_threads_start_no_more_threads_than_slices():
    before = {t.ident for t in threading.enumerate()}
    seen: set[int] = set()

    def g(t, y):
        if threading.current_thread().name.startswith("parareal-worker"):
            seen.add(threading.get_ident())
        return f(t, y)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OversubscriptionWarning)
        sol = parareal.solve(g, Y0, SPAN, **OPTS, slices=5, backend=Threads(64))
    assert 1 <= len(seen) <= 5 and not seen & before
    assert np.array_equal(sol.y, parareal.solve(f, Y0, SPAN, **OPTS, slices=5).y)


def test_executor_keeps_at_most_slices_tasks_submitted():
    """An executor of 16 threads gets at most 3 tasks at once from a 3-slice run."""
    live, peak, lock = [0], [0], threading.Lock()

    def g(t, y):
        if threading.current_thread().name.startswith("ThreadPoolExecutor"):
            with lock:
                live[0] += 1
                peak[0] = max(peak[0], live[0])
            try:
                return f(t, y)
            finally:
                with lock:
                    live[0] -= 1
        return f(t, y)

    with cf.ThreadPoolExecutor(16) as pool:
        backend = Executor(pool)
        assert backend.workers == 16
        sol = parareal.solve(g, Y0, SPAN, **OPTS, slices=3, backend=backend)
    assert peak[0] <= 3
    assert np.array_equal(sol.y, parareal.solve(f, Y0, SPAN, **OPTS, slices=3).y)


class OldStyle(Threads):
    """A custom backend written against ``open(rhs, propagator, y0)`` (no ``slices``)."""

    opened = 0

    def open(self, rhs, propagator, y0):
        type(self).opened += 1
        return super().open(rhs, propagator, y0)


def test_a_backend_whose_open_takes_no_slices_still_works():
    sol = parareal.solve(f, Y0, SPAN, **OPTS, slices=4, backend=OldStyle(2))
    assert OldStyle.opened == 1
    assert np.array_equal(sol.y, parareal.solve(f, Y0, SPAN, **OPTS, slices=4).y)


def test_the_cli_reports_the_workers_a_run_uses(capsys):
    from parareal.cli import main
    from parareal.problems import get

    slices = get("dahlquist").slices
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OversubscriptionWarning)
        assert main(["solve", "dahlquist", "--backend", "threads",
                     "--workers", str(slices + 5)]) == 0
    assert f"backend threads ({slices} workers)" in capsys.readouterr().out
