"""Test problems with known answers: Dahlquist, Brusselator, Lorenz, Van der Pol, Arenstorf, heat.

Each factory returns a :class:`Problem` holding a vectorised numpy right-hand side, the initial
state, the span, default coarse and fine propagators and slice count, and a reference solution:

>>> import parareal
>>> from parareal import problems
>>> p = problems.get("brusselator")
>>> sol = parareal.solve(p.f, p.y0, p.t_span, coarse=p.coarse, fine=p.fine, slices=p.slices,
...                      backend="batched", vectorized=True)
>>> bool(abs(sol.y_final - p.reference_final()).max() < 1e-6)
True
"""

from .arenstorf import ARENSTORF_PERIOD, arenstorf
from .base import Problem
from .brusselator import brusselator
from .dahlquist import dahlquist, dahlquist_complex
from .heat import heat, heat_eigenvalue
from .lorenz import lorenz
from .reference import ReferenceUnavailable
from .registry import PROBLEMS, get, parameters
from .vanderpol import van_der_pol

__all__ = [
    "ARENSTORF_PERIOD",
    "PROBLEMS",
    "Problem",
    "ReferenceUnavailable",
    "arenstorf",
    "brusselator",
    "dahlquist",
    "dahlquist_complex",
    "get",
    "heat",
    "heat_eigenvalue",
    "lorenz",
    "parameters",
    "van_der_pol",
]
