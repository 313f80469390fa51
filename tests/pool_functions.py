"""Functions that tests run in other processes (``Processes``, process pools, forked jobs).

A spawned worker imports the module of each function it unpickles: a test module would bring
pytest, the test's helpers and whatever else it imports (about 0.3 s of CPU per worker), this
module brings numpy alone.
"""

from __future__ import annotations

import time

import numpy as np


def damped(t, y):
    """y' = -y (1 + 0.1 sin y), elementwise: a batch of states gives each state's own bits."""
    return -y * (1.0 + 0.1 * np.sin(y))


def slow_decay(t, y):
    """y' = -y, 50 ms per call."""
    time.sleep(0.05)
    return -y
