"""One Parareal run, described once: :class:`RunSpec`, built by :func:`parareal.solve` from
validated arguments and read by the engine (:mod:`.parareal`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backends import Backend, Rhs
from ..checkpoint import Checkpoint, Checkpointer
from ..propagators import Propagator
from ..result import IterationInfo
from ..stopping import StopRule
from .auto import AutoCoarse

__all__ = ["DEFAULT_LOOKAHEAD", "SCHEDULES", "RunSpec"]

SCHEDULES = ("synchronous", "pipelined")
#: Default bound on how many iterations fine work may run ahead of the newest complete iterate
#: in the pipelined schedule (see :mod:`.parareal` and ``docs/benchmarks.md``).
DEFAULT_LOOKAHEAD = 2


@dataclass(frozen=True)
class RunSpec:
    """A validated Parareal run (see :func:`parareal.solve` for the meaning of each field).

    Attributes
    ----------
    rhs : Rhs
        ``f`` wrapped with its counters and the kind of state.
    y0 : array
        The initial state.
    boundaries : numpy.ndarray
        The ``N + 1`` slice boundaries.
    coarse : Propagator or AutoCoarse
        The coarse propagator, or ``coarse="auto"``'s candidates.
    fine : Propagator
    backend : Backend
        Where the work runs (resolved; its owner closes it).
    stop : StopRule
        The stopping rule, bound to ``y0`` (:meth:`StopRule.bind`).
    max_iters : int
    schedule : {"synchronous", "pipelined"}
    lookahead : int or None
        The pipelined schedule's bound (``None``: unbounded).
    callback : callable or None
        Called with an :class:`IterationInfo` after every iterate; ``True`` stops the run.
    progress : bool
        Print a line per iterate on standard error.
    initial : list or None
        Iterate 0's boundary values, given instead of a coarse sweep.
    checkpoint : Checkpointer or None
        Writes every iterate.
    resume : Checkpoint or None
        The iterate to go on from.
    balance : Propagator or None
        ``boundaries="work"``: the loose solve that places the boundaries.
    """

    rhs: Rhs
    y0: Any
    boundaries: np.ndarray
    coarse: Propagator | AutoCoarse
    fine: Propagator
    backend: Backend
    stop: StopRule
    max_iters: int
    schedule: str = "synchronous"
    lookahead: int | None = DEFAULT_LOOKAHEAD
    callback: Callable[[IterationInfo], Any] | None = None
    progress: bool = False
    initial: list[Any] | None = None
    checkpoint: Checkpointer | None = None
    resume: Checkpoint | None = None
    balance: Propagator | None = None
