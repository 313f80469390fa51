"""Run by tests/test_mpi.py under ``mpiexec -n R``: every bundled problem (small: see
``small_problems.py``), both schedules, on the ``mpi`` backend against the serial backend
(``parareal.testing.check_backend``, on every rank); one JSON object from the root."""

import json
import sys
import warnings

from mpi4py import MPI as mpi
from small_problems import small

from parareal import NoSpeedupWarning, problems
from parareal.backends import MPI
from parareal.testing import check_backend


def main():
    import faulthandler
    faulthandler.dump_traceback_later(40, exit=True)
    warnings.simplefilter("ignore", NoSpeedupWarning)  # small problems: no speed-up
    comm = mpi.COMM_WORLD
    names = sys.argv[1].split(",") if len(sys.argv) > 1 else sorted(problems.CORE)
    # iterations, residuals, status, critical path and y bit for bit against the serial backend
    # (every iterate too on the root); each rank raises if its own Solution differs, so every
    # rank holding the serial Solution means the same Solution everywhere
    runs = check_backend(MPI(), problems=[small(name) for name in names],
                         vectorized=False)
    checked = comm.gather(list(runs))
    if comm.Get_rank() == 0:
        assert all(r == checked[0] for r in checked), checked
        print(json.dumps({"ranks": comm.Get_size(), "runs": list(runs)}))


if __name__ == "__main__":
    main()
