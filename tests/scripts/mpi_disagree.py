"""Run by tests/test_mpi_agree.py under ``mpiexec``: rank 1 calls ``solve`` with another
argument (argv[1] names which). Each rank writes one JSON row (rows.emit): the error it
raised and how many times its ``f`` ran (none: the check comes before any work)."""

import sys

import numpy as np
from mpi4py import MPI as mpi
from rows import emit

import parareal
from parareal import RK4, Euler
from parareal.backends import MPI


def main():
    case = sys.argv[1]
    rank = mpi.COMM_WORLD.Get_rank()
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
    try:
        if case == "odeint":  # through odeint: another t grid on rank 1
            t = np.linspace(0.0, 2.0 if odd else 1.0, 4)
            parareal.odeint(f, y0, t, method="rk4", options={"step_size": 0.01}, slices=3,
                            backend=MPI(entry_timeout=30))
        else:
            parareal.solve(f, y0, t_span, **kw)
    except ValueError as exc:
        emit(rank, {"rank": rank, "error": str(exc), "calls": calls[0]})
        sys.exit(1)
    emit(rank, {"rank": rank, "error": None, "calls": calls[0]})


if __name__ == "__main__":
    main()
