"""The numbers behind ``method="auto"``'s predictions (:mod:`.auto`): the iterations each
method is assumed to need, the rows of exact Picard's calls, and the predicted seconds of a
run from the timed cost of a model call (linear interpolation between the timed batch sizes).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from .auto_timing import monotone

__all__ = ["SRDS_ITERATIONS", "CallPlan", "exact_picard_iterations", "exact_picard_rows",
           "interpolate_cost", "picard_iterations", "predict", "srds_iterations"]

#: SRDS iterations assumed before ``auto`` has seen SRDS run on a model (capped at ``B``), with
#: the default ``2 sqrt(N)`` blocks; one more with fewer blocks (:func:`srds_iterations`).
SRDS_ITERATIONS = 3


def srds_iterations(steps: int, blocks: int) -> int:
    """The estimate of SRDS's iterations with ``blocks`` blocks: :data:`SRDS_ITERATIONS` from
    ``1.5 sqrt(N)`` blocks up, one more below (the digits model needs about one more with the
    paper's ``sqrt(N)``: docs/benchmarks.md), at most ``blocks``."""
    extra = 0 if blocks >= 1.5 * math.sqrt(steps) else 1
    return min(blocks, SRDS_ITERATIONS + extra)


def picard_iterations(steps: int, window: int) -> int:
    """The estimate of Picard's iterations: ``min(N, ceil(2 N / p) + 4)``."""
    return min(steps, math.ceil(2 * steps / window) + 4)


def exact_picard_iterations(steps: int) -> int:
    """The estimate of exact Picard's iterations (one model call each):
    ``min(N, round(10 + 2 max(0, log10(N / 100))))``, from the medians measured on the digits
    model (10 at N = 25 and 100, 12 at N = 1000; docs/benchmarks.md)."""
    return min(steps, round(10 + 2 * max(0.0, math.log10(steps / 100))))


def exact_picard_rows(steps: int, iterations: int) -> tuple[int, ...]:
    """Rows of exact Picard's calls for one sample: the window (the whole grid) shrinks as its
    converged prefix grows; assumed to cover all ``N`` steps for the first half of the
    iterations, then to lose ``N / iterations`` steps per call."""
    half = (iterations + 1) // 2
    drop = steps / max(iterations, 1)
    return tuple(max(1, round(steps - max(0, k - half + 1) * drop)) for k in range(iterations))


@dataclass(frozen=True)
class CallPlan:
    """One method's predicted run: the rows of every sequential model call, in order.

    Attributes
    ----------
    method : str
    rows : tuple of int
        Rows of ``x`` per sequential model call, over all chunks.
    overhead_s : float
        The sampler's own seconds besides the model calls (measured with a stub model).
    note : str
        How the pattern was obtained (e.g. the iterations assumed).
    """

    method: str
    rows: tuple[int, ...]
    overhead_s: float = 0.0
    note: str = ""


def interpolate_cost(costs: Mapping[int, float], rows: int) -> float:
    """Seconds of one model call of ``rows`` rows, linear between the timed batch sizes.

    Costs are first made non-decreasing in the rows (:func:`.auto_timing.monotone`). Outside
    the timed range the line through the two nearest points is extended (never below zero);
    with a single timed size, the cost is that size's, scaled up in proportion beyond it.
    """
    return _interpolate(monotone(costs), rows)


def _interpolate(costs: Mapping[int, float], rows: int) -> float:
    """:func:`interpolate_cost` on costs already made non-decreasing."""
    if not costs:
        raise ValueError("no timed batch sizes to interpolate from")
    points = sorted(costs.items())
    if rows in costs:
        return costs[rows]
    if len(points) == 1:
        (b, c), = points
        return c * max(1.0, rows / b)
    if rows < points[0][0]:
        (b0, c0), (b1, c1) = points[0], points[1]
    elif rows > points[-1][0]:
        (b0, c0), (b1, c1) = points[-2], points[-1]
    else:
        i = next(i for i, (b, _) in enumerate(points) if b > rows)
        (b0, c0), (b1, c1) = points[i - 1], points[i]
    return max(0.0, c0 + (c1 - c0) * (rows - b0) / (b1 - b0))


def predict(plans: Mapping[str, CallPlan], costs: Mapping[int, float]) -> dict[str, float]:
    """Predicted seconds of each plan: the interpolated cost of its calls plus its overhead
    (each batch size's cost found once: a plan repeats a few sizes hundreds of times)."""
    line = monotone(costs)
    cost = {r: _interpolate(line, r) for plan in plans.values() for r in set(plan.rows)}
    return {name: plan.overhead_s + sum(cost[r] for r in plan.rows)
            for name, plan in plans.items()}
