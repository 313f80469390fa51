"""The ``mpi`` backend for real: scripts under ``mpiexec`` (1-4 ranks, oversubscribed), each a
subprocess with a timeout, so that a hang fails instead of blocking the suite."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from parareal import problems
from tests.conftest import needs
from tests.inprocess import process_state_kept
from tests.session_once import once_per_session

MPIEXEC = shutil.which("mpiexec")
#: The tests that run ``mpiexec``: a mark, not a module-level ``importorskip``, so that the
#: modules importing this one's helpers keep their tests that need no MPI.
needs_mpi = pytest.mark.skipif(
    importlib.util.find_spec("mpi4py") is None or MPIEXEC is None,
    reason="needs mpi4py and mpiexec (pip install 'parareal[mpi]')",
)
pytestmark = needs_mpi

SCRIPTS = Path(__file__).parent / "scripts"
ROOT = Path(__file__).parent.parent
HANG_GUARD_S = 300


def mpirun(ranks: int, *argv: str, timeout: float = HANG_GUARD_S) -> subprocess.CompletedProcess:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=path)
    return subprocess.run([MPIEXEC, "-n", str(ranks), *argv], capture_output=True, text=True,
                          timeout=timeout, env=env, check=False)


def mpirun_rows(ranks: int, *argv: str, folder: Path,
                timeout: float = HANG_GUARD_S) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """Run a script whose ranks each write one row (``tests/scripts/rows.py``) into ``folder``;
    return the process and the rows found, by rank. Per-rank files, because ``mpiexec``'s merged
    stdout can glue two ranks' lines together."""
    old = os.environ.get("PARAREAL_TEST_ROWS")
    os.environ["PARAREAL_TEST_ROWS"] = str(folder)
    try:
        proc = mpirun(ranks, *argv, timeout=timeout)
    finally:
        if old is None:
            del os.environ["PARAREAL_TEST_ROWS"]
        else:
            os.environ["PARAREAL_TEST_ROWS"] = old
    rows = [json.loads(path.read_text()) for path in sorted(folder.glob("rank-*.json"))]
    return proc, sorted(rows, key=lambda row: row["rank"])


def world_job(tmp_path_factory, ranks: int) -> tuple[dict, dict[str, list[dict]]]:
    """The job of ``tests/scripts/mpi_world.py`` on 1 or 4 ranks, run once per session, even
    where xdist runs its tests on several workers (the checks of ``mpi_more.py`` but its torch
    states, ``mpi_check.py`` and ``mpi_auto_check.py`` in one job: each rank imports numpy,
    parareal and mpi4py once, and none torch): the root's JSON object, and the rows by prefix
    (``auto``: every rank's)."""

    def job():
        folder = tmp_path_factory.mktemp(f"world{ranks}")
        proc, _ = mpirun_rows(ranks, sys.executable, str(SCRIPTS / "mpi_world.py"),
                              folder=folder)
        assert proc.returncode == 0, proc.stderr[-3000:]
        lines = proc.stdout.strip().splitlines()
        assert len(lines) == 1, proc.stdout  # the root prints, once
        rows = {"auto": sorted((json.loads(path.read_text())
                                for path in folder.glob("auto-*.json")),
                               key=lambda row: row["rank"])}
        return json.loads(lines[0]), rows

    return tuple(once_per_session(tmp_path_factory, f"mpi_world{ranks}", job))


#: ``parareal sample``'s arguments in :func:`pair_job` (its ``--out`` added there): 10 DDIM
#: steps (6 SRDS blocks over the 2 ranks, 3 iterations); the ranks' CPU is mostly importing
#: torch and diffusers, and more steps would add work, not another case.
SAMPLE_ARGV = ["--steps", "10", "--n", "2", "--method", "srds", "--compare-serial", "--json",
               "--threads", "1"]


def pair_job(tmp_path_factory) -> dict:
    """The job of ``tests/scripts/mpi_pair.py`` on 2 ranks, once per session, even where xdist
    runs its tests on several workers: every MPI check that needs torch (its torch states,
    check_backend's defaults, ``mpi_grad.py``, ``mpi_digests.py``) and, with diffusers,
    ``parareal sample`` with :data:`SAMPLE_ARGV` and ``--backend mpi``, in one job whose two
    ranks pay torch's and diffusers' imports once (rows by prefix: ``torch`` and ``digests``:
    rank 0's; ``defaults``, ``grad`` and ``sample``: both ranks'), and the names of the
    files in the sample's own folder (``files``), its image's path (``out``)."""

    def job():
        folder = tmp_path_factory.mktemp("pair")
        images = tmp_path_factory.mktemp("pair-sample")
        out = images / "digits.png"
        proc, _ = mpirun_rows(2, sys.executable, str(SCRIPTS / "mpi_pair.py"), *SAMPLE_ARGV,
                              "--backend", "mpi", "--out", str(out), folder=folder)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert proc.stdout == "", proc.stdout  # each rank's sample output is in its row
        rows = {prefix: sorted((json.loads(path.read_text())
                                for path in folder.glob(f"{prefix}-*.json")),
                               key=lambda row: row["rank"])
                for prefix in ("torch", "defaults", "grad", "digests", "sample")}
        rows["files"] = sorted(path.name for path in images.iterdir())
        rows["out"] = str(out)
        return rows

    return once_per_session(tmp_path_factory, "mpi_pair", job)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """``world(ranks)``: :func:`world_job` on ``ranks`` (1 or 4)."""
    return lambda ranks: world_job(tmp_path_factory, ranks)


