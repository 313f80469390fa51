"""A module fixture's expensive value (an ``mpiexec`` job, a Dask cluster's run) computed once
per test session, even when pytest-xdist runs the tests that read it on different workers:
its load scheduling hands adjacent tests to different workers, and each worker would run the
job again for its own copy of the fixture.

The first caller computes the value under a lock file in the session's shared temporary
folder (the parent of every xdist worker's own) and writes it there as JSON; the others wait
for the lock and read it. A computation that raises writes nothing: the next caller computes
it again (and fails with its own message).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

try:
    import fcntl
except ImportError:  # no POSIX locks: each worker computes its own
    fcntl = None


def shared_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's temporary folder that every xdist worker sees (``basetemp`` without
    xdist)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if "PYTEST_XDIST_WORKER" in os.environ else base


def once_per_session(tmp_path_factory: pytest.TempPathFactory, name: str,
                     compute: Callable[[], Any]) -> Any:
    """``compute()`` (a JSON value) once for the whole session, by ``name``."""
    folder = shared_folder(tmp_path_factory)
    path = folder / f"{name}.json"
    if fcntl is None:
        return compute()
    with open(folder / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists():
            return json.loads(path.read_text())
        value = compute()
        path.write_text(json.dumps(value))
        return value
