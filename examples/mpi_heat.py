"""Parareal as an MPI job: the heat equation with implicit (BDF) fine solves on every rank.

Run it with any number of ranks; every rank runs this same script (SPMD)::

    mpiexec -n 4 python examples/mpi_heat.py
    mpiexec -n 4 python examples/mpi_heat.py --points 400 --slices 32
    srun python examples/mpi_heat.py            # under Slurm (see examples/slurm_parareal.sh)

The root rank drives the iteration and prints; every rank returns the same Solution. With one
rank (``python examples/mpi_heat.py``) it runs in-process.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np

import parareal
from parareal import problems
from parareal.backends import MPI


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=200, help="interior grid points")
    parser.add_argument("--slices", type=int, default=16, help="time slices")
    parser.add_argument("--tol", type=float, default=1e-8)
    parser.add_argument("--device", default=None,
                        help="per-rank device for torch states, e.g. 'cuda:{local_rank}'")
    args = parser.parse_args(argv)

    backend = MPI(device=args.device)
    p = problems.get("heat", points=args.points, slices=args.slices)
    fine = parareal.ScipyIVP("BDF", rtol=1e-8, atol=1e-10)
    start = time.perf_counter()
    sol = parareal.solve(p.f, p.y0, p.t_span, coarse=p.coarse, fine=fine, slices=p.slices,
                         tol=args.tol, backend=backend)
    wall = time.perf_counter() - start
    if backend.drives():  # every rank has sol; one prints
        error = float(np.max(np.abs(sol.y_final - p.reference_final())))
        print(f"{backend.workers} ranks: {sol.status.value} after {sol.iterations} iterations, "
              f"error vs exact {error:.2e}, critical path {sol.stats.critical_path}, "
              f"wall {wall:.2f} s")


if __name__ == "__main__":
    main()
