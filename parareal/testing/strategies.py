"""Hypothesis strategies for Parareal: problems with exact solutions, slicings, propagators.

This module needs hypothesis (``pip install 'parareal[test]'``); the rest of
:mod:`parareal.testing` does not.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

try:
    from hypothesis import strategies as st
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "parareal.testing's hypothesis strategies need hypothesis: pip install "
        "'parareal[test]' (the check_* functions work without it)"
    ) from exc

from ..problems import PROBLEMS, Problem, dahlquist, dahlquist_complex, get, problem_name
from ..propagators import RK4, Euler, Heun, Midpoint, Propagator, ScipyIVP, TorchDiffEq
from ..validation import check_int, check_positive, check_span, check_tolerance
from .systems import linear_system

__all__ = ["dahlquist_problems", "linear_systems", "problems", "propagators", "slicings"]

_COARSE = (Euler, Heun, Midpoint, RK4)


def _check_range(low: int, high: int, names: str) -> None:
    if low > high:
        raise ValueError(f"{names}: the minimum must not exceed the maximum, got {low} > {high}")


@st.composite
def _linear(draw: Any, min_dim: int, max_dim: int, t_span: tuple[float, float],
            max_decay: float, max_frequency: float) -> Problem:
    dim = draw(st.integers(min_dim, max_dim))
    eigenvalues: list[complex] = []
    size = 0
    decay = st.floats(0.0, max_decay, allow_nan=False)
    while size < dim:
        oscillates = dim - size >= 2 and max_frequency > 0 and draw(st.booleans())
        re = -draw(decay)
        if oscillates:
            im = draw(st.floats(0.1, max_frequency, allow_nan=False))
            eigenvalues.append(complex(re, im))
            size += 2
        else:
            eigenvalues.append(re)
            size += 1
    y0 = draw(st.lists(st.floats(-2.0, 2.0, allow_nan=False), min_size=dim, max_size=dim))
    seed = draw(st.integers(0, 2**32 - 1))
    return linear_system(eigenvalues, y0=y0, t_span=t_span, seed=seed)


def linear_systems(
    *,
    min_dim: int = 1,
    max_dim: int = 5,
    t_span: Sequence[float] = (0.0, 2.0),
    max_decay: float = 2.0,
    max_frequency: float = 3.0,
) -> st.SearchStrategy[Problem]:
    """Stable random linear ODEs ``y' = A y`` with their exact solution.

    Each example is a :func:`~parareal.testing.systems.linear_system`: ``A = Q B Q^T`` with a
    random rotation ``Q`` and eigenvalues ``-d`` or ``-d +- i w`` (``0 <= d <= max_decay``,
    ``0.1 <= w <= max_frequency``), ``y0`` in ``[-2, 2]``, ``Problem.exact`` in closed form,
    defaults ``coarse=RK4(1)``, ``fine=RK4(10)``, ``slices=4``.

    Parameters
    ----------
    min_dim, max_dim : int
        Range of the state size.
    t_span : (float, float)
        The span of every example.
    max_decay, max_frequency : float
        Ranges of the eigenvalues' real and imaginary parts (``max_frequency = 0``: real
        eigenvalues only).
    """
    low, high = check_int(min_dim, "min_dim"), check_int(max_dim, "max_dim")
    _check_range(low, high, "min_dim, max_dim")
    span = check_span(t_span)
    decay = check_tolerance(max_decay, "max_decay")
    frequency = check_tolerance(max_frequency, "max_frequency")
    return _linear(low, high, span, decay, frequency)


@st.composite
def _dahlquist(draw: Any, kind: str, max_slices: int, max_t_end: float) -> Problem:
    complex_lam = draw(st.booleans()) if kind == "both" else kind == "complex"
    re = -draw(st.floats(0.0, 3.0, allow_nan=False))
    t_end = draw(st.floats(0.5, max_t_end, allow_nan=False))
    slices = draw(st.integers(1, max_slices))
    coarse = draw(st.sampled_from(_COARSE))(1)
    fine = RK4(draw(st.integers(4, 20)))
    if complex_lam:
        lam = complex(re, draw(st.floats(-4.0, 4.0, allow_nan=False)))
        return dahlquist_complex(lam, t_end=t_end, slices=slices, coarse=coarse, fine=fine)
    return dahlquist(re, t_end=t_end, slices=slices, coarse=coarse, fine=fine)


def dahlquist_problems(
    *, kind: str = "both", max_slices: int = 10, max_t_end: float = 4.0
) -> st.SearchStrategy[Problem]:
    """Dahlquist's ``y' = lam * y`` with real or complex ``lam``, ready for the bounds.

    ``Re lam`` in ``[-3, 0]``, ``Im lam`` in ``[-4, 4]`` (complex), ``t_end`` in
    ``[0.5, max_t_end]``, ``1..max_slices`` slices, a one-step coarse propagator (Euler,
    Heun, Midpoint or RK4) and ``RK4(4..20)`` as fine. ``Problem.lam`` holds ``lam``, so
    ``check_convergence_bound(p.lam, p.t_span, p.coarse, p.fine, p.slices)`` checks it.

    Parameters
    ----------
    kind : {"both", "real", "complex"}
        Real ``lam`` (float64 state), complex ``lam`` (complex128 state), or either.
    max_slices : int
        Largest slice count.
    max_t_end : float
        Longest span ``(0, t_end)``.
    """
    if kind not in ("both", "real", "complex"):
        raise ValueError(f"kind must be 'both', 'real' or 'complex', got {kind!r}")
    t_end = check_positive(max_t_end, "max_t_end")
    if t_end < 0.5:
        raise ValueError(f"max_t_end must be >= 0.5, got {t_end}")
    return _dahlquist(kind, check_int(max_slices, "max_slices"), t_end)


def problems(names: Sequence[str] | None = None) -> st.SearchStrategy[Problem]:
    """The bundled problems (:data:`parareal.problems.PROBLEMS`) with their defaults.

    Parameters
    ----------
    names : sequence of str, optional
        Registry names to draw from, in any case (default: all). Some are slow to solve for all
        slices (``lorenz``: 30 slices of ``RK4(100)``); pass a subset for exactness properties.
    """
    chosen = list(PROBLEMS) if names is None else list(names)
    try:
        keys = [problem_name(name) for name in chosen]
    except (TypeError, ValueError):
        keys = []
    if not keys:
        raise ValueError(f"names must be bundled problems ({', '.join(PROBLEMS)}, in any case), "
                         f"got {chosen!r}")
    return st.sampled_from(keys).map(get)


@st.composite
def _slicings(draw: Any, t0: float, t1: float, low: int, high: int, even: bool | None) -> Any:
    n = draw(st.integers(low, high))
    uniform = draw(st.booleans()) if even is None else even
    if uniform or n == 1:
        return np.linspace(t0, t1, n + 1)
    weights = np.array(draw(st.lists(st.floats(0.2, 5.0, allow_nan=False), min_size=n,
                                     max_size=n)))
    inner = t0 + (t1 - t0) * np.cumsum(weights)[:-1] / weights.sum()
    grid = np.concatenate([[t0], inner, [t1]])
    if not np.all(np.diff(grid) > 0):  # pragma: no cover - weights >= 0.2 keep them apart
        return np.linspace(t0, t1, n + 1)
    return grid


def slicings(
    t_span: Sequence[float] = (0.0, 1.0),
    *,
    min_slices: int = 1,
    max_slices: int = 8,
    even: bool | None = None,
) -> st.SearchStrategy[np.ndarray]:
    """Slice boundaries of ``t_span``: equal slices or uneven ones.

    Each example is a float64 array ``T_0 = t0 < ... < T_N = t1`` with ``N`` in
    ``[min_slices, max_slices]``; uneven slices differ in length by at most a factor 25. Pass
    it as ``slices`` to the checks, or as ``boundaries`` (with ``slices=len(b) - 1``) to
    :func:`parareal.solve`. For a span drawn with the problem, use ``flatmap``::

        problems().flatmap(lambda p: st.tuples(st.just(p), slicings(p.t_span)))

    Parameters
    ----------
    t_span : (float, float)
        The span.
    min_slices, max_slices : int
        Range of ``N``.
    even : bool, optional
        Only equal (True) or only uneven (False) slices; default both.
    """
    t0, t1 = check_span(t_span)
    low, high = check_int(min_slices, "min_slices"), check_int(max_slices, "max_slices")
    _check_range(low, high, "min_slices, max_slices")
    if even is not None and not isinstance(even, bool):
        raise TypeError(f"even must be None, True or False, got {even!r}")
    return _slicings(t0, t1, low, high, even)


def _available(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def propagators(*, max_steps: int = 8, adaptive: bool = False) -> st.SearchStrategy[Propagator]:
    """The built-in propagators.

    Fixed-step ``Euler``, ``Midpoint``, ``Heun`` and ``RK4`` (both variants) with
    ``1..max_steps`` steps; with ``adaptive=True`` also ``ScipyIVP`` (every method, when scipy
    is installed) and ``TorchDiffEq`` (``dopri5``, when torchdiffeq is installed)
    at their default tolerances.

    Parameters
    ----------
    max_steps : int
        Largest step count of the fixed-step ones.
    adaptive : bool
        Include the adaptive wrappers (slower, and without a declared order).
    """
    steps = st.integers(1, check_int(max_steps, "max_steps"))
    choices = [
        st.builds(Euler, steps),
        st.builds(Midpoint, steps),
        st.builds(Heun, steps),
        st.builds(RK4, steps, st.sampled_from(RK4.variants)),
    ]
    if not isinstance(adaptive, bool):
        raise TypeError(f"adaptive must be True or False, got {adaptive!r}")
    if adaptive and _available("scipy"):
        choices.append(st.sampled_from(ScipyIVP.methods).map(ScipyIVP))
    if adaptive and _available("torchdiffeq"):
        choices.append(st.just(TorchDiffEq("dopri5")))
    return st.one_of(choices)
