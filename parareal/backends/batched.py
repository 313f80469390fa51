"""The batched backend: all requests of a tick stacked into one call of ``f``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from ..propagators import Request
from .base import Backend, Rhs

__all__ = ["Batched"]


class Batched(Backend):
    """Stack the states of every in-flight request and call ``f`` once per tick.

    With ``vectorized=True`` (see :func:`parareal.solve`) ``f`` receives a time vector of
    shape ``(B,)`` and states of shape ``(B, *y0.shape)``. A non-vectorised ``f`` still works:
    it is then called once per request, which gives the same numbers without the speed-up.
    Propagations of a groupable propagator (the built-in fixed-step methods) that start in
    the same tick also share their state arithmetic: they run as one coroutine over stacked
    states. This is the SRDS trick for GPUs and a real speed-up on CPUs for small systems.
    """

    name: ClassVar[str] = "batched"
    groups: ClassVar[bool] = True
    interleaves: ClassVar[bool] = True

    def evaluate(self, rhs: Rhs, requests: Sequence[Request]) -> list[Any]:
        return rhs.batch(requests)
