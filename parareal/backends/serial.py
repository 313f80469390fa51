"""The serial backend: the reference, one evaluation of ``f`` at a time."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from ..propagators import Request
from .base import Backend, Rhs

__all__ = ["Serial"]


class Serial(Backend):
    """The reference: every propagation runs to completion when it starts, one call of ``f``
    per evaluation (``vectorized`` functions get batches of one)."""

    name: ClassVar[str] = "serial"

    def evaluate(self, rhs: Rhs, requests: Sequence[Request]) -> list[Any]:
        return rhs.each(requests)
