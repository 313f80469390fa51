"""ODEs with exact solutions for the checks and strategies of :mod:`parareal.testing`.

* :func:`linear_system`: ``y' = A y`` with ``A = Q B Q^T`` (``Q`` orthogonal, ``B`` block
  diagonal with the chosen eigenvalues), exact solution ``Q exp(B t) Q^T y0`` in closed form.
* :class:`ForcedDecay`: the non-autonomous ``y' = lam (y - sin t) + cos t`` (Prothero and
  Robinson's test equation), exact solution ``sin t + exp(lam (t - t0)) (y0 - sin t0)``,
  elementwise for states of any shape, dtype and kind: the ODE :func:`check_propagator`
  measures orders on.

Both right-hand sides compute every entry of a batch as they compute a single state (no
matrix products), so a batched backend gives the same bits as the serial one.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..problems import Problem
from ..propagators import RK4, Propagator
from ..state import is_torch
from ..validation import check_int, check_span

__all__ = ["BlowUp", "ForcedDecay", "LinearRHS", "blow_up", "linear_system"]


@dataclass(frozen=True, eq=False)
class LinearRHS:
    """``f(t, y) = A y`` for states of shape ``(n,)`` and batches ``(B, n)``, numpy or torch.

    ``A y`` is summed column by column in a fixed order, so that every row of a batch has the
    bits of the same state computed alone (a matrix product may not).
    """

    matrix: np.ndarray
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def _matrix_like(self, y: Any) -> Any:
        key = (str(y.dtype), str(getattr(y, "device", "")))
        a = self._cache.get(key)
        if a is None:
            if is_torch(y):
                import torch

                a = torch.as_tensor(self.matrix, device=y.device).to(y.dtype)
            else:
                a = self.matrix.astype(y.dtype)
            self._cache[key] = a
        return a

    def __call__(self, t: Any, y: Any) -> Any:
        a = self._matrix_like(y)
        out = y[..., 0:1] * a[:, 0]
        for j in range(1, a.shape[1]):
            out = out + y[..., j : j + 1] * a[:, j]
        return out

    def __getstate__(self) -> dict:
        return {"matrix": self.matrix}

    def __setstate__(self, state: dict) -> None:
        object.__setattr__(self, "matrix", state["matrix"])
        object.__setattr__(self, "_cache", {})


def _rotation(seed: int, n: int) -> np.ndarray:
    """A random orthogonal ``n x n`` matrix (QR of a Gaussian matrix, signs fixed)."""
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))
    return q * np.where(np.diag(r) < 0, -1.0, 1.0)


def _blocks(eigenvalues: Sequence[complex]) -> list[tuple[float, float]]:
    out = []
    for value in eigenvalues:
        if isinstance(value, bool) or not isinstance(value, numbers.Complex):
            raise TypeError(f"eigenvalues must be numbers, got {value!r}")
        value = complex(value)
        if not (math.isfinite(value.real) and math.isfinite(value.imag)):
            raise ValueError(f"eigenvalues must be finite, got {value}")
        out.append((value.real, abs(value.imag)))
    return out


def _block_exp(blocks: list[tuple[float, float]], dt: float) -> np.ndarray:
    """``exp(B dt)`` for the block-diagonal ``B`` (1x1 ``[re]``, 2x2 ``[[re, im], [-im, re]]``)."""
    n = sum(1 if im == 0 else 2 for _, im in blocks)
    out = np.zeros((n, n))
    i = 0
    for re, im in blocks:
        grow = math.exp(re * dt)
        if im == 0:
            out[i, i] = grow
            i += 1
            continue
        c, s = math.cos(im * dt), math.sin(im * dt)
        out[i : i + 2, i : i + 2] = grow * np.array([[c, s], [-s, c]])
        i += 2
    return out


def _linear_exact(
    blocks: list[tuple[float, float]], q: np.ndarray, y0: np.ndarray, t0: float, t: np.ndarray
) -> np.ndarray:
    z0 = q.T @ y0
    return np.stack([q @ (_block_exp(blocks, float(ti) - t0) @ z0) for ti in np.ravel(t)])


def linear_system(
    eigenvalues: Sequence[complex],
    *,
    y0: Sequence[float] | None = None,
    t_span: Sequence[float] = (0.0, 2.0),
    seed: int = 0,
    coarse: Propagator | None = None,
    fine: Propagator | None = None,
    slices: int = 4,
) -> Problem:
    """The linear ODE ``y' = A y`` with the given eigenvalues and its exact solution.

    ``A = Q B Q^T`` with ``Q`` a random orthogonal matrix (from ``seed``) and ``B`` block
    diagonal: a real eigenvalue ``re`` gives a 1x1 block, a complex one ``re + i im`` a 2x2
    rotation block ``[[re, im], [-im, re]]`` (eigenvalues ``re +- i im``). ``A`` is normal, so
    ``|y(t)|`` decays like ``exp(max re * t)``: eigenvalues with ``re <= 0`` give a stable
    system. The exact solution ``Q exp(B (t - t0)) Q^T y0`` is computed in closed form
    (``Problem.exact``), to round-off.

    Parameters
    ----------
    eigenvalues : sequence of complex
        One entry per block; the state has one entry per real and two per complex eigenvalue.
    y0 : sequence of float, optional
        The initial state (default: ones).
    t_span : (float, float)
        The span.
    seed : int
        Seed of the rotation ``Q``.
    coarse, fine : Propagator, optional
        Defaults ``RK4(steps=1)`` and ``RK4(steps=10)`` per slice.
    slices : int
        Default number of slices.

    Returns
    -------
    Problem
        Named ``"linear-system"``; ``f`` is a :class:`LinearRHS` (vectorised, picklable, numpy
        or torch states).
    """
    blocks = _blocks(eigenvalues)
    if not blocks:
        raise ValueError("eigenvalues must not be empty")
    t0, t1 = check_span(t_span)
    n = sum(1 if im == 0 else 2 for _, im in blocks)
    state = np.ones(n) if y0 is None else np.array(y0, dtype=np.float64)
    if state.shape != (n,):
        raise ValueError(f"y0 must have shape ({n},) for these eigenvalues, got {state.shape}")
    if not np.all(np.isfinite(state)):
        raise ValueError("y0 must be finite")
    q = _rotation(check_int(seed, "seed", 0), n)
    b = np.zeros((n, n))
    i = 0
    for re, im in blocks:
        if im == 0:
            b[i, i] = re
            i += 1
        else:
            b[i : i + 2, i : i + 2] = [[re, im], [-im, re]]
            i += 2
    listed = ", ".join(f"{re:g}" if im == 0 else f"{re:g}+-{im:g}j" for re, im in blocks)
    return Problem(
        name="linear-system",
        f=LinearRHS(q @ b @ q.T),
        y0=state,
        t_span=(t0, t1),
        coarse=RK4(steps=1) if coarse is None else coarse,
        fine=RK4(steps=10) if fine is None else fine,
        slices=check_int(slices, "slices"),
        description=f"linear system y' = A y, A = Q B Q^T with eigenvalues {listed}, seed {seed}",
        exact=functools.partial(_linear_exact, blocks, q, state, t0),
    )


@dataclass(frozen=True)
class ForcedDecay:
    """``f(t, y) = lam e + mu e**2 + cos t`` with ``e = y - sin t``, elementwise, numpy or torch.

    With ``mu = 0`` this is Prothero and Robinson's linear test equation, whose exact solution
    from ``y(t0) = y0`` is ``sin t + exp(lam (t - t0)) (y0 - sin t0)``. With ``mu != 0`` it is
    nonlinear, and ``y = sin t`` is the exact solution from ``y0 = sin t0``. Both depend on
    ``t``, so a propagator that evaluates ``f`` at wrong stage times loses order on them, and
    the nonlinear one also tests the order conditions that linear problems do not.
    """

    lam: float = -1.0
    mu: float = 0.0

    def __call__(self, t: Any, y: Any) -> Any:
        if is_torch(t):
            e = y - t.sin()
            return self.lam * e + self.mu * (e * e) + t.cos()
        t = float(t)
        e = y - math.sin(t)
        return self.lam * e + self.mu * (e * e) + math.cos(t)

    def exact(self, y0: Any, t0: float, t1: float) -> np.ndarray:
        """The exact state at ``t1`` (float64 or complex128, computed in numpy).

        For ``mu != 0`` only from ``y0 = sin t0`` (``ValueError`` otherwise).
        """
        y0 = np.asarray(y0)
        wide = np.complex128 if np.iscomplexobj(y0) else np.float64
        start = y0.astype(wide) - math.sin(t0)
        if self.mu != 0 and np.any(start != 0):
            raise ValueError("the nonlinear ForcedDecay has a closed form only from y0 = sin t0")
        return math.sin(t1) + math.exp(self.lam * (t1 - t0)) * start


@dataclass(frozen=True)
class BlowUp:
    """``f(t, y) = y**2``, elementwise (batches give the bits of single calls): from
    ``y(0) = 1`` the solution ``1 / (1 - t)`` blows up at ``t = 1``."""

    def __call__(self, t: Any, y: Any) -> Any:
        return y * y


def blow_up(slices: int = 24) -> Any:
    """A run that must end ``Status.DIVERGED``: ``y' = y**2`` on ``(0, 3)`` from 1, with a
    coarse sweep (Euler, one step per slice) that overflows to inf. Every backend and schedule
    must return the serial backend's iterate 0 and start no task on its non-finite values."""
    from ..problems import Problem
    from ..propagators import RK4, Euler

    return Problem(name="blow-up", f=BlowUp(), y0=np.array([1.0]), t_span=(0.0, 3.0),
                   coarse=Euler(steps=1), fine=RK4(steps=10), slices=slices,
                   description="y' = y**2 from 1 over (0, 3): the coarse sweep overflows")
