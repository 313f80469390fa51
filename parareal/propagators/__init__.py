"""Propagators: maps of a state across one time slice."""

from .base import Propagator, Request, SteppablePropagator, Stepper, drive
from .external import ScipyIVP, TorchDiffEq
from .fixed import RK4, Euler, Heun, Midpoint
from .registry import PROPAGATORS, from_spec, resolve, spec_steps

__all__ = [
    "PROPAGATORS",
    "RK4",
    "Euler",
    "Heun",
    "Midpoint",
    "Propagator",
    "Request",
    "ScipyIVP",
    "SteppablePropagator",
    "Stepper",
    "TorchDiffEq",
    "drive",
    "from_spec",
    "resolve",
    "spec_steps",
]
