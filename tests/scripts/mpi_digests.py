"""Run by tests/test_mpi_agree.py under ``mpiexec``: the entry check's digests of the same
objects, built the same way on every rank (each with its own PYTHONHASHSEED), must agree.
Prints one JSON object from the root: name -> [digest equal on every rank, digest taken].

``mpi_pair.py`` runs it on its two ranks (``runpy.run_path`` under a name that is no
importable module, then :func:`compare`): its functions are then pickled by value, as those of
a ``__main__`` script are, not by reference to an importable module."""

import json
import math
import sys

import numpy as np
from mpi4py import MPI as mpi

import parareal
from parareal import RK4, ScipyIVP
from parareal.backends.entry import object_digest
from parareal.engine.auto import AutoCoarse
from parareal.problems import get

A = np.linspace(-2.0, -0.5, 5)
NAMES = {"alpha", "beta", "gamma", "delta", "epsilon"}


def plain(t, y):
    return -y * math.cos(t)


def uses_a_set(t, y):
    return -y * len(NAMES)


def make_closure():
    a = np.random.default_rng(7).standard_normal((5, 5))

    def closure(t, y):
        return a @ y

    return closure


def objects():
    out = {
        "plain function": plain,
        "lambda": lambda t, y: -2.0 * y,
        "closure over a numpy array": make_closure(),
        "function using a global set": uses_a_set,
        "RK4 instance": RK4(steps=10),
        "ScipyIVP instance": ScipyIVP("BDF", rtol=1e-9),
        "AutoCoarse": AutoCoarse(),
        "bundled problem f (heat)": get("heat", points=50).f,
        "propagator with a user's jac": RK4(10).with_jacobian(lambda t, y: -np.eye(5), None)
        if hasattr(RK4(10), "with_jacobian") else RK4(10),
    }
    try:
        import torch
    except ImportError:
        return out
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.Tanh(), torch.nn.Linear(16, 5))

    class Field(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, t, y):
            return self.net(y)

    out["nn.Module forward (bound method)"] = Field().forward
    out["nn.Module instance"] = Field()
    out["torchdiffeq propagator"] = parareal.TorchDiffEq("dopri5", rtol=1e-6)
    return out


def compare(comm):
    """On the root of ``comm``: name -> [digest equal on every rank, digest taken]; None on
    the other ranks."""
    digests = {name: object_digest(obj) for name, obj in objects().items()}
    every = comm.gather(digests, root=0)
    if comm.Get_rank() != 0:
        return None
    return {name: [all(d[name] == digests[name] for d in every), digests[name] is not None]
            for name in digests}


def main():
    result = compare(mpi.COMM_WORLD)
    if result is not None:
        print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
