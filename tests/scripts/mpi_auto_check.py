"""coarse="auto" under MPI with a user's jac (a lambda, which pickle cannot send): every rank
gets the root's Solution, and it equals the run without MPI bit for bit. Writes one JSON row
per rank (rows.emit)."""

import warnings

import numpy as np
from mpi4py import MPI as M
from rows import emit

import parareal
from parareal.backends import MPI

warnings.simplefilter("ignore", parareal.NoSpeedupWarning)
lam = np.array([-1000.0, -1.0])


def f(t, y):
    return lam * y


kw = dict(fine="rk4:200", slices=4, jac=lambda t, y: np.diag(lam))
sol = parareal.solve(f, np.ones(2), (0.0, 1.0), backend=MPI(), **kw)
ref = parareal.solve(f, np.ones(2), (0.0, 1.0), **kw)
emit(M.COMM_WORLD.Get_rank(), {
    "rank": M.COMM_WORLD.Get_rank(), "status": sol.status.value, "iterations": sol.iterations,
    "same_y": bool(np.array_equal(sol.y, ref.y)),
    "choice": str(sol.coarse_choice.propagator), "ref_choice": repr(ref.coarse_choice.propagator),
})
