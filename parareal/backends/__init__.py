"""Backends: where the fine work of the active slices runs."""

from typing import Any

from .base import Backend, Rhs
from .batched import Batched
from .serial import Serial

__all__ = ["BACKENDS", "Backend", "Batched", "Rhs", "Serial", "resolve_backend"]

#: Backends by name.
BACKENDS: dict[str, type[Backend]] = {"serial": Serial, "batched": Batched}


def resolve_backend(value: Any) -> Backend:
    """Accept a :class:`Backend` instance or a registered name."""
    if isinstance(value, Backend):
        return value
    if isinstance(value, str):
        if value not in BACKENDS:
            raise ValueError(f"unknown backend {value!r}; known: {', '.join(sorted(BACKENDS))}")
        return BACKENDS[value]()
    raise TypeError(f"backend must be a name or a Backend instance, got {type(value).__name__}")
