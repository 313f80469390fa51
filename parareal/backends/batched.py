"""The batched backend: all requests of a tick stacked into one call of ``f``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

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

    Parameters
    ----------
    max_batch : int, optional
        The most states stacked into one call of ``f`` (a vectorised ``f``): a tick with more
        is split, in order, into calls of at most ``max_batch`` states (as equal in size as
        possible), so that what ``f`` allocates per call (a model's activations) is bounded
        whatever the number of slices. Results are bitwise those of one call for an ``f``
        that treats each state alone (elementwise numpy code; BLAS- and cuDNN-backed models
        may differ in the last bits with the batch size); the critical path is the same, and
        ``f_calls`` counts every call. ``None`` (default): no bound. Like the diffusion
        ``sample(max_batch=)``, it bounds one call, not the states a run keeps.
    """

    name: ClassVar[str] = "batched"
    groups: ClassVar[bool] = True
    interleaves: ClassVar[bool] = True
    #: The most states in one call of ``f`` (``None``: no bound); a class default, so that a
    #: subclass whose ``__init__`` does not call this one keeps the unbounded behaviour.
    max_batch: int | None = None

    def __init__(self, max_batch: int | None = None) -> None:
        if max_batch is not None and (isinstance(max_batch, bool) or not isinstance(
                max_batch, (int, np.integer))):
            raise TypeError(f"max_batch must be a positive int or None, got "
                            f"{type(max_batch).__name__} {max_batch!r}")
        if max_batch is not None and max_batch < 1:
            raise ValueError(f"max_batch must be a positive int or None, got {max_batch!r}")
        self.max_batch = None if max_batch is None else int(max_batch)

    def evaluate(self, rhs: Rhs, requests: Sequence[Request]) -> list[Any]:
        return rhs.batch(requests, self.max_batch)

    def __repr__(self) -> str:
        return "Batched()" if self.max_batch is None else f"Batched(max_batch={self.max_batch})"
