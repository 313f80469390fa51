"""Run by tests/test_concurrency_process.py: Parareal on a Dask LocalCluster, JSON on stdout
(every bundled problem, small: see ``small_problems.py``). First, on the same cluster, the
check of tests/test_testing.py (``check_backend`` with its default ``vectorized=True`` on four
problems): ``"testing"``, the number of runs compared or the check's error."""

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


def main():
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
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
