"""coarse="auto" under MPI with a user's jac (a lambda, which pickle cannot send): every rank
gets the root's Solution, and it equals the run without MPI bit for bit. Writes one JSON row
per rank (rows.emit); run by tests/test_mpi.py through ``mpi_world.py`` (``auto_row``), or
alone."""

import warnings

import numpy as np
from mpi4py import MPI as M
from rows import emit

import parareal
from parareal.backends import MPI

lam = np.array([-1000.0, -1.0])


def f(t, y):
    return lam * y


def auto_row():
    """This rank's row: the run under MPI against the run without."""
    kw = dict(fine="rk4:200", slices=4, jac=lambda t, y: np.diag(lam))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", parareal.NoSpeedupWarning)
        sol = parareal.solve(f, np.ones(2), (0.0, 1.0), backend=MPI(), **kw)
        ref = parareal.solve(f, np.ones(2), (0.0, 1.0), **kw)
    return {
        "rank": M.COMM_WORLD.Get_rank(), "status": sol.status.value,
        "iterations": sol.iterations, "same_y": bool(np.array_equal(sol.y, ref.y)),
        "choice": str(sol.coarse_choice.propagator),
        "ref_choice": repr(ref.coarse_choice.propagator),
    }


if __name__ == "__main__":
    emit(M.COMM_WORLD.Get_rank(), auto_row())
