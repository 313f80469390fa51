"""Run by tests/test_mpi_agree.py under ``mpiexec``: one rank never enters ``solve`` with the
others (argv[1]: how; argv[2]: which rank). The job must end soon after the entry timeout
(1 s), non-zero, with one line naming the missing rank. Every rank first meets the others at a
barrier, so that the timeout counts from a common start, not from the slowest interpreter's
start-up on a loaded machine (which would name a slow rank too)."""

import sys
import time

import numpy as np
from mpi4py import MPI as mpi

import parareal
from parareal import RK4, Euler
from parareal.backends import MPI


def f(t, y):
    return -y


def main():
    how, missing = sys.argv[1], int(sys.argv[2])
    rank = mpi.COMM_WORLD.Get_rank()
    kw = dict(coarse=Euler(1), fine=RK4(20), slices=6)
    mpi.COMM_WORLD.Barrier()
    if rank == missing:
        if how == "exit":
            return
        if how == "raise":
            raise SystemExit(f"rank {rank} gave up before solve")
        if how == "sleep":
            time.sleep(60)
        if how == "serial":
            parareal.solve(f, np.ones(3), (0, 1), backend="serial", **kw)
            return
    parareal.solve(f, np.ones(3), (0, 1), backend=MPI(entry_timeout=1), **kw)
    print(f"rank {rank} returned", flush=True)


if __name__ == "__main__":
    main()
