"""Test problems with known answers: Dahlquist, Brusselator, Lorenz, Van der Pol, Arenstorf, heat,
and the classic test sets (Hairer-Wanner, the Bari "Test Set for IVP Solvers", DETEST): HIRES,
Robertson, stiff Van der Pol (VDPOL), Pleiades, Kepler and the 1-D Brusselator (BRUSS).

Each factory returns a :class:`Problem` holding a vectorised numpy right-hand side, the initial
state, the span, default coarse and fine propagators and slice count, and a reference solution
(the closed form, a published final value, or a bounded high-accuracy scipy integration); the
test-set problems also carry their exact Jacobian (:attr:`Problem.jacobian`), which their
default implicit fine propagators use:

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
from .brusselator1d import brusselator_1d
from .dahlquist import dahlquist, dahlquist_complex
from .heat import heat, heat_eigenvalue
from .hires import hires
from .kepler import kepler, kepler_solution
from .lorenz import lorenz
from .pleiades import pleiades
from .reference import ReferenceUnavailable
from .registry import CORE, PROBLEMS, TEST_SET, get, parameters, problem_name
from .robertson import robertson, robertson_long
from .vanderpol import van_der_pol, van_der_pol_stiff

__all__ = [
    "ARENSTORF_PERIOD",
    "CORE",
    "PROBLEMS",
    "Problem",
    "ReferenceUnavailable",
    "TEST_SET",
    "arenstorf",
    "brusselator",
    "brusselator_1d",
    "dahlquist",
    "dahlquist_complex",
    "get",
    "heat",
    "heat_eigenvalue",
    "hires",
    "kepler",
    "kepler_solution",
    "lorenz",
    "parameters",
    "pleiades",
    "problem_name",
    "robertson",
    "robertson_long",
    "van_der_pol",
    "van_der_pol_stiff",
]
