"""Propagators: maps of a state across one time slice."""

from .base import Propagator, Request, SteppablePropagator, Stepper, drive
from .external import ScipyIVP, TorchDiffEq
from .fixed import RK4, Euler, Heun, Midpoint
from .implicit import (
    SDIRK2,
    BackwardEuler,
    CrankNicolson,
    ImplicitPropagator,
    LinearlyImplicitEuler,
    Rosenbrock2,
)
from .jacobian import JacobianRequest, JacobianSource
from .registry import PROPAGATORS, from_spec, resolve, spec_steps

__all__ = [
    "PROPAGATORS",
    "RK4",
    "SDIRK2",
    "BackwardEuler",
    "CrankNicolson",
    "Euler",
    "Heun",
    "ImplicitPropagator",
    "JacobianRequest",
    "JacobianSource",
    "LinearlyImplicitEuler",
    "Midpoint",
    "Propagator",
    "Request",
    "Rosenbrock2",
    "ScipyIVP",
    "SteppablePropagator",
    "Stepper",
    "TorchDiffEq",
    "drive",
    "from_spec",
    "resolve",
    "spec_steps",
]