@pytest.mark.parametrize("ranks", [1, 2, 3, 4])
def test_every_problem_gives_the_serial_answer_on_every_rank(ranks, world):
    # in the jobs of mpi_world.py: 1 rank alone, 4 on COMM_WORLD, and 3 and 2 on communicators
    # of the 4-rank job's first ranks (what MPI() does with a communicator of that size)
    out = world(1 if ranks == 1 else 4)[0]["check"][str(ranks)]
    # check_backend passed on every rank (a difference ends the job with its one-line message):
    # iterations, residuals, status, critical path, y bit for bit, same Solution on every rank
    assert out["ranks"] == ranks and len(out["runs"]) == 2 * len(problems.CORE)
    assert {run.split("/")[0] for run in out["runs"]} == set(problems.CORE)


@needs("torchdiffeq")  # not imported here: only the two ranks of mpi_pair.py import it
@pytest.mark.parametrize("ranks", [1, 4])
def test_torch_states_sub_communicators_idle_ranks_and_another_root(ranks, world,
                                                                   tmp_path_factory):
    # the torch states: in mpi_pair.py's job, on its two ranks (for 4 ranks: a root and a
    # worker exchange them, as ranks 0 and 1 of four would) or on a communicator of one rank
    # (for 1 rank: what MPI() does under ``mpiexec -n 1``); the rest in mpi_world.py's job
    torch = pair_job(tmp_path_factory)["torch"]
    assert [row["rank"] for row in torch] == [0]
    out = {**torch[0]["pair" if ranks == 4 else "self"], **world(ranks)[0]["more"]}
    assert out == {
        "torch-torch.float32": [True] * 4,
        "torch-torch.float64": [True] * 4,
        "few-slices": [True, True],
        "last-root": [True, True],
        "sub-communicators": True,
    }


def test_auto_coarse_with_a_users_jac_on_every_rank(world):
    rows = world(4)[1]["auto"]
    assert sorted(r["rank"] for r in rows) == [0, 1, 2, 3]
    for r in rows:  # the root's choice and result on every rank, as without MPI
        assert r["status"] == "converged" and r["same_y"]
        assert r["choice"] == r["ref_choice"]


@needs("torchdiffeq")  # mpi_pair.py runs the defaults where torchdiffeq is installed
def test_mpi_backend_passes_check_backend_on_every_rank(tmp_path_factory):
    # parareal.testing.check_backend on MPI, on two ranks (mpi_pair.py's job, which has
    # torch): the default problems' kinds of case, every bundled problem (small), the run
    # that blows up in its coarse sweep, the linear system, and that system as torch float64
    # and float32; every rank raises if its Solution differs from the serial one
    rows = pair_job(tmp_path_factory)["defaults"]
    assert sorted(row["rank"] for row in rows) == [0, 1]
    assert [row["runs"] for row in rows] == [20, 20]  # as many as check_backend's defaults


@pytest.mark.parametrize("where", ["1", "2", "0", "root-coarse"])
def test_an_exception_on_any_rank_ends_every_rank_quickly_with_one_message(where):
    # a worker raising: 3 ranks, so that it has the root and another worker to end (rank 1
    # between them, rank 2 the last); the root raising: every worker waits for it alike, so
    # one worker is enough to see that it ends and prints nothing
    ranks = 2 if where in ("0", "root-coarse") else 3
    start = time.monotonic()
    proc = mpirun(ranks, sys.executable, str(SCRIPTS / "mpi_fault.py"), where, timeout=120)
    elapsed = time.monotonic() - start
    assert proc.returncode != 0
    assert elapsed < 60
    rank = "0" if where == "root-coarse" else where
    lines = proc.stderr.splitlines()
    assert lines.count(f"Boom: raised by f on rank {rank}") == 1, proc.stderr[-3000:]
    if rank != "0":
        assert f"raised on MPI rank {rank}" in proc.stderr
    assert "returned" not in proc.stdout


