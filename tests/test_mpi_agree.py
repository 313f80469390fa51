"""The MPI entry check, for real under ``mpiexec``: ranks that disagree on the arguments of
``solve`` raise on every rank before any call of ``f``; a rank that never enters ``solve``
ends the job soon after ``entry_timeout``, named once; CLI errors are printed once."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from .session_once import once_per_session
from .test_mpi import SCRIPTS, mpirun, mpirun_rows, needs_mpi, pair_job

#: The tests that make an ``MPI`` backend in this process (no ``mpiexec``).
needs_mpi4py = pytest.mark.skipif(importlib.util.find_spec("mpi4py") is None,
                                  reason="needs mpi4py (pip install 'parareal[mpi]')")


@needs_mpi
def test_identical_scripts_give_identical_digests_on_every_rank(tmp_path_factory):
    # each rank has its own PYTHONHASHSEED and its own uuids for classes defined in a script
    # two ranks: the root and one other, each with its own seed, are what is compared: the
    # ranks of tests/scripts/mpi_pair.py's 2-rank job, which runs mpi_digests.py there as a
    # script (it imports torch there anyway)
    rows = pair_job(tmp_path_factory)["digests"]
    assert [row["rank"] for row in rows] == [0]
    out = rows[0]["digests"]
    assert len(out) >= 9
    assert all(same and taken for same, taken in out.values()), out


CASES = {  # rank 1's difference -> the arguments the message must name
    "y0": ["y0"], "y0-shape": ["y0"], "y0-dtype": ["y0"], "slices": ["slices"],
    "t_span": ["t_span/boundaries"], "tol": ["tol"], "fine": ["fine"], "f": ["f"],
    "odeint": ["t_span/boundaries"],
}


@pytest.fixture(scope="module")
def disagreements(tmp_path_factory):
    """One ``mpiexec -n 3`` job that runs every case of :data:`CASES` and then ``none`` (the
    same arguments on every rank), one after the other on the same communicator: the job's
    process (its exit status and stderr), its wall time, and every rank's row by case. Once
    per session, even where xdist runs its tests on several workers."""
    found = once_per_session(tmp_path_factory, "mpi_disagree",
                             lambda: _disagreements(tmp_path_factory))
    return SimpleNamespace(**found["proc"]), found["elapsed"], found["rows"]


def _disagreements(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("disagree")
    cases = [*sorted(CASES), "none"]
    start = time.monotonic()
    proc, _ = mpirun_rows(3, sys.executable, str(SCRIPTS / "mpi_disagree.py"), ",".join(cases),
                          folder=folder, timeout=120)
    elapsed = time.monotonic() - start
    rows = {case: sorted((json.loads(path.read_text())
                          for path in folder.glob(f"{case}-rank-*.json")),
                         key=lambda row: row["rank"]) for case in cases}
    return {"proc": {"returncode": proc.returncode, "stderr": proc.stderr}, "elapsed": elapsed,
            "rows": rows}


@needs_mpi
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_rank_with_other_arguments_makes_every_rank_raise_before_any_work(case, disagreements):
    proc, elapsed, by_case = disagreements
    assert elapsed < 60  # all the cases
    assert proc.returncode == 1, proc.stderr[-3000:]  # the script's exit: a case raised
    rows = by_case[case]
    assert sorted(r["rank"] for r in rows) == [0, 1, 2], proc.stderr[-3000:]
    messages = {r["error"] for r in rows}
    assert len(messages) == 1  # the same ValueError on every rank
    message = messages.pop()
    assert message is not None, rows
    for name in CASES[case]:
        assert f"on {name}: rank 1 differs from the root (rank 0)" in message, message
    assert "rank 2" not in message
    assert all(r["calls"] == 0 for r in rows)  # checked before any call of f


@needs_mpi
def test_identical_arguments_pass_the_check_and_run(disagreements):
    # after every case above raised on every rank, in the same job and communicator
    proc, _, by_case = disagreements
    rows = by_case["none"]
    assert sorted(r["rank"] for r in rows) == [0, 1, 2], proc.stderr[-3000:]
    assert [r["error"] for r in rows] == [None] * 3
    assert sum(r["calls"] for r in rows) > 0


@needs_mpi
@pytest.mark.parametrize("how,missing", [("exit", 1), ("raise", 1), ("sleep", 1),
                                         ("serial", 1), ("exit", 0)])
def test_a_rank_that_never_enters_solve_ends_the_job_quickly_named_once(how, missing):
    # "exit": 3 ranks, so that a rank that did enter is there too, beside the missing worker
    # (rank 1) or the missing root (rank 0), and must not be named; the other ways of not
    # entering differ only on the missing rank: the root and it, 2 ranks (a rank each less)
    ranks = 3 if how == "exit" else 2
    start = time.monotonic()
    proc = mpirun(ranks, sys.executable, str(SCRIPTS / "mpi_missing.py"), how, str(missing),
                  timeout=120)
    elapsed = time.monotonic() - start
    assert proc.returncode != 0
    assert elapsed < 30  # entry_timeout = 1 s, and the sleeping rank would sleep 60 s
    lines = [line for line in proc.stderr.splitlines() if "did not enter solve" in line]
    # one rank speaks: one distinct line (MPICH's mpiexec, killing the job on Abort, has been
    # seen to forward a rank's last output twice on a loaded machine; that is not two ranks)
    assert len(set(lines)) == 1 and len(lines) <= 2, (proc.stdout[-2000:], proc.stderr[-3000:])
    assert f"MPI rank {missing} did not enter solve within entry_timeout = 1 s" in lines[0]
    assert "returned" not in proc.stdout


CLI_ERRORS = [["--param", "nope=1"], ["--schedule", "bogus"], ["--fine", "nonsense"]]


@pytest.fixture(scope="module")
def cli_errors(tmp_path_factory):
    """One ``mpiexec -n 3`` job that runs ``parareal solve brusselator --backend mpi`` with each
    of :data:`CLI_ERRORS` on every rank (``main(argv)``, in turn), then the last one as
    ``python -m parareal``: the job's process (its exit status and stderr), and every rank's
    row by case. Once per session, even where xdist runs its tests on several workers."""
    found = once_per_session(tmp_path_factory, "mpi_cli_errors",
                             lambda: _cli_errors(tmp_path_factory))
    return SimpleNamespace(**found["proc"]), found["rows"]


def _cli_errors(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("cli_errors")
    cases = [["solve", "brusselator", "--backend", "mpi", *argv] for argv in CLI_ERRORS]
    proc, _ = mpirun_rows(3, sys.executable, str(SCRIPTS / "mpi_cli_errors.py"),
                          json.dumps(cases), folder=folder, timeout=120)
    rows = [sorted((json.loads(path.read_text()) for path in folder.glob(f"case{i}-*.json")),
                   key=lambda row: row["rank"]) for i in range(len(cases))]
    return {"proc": {"returncode": proc.returncode, "stderr": proc.stderr}, "rows": rows}


@needs_mpi
@pytest.mark.parametrize("case", range(len(CLI_ERRORS)),
                         ids=[" ".join(argv) for argv in CLI_ERRORS])
def test_cli_errors_under_mpi_are_printed_once_and_every_rank_exits_non_zero(case, cli_errors):
    proc, rows = cli_errors
    assert [row["rank"] for row in rows[case]] == [0, 1, 2], proc.stderr[-3000:]
    assert [row["status"] for row in rows[case]] == [2, 2, 2], rows[case]
    errors = [line for row in rows[case] for line in row["stderr"].splitlines()
              if "error:" in line]
    assert len(errors) == 1, rows[case]
    if case == len(CLI_ERRORS) - 1:  # the one the job ran as ``python -m parareal`` too
        assert proc.returncode == 2
        errors = [line for line in proc.stderr.splitlines() if "error:" in line]
        assert len(errors) == 1, proc.stderr


@needs_mpi4py
def test_entry_timeout_must_be_a_positive_number():
    from parareal.backends import MPI

    for bad in (0, -1.0, math.nan):
        with pytest.raises(ValueError, match="entry_timeout must be a positive number"):
            MPI(entry_timeout=bad)
    for bad in ("5", True, None):
        with pytest.raises(TypeError, match="entry_timeout must be a positive number"):
            MPI(entry_timeout=bad)
    assert MPI(entry_timeout=math.inf).entry_timeout == math.inf
    assert MPI().entry_timeout == 60.0


def test_digests_tell_objects_apart_and_skip_what_they_cannot_take():
    from parareal import RK4
    from parareal.backends.entry import disagreement, object_digest

    def make(scale):
        return lambda t, y: -scale * y

    assert object_digest(make(1.0)) == object_digest(make(1.0))
    assert object_digest(make(1.0)) != object_digest(make(2.0))
    assert object_digest(RK4(10)) != object_digest(RK4(11))
    a = np.arange(4.0)
    assert object_digest(lambda t, y: a @ y) != object_digest(lambda t, y: (a + 1) @ y)
    lock = threading.Lock()
    assert object_digest(lambda t, y: lock and y) is None  # cannot be pickled: not compared
    assert object_digest(lambda t, y: a @ y, limit=16) is None  # more array bytes than allowed
    own = {"f": ("", None), "tol": ("1e-08", "1e-08")}
    assert disagreement(0, own, {1: {"f": ("", "x"), "tol": ("1e-08", "1e-08")}}) is None
    message = disagreement(0, own, {1: {"f": ("", None), "tol": ("1e-06", "1e-06")},
                                    2: {"f": ("", None), "tol": ("1e-06", "1e-06")}})
    assert "disagree on tol: ranks 1, 2 differ from the root (rank 0)" in message
    assert "rank 1: 1e-06; root: 1e-08" in message


@needs_mpi4py
@pytest.mark.filterwarnings("ignore::parareal.NoSpeedupWarning")
def test_single_rank_solves_without_a_handshake():
    import parareal
    from parareal.backends import MPI

    sol = parareal.solve(lambda t, y: -y, np.ones(2), (0, 1), coarse="euler:1", fine="rk4:10",
                         slices=3, backend=MPI(entry_timeout=0.001))
    assert sol.converged

