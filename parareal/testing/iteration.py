"""Checks of the Parareal iteration itself: exactness, fixed point, Gander-Vandewalle bounds."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backends import Rhs, using_backend
from ..propagators import Propagator, resolve
from ..result import IterationInfo, Solution, Status
from ..solve import solve
from ..state import ops_for
from ..theory import DahlquistBounds, dahlquist_bounds
from ..validation import check_boundaries, check_int, check_span, check_tolerance, check_y0
from .report import fail, max_abs_diff, same_bits

__all__ = [
    "BoundReport",
    "check_convergence_bound",
    "check_exactness",
    "check_fixed_point",
    "serial_fine",
]


def _grid(t_span: Sequence[float], slices: int | Sequence[float]) -> np.ndarray:
    """Boundaries from an int (equal slices) or a sequence (checked as ``solve`` checks it)."""
    t0, t1 = check_span(t_span)
    if isinstance(slices, numbers.Integral) and not isinstance(slices, bool):
        return check_boundaries(None, t0, t1, check_int(slices, "slices"))
    if isinstance(slices, (str, bytes, bool)) or not hasattr(slices, "__len__"):
        raise TypeError(f"slices must be an int or a sequence of boundaries, got {slices!r}")
    return check_boundaries(slices, t0, t1, len(slices) - 1)


def serial_fine(f: Callable[[Any, Any], Any], y0: Any, boundaries: Sequence[float],
                fine: Propagator | str, *, vectorized: bool = False) -> Any:
    """The serial fine solution on ``boundaries``: ``fine`` applied slice after slice.

    Each propagation runs as the serial backend runs it (``f`` called in its convention:
    batches of one when ``vectorized``). Returns the ``len(boundaries)`` values stacked, in
    ``y0``'s kind: what Parareal reproduces bit for bit after as many iterations as slices.
    """
    y0, ops = check_y0(y0)
    prop = resolve(fine, name="fine")
    if not isinstance(vectorized, bool):
        raise TypeError(f"vectorized must be True or False, got {vectorized!r}")
    rhs = Rhs(f, ops, vectorized)
    grid = np.asarray(boundaries, dtype=np.float64)
    values = [y0]
    for a, b in zip(grid[:-1], grid[1:], strict=True):
        values.append(rhs.propagate(prop, values[-1], float(a), float(b)))
    return ops.stack(values)


def _label(backend: Any) -> str:
    return backend if isinstance(backend, str) else repr(backend)


def _run(f: Callable[[Any, Any], Any], y0: Any, grid: np.ndarray,
         callback: Callable[[IterationInfo], Any] | None, **kwargs: Any) -> tuple[Solution, bool]:
    """``solve`` on ``grid``, and whether this process drove it (False on the ranks of an
    SPMD backend that only serve, where callbacks are not called). A name as backend is
    made here and closed after the run."""
    with using_backend(kwargs.pop("backend")) as engine:
        sol = solve(f, y0, (grid[0], grid[-1]), slices=len(grid) - 1, boundaries=grid,
                    backend=engine, callback=callback, **kwargs)
        return sol, engine.drives()


def check_exactness(
    f: Callable[[Any, Any], Any],
    y0: Any,
    t_span: Sequence[float],
    coarse: Propagator | str,
    fine: Propagator | str,
    slices: int | Sequence[float],
    *,
    backend: Any = "serial",
    schedule: str = "synchronous",
    vectorized: bool = False,
    atol: float = 0.0,
) -> Solution:
    """Check that after ``k`` iterations the first ``k`` boundaries equal the serial fine
    solution, bit for bit.

    Runs :func:`parareal.solve` with ``tol = 0`` for as many iterations as slices and, after
    every iterate ``k`` (0 included), compares boundaries ``0..k`` with :func:`serial_fine`.
    At the end the run must have status ``CONVERGED`` after exactly ``slices`` iterations,
    with every boundary equal to the serial fine solution.

    Parameters
    ----------
    f, y0, t_span, coarse, fine :
        As :func:`parareal.solve` takes them.
    slices : int or sequence of float
        The number of equal slices, or the boundaries themselves (uneven slices,
        :func:`~parareal.testing.strategies.slicings`).
    backend, schedule, vectorized :
        As :func:`parareal.solve` takes them. A backend given by name is made for the check
        and closed after it.
    atol : float
        Allowed max abs difference; the default 0 means bit for bit. Exactness holds bit for
        bit on every built-in backend; a backend whose batched ``f`` rounds differently from
        single calls may need a small ``atol``.

    Returns
    -------
    Solution
        The run.

    Raises
    ------
    AssertionError
        ``check_exactness: boundary n after iteration k differs from the serial fine solution
        by x (max abs); ...``, or a wrong status or iteration count.
    """
    grid = _grid(t_span, slices)
    atol = check_tolerance(atol, "atol")
    y0, _ = check_y0(y0)
    reference = serial_fine(f, y0, grid, fine, vectorized=vectorized)
    found: list[str] = []
    seen: list[int] = []

    def compare(info: IterationInfo) -> None:
        seen.append(info.iteration)
        k = info.iteration
        for n in range(k + 1):
            if not _close(info.y[n], reference[n], atol) and not found:
                found.append(f"boundary {n} after iteration {k} differs from the serial fine "
                             f"solution by {max_abs_diff(info.y[n], reference[n]):.3g} (max abs)")

    sol, drove = _run(f, y0, grid, compare, coarse=coarse, fine=fine, tol=0.0,
               max_iters=len(grid) - 1, backend=backend, schedule=schedule,
               vectorized=vectorized)
    inputs = dict(slices=_slices_text(grid), schedule=schedule, backend=_label(backend),
                  coarse=coarse, fine=fine, y0=_state_text(y0))
    if found:
        fail("check_exactness", "exactness", found[0], **inputs)
    if drove and seen != list(range(len(grid))):
        fail("check_exactness", "exactness", f"the callback saw iterates {seen}, expected "
             f"0..{len(grid) - 1}", **inputs)
    if sol.status is not Status.CONVERGED or sol.iterations != len(grid) - 1:
        fail("check_exactness", "exactness", f"status {sol.status.value} after "
             f"{sol.iterations} iterations, expected converged after {len(grid) - 1}", **inputs)
    for n in range(len(grid)):
        if not _close(sol.y[n], reference[n], atol):
            fail("check_exactness", "exactness", f"boundary {n} of the result differs from "
                 f"the serial fine solution by {max_abs_diff(sol.y[n], reference[n]):.3g} "
                 "(max abs)", **inputs)
    return sol


def check_fixed_point(
    f: Callable[[Any, Any], Any],
    y0: Any,
    t_span: Sequence[float],
    coarse: Propagator | str,
    fine: Propagator | str,
    slices: int | Sequence[float],
    *,
    iterations: int = 3,
    backend: Any = "serial",
    schedule: str = "synchronous",
    vectorized: bool = False,
) -> Solution:
    """Check that the serial fine solution is a fixed point of the iteration.

    Seeds :func:`parareal.solve` with the serial fine solution as iterate 0 (``initial``)
    and runs ``iterations`` iterations with ``tol = 0``: every residual must be exactly 0 and
    the result must equal the seed bit for bit (status ``MAX_ITERS`` after ``iterations``
    iterations, or ``CONVERGED`` when ``iterations >= slices``).

    Parameters
    ----------
    f, y0, t_span, coarse, fine, slices, backend, schedule, vectorized :
        As :func:`check_exactness` takes them.
    iterations : int
        Iterations to run (capped at the number of slices).

    Returns
    -------
    Solution
        The run.

    Raises
    ------
    AssertionError
        ``check_fixed_point: residual of iteration k is x, not 0; ...``, or the result
        moved away from the seed.
    """
    grid = _grid(t_span, slices)
    iterations = min(check_int(iterations, "iterations"), len(grid) - 1)
    y0, _ = check_y0(y0)
    seed = serial_fine(f, y0, grid, fine, vectorized=vectorized)
    sol, _ = _run(f, y0, grid, None, coarse=coarse, fine=fine, tol=0.0,
               max_iters=iterations, backend=backend, schedule=schedule,
               vectorized=vectorized, initial=seed)
    inputs = dict(slices=_slices_text(grid), schedule=schedule, backend=_label(backend),
                  coarse=coarse, fine=fine, y0=_state_text(y0))
    for k, residual in enumerate(sol.residuals, start=1):
        if residual != 0.0:
            fail("check_fixed_point", "fixed point", f"residual of iteration {k} is "
                 f"{residual:.3g}, not 0, from the serial fine solution as iterate 0", **inputs)
    if sol.iterations != iterations:
        fail("check_fixed_point", "fixed point", f"{sol.iterations} iterations ran, expected "
             f"{iterations} (status {sol.status.value})", **inputs)
    for n in range(len(grid)):
        if not same_bits(sol.y[n], seed[n]):
            fail("check_fixed_point", "fixed point", f"boundary {n} moved from the serial "
                 f"fine solution by {max_abs_diff(sol.y[n], seed[n]):.3g} (max abs)", **inputs)
    return sol


@dataclass(frozen=True)
class BoundReport:
    """What :func:`check_convergence_bound` measured.

    Attributes
    ----------
    errors : numpy.ndarray
        ``e_k = max_n |U_n^k - u_n|`` for ``k = 0..iterations`` (``u``: serial fine).
    bounds : DahlquistBounds
        The Gander-Vandewalle bounds (relative to ``e_0``).
    margin : float
        ``max_{k >= 1} e_k / (bound_k e_0 + slack)`` over both bounds, at most 1 when the
        check passes: how close the observed errors came to a bound.
    """

    errors: np.ndarray
    bounds: DahlquistBounds
    margin: float


def check_convergence_bound(
    lam: complex,
    t_span: Sequence[float],
    coarse: Propagator | str,
    fine: Propagator | str,
    slices: int,
    *,
    y0: complex = 1.0,
    backend: Any = "serial",
    schedule: str = "synchronous",
    rtol: float = 1e-9,
) -> BoundReport:
    """Check the Gander-Vandewalle bounds on Dahlquist's equation ``y' = lam * y``.

    Runs Parareal for all ``slices`` iterations (``tol = 0``) and measures the error of every
    iterate against the serial fine solution, ``e_k = max_n |U_n^k - u_n|``. Each must be
    within both bounds of :func:`parareal.theory.dahlquist_bounds` (linear and superlinear,
    relative to ``e_0``), up to ``rtol`` relative and 64 ulps of ``max |u|`` absolute slack
    for round-off; ``e_slices`` must be 0 (exactness).

    Parameters
    ----------
    lam : complex
        The eigenvalue (``Problem.lam`` of a Dahlquist problem). The state is complex128 when
        ``lam`` or ``y0`` has a non-zero imaginary part, else float64.
    t_span, coarse, fine, slices, backend, schedule :
        As :func:`parareal.solve` takes them (equal slices: the bounds assume them).
    y0 : complex
        The initial value.
    rtol : float
        Relative slack on the bound.

    Returns
    -------
    BoundReport
        Errors, bounds and the margin.

    Raises
    ------
    AssertionError
        ``check_convergence_bound: error after iteration k is x, above the superlinear bound
        b * e_0 = y by a factor z; ...``.
    """
    if isinstance(lam, bool) or not isinstance(lam, numbers.Complex):
        raise TypeError(f"lam must be a number, got {lam!r}")
    if isinstance(y0, bool) or not isinstance(y0, numbers.Complex):
        raise TypeError(f"y0 must be a number, got {y0!r}")
    slices = check_int(slices, "slices")
    rtol = check_tolerance(rtol, "rtol")
    t0, t1 = check_span(t_span)
    is_complex = complex(lam).imag != 0 or complex(y0).imag != 0
    state = np.array([y0 if is_complex else complex(y0).real],
                     dtype=np.complex128 if is_complex else np.float64)
    rate = complex(lam) if is_complex else complex(lam).real

    def f(t: Any, y: Any) -> Any:
        return rate * y

    grid = _grid((t0, t1), slices)
    serial = serial_fine(f, state, grid, fine)
    errors: list[float] = []
    _run(f, state, grid,
         lambda info: errors.append(max_abs_diff(info.y, serial)), coarse=coarse, fine=fine,
         tol=0.0, max_iters=slices, backend=backend, schedule=schedule, vectorized=False)
    bounds = dahlquist_bounds(complex(lam), t_span=(t0, t1), slices=slices, coarse=coarse,
                              fine=fine, iterations=slices)
    inputs = dict(lam=lam, y0=y0, t_span=(t0, t1), slices=slices, coarse=coarse, fine=fine,
                  schedule=schedule, backend=_label(backend))
    if not errors:  # an SPMD rank that serves: the root checks
        return BoundReport(np.array([]), bounds, 0.0)
    e0 = errors[0]
    slack = 64 * np.finfo(np.float64).eps * float(np.max(np.abs(serial)))
    margin = 0.0
    for k, e in enumerate(errors):
        for name, bound in (("superlinear", bounds.superlinear[k]), ("linear", bounds.linear[k])):
            allowed = bound * e0 * (1 + rtol) + slack if math.isfinite(bound) else math.inf
            if k > 0:
                margin = max(margin, e / allowed if allowed > 0 else 0.0 if e == 0 else math.inf)
            if not e <= allowed:
                fail("check_convergence_bound", "Gander-Vandewalle bound",
                     f"error after iteration {k} is {e:.3g}, above the {name} bound "
                     f"{bound:.3g} * e_0 = {allowed:.3g} by a factor {e / allowed:.3g} "
                     f"(e_0 = {e0:.3g})", **inputs)
    if errors[-1] != 0.0:
        fail("check_convergence_bound", "exactness", f"error after iteration {slices} (all "
             f"slices) is {errors[-1]:.3g}, not 0", **inputs)
    return BoundReport(np.array(errors), bounds, margin)


def _close(a: Any, b: Any, atol: float) -> bool:
    if atol == 0.0:
        return same_bits(a, b)
    return max_abs_diff(a, b) <= atol


def _slices_text(grid: np.ndarray) -> str:
    diffs = np.diff(grid)
    if np.allclose(diffs, diffs[0], rtol=1e-12, atol=0):
        return f"{len(grid) - 1} equal on [{grid[0]:g}, {grid[-1]:g}]"
    return "boundaries [" + ", ".join(f"{t:.4g}" for t in grid) + "]"


def _state_text(y0: Any) -> str:
    ops = ops_for(y0)
    values = ops.to_numpy(y0)
    if values.size <= 4:
        return f"{values.tolist()} ({values.dtype})"
    return f"<{values.dtype} {values.shape}>"
