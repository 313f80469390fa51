"""The serial backend: the reference, one evaluation of ``f`` at a time."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from ..propagators import Request
from .base import Backend, Rhs

__all__ = ["Serial"]


class Serial(Backend):
    """Evaluate every request with its own call of ``f``, in order."""

    name: ClassVar[str] = "serial"

    def evaluate(self, rhs: Rhs, requests: Sequence[Request]) -> list[Any]:
        return rhs.each(requests)
