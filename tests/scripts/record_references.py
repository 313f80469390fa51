"""Record the numerical references of the test problems whose reference over the default span
takes seconds (Radau at ``rtol = atol = 1e-13``) into ``tests/data/references.json``.

``PYTHONPATH=. python tests/scripts/record_references.py`` (about 20 s of CPU).

For each problem the file holds ``Problem.reference`` at the slice boundaries of the default
span (what ``test_default_fine_matches_reference`` compares the default fine solution with),
and at one short time ``t_short``, taken from the same integration: the test computes the
reference at ``t_short`` live and checks that it still agrees, so that a change of the problem
or of the reference machinery shows up without integrating the whole span in every run.
Floats are written with ``repr`` (exact round trip).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import scipy

from parareal import problems as P
from parareal.problems import reference as R

#: The problems, and a time early in their span where the live reference costs well under 1 s.
SHORT = {"brusselator-1d": 0.1, "hires": 0.1, "robertson-long": 0.1}
OUT = Path(__file__).resolve().parent.parent / "data" / "references.json"


def record(name: str, t_short: float) -> dict:
    """The reference of problem ``name`` (defaults) at its slice boundaries and at ``t_short``.

    Parameters
    ----------
    name : str
        A registered problem without a closed form or published boundary values.
    t_short : float
        A time inside the span, early enough that its live reference is cheap.

    Returns
    -------
    dict
        ``t`` (the boundaries), ``y`` (the reference there), ``t_short`` and ``y_short``, as
        lists of floats.
    """
    p = P.get(name)
    boundaries = np.linspace(*p.t_span, p.slices + 1)
    # one integration for both (solve_ivp's steps do not depend on t_eval)
    ref = p.reference(np.concatenate([[t_short], boundaries]))
    return {"t": boundaries.tolist(), "y": ref[1:].tolist(), "t_short": t_short,
            "y_short": ref[0].tolist()}


def main() -> None:
    data = {
        "about": (f"Problem.reference (scipy {scipy.__version__}, rtol {R.REFERENCE_RTOL:g}, "
                  f"atol {R.REFERENCE_ATOL:g}) written by tests/scripts/record_references.py"),
        **{name: record(name, t) for name, t in SHORT.items()},
    }
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    R.TIME_LIMIT = 600.0  # recording is a one-off: a loaded machine must not cut it short
    main()
