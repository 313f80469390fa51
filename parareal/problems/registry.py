"""The registry of test problems by name."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from ..validation import short_repr
from .arenstorf import arenstorf
from .base import Problem
from .brusselator import brusselator
from .brusselator1d import brusselator_1d
from .dahlquist import dahlquist, dahlquist_complex
from .heat import heat
from .hires import hires
from .kepler import kepler
from .lorenz import lorenz
from .pleiades import pleiades
from .robertson import robertson, robertson_long
from .vanderpol import van_der_pol, van_der_pol_stiff

__all__ = ["CORE", "PROBLEMS", "TEST_SET", "get", "parameters", "problem_name"]

#: Problem factories by registry name; each accepts keyword overrides of its parameters.
PROBLEMS: dict[str, Callable[..., Problem]] = {
    "dahlquist": dahlquist,
    "dahlquist-complex": dahlquist_complex,
    "brusselator": brusselator,
    "lorenz": lorenz,
    "vanderpol": van_der_pol,
    "arenstorf": arenstorf,
    "heat": heat,
    # the classic test sets (Hairer-Wanner, Bari "Test Set for IVP Solvers", DETEST)
    "hires": hires,
    "robertson": robertson,
    "robertson-long": robertson_long,
    "vanderpol-stiff": van_der_pol_stiff,
    "pleiades": pleiades,
    "kepler": kepler,
    "brusselator-1d": brusselator_1d,
}

#: The classic test-set problems (Bari test set, Hairer-Wanner, DETEST): stiff or orbital,
#: with costly references. ``benchmarks/testset.py`` runs them; the backend checks'
#: default problem lists (:func:`parareal.testing.default_problems`) leave them out.
TEST_SET: tuple[str, ...] = ("hires", "robertson", "robertson-long", "vanderpol-stiff",
                             "pleiades", "arenstorf", "kepler", "brusselator-1d")
#: The small, fast problems (every registered one not in :data:`TEST_SET`).
CORE: tuple[str, ...] = tuple(name for name in PROBLEMS if name not in TEST_SET)


def problem_name(name: Any) -> str:
    """The :data:`PROBLEMS` key of the problem ``name``: case and surrounding blanks are
    ignored, as in propagator specs (``"Robertson"`` and ``" HEAT"`` name ``"robertson"`` and
    ``"heat"``).

    Raises
    ------
    TypeError
        If ``name`` is not a str.
    ValueError
        If it names no registered problem (the message lists the known names).
    """
    if not isinstance(name, str):
        raise TypeError(f"problem name must be a str, got {type(name).__name__}")
    key = name.strip().lower()
    if key not in PROBLEMS:
        raise ValueError(f"unknown problem {short_repr(name)}; known: {', '.join(PROBLEMS)}")
    return key


def _factory(name: Any) -> Callable[..., Problem]:
    return PROBLEMS[problem_name(name)]


def parameters(name: str) -> dict[str, Any]:
    """The parameters of the registered problem ``name`` (in any case) and their defaults,
    in order.

    Read from the factory's signature, e.g. ``parameters("vanderpol")`` is
    ``{"mu": 1.0, "y0": (2.0, 0.0), "t_end": 10.0, "slices": 20, "coarse": None,
    "fine": None}`` (``None``: the problem computes the default).

    Raises
    ------
    ValueError
        If ``name`` is unknown.
    """
    signature = inspect.signature(_factory(name))
    return {p.name: p.default for p in signature.parameters.values()}


def get(name: str, **params: Any) -> Problem:
    """Build the registered problem ``name`` with keyword overrides ``params``.

    Parameters
    ----------
    name : str
        A key of :data:`PROBLEMS`, in any case (see :func:`problem_name`): ``"dahlquist"``,
        ``"dahlquist-complex"``, ``"brusselator"``, ``"lorenz"``, ``"vanderpol"``,
        ``"arenstorf"``, ``"heat"``, and the classic test sets ``"hires"``, ``"robertson"``,
        ``"robertson-long"``, ``"vanderpol-stiff"``, ``"pleiades"``, ``"kepler"``,
        ``"brusselator-1d"``.
    **params
        Passed to the factory, e.g. ``t_end``, ``slices``, ``coarse``, ``fine`` (all
        factories), ``lam`` (Dahlquist), ``mu`` (Van der Pol), ``points`` (heat, 1-D
        Brusselator), ``k`` (Robertson), ``e`` (Kepler).

    Returns
    -------
    Problem

    Raises
    ------
    ValueError
        If ``name`` is unknown (the message lists the known names), or a parameter value is
        invalid.
    TypeError
        If a parameter is unknown to the factory (the message lists the valid ones, see
        :func:`parameters`) or has the wrong type.
    """
    name = problem_name(name)
    factory = PROBLEMS[name]
    valid = parameters(name)
    unknown = [key for key in params if key not in valid]
    if unknown:
        listed = ", ".join(repr(key) for key in unknown)
        plural = "s" if len(unknown) > 1 else ""
        raise TypeError(
            f"unknown parameter{plural} {listed} for problem {name!r}; valid: {', '.join(valid)}"
        )
    return factory(**params)
