"""Run by tests/test_mpi.py under ``mpiexec -n 1`` and ``-n 4``: the checks of three scripts
in one job, so that each rank pays its interpreter, numpy, parareal and mpi4py (and torch on
ranks 0 and 1) once instead of once per script. One after the other on ``COMM_WORLD``:

* ``mpi_more.py``: torch states, a sub-communicator, more ranks than slices, a non-zero root;
* ``mpi_check.py``: every bundled problem (small), both schedules, against the serial backend;
* ``mpi_auto_check.py``: ``coarse="auto"`` with a user's jac (one row per rank, ``rows.emit``
  with the prefix ``auto``).

World rank 0 prints one JSON object: ``{"more": ..., "check": ...}``, each what its script
prints alone (without torchdiffeq, ``more`` leaves the torch states out).
"""

import faulthandler
import importlib.util
import json

from mpi4py import MPI as mpi
from mpi_auto_check import auto_row
from mpi_check import check
from mpi_more import more
from rows import emit

from parareal import problems


def main():
    faulthandler.dump_traceback_later(200, exit=True)
    world = mpi.COMM_WORLD
    torch = importlib.util.find_spec("torchdiffeq") is not None
    out = {"more": more(torch), "check": check(sorted(problems.CORE))}
    emit(world.Get_rank(), auto_row(), prefix="auto")
    if world.Get_rank() == 0:
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
