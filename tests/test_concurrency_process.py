"""Concurrent backends as real processes: Dask, mpi4py.futures, Ctrl-C, no leftover workers.

Every test runs a script in a subprocess with a timeout, so that a hang fails instead of
blocking the suite.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from parareal import problems
from tests.conftest import needs
from tests.session_once import once_per_session

SCRIPTS = Path(__file__).parent / "scripts"
HANG_GUARD_S = 240
ROOT = Path(__file__).parent.parent


def _env() -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return True


def dask_check_output(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """``tests/scripts/dask_check.py``'s JSON object, its one child process's run once per
    session: tests/test_testing.py's check of Dask reads it too, and tests/test_dask_workers.py
    its ``"dies"`` (the cases ``once`` and ``always``, on clusters of their own in the same
    process: one interpreter importing distributed instead of two)."""
    def run() -> dict:
        folder = tmp_path_factory.mktemp("dask_dies")
        argv = []
        for mode in ("once", "always"):
            marks = folder / f"marks-{mode}"
            marks.mkdir()
            argv += [str(marks), mode]
        proc = subprocess.run([sys.executable, str(SCRIPTS / "dask_check.py"), *argv],
                              capture_output=True, text=True, timeout=HANG_GUARD_S, env=_env(),
                              check=False)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout)

    return once_per_session(tmp_path_factory, "dask_check", run)


@needs("distributed")  # found, not imported here: the child process imports it
def test_dask_local_cluster_gives_the_serial_answer_and_reports_faults(tmp_path_factory):
    out = dask_check_output(tmp_path_factory)
    assert out["workers"] == 2
    # check_backend passed (a difference fails the script with its one-line message):
    # iterations, residuals, status, critical path, every iterate, y bit for bit
    assert len(out["problems"]) == 2 * len(problems.CORE)
    assert {run.split("/")[0] for run in out["problems"]} == set(problems.CORE)
    assert out["fault"] == ["Boom", "raised on a dask worker", True, True]


@needs("mpi4py")  # found, not imported here: the ranks import it
def test_mpi4py_futures_pool_gives_the_serial_answer():
    mpiexec = shutil.which("mpiexec")
    if mpiexec is None:
        pytest.skip("no mpiexec (pip install mpich)")
    proc = subprocess.run([mpiexec, "-n", "3", sys.executable, "-m", "mpi4py.futures",
                           str(SCRIPTS / "mpi_futures_check.py")], capture_output=True,
                          text=True, timeout=HANG_GUARD_S, env=_env(), check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out == {name: [2, True, True, True, True] for name in ("brusselator", "lorenz")}


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("backend", ["threads", "processes"])
def test_ctrl_c_cancels_pending_work_and_leaves_no_worker(backend, tmp_path):
    proc = subprocess.Popen([sys.executable, str(SCRIPTS / "interrupt_check.py"), backend,
                             str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_env())
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            marks = [p.name for p in tmp_path.iterdir()]
            workers = [m for m in marks if "parareal-worker" in m
                       or not m.startswith(f"{proc.pid}-")]
            if workers:
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        else:
            pytest.fail("no worker started within 120 s")
        time.sleep(0.3)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        elapsed = time.monotonic() - sent
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-3000:]
    assert out.strip() == "interrupted"
    assert elapsed < 20  # each task stops at its next call of f; one call takes 10 ms
    pids = {int(m.split("-")[0]) for m in (p.name for p in tmp_path.iterdir())}
    time.sleep(0.5)
    assert not [pid for pid in pids if _alive(pid)]
