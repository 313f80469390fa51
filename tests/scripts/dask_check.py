"""Run by tests/test_concurrency_process.py: Parareal on a Dask LocalCluster, JSON on stdout
(every bundled problem, small: see ``small_problems.py``). First, on the same cluster, the
check of tests/test_testing.py (``check_backend`` with its default ``vectorized=True`` on four
problems): ``"testing"``, the number of runs compared or the check's error.

Then, with arguments (pairs of a marker folder and a mode, ``once`` or ``always``), the cases
of tests/test_dask_workers.py, each on a LocalCluster of its own in this same process (no
second interpreter importing distributed, one forkserver for every cluster): ``"dies"``, mode
-> that case's answer.
"""

import json
import os
import sys
import warnings

import numpy as np
from small_problems import small, small_core

import parareal
from parareal import RK4, Euler, NoSpeedupWarning
from parareal.backends import Executor, RemoteTraceback
from parareal.testing import check_backend


class Boom(Exception):
    pass


def main(argv):
    import dask
    from distributed import Client, LocalCluster

    parent = os.getpid()
    out = {}
    # worker processes forked from a server that has imported distributed, instead of a fresh
    # interpreter each (1 s of CPU less): how they start is not what is checked
    with dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"}), \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                         dashboard_address=None) as cluster, Client(cluster) as client:
        backend = Executor(client.get_executor())
        try:  # tests/test_testing.py's: check_backend as its docstring shows it for Dask
            names = ["dahlquist", "brusselator", "vanderpol", "heat"]
            out["testing"] = len(check_backend(Executor(client.get_executor()),
                                               problems=[small(n) for n in names]))
        except AssertionError as exc:
            out["testing"] = str(exc)
        out["workers"] = backend.workers
        # iterations, residuals, status, critical path, every iterate and y bit for bit
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NoSpeedupWarning)
            out["problems"] = list(check_backend(backend, problems=small_core(),
                                                 vectorized=False))

        def f(t, y):
            if os.getpid() != parent:
                raise Boom("raised on a dask worker")
            return -y

        try:
            parareal.solve(f, np.ones(2), (0, 1), coarse=Euler(1), fine=RK4(3), slices=4,
                           backend=backend)
        except Boom as exc:
            cause = exc.__cause__
            out["fault"] = [type(exc).__name__, str(exc), isinstance(cause, RemoteTraceback),
                            "in f" in str(cause)]
    out["dies"] = {mode: dies(marks, mode == "always")
                   for marks, mode in zip(argv[::2], argv[1::2])}
    json.dump(out, sys.stdout)


def _dying_f(marks, main_pid, always):
    """f of :func:`dies`: on a worker (never in the caller) it kills its worker process on
    its first call there (a marker file per worker name), or on every call with ``always``."""
    from distributed import get_worker

    def f(t, y):
        if os.getpid() != main_pid:
            mark = os.path.join(marks, str(get_worker().name))
            if always or not os.path.exists(mark):
                open(mark, "w").close()
                os._exit(1)
        return -y * (1.0 + 0.1 * np.sin(y))
    return f


def dies(marks, always):
    """tests/test_dask_workers.py's case: a run whose workers die once each (``always``
    false: Dask's default of 3 allowed failures) or on every task (``always``: 1 allowed), on
    a LocalCluster of its own; the run's outcome, the workers and the deaths."""
    import dask
    from distributed import Client, LocalCluster

    f = _dying_f(marks, os.getpid(), always)
    opts = dict(coarse="rk4:1", fine="rk4:8", slices=8, tol=0.0)
    y0 = np.linspace(0.5, 1.5, 5)
    serial = parareal.solve(f, y0, (0.0, 2.0), **opts)
    failures = 1 if always else 3  # 3: Dask's default
    with dask.config.set({"distributed.scheduler.allowed-failures": failures,
                          "distributed.worker.multiprocessing-method": "forkserver"}), \
            LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                         dashboard_address=None) as cluster, Client(cluster) as client:
        workers = sorted(client.scheduler_info()["workers"])
        try:
            sol = parareal.solve(f, y0, (0.0, 2.0), **opts,
                                 backend=Executor(client.get_executor()))
            out = {"same": bool(np.array_equal(sol.y, serial.y)),
                   "iterations": [sol.iterations, serial.iterations]}
        except BaseException as exc:
            out = {"error": type(exc).__name__, "message": str(exc)}
    out["workers"] = workers
    out["deaths"] = sorted(os.listdir(marks))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
