"""The methods by name, and what is derived from their classes: :data:`METHODS`,
:data:`METHOD_OPTIONS` (each class's constructor is its option table, as torchdiffeq's
``SOLVERS``), :data:`DEFAULT_TOL` and :func:`check_method_options`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import Method
from .picard import Picard
from .picard_exact import ExactPicard
from .serial import Serial
from .srds import SRDS

__all__ = ["AUTO", "DEFAULT_TOL", "METHODS", "METHOD_OPTIONS", "REGISTRY",
           "check_method_options"]

#: The methods by name, in the order they are listed and predicted.
REGISTRY: Mapping[str, type[Method]] = {
    "serial": Serial, "srds": SRDS, "picard": Picard, "picard-exact": ExactPicard}
#: The method that runs whichever of :data:`REGISTRY` is predicted fastest (:mod:`..auto`).
AUTO = "auto"
#: ``auto``'s own options: choose among the :attr:`~.base.Method.exact` methods only.
AUTO_OPTIONS = ("exact",)
METHODS: tuple[str, ...] = (*REGISTRY, AUTO)


def _method_options() -> dict[str, tuple[str, ...]]:
    table: dict[str, list[str]] = {}
    for name, cls in REGISTRY.items():
        for option in cls.options():
            table.setdefault(option, []).append(name)
    for option in AUTO_OPTIONS:
        table.setdefault(option, []).append(AUTO)
    return {option: tuple(names) for option, names in table.items()}


#: The methods each method-specific option of :func:`~..sampler.sample` applies to (the
#: keyword-only arguments of each method's class, and ``auto``'s ``exact``); passing it (not
#: ``None``) with another method is a ``ValueError``.
METHOD_OPTIONS: Mapping[str, tuple[str, ...]] = _method_options()
#: Default tolerances by (method, tol_mode). SRDS and exact Picard in data units: 1/255, half an
#: 8-bit level of an image in [-1, 1] (the error at the stop is typically far smaller than the
#: last change).
DEFAULT_TOL: Mapping[tuple[str, str], float] = {
    (name, mode): tol for name, cls in REGISTRY.items() for mode, tol in cls.default_tol.items()
}


def check_method_options(method: str, options: Mapping[str, Any]) -> None:
    """Refuse options that do not apply to ``method`` (see :data:`METHOD_OPTIONS`).

    Parameters
    ----------
    method : {"serial", "srds", "picard", "picard-exact", "auto"}
    options : mapping
        Option names of :func:`~..sampler.sample` to their values; ``None`` means not passed.

    Raises
    ------
    ValueError
        For an unknown method, or the first option passed that ``method`` does not use,
        naming the methods it applies to.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    for name, value in options.items():
        methods = METHOD_OPTIONS[name]
        if value is not None and method not in methods:
            names = [repr(m) for m in methods]
            where = (f"method {names[0]} only" if len(names) == 1
                     else "methods " + ", ".join(names[:-1]) + " and " + names[-1])
            raise ValueError(f"{name} applies to {where}, not to method {method!r}")
