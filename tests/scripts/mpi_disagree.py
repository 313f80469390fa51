"""Run by tests/test_mpi_agree.py under ``mpiexec``: for each case of argv[1] (names joined by
commas), rank 1 calls ``solve`` with another argument (the case names which; ``none``: the same
arguments everywhere). Each rank writes one JSON row per case (rows.emit, prefix
``{case}-rank``): the error it raised and how many times its ``f`` ran (none: the check comes
before any work). The cases run one after the other in the one job, on the same communicator:
a rank that raised the entry check's ValueError goes on to the next solve. Exit status 1 if a
case raised, else 0."""

import sys
import time

import numpy as np
from mpi4py import MPI as mpi
from rows import emit

import parareal
from parareal import RK4, Euler
from parareal.backends import MPI


def run(case, rank):
    """Rank 1's difference ``case``: the row of this rank."""
    odd = rank == 1
    calls = [0]
    scale = 2.0 if odd and case == "f" else 1.0

    def f(t, y):
        calls[0] += 1
        return -scale * y

    y0 = np.ones(3)
    if odd and case == "y0":
        y0 = np.array([1.0, 1.0, 1.0 + 1e-12])
    if odd and case == "y0-shape":
        y0 = np.ones(4)
    if odd and case == "y0-dtype":
        y0 = np.ones(3, dtype=np.float32)
    kw = dict(coarse=Euler(1), fine=RK4(20), slices=6, tol=1e-8, backend=MPI(entry_timeout=30))
    if odd and case == "slices":
        kw["slices"] = 5
    if odd and case == "tol":
        kw["tol"] = 1e-6
    if odd and case == "fine":
        kw["fine"] = RK4(21)
    t_span = (0.0, 1.5 if odd and case == "t_span" else 1.0)
    start = time.monotonic()
    try:
        if case == "odeint":  # through odeint: another t grid on rank 1
            t = np.linspace(0.0, 2.0 if odd else 1.0, 4)
            parareal.odeint(f, y0, t, method="rk4", options={"step_size": 0.01}, slices=3,
                            backend=MPI(entry_timeout=30))
        else:
            parareal.solve(f, y0, t_span, **kw)
    except ValueError as exc:
        error = str(exc)
    else:
        error = None
    return {"rank": rank, "case": case, "error": error, "calls": calls[0],
            "seconds": time.monotonic() - start}


def main():
    rank = mpi.COMM_WORLD.Get_rank()
    failed = False
    for case in sys.argv[1].split(","):
        row = run(case, rank)
        emit(rank, row, prefix=f"{case}-rank")
        failed = failed or row["error"] is not None
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
