"""Run by tests/test_stopping.py under ``mpiexec``: a FineResidual rule on the mpi backend.
Each rank writes its iterations and ``Solution.stop_state`` (rows.emit): the root's rule ran,
every rank must get its state."""

import warnings

import numpy as np
from mpi4py import MPI as mpi
from rows import emit

import parareal
from parareal.backends import MPI


def f(t, y):
    return np.stack([y[..., 1], -np.sin(y[..., 0])], axis=-1) - 0.1 * y  # vectorised


warnings.simplefilter("ignore", parareal.NoSpeedupWarning)
sol = parareal.solve(f, np.array([1.2, 0.3]), (0.0, 2.0), coarse="rk4:1", fine="rk4:20",
                     slices=8, stop=parareal.FineResidual(1e-9), backend=MPI())
rank = mpi.COMM_WORLD.Get_rank()
emit(rank, {"rank": rank, "iterations": sol.iterations, "stop_state": sol.stop_state})
