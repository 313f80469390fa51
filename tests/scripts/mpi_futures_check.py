"""Run by tests/test_concurrency_process.py under ``mpiexec -n 3 python -m mpi4py.futures``:
Parareal with its fine solves on an ``mpi4py.futures.MPIPoolExecutor``; JSON on stdout (two
bundled problems, small: see ``small_problems.py``)."""

import json

import numpy as np
from mpi4py.futures import MPIPoolExecutor
from small_problems import small

import parareal
from parareal.backends import Executor


def main():
    out = {}
    for name in ("brusselator", "lorenz"):
        p = small(name)
        kw = dict(coarse=p.coarse, fine=p.fine, slices=p.slices, tol=1e-8, schedule="pipelined")
        ref = parareal.solve(p.f, p.y0, p.t_span, **kw)
        with MPIPoolExecutor() as pool:
            backend = Executor(pool)
            sol = parareal.solve(p.f, p.y0, p.t_span, backend=backend, **kw)
        out[name] = [backend.workers, sol.iterations == ref.iterations,
                     sol.residuals == ref.residuals,
                     sol.stats.critical_path == ref.stats.critical_path,
                     bool(np.array_equal(sol.y, ref.y))]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
