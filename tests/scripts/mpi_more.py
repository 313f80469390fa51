"""Run through ``mpi_world.py`` by tests/test_mpi.py under ``mpiexec`` (or alone): a
sub-communicator, more ranks than slices, a vectorised f, a non-zero root (:func:`more`); one
JSON object from world rank 0.

:func:`torch_states` (torch states with a torchdiffeq fine) is run by ``mpi_pair.py`` on its
two ranks, whose torch is imported for other checks too: the ranks of the world jobs never
import torch."""

import json

import numpy as np
from mpi4py import MPI as mpi

import parareal
from parareal import RK4, Euler
from parareal.backends import MPI


def torch_states(comm):
    """Torch float32 and float64 states with a torchdiffeq fine on ``comm``: the serial run's
    iterations and y bit for bit, y a tensor of that dtype."""
    import torch

    out = {}
    a = torch.tensor([[-0.5, 1.0], [-1.0, -0.5]], dtype=torch.float64)

    def f(t, y):
        return y @ a.T.to(y.dtype)

    for dtype in (torch.float32, torch.float64):
        y0 = torch.tensor([1.0, 0.0], dtype=dtype)
        fine = parareal.TorchDiffEq("dopri5", rtol=1e-6, atol=1e-8)
        kw = dict(coarse=RK4(1), fine=fine, slices=6, tol=1e-6)
        ref = parareal.solve(f, y0, (0, 3), **kw)
        sol = parareal.solve(f, y0, (0, 3), backend=MPI(comm=comm), **kw)
        out[f"torch-{dtype}"] = [sol.iterations == ref.iterations, bool(torch.equal(sol.y, ref.y)),
                                 sol.y.dtype == dtype, isinstance(sol.y, torch.Tensor)]
    return out


def more():
    """The checks on ``COMM_WORLD`` but the torch states: by name, on world rank 0 (``{}`` on
    the others)."""
    world = mpi.COMM_WORLD
    rank = world.Get_rank()
    out = {}

    def g(t, y):  # vectorised: t of shape (B,), y of shape (B, 3)
        return -np.linspace(0.5, 2.0, 3) * y + np.cos(t)[:, None]

    kw = dict(coarse=Euler(1), fine=RK4(10), tol=0, vectorized=True)
    # more ranks than slices: the extra ranks idle
    ref = parareal.solve(g, np.ones(3), (0, 2), slices=2, **kw)
    sol = parareal.solve(g, np.ones(3), (0, 2), slices=2, backend=MPI(), **kw)
    out["few-slices"] = [bool(np.array_equal(sol.y, ref.y)), sol.iterations == ref.iterations]
    # a non-zero root
    root = world.Get_size() - 1
    sol = parareal.solve(g, np.ones(3), (0, 2), slices=7, backend=MPI(root=root), **kw)
    ref = parareal.solve(g, np.ones(3), (0, 2), slices=7, **kw)
    out["last-root"] = [bool(np.array_equal(sol.y, ref.y)), sol.residuals == ref.residuals]
    # two sub-communicators solve different problems at once
    color = rank % 2
    sub = world.Split(color, rank)
    scale = 1.0 + color

    def h(t, y):
        return -scale * y

    sol = parareal.solve(h, np.ones(2), (0, 1), coarse=Euler(1), fine=RK4(20), slices=5,
                         backend=MPI(comm=sub), tol=0)
    ref = parareal.solve(h, np.ones(2), (0, 1), coarse=Euler(1), fine=RK4(20), slices=5, tol=0)
    ok = world.allgather(bool(np.array_equal(sol.y, ref.y)))
    out["sub-communicators"] = all(ok)
    sub.Free()
    return out if rank == 0 else {}


def main():
    out = more()
    if mpi.COMM_WORLD.Get_rank() == 0:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
