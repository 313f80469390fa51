"""Run by tests/test_mpi.py under ``mpiexec -n 1`` and ``-n 4``: the checks of three scripts
in one job, so that each rank pays its interpreter, numpy, parareal and mpi4py once instead of
once per script. One after the other on ``COMM_WORLD``:

* ``mpi_more.py`` without its torch states: a sub-communicator, more ranks than slices, a
  non-zero root;
* ``mpi_check.py``: every bundled problem (small), both schedules, against the serial backend,
  on ``COMM_WORLD`` and (4 ranks) on communicators of world ranks 0-2 and 0-1, for 3 and 2
  ranks (instead of jobs of their own);
* ``mpi_auto_check.py``: ``coarse="auto"`` with a user's jac (one row per rank, ``rows.emit``
  with the prefix ``auto``).

No rank imports torch: the checks that need it run in ``mpi_pair.py``'s job of two ranks,
which imports it (and diffusers) anyway. World rank 0 prints one JSON object:
``{"more": ..., "check": {ranks: ...}}``, each what its script prints alone.
"""

import faulthandler
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
    names = sorted(problems.CORE)
    out = {"more": more(), "check": {world.Get_size(): check(names)}}
    rank = world.Get_rank()
    for size in (3, 2) if world.Get_size() == 4 else ():
        sub = world.Split(0 if rank < size else mpi.UNDEFINED, rank)
        if rank < size:
            out["check"][size] = check(names, sub)
            sub.Free()
    emit(world.Get_rank(), auto_row(), prefix="auto")
    if world.Get_rank() == 0:
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
