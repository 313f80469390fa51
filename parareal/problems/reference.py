"""Numerical reference solutions: bounded scipy integration, stiff-aware, or a clear refusal.

:meth:`Problem.reference <parareal.problems.Problem.reference>` uses the closed form where a
problem has one and :func:`integrate` otherwise. The integration is bounded, so that asking for
a reference never hangs:

* a problem marked ``stiff`` (its factory decides from its parameters, e.g. Van der Pol with
  ``mu >= 100``) is integrated with the implicit ``Radau`` method, with the problem's analytic
  Jacobian when it has one;
* any other problem is integrated with ``DOP853``; if that fails or uses up its budget of
  :data:`NONSTIFF_MAX_EVALS` evaluations of ``f`` (the mark of a stiff problem, e.g. one made
  stiff by a parameter), ``Radau`` is tried next;
* ``Radau`` gets :data:`STIFF_MAX_EVALS` evaluations (finite-difference Jacobian columns
  included), and the whole computation :data:`TIME_LIMIT` seconds.

Both methods run at ``rtol = atol = 1e-13``. When no method succeeds within these bounds, or
scipy is not installed, or the solution is not finite, :class:`ReferenceUnavailable` says why.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..validation import check_int, check_positive

__all__ = [
    "NONSTIFF_MAX_EVALS",
    "REFERENCE_ATOL",
    "REFERENCE_RTOL",
    "STIFF_MAX_EVALS",
    "TIME_LIMIT",
    "ReferenceUnavailable",
    "integrate",
]

#: Tolerances of the numerical reference solution (both methods).
REFERENCE_RTOL = 1e-13
REFERENCE_ATOL = 1e-13
#: Evaluations of ``f`` allowed to ``DOP853`` (about 1.5 s for the bundled right-hand sides).
NONSTIFF_MAX_EVALS = 200_000
#: Evaluations of ``f`` allowed to ``Radau`` (about 10 s for the bundled right-hand sides).
STIFF_MAX_EVALS = 500_000
#: Seconds allowed to the whole reference computation (a guard against an expensive ``f``).
TIME_LIMIT = 30.0


class ReferenceUnavailable(RuntimeError):
    """No reference solution can be given; the message says why.

    Raised by :meth:`Problem.reference <parareal.problems.Problem.reference>` and
    :func:`integrate` when scipy is not installed (``pip install 'parareal[scipy]'``), when
    the bounded integration runs out of evaluations or time, fails, or ends in NaN or inf.
    """


class _OutOfBudget(Exception):
    """Raised from inside ``solve_ivp`` to stop an integration that used up its budget."""

    def __init__(self, message: str, *, timed_out: bool) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class _Counted:
    """A right-hand side (or Jacobian) that counts its calls against a budget and a deadline."""

    def __init__(
        self, func: Callable[..., Any], max_evals: int, deadline: float, what: str = "f"
    ) -> None:
        self.func = func
        self.what = what
        self.max_evals = max_evals
        self.deadline = deadline
        self.evals = 0
        self.t = -np.inf

    def __call__(self, t: float, y: np.ndarray) -> Any:
        self.evals += 1
        if self.evals > self.max_evals:
            raise _OutOfBudget(
                f"used its budget of {self.max_evals} evaluations of {self.what}",
                timed_out=False,
            )
        if time.monotonic() > self.deadline:
            raise _OutOfBudget("ran out of time", timed_out=True)
        self.t = max(self.t, t)
        return self.func(t, y)


def integrate(
    f: Callable[[Any, Any], Any],
    y0: np.ndarray,
    t0: float,
    times: np.ndarray,
    *,
    stiff: bool = False,
    jac: Callable[[Any, Any], Any] | None = None,
    max_evals: int | None = None,
    time_limit: float | None = None,
) -> np.ndarray:
    """``y(times)`` for ``y' = f(t, y)``, ``y(t0) = y0``, by a bounded scipy integration.

    Parameters
    ----------
    f : callable
        Right-hand side ``f(t, y)`` on states of ``y0``'s shape.
    y0 : numpy.ndarray
        Initial state.
    t0 : float
        Initial time.
    times : 1-D numpy.ndarray
        Times ``>= t0``, in any order, repeats allowed.
    stiff : bool
        Integrate with ``Radau`` right away (else ``DOP853``, then ``Radau`` if that fails or
        runs out of evaluations).
    jac : callable, optional
        Jacobian ``jac(t, y) -> (n, n)`` of the flattened system, for ``Radau``.
    max_evals : int, optional
        Evaluations of ``f`` allowed to each method tried (default :data:`NONSTIFF_MAX_EVALS`
        for ``DOP853``, :data:`STIFF_MAX_EVALS` for ``Radau``).
    time_limit : float, optional
        Seconds allowed in all (default :data:`TIME_LIMIT`).

    Returns
    -------
    numpy.ndarray
        A fresh array of shape ``(len(times), *y0.shape)``, ``y0``'s dtype. Successful results
        are cached per ``(f, y0, t0, times, stiff, jac)`` when ``f`` (and ``jac``) are hashable
        (the problem right-hand sides are frozen dataclasses, equal by value).

    Raises
    ------
    ReferenceUnavailable
        If scipy is missing, or no method succeeds within the bounds, or the result is not
        finite.
    """
    y0 = np.asarray(y0)
    if max_evals is None:
        budgets = (NONSTIFF_MAX_EVALS, STIFF_MAX_EVALS)
    else:
        budgets = (check_int(max_evals, "max_evals"),) * 2
    limit = TIME_LIMIT if time_limit is None else check_positive(time_limit, "time_limit")
    key = (f, y0.dtype.str, y0.shape, y0.tobytes(), float(t0), tuple(times.tolist()),
           bool(stiff), jac, budgets, limit)
    try:
        hash(key)
    except TypeError:
        return _integrate(*key).copy()
    return _integrate_cached(*key).copy()


def _integrate(
    f: Callable[[Any, Any], Any],
    dtype: str,
    shape: tuple[int, ...],
    raw: bytes,
    t0: float,
    times: tuple[float, ...],
    stiff: bool,
    jac: Callable[[Any, Any], Any] | None,
    budgets: tuple[int, int],
    time_limit: float,
) -> np.ndarray:
    try:
        from scipy.integrate import solve_ivp
    except ImportError:
        raise ReferenceUnavailable(
            "the reference solution of this problem needs scipy: pip install 'parareal[scipy]'"
        ) from None
    y0 = np.frombuffer(raw, dtype=dtype).reshape(shape)
    t = np.asarray(times, dtype=np.float64)
    out = np.empty((t.size, *shape), dtype=dtype)
    if t.size == 0:
        return out
    grid = np.unique(t)
    t1 = float(grid[-1])
    if t1 == t0:
        out[...] = y0
        return out

    def rhs(s: float, flat: np.ndarray) -> np.ndarray:
        return np.ravel(f(s, flat.reshape(shape)))

    deadline = time.monotonic() + time_limit
    attempts = [("Radau", budgets[1])] if stiff else [("DOP853", budgets[0]),
                                                       ("Radau", budgets[1])]
    failures = []
    for method, budget in attempts:
        counted = _Counted(rhs, budget, deadline)
        options: dict[str, Any] = {}
        if method == "Radau" and jac is not None:
            options["jac"] = _Counted(jac, budget, deadline, "the Jacobian")
        try:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                sol = solve_ivp(counted, (t0, t1), y0.ravel(), method=method, t_eval=grid,
                                rtol=REFERENCE_RTOL, atol=REFERENCE_ATOL, **options)
        except _OutOfBudget as exc:
            limit = f", limit {time_limit:g} s" if exc.timed_out else ""
            failures.append(f"{method} {exc} (reached t = {counted.t:.6g} of {t1:g}{limit})")
            if exc.timed_out:
                break
            continue
        except (ValueError, ArithmeticError) as exc:  # e.g. a singular or non-finite Jacobian
            failures.append(f"{method} failed at t = {counted.t:.6g}: {exc}")
            continue
        if not sol.success:
            failures.append(f"{method} failed: {sol.message}")
            continue
        values = sol.y.T.reshape((grid.size, *shape))
        if not np.all(np.isfinite(values)):
            raise ReferenceUnavailable(
                f"the reference solution is not finite ({method} reached NaN or inf)"
            )
        out[...] = values[np.searchsorted(grid, t)]
        out.setflags(write=False)
        return out
    raise ReferenceUnavailable("no reference solution: " + "; ".join(failures))


_integrate_cached = functools.lru_cache(maxsize=64)(_integrate)
