"""Run by tests/test_mpi.py under ``mpiexec``: checkpoint after 2 iterations, resume, compare
with the uninterrupted run; argv[1] is the checkpoint folder. JSON from the root."""

import json
import os
import sys

import numpy as np
from mpi4py import MPI as mpi

import parareal
from parareal import problems
from parareal.backends import MPI


def main():
    folder = sys.argv[1]
    path = os.path.join(folder, "run.npz")
    p = problems.get("lorenz")
    kw = dict(coarse=p.coarse, fine=p.fine, slices=p.slices, tol=1e-8, backend=MPI())
    full = parareal.solve(p.f, p.y0, p.t_span, **kw)
    first = parareal.solve(p.f, p.y0, p.t_span, max_iters=2, checkpoint=path, **kw)
    resumed = parareal.solve(p.f, p.y0, p.t_span, resume=path, checkpoint=path, **kw)
    out = {
        "first": [first.iterations, first.status.value],
        "same": [bool(np.array_equal(resumed.y, full.y)), resumed.iterations == full.iterations,
                 resumed.residuals == full.residuals, resumed.status == full.status],
        "files": sorted(os.listdir(folder)),
    }
    if mpi.COMM_WORLD.Get_rank() == 0:
        print(json.dumps(out))
    missing = os.path.join(folder, "missing.npz")
    parareal.solve(p.f, p.y0, p.t_span, resume=missing, **kw)  # refused: the job ends here


if __name__ == "__main__":
    main()
