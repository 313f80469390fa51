"""Parallel-in-time ODE solving with the Parareal algorithm.

>>> import numpy as np, parareal
>>> sol = parareal.solve(lambda t, y: -y, np.array([1.0]), (0.0, 1.0),
...                      coarse=parareal.RK4(steps=1), fine=parareal.RK4(steps=10), slices=4)
>>> sol.status
<Status.CONVERGED: 'converged'>
"""

from .backends import BACKENDS, Backend, Batched, Serial
from .checkpoint import load_checkpoint
from .engine import DEFAULT_LOOKAHEAD
from .engine.auto import AutoCoarse
from .errors import (
    CoarseStabilityWarning,
    ConvergenceWarning,
    DivergenceError,
    NoSpeedupWarning,
    OversubscriptionWarning,
    ToleranceWarning,
)
from .odeint_api import odeint
from .propagators import (
    PROPAGATORS,
    RK4,
    SDIRK2,
    BackwardEuler,
    CrankNicolson,
    Euler,
    Heun,
    ImplicitPropagator,
    LinearlyImplicitEuler,
    Midpoint,
    Propagator,
    Rosenbrock2,
    ScipyIVP,
    SteppablePropagator,
    TorchDiffEq,
)
from .result import CoarseCandidate, CoarseChoice, IterationInfo, Solution, Stats, Status
from .solve import solve, solve_serial
from .stopping import FinalChange, FineResidual, Iterate, MaxUpdate, StopRule
from .tolerance import default_tolerance

__version__ = "0.1.0"

__all__ = [
    "BACKENDS",
    "DEFAULT_LOOKAHEAD",
    "PROPAGATORS",
    "RK4",
    "SDIRK2",
    "AutoCoarse",
    "Backend",
    "BackwardEuler",
    "Batched",
    "CoarseCandidate",
    "CoarseChoice",
    "CoarseStabilityWarning",
    "CrankNicolson",
    "ConvergenceWarning",
    "DivergenceError",
    "Euler",
    "FinalChange",
    "FineResidual",
    "Heun",
    "ImplicitPropagator",
    "Iterate",
    "IterationInfo",
    "LinearlyImplicitEuler",
    "MaxUpdate",
    "Midpoint",
    "NoSpeedupWarning",
    "OversubscriptionWarning",
    "Propagator",
    "Rosenbrock2",
    "ScipyIVP",
    "Serial",
    "Solution",
    "Stats",
    "Status",
    "SteppablePropagator",
    "StopRule",
    "ToleranceWarning",
    "TorchDiffEq",
    "__version__",
    "default_tolerance",
    "load_checkpoint",
    "odeint",
    "solve",
    "solve_serial",
]
