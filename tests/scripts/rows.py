"""One JSON row per rank, for tests that read every rank's answer.

``mpiexec`` merges the ranks' stdout streams, and two ranks' lines can arrive glued together
(seen in CI), so each rank writes its row to its own file in ``$PARAREAL_TEST_ROWS`` instead;
``tests/test_mpi.py``'s ``mpirun_rows`` reads them back.
"""

import json
import os


def emit(rank: int, row: dict, prefix: str = "rank") -> None:
    """Write ``row`` as rank ``rank``'s answer (atomically: a reader never sees half of it), to
    ``{prefix}-{rank}.json`` (a script that answers for several cases: a prefix per case)."""
    folder = os.environ["PARAREAL_TEST_ROWS"]
    path = os.path.join(folder, f"{prefix}-{rank}.json")
    with open(path + ".part", "w", encoding="utf-8") as out:
        json.dump(row, out)
    os.replace(path + ".part", path)
