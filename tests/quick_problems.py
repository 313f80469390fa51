"""check_backend's default problems at a fraction of the cost, for the backend tests."""

from __future__ import annotations

from parareal import problems
from parareal.testing import default_problems


def quick_problems(slices=4):
    """check_backend's default problems at a fraction of the cost.

    Every bundled problem (``problems.CORE``) with its own f, propagators and step sizes on
    its first ``slices`` slices (heat on 30 points: its step counts grow with points squared),
    then, as in :func:`parareal.testing.default_problems`, the run that diverges in its coarse
    sweep and the 5-dimensional linear system, unchanged.

    Parameters
    ----------
    slices : int
        Slices kept of each bundled problem (fewer where it has fewer).

    Returns
    -------
    list of Problem
        In the order of ``default_problems()``, with the same names.
    """
    out = []
    for name in problems.CORE:
        p = problems.get(name)
        t0, t1 = p.t_span
        n = min(slices, p.slices)
        extra = {"points": 30} if name == "heat" else {}
        out.append(problems.get(name, slices=n, t_end=t0 + (t1 - t0) * n / p.slices, **extra))
    return [*out, *default_problems()[-2:]]
