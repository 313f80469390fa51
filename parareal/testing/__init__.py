"""Property checks for your own propagators, problems and backends (like ``numpy.testing``).

Checks are plain functions that raise :class:`AssertionError` with a one-line message naming
the property, the input and by how much it failed; they work with or without pytest and
need no hypothesis:

* :func:`check_propagator`: the implementer's checklist of :class:`~parareal.Propagator`
  (kind/shape/dtype/device kept, determinism, no state between calls, measured order of
  accuracy against the declared one, steppable and grouped paths equal to ``propagate``);
* :func:`check_exactness`: after ``k`` iterations the first ``k`` boundaries equal the serial
  fine solution bit for bit;
* :func:`check_fixed_point`: the serial fine solution is a fixed point of the iteration;
* :func:`check_backend`: a backend gives the serial backend's runs bit for bit;
* :func:`check_convergence_bound`: the Gander-Vandewalle bounds hold on Dahlquist.

Hypothesis strategies (``pip install 'parareal[test]'``), imported on first use:
:func:`linear_systems`, :func:`dahlquist_problems`, :func:`problems`, :func:`slicings`,
:func:`propagators` (also as :mod:`parareal.testing.strategies`).

See ``docs/testing.md`` for a worked example.
"""

from typing import Any

from .backend import check_backend, default_problems
from .iteration import (
    BoundReport,
    check_convergence_bound,
    check_exactness,
    check_fixed_point,
    serial_fine,
)
from .propagator import PropagatorReport, check_propagator
from .systems import ForcedDecay, LinearRHS, linear_system

_STRATEGIES = ("dahlquist_problems", "linear_systems", "problems", "propagators", "slicings")

__all__ = [
    "BoundReport",
    "ForcedDecay",
    "LinearRHS",
    "PropagatorReport",
    "check_backend",
    "check_convergence_bound",
    "check_exactness",
    "check_fixed_point",
    "check_propagator",
    "dahlquist_problems",
    "default_problems",
    "linear_system",
    "linear_systems",
    "problems",
    "propagators",
    "serial_fine",
    "slicings",
]


def __getattr__(name: str) -> Any:
    """The strategies, imported (with hypothesis) on first use."""
    if name in _STRATEGIES:
        from . import strategies

        return getattr(strategies, name)
    raise AttributeError(f"module 'parareal.testing' has no attribute {name!r}")
