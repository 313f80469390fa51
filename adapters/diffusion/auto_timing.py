"""Which batch sizes ``method="auto"`` times, and when it stops: the fewest calls that decide.

:mod:`.auto` wants the cost of a model call at a few batch sizes (the *anchors* of its call
patterns). Timing them all costs seconds: the largest batches cost the most, and a
call of the largest SRDS batch can cost more than a tenth of the whole serial run. So the
anchors are timed from the smallest up (:func:`time_anchors`), and before each one:

* **Is the choice clear?** With what is timed, every method's seconds lie between bounds
  (:func:`cost_bounds`): between two timed sizes a call costs between their costs (a larger
  batch never costs less); beyond the largest timed size ``R`` it costs at least ``c(R)`` plus
  :data:`SLOPE_FLOOR` of the last measured cost per extra row, and at most ``c(R) r / R`` (the
  cost per row does not grow with the batch). When the method predicted fastest is, at its upper
  bound times :data:`MARGIN` (timing noise), still below every other method's lower bound,
  nothing left to time could change the choice: timing stops.
* **Is it worth it?** Choosing may take :data:`BUDGET_FRACTION` of the predicted serial
  seconds. What it takes is counted as if the cache were cold: the stub runs' seconds plus
  :data:`CALLS_PER_ANCHOR` calls of every anchor timed so far (cached or not), so that a later
  call, or a process that finds the costs on disk, declines the same anchors and times nothing
  new. An anchor whose timing would exceed the budget is declined, and so are the larger ones:
  the choice is then made on the extrapolated costs.

The smallest anchor and one of at least :data:`SPREAD` times its rows are always timed (one
size alone tells nothing of what batching saves, and two nearly equal sizes tell only the
noise); costs that contradict "a larger batch never costs less" are capped (:func:`monotone`).
With :data:`TIME_EVERY_ANCHOR` (the golden-result script sets it) neither rule applies: every
anchor is timed, as before this module.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

import torch

__all__ = [
    "BUDGET_FRACTION",
    "CALLS_PER_ANCHOR",
    "MARGIN",
    "SLOPE_FLOOR",
    "TIME_EVERY_ANCHOR",
    "TIMING_REPEATS",
    "SPREAD",
    "TimedCosts",
    "choice_is_clear",
    "cost_bounds",
    "monotone",
    "time_anchors",
    "time_call",
]

#: Time every anchor: no stop when the choice is clear, no budget.
TIME_EVERY_ANCHOR = False
#: Choosing may take this fraction of the predicted serial seconds (timing and stub runs).
BUDGET_FRACTION = 0.06
#: A choice is clear when the fastest method's upper bound times this is below the others'
#: lower bounds: timing noise (the fastest of a few calls) stays well within it.
MARGIN = 1.25
#: Beyond the largest timed batch a call costs at least this fraction of the last measured
#: cost per extra row (per row; the rest of the call's cost is kept).
SLOPE_FLOOR = 0.5
#: The calls an anchor's timing is expected to make (:func:`time_call`).
CALLS_PER_ANCHOR = 2.5
#: The most calls per batch size after the first (:func:`time_call`).
TIMING_REPEATS = 2
#: Timing a batch size stops once its two fastest calls agree within this fraction.
AGREEMENT = 0.1
#: The second size timed has at least this many times the rows of the first, where one does.
SPREAD = 4


@dataclass(frozen=True)
class TimedCosts:
    """What :func:`time_anchors` measured and why it stopped.

    Attributes
    ----------
    costs : dict of int to float
        Seconds per call by rows: the known ones and the newly timed ones.
    timed : dict of int to float
        The newly timed ones.
    untimed : tuple of int
        Anchors left untimed (their costs are extrapolated or interpolated).
    stopped : str
        ``""`` (everything timed), ``"clear"`` or ``"budget"``.
    """

    costs: dict[int, float]
    timed: dict[int, float]
    untimed: tuple[int, ...]
    stopped: str = ""


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[..., Any], x: torch.Tensor, t: torch.Tensor) -> float:
    """The fastest of at least 2 and at most ``1 +`` :data:`TIMING_REPEATS` calls
    ``fn(x, t)``: they stop once the two fastest agree within :data:`AGREEMENT` (a first call
    slowed by warming up is outvoted by the next two), or after 2 when the first took a second."""
    _sync(x.device)
    times: list[float] = []
    for _ in range(1 + TIMING_REPEATS):
        begin = time.perf_counter()
        fn(x, t)
        _sync(x.device)
        times.append(time.perf_counter() - begin)
        fastest = sorted(times)[:2]
        if len(times) >= 2 and (fastest[1] <= fastest[0] * (1 + AGREEMENT) or times[0] >= 1.0):
            break
    return min(times)


def _timing_order(pending: list[int]) -> list[int]:
    """The smallest anchor first, then the smallest of at least :data:`SPREAD` times its rows
    (two nearly equal small sizes, e.g. 1 and 2 rows, tell the noise of the timing, not what a
    row costs), then the rest from the smallest up."""
    far = next((r for r in pending[1:] if r >= SPREAD * pending[0]), None)
    if far is None:
        return pending
    return [pending[0], far, *(r for r in pending[1:] if r != far)]


def monotone(costs: Mapping[int, float]) -> dict[int, float]:
    """``costs`` with each size's cost capped by every larger size's: a larger batch never
    costs less, and timing noise only adds (a call slowed by other work measured 31 ms for one
    row against 12 ms for two), so the smaller of two contradicting costs is kept."""
    out, low = {}, math.inf
    for rows in sorted(costs, reverse=True):
        low = out[rows] = min(low, costs[rows])
    return out


def cost_bounds(costs: Mapping[int, float], rows: int) -> tuple[float, float]:
    """Lower and upper bound of the seconds of a call of ``rows`` rows (module docstring)."""
    return _bounds(monotone(costs), rows)


def _bounds(costs: Mapping[int, float], rows: int) -> tuple[float, float]:
    """:func:`cost_bounds` on costs already made non-decreasing."""
    if rows in costs:
        return costs[rows], costs[rows]
    sizes = sorted(costs)
    below = [s for s in sizes if s < rows]
    above = [s for s in sizes if s > rows]
    if not below:
        return 0.0, costs[above[0]]
    top = below[-1]
    if above:
        return costs[top], costs[above[0]]
    slope = 0.0
    if len(below) >= 2:
        slope = max(0.0, (costs[top] - costs[below[-2]]) / (top - below[-2]))
    low = costs[top] + SLOPE_FLOOR * slope * (rows - top)
    return low, max(low, costs[top] * rows / top)


def choice_is_clear(
    rows: Mapping[str, tuple[int, ...]], overhead_s: Mapping[str, float],
    predicted_s: Mapping[str, float], allowed: Collection[str], costs: Mapping[int, float],
) -> bool:
    """Whether the allowed method with the smallest prediction stays the fastest however the
    untimed costs turn out within :func:`cost_bounds` (with :data:`MARGIN` to spare)."""
    names = [name for name in rows if name in allowed]
    if len(names) < 2:
        return True
    best = min(names, key=lambda name: predicted_s[name])
    line = monotone(costs)
    each = {r: _bounds(line, r) for name in names for r in set(rows[name])}
    bounds = {}
    for name in names:
        pairs = [each[r] for r in rows[name]]
        bounds[name] = (overhead_s[name] + sum(p[0] for p in pairs),
                        overhead_s[name] + sum(p[1] for p in pairs))
    return all(bounds[best][1] * MARGIN < bounds[name][0] for name in names if name != best)


def time_anchors(
    anchors: Mapping[int, int], known: Mapping[int, float],
    measure: Callable[[int, int], float], predict: Callable[[Mapping[int, float]],
                                                              Mapping[str, float]],
    is_clear: Callable[[Mapping[int, float], Mapping[str, float]], bool],
    stub_s: float = 0.0, serial: str = "serial",
) -> TimedCosts:
    """Time the anchors not known yet, smallest first, until the choice is clear or the budget
    is spent (module docstring).

    Parameters
    ----------
    anchors : mapping of int to int
        Rows to time, each with the chunk size whose rows it repeats.
    known : mapping of int to float
        Costs already known (cached).
    measure : callable
        ``measure(chunk, rows)``: the seconds of one call.
    predict : callable
        Each method's predicted seconds from given costs.
    is_clear : callable
        ``is_clear(costs, predicted)``: :func:`choice_is_clear` for the planned run.
    stub_s : float
        Seconds of the stub runs that counted the call patterns (cached or not).
    serial : str
        The prediction that the budget is a fraction of.
    """
    costs, timed = dict(known), {}
    pending = _timing_order(sorted(r for r in anchors if r not in costs))
    stopped = ""
    while pending:
        rows = pending[0]
        if len(costs) >= 2 and not TIME_EVERY_ANCHOR:
            predicted = predict(costs)
            if is_clear(costs, predicted):
                stopped = "clear"
                break
            budget = BUDGET_FRACTION * predicted.get(serial, 0.0)
            spent = stub_s + CALLS_PER_ANCHOR * sum(c for r, c in costs.items() if r in anchors)
            if spent + CALLS_PER_ANCHOR * cost_bounds(costs, rows)[1] > budget:
                stopped = "budget"
                break
        timed[rows] = costs[rows] = measure(anchors[rows], rows)
        pending.pop(0)
    untimed = tuple(r for r in sorted(anchors) if r not in costs)
    return TimedCosts(costs, timed, untimed, stopped if untimed else "")
