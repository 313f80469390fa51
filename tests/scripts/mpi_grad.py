"""Run by ``mpi_pair.py`` on its two ranks (which import torch), for
tests/test_hostile_inputs.py: gradients do not cross MPI ranks, so ``MPI`` on a communicator
of two ranks refuses a run whose ``f`` has parameters that require grad, on every rank; on a
communicator of one rank (``COMM_SELF``) the run is in-process and gives the gradients."""

import torch
from mpi4py import MPI as mpi

import parareal
from parareal.backends import MPI


def grad_row(comm):
    """On ``comm`` (two ranks): whether ``MPI(comm=comm)`` refused the run (``"no"`` if it
    ran), then d(sum of y(1))/dw of ``y' = -w y`` on ``MPI(comm=COMM_SELF)``."""
    w = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    y0 = torch.tensor([1.0, 2.0], dtype=torch.float64)
    kw = dict(coarse="rk4:1", fine="rk4:10", slices=4)
    try:
        parareal.solve(lambda t, y: -w * y, y0, (0.0, 1.0), backend=MPI(comm=comm), **kw)
        refused = "no"
    except ValueError as exc:
        refused = "process boundaries" in str(exc)
    sol = parareal.solve(lambda t, y: -w * y, y0, (0.0, 1.0),
                         backend=MPI(comm=mpi.COMM_SELF), **kw)
    sol.y[-1].sum().backward()
    return {"rank": comm.Get_rank(), "refused": refused, "grad": float(w.grad)}
