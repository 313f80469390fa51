"""Names for propagators, as sugar for the CLI and for string arguments.

A spec is ``NAME`` or ``NAME:STEPS`` for fixed-step methods (``"rk4:20"``), and
``scipy:METHOD`` or ``torchdiffeq:METHOD`` for the adaptive wrappers (``"scipy:Radau"``).
"""

from __future__ import annotations

from typing import Any

from ..validation import short_repr
from .base import Propagator
from .external import ScipyIVP, TorchDiffEq
from .fixed import RK4, Euler, Heun, Midpoint
from .implicit import SDIRK2, BackwardEuler, CrankNicolson, LinearlyImplicitEuler, Rosenbrock2

__all__ = ["PROPAGATORS", "from_spec", "resolve", "spec_steps"]

#: Fixed-step propagators by name.
PROPAGATORS: dict[str, type[Propagator]] = {
    "euler": Euler,
    "midpoint": Midpoint,
    "heun": Heun,
    "rk4": RK4,
    "be": BackwardEuler,
    "cn": CrankNicolson,
    "sdirk2": SDIRK2,
    "ros2": Rosenbrock2,
    "lie": LinearlyImplicitEuler,
}
_EXTERNAL = {"scipy": ScipyIVP, "torchdiffeq": TorchDiffEq}


def from_spec(spec: str) -> Propagator:
    """Build a propagator from a spec such as ``"RK4:20"`` or ``"scipy:Radau"``."""
    if not isinstance(spec, str):
        raise TypeError(f"a propagator spec must be a str, got {type(spec).__name__}")
    name, _, arg = spec.strip().partition(":")
    key = name.lower()
    known = sorted(PROPAGATORS) + [f"{k}:METHOD" for k in _EXTERNAL]
    if key in _EXTERNAL:
        if not arg:
            raise ValueError(f"propagator spec {short_repr(spec)} needs a method, "
                             "e.g. 'scipy:Radau'")
        return _EXTERNAL[key](method=arg)
    if key not in PROPAGATORS:
        raise ValueError(f"unknown propagator {short_repr(name)}; known: {', '.join(known)}")
    steps = spec_steps(spec)
    if steps <= 0:
        raise ValueError(f"propagator spec {short_repr(spec)}: steps must be >= 1, got {steps} "
                         f"(e.g. '{key}:20')")
    return PROPAGATORS[key](steps=steps)


def spec_steps(spec: str) -> int:
    """The step count of a fixed-step spec ``"NAME"`` or ``"NAME:STEPS"`` (1 without one)."""
    arg = spec.strip().partition(":")[2]
    if not arg:
        return 1
    try:
        return int(arg)
    except ValueError:
        raise ValueError(f"propagator spec {short_repr(spec)}: steps must be an integer >= 1, "
                         f"e.g. '{spec.partition(':')[0]}:20'") from None


def resolve(value: Any, *, name: str) -> Propagator:
    """Accept a :class:`Propagator` instance or a spec string; anything else is a TypeError."""
    if isinstance(value, Propagator):
        return value
    if isinstance(value, str):
        try:
            return from_spec(value)
        except ValueError as exc:  # say which argument held the spec
            raise ValueError(f"{name}: {exc}") from None
    raise TypeError(
        f"{name} must be a Propagator (e.g. parareal.RK4(steps=10)) or a spec string such as "
        f"'rk4:10', got {type(value).__name__}"
    )
