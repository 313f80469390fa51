"""Run by tests/test_mpi.py under ``mpiexec -n 1`` and ``-n 4``: the checks of three scripts
in one job, so that each rank pays its interpreter, numpy, parareal and mpi4py (and torch on
ranks 0 and 1) once instead of once per script. One after the other on ``COMM_WORLD``:

* ``mpi_more.py``: torch states, a sub-communicator, more ranks than slices, a non-zero root;
* ``mpi_check.py``: every bundled problem (small), both schedules, against the serial backend,
  on ``COMM_WORLD`` and (4 ranks) on communicators of world ranks 0-2 and 0-1, for 3 and 2
  ranks (instead of jobs of their own);
* ``mpi_auto_check.py``: ``coarse="auto"`` with a user's jac (one row per rank, ``rows.emit``
  with the prefix ``auto``);
* with torch, on world ranks 0 and 1 (a communicator of two, the ranks that have imported
  torch; 4 ranks only): ``check_backend``'s default kinds of case, for tests/test_testing.py's
  check of ``MPI`` (one row per rank, prefix ``defaults``), and for
  tests/test_hostile_inputs.py's, ``mpi_grad.py``: gradients refused on the pair, given on
  each rank alone (prefix ``grad``); and for tests/test_mpi_agree.py, ``mpi_digests.py``'s
  digests compared on the two (the root's row, prefix ``digests``).

World rank 0 prints one JSON object: ``{"more": ..., "check": {ranks: ...}}``, each what its
script prints alone (without torchdiffeq, ``more`` leaves the torch states out).
"""

import dataclasses
import faulthandler
import importlib.util
import json
import runpy
import warnings
from pathlib import Path

import numpy as np
from mpi4py import MPI as mpi
from mpi_auto_check import auto_row
from mpi_check import check
from mpi_more import more
from rows import emit
from small_problems import small_core

from parareal import NoSpeedupWarning, problems
from parareal.backends import MPI
from parareal.testing import check_backend, default_problems


def defaults(comm):
    """check_backend on ``MPI(comm=comm)`` with the default problems' kinds of case: every
    bundled problem (small), the run that blows up in its coarse sweep, the linear system,
    and that system as torch float64 and float32; the number of runs compared."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoSpeedupWarning)
        blow_up, linear = [p for p in default_problems() if p.name not in problems.CORE]
        done = check_backend(MPI(comm=comm), problems=[*small_core(), blow_up, linear])
        linear32 = dataclasses.replace(linear, y0=linear.y0.astype(np.float32))
        done += check_backend(MPI(comm=comm), problems=[linear, linear32], device="cpu")
    return len(done)


def main():
    faulthandler.dump_traceback_later(200, exit=True)
    world = mpi.COMM_WORLD
    torch = importlib.util.find_spec("torchdiffeq") is not None
    names = sorted(problems.CORE)
    out = {"more": more(torch), "check": {world.Get_size(): check(names)}}
    rank = world.Get_rank()
    for size in (3, 2) if world.Get_size() == 4 else ():
        sub = world.Split(0 if rank < size else mpi.UNDEFINED, rank)
        if rank < size:
            out["check"][size] = check(names, sub)
            sub.Free()
    emit(world.Get_rank(), auto_row(), prefix="auto")
    if world.Get_size() >= 2:
        pair = world.Split(0 if rank < 2 else mpi.UNDEFINED, rank)
        if rank < 2:
            if torch:
                emit(rank, {"rank": rank, "runs": defaults(pair)}, prefix="defaults")
            if importlib.util.find_spec("torch") is not None:
                from mpi_grad import grad_row  # imports torch: ranks 0 and 1 only

                emit(rank, grad_row(pair), prefix="grad")
            # run as a script, under a name no module has: its functions pickle by value
            script = runpy.run_path(str(Path(__file__).parent / "mpi_digests.py"),
                                    run_name="mpi_digests_script")
            digests = script["compare"](pair)
            if rank == 0:
                emit(rank, {"rank": rank, "digests": digests}, prefix="digests")
            pair.Free()
    if world.Get_rank() == 0:
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
