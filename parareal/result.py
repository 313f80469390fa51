"""Typed results: :class:`Status`, :class:`Stats`, :class:`IterationInfo`, :class:`Solution`."""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["CoarseCandidate", "CoarseChoice", "IterationInfo", "Solution", "Stats", "Status"]


class Status(enum.Enum):
    """How a Parareal run ended."""

    #: The convergence test passed, or all slices became exact (``iterations == slices``).
    CONVERGED = "converged"
    #: ``max_iters`` iterations ran without meeting the tolerance.
    MAX_ITERS = "max_iters"
    #: An iterate contained NaN or inf; the last finite iterate is returned (iterate 0, as it
    #: is, when the coarse sweep itself was not finite).
    DIVERGED = "diverged"


@dataclass(frozen=True)
class Stats:
    """Work and time counters of one run.

    Attributes
    ----------
    fine_calls, coarse_calls : int
        Fine and coarse propagations over one slice that were started (in the pipelined
        schedule this includes speculative work abandoned when the run stopped).
    f_evals : int
        Evaluations of ``f`` at one state (a batched call over ``B`` states counts ``B``).
    f_calls : int
        Python calls of ``f`` (a batched call counts 1).
    critical_path : int
        Sequential batched calls of ``f`` of the schedule (ticks): the latency in units of
        one call of ``f`` when every slice has its own worker or batch slot. Opaque
        propagators (scipy, torchdiffeq) count their own calls of ``f`` along the path. A
        deterministic logical clock: the same on every backend and worker count for the same
        run.
    critical_path_per_iteration : tuple of int
        ``critical_path`` at the moment iterate ``k`` was complete, for ``k = 0..iterations``.
    wall_time_per_iteration : tuple of float
        Measured seconds since the start of the run at the moment iterate ``k`` was complete,
        beside ``critical_path_per_iteration``.
    wall_time : Mapping[str, float]
        Seconds: ``total``; ``f`` (inside ``f``, in this process and on every worker, summed:
        on a concurrent backend it can exceed ``total``); ``propagators`` (propagator
        arithmetic and opaque solvers in this process, excluding ``f``); ``batching``
        (stacking states into batched calls of ``f`` and splitting the results); ``engine``
        (corrections, norms, bookkeeping). Concurrent backends add ``wait`` (this process
        blocked waiting for workers) and ``workers`` (seconds of tasks on the workers,
        summed; ``workers / total`` is the average number of busy workers). Runs with
        implicit propagators add ``jacobian`` (evaluating Jacobians, here and on workers)
        and ``linear_solve`` (factoring and solving ``I - h gamma J``, here and on workers);
        both are included in ``propagators`` or ``f`` as well, not in ``total`` twice.
    jac_evals, jac_calls : int
        Jacobians evaluated (one per state) and Jacobian requests answered (one tick each on
        the critical path, like a call of ``f``).
    serial_fine_cost : float
        Calls of ``f`` (and Jacobian) that the serial fine solve over all slices makes: the
        sum over slices of the critical-path length of the newest fine propagation of each
        slice (known from the fine propagations this run made; NaN if none finished).
    speedup_bound : float
        ``serial_fine_cost / critical_path``: the speed-up over the serial fine solve with one
        worker (or batch slot) per slice and calls of equal cost. Below 1 the run cannot pay
        (:class:`parareal.NoSpeedupWarning`).
    """

    fine_calls: int = 0
    coarse_calls: int = 0
    f_evals: int = 0
    f_calls: int = 0
    critical_path: int = 0
    critical_path_per_iteration: tuple[int, ...] = ()
    wall_time_per_iteration: tuple[float, ...] = ()
    wall_time: Mapping[str, float] = field(default_factory=dict)
    jac_evals: int = 0
    jac_calls: int = 0
    serial_fine_cost: float = math.nan
    speedup_bound: float = math.nan

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict of the counters."""
        return {
            "fine_calls": self.fine_calls,
            "coarse_calls": self.coarse_calls,
            "f_evals": self.f_evals,
            "f_calls": self.f_calls,
            "critical_path": self.critical_path,
            "critical_path_per_iteration": list(self.critical_path_per_iteration),
            "wall_time_per_iteration": list(self.wall_time_per_iteration),
            "wall_time": dict(self.wall_time),
            "jac_evals": self.jac_evals,
            "jac_calls": self.jac_calls,
            "serial_fine_cost": self.serial_fine_cost,
            "speedup_bound": self.speedup_bound,
        }


@dataclass(frozen=True)
class CoarseCandidate:
    """One candidate of ``coarse="auto"``, measured on the probe (first slice).

    Attributes
    ----------
    propagator : str
        Its ``repr``.
    ticks : int
        Its calls of ``f`` and Jacobians per slice.
    jump : float
        ``max |G(y0) - F(y0)|`` on the first slice.
    alpha : float
        ``max |dG - dF| / max |delta|``: how differently coarse and fine respond to a
        perturbation ``delta`` of ``y0`` (Gander-Vandewalle's ``|R_F - R_G|``).
    beta : float
        ``max |dG| / max |delta|``: how much the coarse propagator amplifies it.
    predicted_iterations : int
        Iterations predicted to meet the tolerance.
    predicted_critical_path : float
        Predicted critical path of the run with it, in calls (``inf``: ruled out).
    note : str
        Why it was ruled out, if it was.
    """

    propagator: str
    ticks: int
    jump: float
    alpha: float
    beta: float
    predicted_iterations: int
    predicted_critical_path: float
    note: str = ""


@dataclass(frozen=True)
class CoarseChoice:
    """What ``coarse="auto"`` chose and why (``Solution.coarse_choice``).

    Attributes
    ----------
    propagator : Propagator
        The coarse propagator the run used.
    reason : str
        Why, in words (its prediction against the others').
    candidates : tuple of CoarseCandidate
        Every candidate with its measurements and prediction, in the order tried.
    fine_ticks : int
        Calls of the fine propagator on the first slice (``F(0, 0)``, measured by the probe).
    probe_ticks : int
        The probe's length on the critical path (included in ``Stats.critical_path``).
    """

    propagator: Any
    reason: str
    candidates: tuple[CoarseCandidate, ...]
    fine_ticks: int
    probe_ticks: int


@dataclass(frozen=True)
class IterationInfo:
    """What a ``callback`` receives after each complete iterate.

    Attributes
    ----------
    iteration : int
        ``k``; 0 is the initial coarse sweep.
    residual : float
        Max-norm of the boundary update ``U^k - U^{k-1}`` (NaN for ``k = 0``).
    t : numpy.ndarray
        The ``N + 1`` slice boundaries.
    y : array
        Boundary values ``U^k`` stacked, shape ``(N + 1, *y0.shape)``, y0's kind.
    critical_path : int
        Ticks elapsed when this iterate was complete.
    f_evals : int
        Evaluations of ``f`` so far.
    """

    iteration: int
    residual: float
    t: np.ndarray
    y: Any
    critical_path: int
    f_evals: int


@dataclass(frozen=True)
class Solution:
    """Result of :func:`parareal.solve`.

    Attributes
    ----------
    t : numpy.ndarray
        The ``N + 1`` slice boundaries (float64).
    y : array
        Boundary values, shape ``(N + 1, *y0.shape)``, same kind, dtype and device as ``y0``.
    iterations : int
        Completed Parareal iterations (the coarse sweep is iteration 0 and not counted).
    converged : bool
        ``status is Status.CONVERGED``.
    status : Status
        How the run ended.
    residuals : tuple of float
        Max boundary update of each iteration ``1..iterations``.
    stats : Stats
        Work counters and timings.
    reason : str
        Why the run ended as it did, in words (for ``DIVERGED``: where the first non-finite
        value appeared and, when a propagator said so, why: a non-finite Jacobian, a singular
        Newton matrix, Newton not converging, a failed ``solve_ivp``).
    coarse_choice : parareal.CoarseChoice or None
        What ``coarse="auto"`` chose and why (``None`` when the coarse was given).
    stop_state : dict
        What the stopping rule saw (:meth:`parareal.StopRule.state`): its name and settings,
        and for rules with a history (``FinalChange``, ``FineResidual``) the quantities it
        tested per iterate. The same on every MPI rank.
    """

    t: np.ndarray
    y: Any
    iterations: int
    converged: bool
    status: Status
    residuals: tuple[float, ...]
    stats: Stats
    reason: str = ""
    coarse_choice: Any = None
    stop_state: dict[str, Any] = field(default_factory=dict)

    @property
    def y_final(self) -> Any:
        """The state at the end of the span (``y[-1]``)."""
        return self.y[-1, ...]
