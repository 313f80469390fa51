"""Run by tests/test_concurrency_process.py: Parareal on a Dask LocalCluster, JSON on stdout."""

import json
import os
import sys

import numpy as np

import parareal
from parareal import RK4, Euler, problems
from parareal.backends import Executor, RemoteTraceback


class Boom(Exception):
    pass


def main():
    from distributed import Client, LocalCluster

    parent = os.getpid()
    out = {"problems": {}}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        backend = Executor(client.get_executor())
        out["workers"] = backend.workers
        for name in sorted(problems.PROBLEMS):
            p = problems.get(name)
            for schedule in ("synchronous", "pipelined"):
                kw = dict(coarse=p.coarse, fine=p.fine, slices=p.slices, tol=1e-8,
                          schedule=schedule)
                ref = parareal.solve(p.f, p.y0, p.t_span, **kw)
                sol = parareal.solve(p.f, p.y0, p.t_span, backend=backend, **kw)
                out["problems"][f"{name}/{schedule}"] = [
                    sol.iterations == ref.iterations,
                    sol.residuals == ref.residuals,
                    sol.status == ref.status,
                    sol.stats.critical_path == ref.stats.critical_path,
                    bool(np.array_equal(sol.y, ref.y)),
                ]

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
