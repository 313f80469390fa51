"""Every bundled problem (small: see ``small_problems.py``), both schedules, on the ``mpi``
backend against the serial backend (``parareal.testing.check_backend``, on every rank); one
JSON object from the root. tests/test_mpi.py runs ``check`` through ``mpi_world.py``; alone:
``mpiexec -n R python mpi_check.py [NAME,...]``."""

import json
import sys
import warnings

from mpi4py import MPI as mpi
from small_problems import small

from parareal import NoSpeedupWarning, problems
from parareal.backends import MPI
from parareal.testing import check_backend


def check(names, comm=None):
    """check_backend of ``names`` (small) on ``MPI()`` (``COMM_WORLD``), or on
    ``MPI(comm=comm)``, on every rank of it; the runs compared, the same on every rank
    (checked on its root)."""
    backend = MPI() if comm is None else MPI(comm=comm)
    comm = mpi.COMM_WORLD if comm is None else comm
    # iterations, residuals, status, critical path and y bit for bit against the serial backend
    # (every iterate too on the root); each rank raises if its own Solution differs, so every
    # rank holding the serial Solution means the same Solution everywhere
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoSpeedupWarning)  # small problems: no speed-up
        runs = check_backend(backend, problems=[small(name) for name in names],
                             vectorized=False)
    checked = comm.gather(list(runs))
    if comm.Get_rank() == 0:
        assert all(r == checked[0] for r in checked), checked
    return {"ranks": comm.Get_size(), "runs": list(runs)}


def main():
    import faulthandler
    faulthandler.dump_traceback_later(40, exit=True)
    names = sys.argv[1].split(",") if len(sys.argv) > 1 else sorted(problems.CORE)
    out = check(names)
    if mpi.COMM_WORLD.Get_rank() == 0:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