def _cli_json(capsys, *argv: str) -> dict:
    """``parareal *argv`` run in this process (``main(argv)``): its last line of output, a
    JSON object."""
    from parareal.cli.main import main

    capsys.readouterr()
    assert main(list(argv)) == 0, capsys.readouterr().err[-3000:]
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_cli_under_mpiexec_prints_one_json_object_with_the_serial_numbers(capsys):
    # the first half of brusselator's span on 12 slices (3 iterations): a third of the work
    small = ["--param", "t_end=6.0", "--param", "slices=12"]
    proc = mpirun(3, sys.executable, "-m", "parareal", "solve", "brusselator", *small,
                  "--backend", "mpi", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    out = json.loads(lines[0])
    # the serial numbers in this process: they are the CLI's output, not a process's behaviour
    ref = _cli_json(capsys, "solve", "brusselator", *small, "--json")
    assert out["workers"] == 3 and out["backend"] == "mpi"
    for key in ("iterations", "residuals", "status", "critical_path", "y_final", "f_evals"):
        assert out[key] == ref[key], key


def test_cli_table_appears_once():
    # two ranks: one that must print the table, one that must not; vanderpol small as in
    # tests/scripts/small_problems.py (3 iterations, converged, a seventh of the f calls):
    # the table, not the problem, is what is checked
    small = ["--param", "t_end=3.0", "--param", "slices=6", "--param", "fine=rk4:20"]
    proc = mpirun(2, sys.executable, "-m", "parareal", "solve", "vanderpol", *small,
                  "--backend", "mpi")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("status: converged") == 1


@pytest.mark.filterwarnings("ignore::parareal.NoSpeedupWarning")
def test_single_process_without_mpiexec_runs_in_process():
    import parareal
    from parareal.backends import MPI

    p = problems.get("lorenz", t_end=0.6, slices=6, fine="rk4:25")  # small: 5 iterations
    ref = parareal.solve(p.f, p.y0, p.t_span, coarse=p.coarse, fine=p.fine, slices=p.slices)
    sol = parareal.solve(p.f, p.y0, p.t_span, coarse=p.coarse, fine=p.fine, slices=p.slices,
                         backend=MPI())
    assert np.array_equal(sol.y, ref.y) and sol.residuals == ref.residuals
    assert MPI().workers == 1


def test_bad_arguments():
    from parareal.backends import MPI, resolve_backend

    with pytest.raises(TypeError, match="comm"):
        MPI(comm=object())
    with pytest.raises(ValueError, match="root"):
        MPI(root=3)
    with pytest.raises(TypeError, match="root"):
        MPI(root="0")
    with pytest.raises(TypeError, match="device"):
        MPI(device=3)
    with pytest.raises(ValueError, match="workers applies"):
        resolve_backend("mpi", 2)
    assert MPI(device="cuda:{local_rank}").rank_device() == "cuda:0"
    assert MPI(device=lambda rank: f"cuda:{rank + 1}").rank_device() == "cuda:1"


def test_checkpoint_and_resume_under_mpiexec_and_a_missing_file_ends_the_job(tmp_path):
    # two ranks: the root that writes the checkpoint and reads it back, and a rank that must
    # end the same way and print nothing
    proc = mpirun(2, sys.executable, str(SCRIPTS / "mpi_checkpoint.py"), str(tmp_path),
                  timeout=180)
    assert proc.returncode != 0  # the last solve resumes from a missing file
    out = json.loads(proc.stdout.strip().splitlines()[0])
    assert out == {"first": [2, "max_iters"], "same": [True] * 4, "files": ["run.npz"]}
    lines = proc.stderr.splitlines()
    assert sum("FileNotFoundError: resume: no checkpoint" in line for line in lines) == 1


def test_sample_under_mpiexec_gives_the_serial_sample_and_writes_once(tmp_path_factory,
                                                                     tmp_path, capsys):
    pytest.importorskip("diffusers")
    # ``parareal sample --backend mpi`` on the two ranks of mpi_pair.py's job, each running
    # the command line's main(argv) as ``python -m parareal`` does: the root prints one JSON
    # object, the other rank nothing, both exit 0, and only the image is written
    job = pair_job(tmp_path_factory)
    rows = job["sample"]
    assert [row["rank"] for row in rows] == [0, 1]
    assert [row["status"] for row in rows] == [0, 0]
    assert rows[1]["stdout"] == ""
    lines = rows[0]["stdout"].strip().splitlines()
    assert len(lines) == 1
    summary = json.loads(lines[0])
    assert summary["status"] == "converged"
    assert summary["uint8_identical_fraction"] >= 0.99
    assert summary["max_abs_diff_vs_serial"] <= 1 / 255  # SRDS's default tol
    assert job["files"] == ["digits.png"] and summary["image"] == job["out"]
    # the same SRDS run on the batched backend: the same iterations and the same sample (to
    # the UNet's batch-size round-off: the ranks call it on their own blocks' batches); in
    # this process, on one thread as the ranks (torch's rounding depends on its threads),
    # which are restored after it
    with process_state_kept("parareal", []):  # --threads sets them for the process
        batched = _cli_json(capsys, "sample", *SAMPLE_ARGV, "--out",
                            str(tmp_path / "alone.png"))
    for key in ("iterations", "sequential_evals", "status"):
        assert summary[key] == batched[key], key
    assert abs(summary["max_abs_diff_vs_serial"] - batched["max_abs_diff_vs_serial"]) < 1e-6
