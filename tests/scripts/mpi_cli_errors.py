"""Run by tests/test_mpi_agree.py under ``mpiexec``: the command line's errors under
``--backend mpi``, several in one job. argv[1]: a JSON list of argument lists (each one given
to ``parareal``). Every rank runs each one with ``parareal.cli.main.main`` (what ``python -m
parareal`` runs) and writes a row per case (rows.emit, prefix ``case{i}``): its exit status
and what it printed to stderr. Then it runs the last one as ``python -m parareal`` does, so
that the job's exit status is that command's."""

import contextlib
import io
import json
import runpy
import sys

from mpi4py import MPI as mpi
from rows import emit

from parareal.cli.main import main


def status_of(argv):
    """``main(argv)``'s exit status (argparse's errors raise ``SystemExit``) and stderr."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            status = main(argv)
        except SystemExit as exc:
            status = exc.code
    return status, err.getvalue()


def run():
    cases = json.loads(sys.argv[1])
    rank = mpi.COMM_WORLD.Get_rank()
    for i, argv in enumerate(cases):
        status, err = status_of(argv)
        emit(rank, {"rank": rank, "argv": argv, "status": status, "stderr": err},
             prefix=f"case{i}")
    sys.argv = ["parareal", *cases[-1]]
    runpy.run_module("parareal", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    run()
