"""Run by tests/test_mpi.py under ``mpiexec -n R``: every bundled problem, both schedules,
on the ``mpi`` backend against the serial backend; one JSON object from the root."""

import hashlib
import json
import sys

import numpy as np
from mpi4py import MPI as mpi

import parareal
from parareal import problems
from parareal.backends import MPI


def digest(sol):
    y = np.asarray(sol.y)
    return hashlib.sha256(y.tobytes()).hexdigest() + str(sol.residuals) + str(sol.iterations)


def main():
    import faulthandler
    faulthandler.dump_traceback_later(40, exit=True)
    comm = mpi.COMM_WORLD
    names = sys.argv[1].split(",") if len(sys.argv) > 1 else sorted(problems.PROBLEMS)
    out = {}
    backend = MPI()
    for name in names:
        p = problems.get(name)
        for schedule in ("synchronous", "pipelined"):
            kw = dict(coarse=p.coarse, fine=p.fine, slices=p.slices, tol=1e-8,
                      schedule=schedule)
            ref = parareal.solve(p.f, p.y0, p.t_span, **kw)
            sol = parareal.solve(p.f, p.y0, p.t_span, backend=backend, **kw)
            same_everywhere = len(set(comm.allgather(digest(sol)))) == 1
            out[f"{name}/{schedule}"] = [
                sol.iterations == ref.iterations,
                sol.residuals == ref.residuals,
                sol.status == ref.status,
                sol.stats.critical_path == ref.stats.critical_path,
                bool(np.array_equal(sol.y, ref.y)),
                same_everywhere,
            ]
    if comm.Get_rank() == 0:
        print(json.dumps({"ranks": comm.Get_size(), "runs": out}))


if __name__ == "__main__":
    main()
