"""A Dask worker that dies mid-run: the task is rerun and the run gives the serial answer, or,
when Dask gives up on the task, a ``RuntimeError`` naming the lost worker; never a bare
``CancelledError``, never a hang.

Real ``distributed.LocalCluster``s of worker processes, in one child process (the cluster
needs the main guard) under a timeout, one cluster per case. ``f`` kills its worker process with
``os._exit`` on its first call in each worker (a marker file per worker name), so every worker
dies once, the workers that held the run's ``f`` included. The workers are started by
``forkserver`` (a fork of a server that has imported distributed, not a fresh interpreter per
worker and per restart: 4 s of CPU less): how a worker process starts is not what is tested
here, what the run does when one dies is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import needs
from tests.session_once import once_per_session

# found, not imported: the child process imports it
pytestmark = needs("distributed")

ROOT = Path(__file__).resolve().parents[1]
HANG_GUARD_S = 240

SCRIPT = textwrap.dedent("""
    import json, os, sys
    import dask
    import numpy as np
    from distributed import Client, LocalCluster, get_worker

    import parareal
    from parareal.backends import Executor

    def make_f(marks, main_pid, always):
        def f(t, y):
            if os.getpid() != main_pid:  # on a worker, never in the caller
                mark = os.path.join(marks, str(get_worker().name))
                if always or not os.path.exists(mark):
                    open(mark, "w").close()
                    os._exit(1)
            return -y * (1.0 + 0.1 * np.sin(y))
        return f

    def run(marks, always):
        f = make_f(marks, os.getpid(), always)
        opts = dict(coarse="rk4:1", fine="rk4:8", slices=8, tol=0.0)
        y0 = np.linspace(0.5, 1.5, 5)
        serial = parareal.solve(f, y0, (0.0, 2.0), **opts)
        failures = 1 if always else 3  # 3: Dask's default
        with dask.config.set({"distributed.scheduler.allowed-failures": failures,
                              "distributed.worker.multiprocessing-method": "forkserver"}), \\
                LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                             dashboard_address=None) as cluster, Client(cluster) as client:
            workers = sorted(client.scheduler_info()["workers"])
            try:
                sol = parareal.solve(f, y0, (0.0, 2.0), **opts,
                                     backend=Executor(client.get_executor()))
                out = {"same": bool(np.array_equal(sol.y, serial.y)),
                       "iterations": [sol.iterations, serial.iterations]}
            except BaseException as exc:
                out = {"error": type(exc).__name__, "message": str(exc)}
        out["workers"] = workers
        out["deaths"] = sorted(os.listdir(marks))
        return out

    if __name__ == "__main__":
        # argv: pairs of a marker folder and a mode ("once" or "always"); one JSON object,
        # mode -> that case's answer, from a cluster of its own
        pairs = sys.argv[1:]
        out = {mode: run(marks, mode == "always") for marks, mode in zip(pairs[::2], pairs[1::2])}
        print(json.dumps(out), flush=True)
""")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """Both cases, each on a cluster of its own, in one child process: mode -> its answer.
    Once per session, even where xdist runs the two tests on two workers."""
    return once_per_session(tmp_path_factory, "dask_dies", lambda: _run(tmp_path_factory))


def _run(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("dask_dies")
    script = folder / "dask_dies.py"
    script.write_text(SCRIPT)
    argv = []
    for mode in ("once", "always"):
        marks = folder / f"marks-{mode}"
        marks.mkdir()
        argv += [str(marks), mode]
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=path)
    proc = subprocess.run([sys.executable, str(script), *argv], capture_output=True,
                          text=True, timeout=HANG_GUARD_S, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_worker_that_dies_once_is_rerun_and_the_run_gives_the_serial_answer(runs):
    out = runs["once"]
    assert out["deaths"] == ["0", "1"]  # both workers died, each once
    assert "error" not in out, out
    assert out["same"] and out["iterations"][0] == out["iterations"][1]


def test_workers_that_keep_dying_end_the_run_with_a_runtime_error_naming_one(runs):
    out = runs["always"]
    assert out["error"] == "RuntimeError", out
    assert "Dask workers died while running a task" in out["message"]
    assert "tcp://127.0.0.1:" in out["message"]  # the last worker that ran it
    assert "CancelledError" not in out["message"]
