"""Run by tests/test_mpi.py under ``mpiexec -n 2``: every MPI check that needs torch, in one
job of two ranks, so that only these two ranks pay torch's import (3.5 s of CPU each), and
diffusers' (7-10 s) only here. One after the other on ``COMM_WORLD`` (the two ranks):

* ``mpi_more.py``'s torch states on the two ranks, and on the root alone (``COMM_SELF``, a
  communicator of one rank, as under ``mpiexec -n 1``): the root's row, prefix ``torch``;
* ``check_backend``'s default kinds of case, for tests/test_mpi.py's check of ``MPI`` (one row
  per rank, prefix ``defaults``);
* for tests/test_hostile_inputs.py, ``mpi_grad.py``: gradients refused on the two, given on
  each rank alone (prefix ``grad``);
* for tests/test_mpi_agree.py, ``mpi_digests.py``'s digests compared on the two (the root's
  row, prefix ``digests``);
* with diffusers, last (``--threads 1`` sets the process's threads), ``parareal sample`` with
  argv[1:] on every rank (``main(argv)``, as ``python -m parareal`` runs it): each rank's exit
  status and what it printed (prefix ``sample``).

Without torchdiffeq the torch states and the defaults are left out, without torch the
gradients too. Rows: ``rows.emit``, read back by tests/test_mpi.py's ``mpirun_rows``.
"""

import contextlib
import dataclasses
import faulthandler
import importlib.util
import io
import runpy
import sys
import warnings
from pathlib import Path

import numpy as np
from mpi4py import MPI as mpi
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
    rank = world.Get_rank()
    if importlib.util.find_spec("torchdiffeq") is not None:
        from mpi_more import torch_states

        both = torch_states(world)
        if rank == 0:  # alone on the root (1 s of CPU); rank 1 waits in the next solve
            alone = torch_states(mpi.COMM_SELF)
            emit(rank, {"rank": rank, "pair": both, "self": alone}, prefix="torch")
        emit(rank, {"rank": rank, "runs": defaults(world)}, prefix="defaults")
    if importlib.util.find_spec("torch") is not None:
        from mpi_grad import grad_row

        emit(rank, grad_row(world), prefix="grad")
    # run as a script, under a name no module has: its functions pickle by value
    script = runpy.run_path(str(Path(__file__).parent / "mpi_digests.py"),
                            run_name="mpi_digests_script")
    digests = script["compare"](world)
    if rank == 0:
        emit(rank, {"rank": rank, "digests": digests}, prefix="digests")
    if len(sys.argv) > 1 and importlib.util.find_spec("diffusers") is not None:
        from parareal.cli.main import main as cli

        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            status = cli(["sample", *sys.argv[1:]])
        emit(rank, {"rank": rank, "status": status, "stdout": printed.getvalue()},
             prefix="sample")


if __name__ == "__main__":
    main()
