"""A Dask worker that dies mid-run: the task is rerun and the run gives the serial answer, or,
when Dask gives up on the task, a ``RuntimeError`` naming the lost worker; never a bare
``CancelledError``, never a hang.

Real ``distributed.LocalCluster``s of worker processes, one cluster per case, run by
``tests/scripts/dask_check.py`` (``dies``) in the child process that runs the Dask check of
tests/test_concurrency_process.py (the cluster needs the main guard; one interpreter importing
distributed for both files), under a timeout. ``f`` kills its worker process with ``os._exit``
on its first call in each worker (a marker file per worker name), so every worker dies once,
the workers that held the run's ``f`` included. The workers are started by ``forkserver`` (a
fork of a server that has imported distributed, not a fresh interpreter per worker and per
restart: 4 s of CPU less): how a worker process starts is not what is tested here, what the
run does when one dies is.
"""

from __future__ import annotations

import pytest

from tests.conftest import needs
from tests.test_concurrency_process import dask_check_output

# found, not imported: the child process imports it
pytestmark = needs("distributed")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """Both cases, each on a cluster of its own, in the Dask check's child process: mode ->
    its answer. Once per session, even where xdist runs the tests on several workers."""
    return dask_check_output(tmp_path_factory)["dies"]


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
