"""Run by tests/test_mpi.py under ``mpiexec``: f raises on one rank (argv[1]: the rank, or
"root-coarse": on the root in the coarse sweep). The job must end quickly, non-zero, with the
message printed once."""

import sys

import numpy as np
from mpi4py import MPI as mpi

import parareal
from parareal import RK4, Euler
from parareal.backends import MPI


class Boom(Exception):
    pass


def main():
    where = sys.argv[1]
    rank = mpi.COMM_WORLD.Get_rank()

    def f(t, y):  # the same f on every rank (the entry check compares it): rank read here
        rank = mpi.COMM_WORLD.Get_rank()
        if where == "root-coarse" and rank == 0 and t > 0.5:
            raise Boom(f"raised by f on rank {rank}")
        if where != "root-coarse" and rank == int(where) and t > 0.3:
            raise Boom(f"raised by f on rank {rank}")
        return -y

    sol = parareal.solve(f, np.ones(3), (0, 1), coarse=Euler(1), fine=RK4(50), slices=8,
                         backend=MPI())
    print(f"rank {rank} returned {sol.status}", flush=True)


if __name__ == "__main__":
    main()
