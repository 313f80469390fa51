"""Jacobians ``df/dy`` for implicit propagators: requests, sources and their evaluation.

An implicit steppable propagator asks for the Jacobian the way it asks for ``f``: its stepper
yields ``(JacobianRequest(t, source), y)`` and receives the Jacobian back. ``y`` is one state
(the answer is a ``(d, d)`` matrix, ``d = y.size``) or, in a group, states stacked along a
leading axis with :class:`~parareal.state.Lanes` times (the answer is ``(B, d, d)``, or a
list of ``B`` scipy sparse matrices). Whoever drives the stepper
(:func:`~parareal.propagators.drive`, :class:`~parareal.backends.Rhs`) answers it with
:func:`evaluate`, so a Jacobian costs one tick on the critical path wherever it runs.

Where the Jacobian comes from (:class:`JacobianSource`):

* ``jac=`` given by the user: ``jac(t, y)`` for one state, returning a dense numpy array, a
  scipy sparse matrix (numpy states) or a torch tensor, of shape ``(d, d)`` (or
  ``(*y.shape, *y.shape)``);
* otherwise, for torch states, autograd (:func:`torch.autograd.functional.jacobian`, over all
  lanes at once when ``f`` is vectorised);
* otherwise, for numpy states, forward finite differences, with ``jac_sparsity=`` (as in
  :func:`scipy.integrate.solve_ivp`) grouping columns that share no row, so that a banded or
  sparse Jacobian costs a few evaluations of ``f`` instead of ``d``. All perturbed states go to
  ``f`` in one batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..state import ArrayOps, Lanes, is_torch

__all__ = ["ConstantJacobian", "JacobianRequest", "JacobianSource", "evaluate", "is_sparse"]


def is_sparse(x: Any) -> bool:
    """True for a scipy sparse matrix or array (without importing scipy)."""
    return hasattr(x, "tocsc") and hasattr(x, "nnz")


def _check_sparsity(sparsity: Any) -> Any:
    if sparsity is None:
        return None
    if is_torch(sparsity):
        raise TypeError("jac_sparsity must be a numpy array or a scipy sparse matrix, got a "
                        "torch tensor")
    if is_sparse(sparsity):
        pattern = sparsity.toarray() != 0
    else:
        try:
            pattern = np.asarray(sparsity) != 0
        except Exception as exc:
            raise TypeError(f"jac_sparsity must be array-like, got {type(sparsity).__name__}"
                            ) from exc
    if pattern.ndim != 2 or pattern.shape[0] != pattern.shape[1]:
        raise ValueError(f"jac_sparsity must be a square (d, d) matrix, got shape "
                         f"{pattern.shape}")
    try:  # the Jacobians it gives are scipy sparse matrices: say so now, not mid-run
        import scipy.sparse  # noqa: F401
    except ImportError as exc:
        raise ImportError("jac_sparsity needs scipy (the Jacobians it gives are scipy sparse "
                          "matrices): pip install 'parareal[scipy]'") from exc
    return pattern


class ConstantJacobian:
    """A constant Jacobian matrix as a callable ``jac(t, y)`` (``jac=`` given as an array,
    as :func:`scipy.integrate.solve_ivp` allows)."""

    __slots__ = ("matrix",)

    def __init__(self, matrix: Any) -> None:
        self.matrix = matrix

    def __call__(self, t: Any, y: Any) -> Any:
        return self.matrix

    def __repr__(self) -> str:
        return f"constant {tuple(self.matrix.shape)}"

    @property
    def __name__(self) -> str:  # for reprs of the propagators that hold it
        return "constant"


class JacobianSource:
    """Where an implicit propagator gets ``df/dy``: a user's ``jac`` or autograd / finite
    differences of ``f``.

    Parameters
    ----------
    jac : callable, optional
        ``jac(t, y) -> (d, d)`` for one state (``t`` in ``f``'s convention).
    sparsity : array_like or scipy sparse matrix, optional
        The ``(d, d)`` nonzero pattern of the Jacobian, for finite differences (numpy states).
    """

    __slots__ = ("jac", "sparsity")

    def __init__(self, jac: Callable[[Any, Any], Any] | None = None, sparsity: Any = None
                 ) -> None:
        if jac is not None and not callable(jac):
            if isinstance(jac, np.ndarray) or is_sparse(jac) or is_torch(jac):
                jac = ConstantJacobian(jac)  # as solve_ivp allows: a constant matrix
            else:
                raise TypeError(f"jac must be callable as jac(t, y) -> (d, d) matrix, a "
                                f"constant (d, d) matrix, or None; got {type(jac).__name__}")
        self.jac = jac
        self.sparsity = _check_sparsity(sparsity)

    def __eq__(self, other: object) -> bool:
        if type(other) is not JacobianSource:
            return NotImplemented
        same_pattern = (self.sparsity is None and other.sparsity is None) or (
            self.sparsity is not None and other.sparsity is not None
            and np.array_equal(self.sparsity, other.sparsity))
        return self.jac is other.jac and same_pattern

    def __hash__(self) -> int:
        return hash((id(self.jac), None if self.sparsity is None else self.sparsity.tobytes()))

    def __getstate__(self) -> tuple[Any, Any]:
        return self.jac, self.sparsity

    def __setstate__(self, state: tuple[Any, Any]) -> None:
        self.jac, self.sparsity = state

    def __repr__(self) -> str:
        if self.jac is not None:
            return f"jac={getattr(self.jac, '__name__', type(self.jac).__name__)}"
        return "jac=None" if self.sparsity is None else "jac_sparsity=<pattern>"

    @property
    def describe(self) -> str:
        """How the Jacobian is obtained, in words."""
        if self.jac is not None:
            return "the user's jac"
        return "autograd (torch) or finite differences (numpy)" + (
            ", with jac_sparsity" if self.sparsity is not None else "")


class JacobianRequest:
    """The ``t`` of a request for the Jacobian at ``(t, y)`` (see the module docstring)."""

    __slots__ = ("source", "t")

    def __init__(self, t: Any, source: JacobianSource) -> None:
        self.t = t
        self.source = source

    def __float__(self) -> float:  # so that code recording request times still works
        return float(self.t.values[0]) if isinstance(self.t, Lanes) else float(self.t)

    def __repr__(self) -> str:
        return f"JacobianRequest({self.t!r}, {self.source!r})"


# -- evaluation -----------------------------------------------------------------------------
def _check_value(J: Any, d: int, shape: tuple[int, ...], ops: ArrayOps) -> Any:
    """A user's ``jac`` answer as a ``(d, d)`` matrix of the state's kind (or scipy sparse)."""
    if is_sparse(J):
        if ops.kind != "numpy":
            raise TypeError("jac returned a scipy sparse matrix for a torch state; return a "
                            "torch tensor of shape (d, d)")
        if tuple(J.shape) != (d, d):
            raise ValueError(f"jac returned a sparse matrix of shape {tuple(J.shape)}; expected "
                             f"({d}, {d}) for a state of shape {shape}")
        _refuse_complex(J, ops)
        return J.tocsc()
    if ops.kind == "numpy":
        if is_torch(J):
            raise TypeError("jac returned a torch tensor for a numpy state; return a numpy "
                            "array or a scipy sparse matrix")
        if J is None or isinstance(J, (str, bytes)):
            raise TypeError(f"jac returned {J!r}; it must return the (d, d) Jacobian as a numpy "
                            "array or a scipy sparse matrix")
        J = np.asarray(J)
        if J.dtype.kind not in "biufc":
            raise TypeError(f"jac returned an array of dtype {J.dtype}; it must hold numbers")
    else:
        if not is_torch(J):
            if isinstance(J, np.ndarray):
                J = ops.from_numpy(J)
            else:
                raise TypeError(f"jac returned {type(J).__name__} for a torch state; return a "
                                "torch tensor of shape (d, d)")
    if tuple(J.shape) not in ((d, d), shape + shape):
        raise ValueError(f"jac returned shape {tuple(J.shape)}; expected ({d}, {d}) (or "
                         f"{shape + shape}) for a state of shape {shape}")
    J = J.reshape(d, d)
    _refuse_complex(J, ops)
    if J.dtype != ops.dtype:
        J = J.astype(ops.dtype) if ops.kind == "numpy" else J.to(ops.dtype)
    return J


def _refuse_complex(J: Any, ops: ArrayOps) -> None:
    """``TypeError`` for a complex Jacobian of a real state (a cast would drop its imaginary
    part, as for a complex ``f``)."""
    complex_j = J.is_complex() if is_torch(J) else np.dtype(J.dtype).kind == "c"
    complex_state = (ops.dtype.is_complex if ops.kind == "torch"
                     else np.dtype(ops.dtype).kind == "c")
    if complex_j and not complex_state:
        raise TypeError(f"jac returned complex values ({J.dtype}) for a real state "
                        f"({ops.dtype}); the imaginary part would be dropped: return a real "
                        "Jacobian, or solve a complex ODE with a complex y0")


def _color(pattern: np.ndarray) -> list[np.ndarray]:
    """Greedy column groups: columns of one group share no nonzero row."""
    d = pattern.shape[1]
    groups: list[list[int]] = []
    rows_used: list[np.ndarray] = []
    for j in range(d):
        col = pattern[:, j]
        for g, used in enumerate(rows_used):
            if not np.any(used & col):
                groups[g].append(j)
                used |= col
                break
        else:
            groups.append([j])
            rows_used.append(col.copy())
    return [np.array(g) for g in groups]


def _finite_differences(
    source: JacobianSource, ts: np.ndarray, ys: np.ndarray, shape: tuple[int, ...],
    rows: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> tuple[list[Any], int]:
    """Forward differences for ``B`` numpy states ``ys`` (shape ``(B, d)``), one batch of f.

    Returns the ``B`` Jacobians (dense, or scipy sparse with a sparsity pattern) and the
    number of column groups (evaluations of ``f`` per state, besides ``f(t, y)`` itself).
    """
    B, d = ys.shape
    real = ys.real if ys.dtype.kind == "c" else ys
    eps = np.finfo(real.dtype).eps
    sign = np.where(real >= 0, 1.0, -1.0)
    h = (np.sqrt(eps) * sign * np.maximum(1.0, np.abs(real))).astype(real.dtype)
    h = ((ys + h) - ys).real.astype(real.dtype)  # the step actually taken, exactly representable
    pattern = source.sparsity
    if pattern is not None and pattern.shape != (d, d):
        raise ValueError(f"jac_sparsity has shape {pattern.shape}, but the state has {d} "
                         f"entries: it must be ({d}, {d})")
    groups = _color(pattern) if pattern is not None else [np.array([j]) for j in range(d)]
    G = len(groups)
    perturbed = np.repeat(ys[:, None, :], G + 1, axis=1)  # (B, G + 1, d)
    for g, cols in enumerate(groups):
        perturbed[:, g + 1, cols] += h[:, cols]
    times = np.repeat(ts, G + 1)
    out = rows(times, perturbed.reshape((B * (G + 1), *shape))).reshape(B, G + 1, d)
    result: list[Any] = []
    for b in range(B):
        diff = out[b, 1:] - out[b, 0]  # (G, d): row g is the sum of its columns' derivatives
        if pattern is None:
            result.append((diff / h[b][:, None]).T.astype(ys.dtype))
            continue
        from scipy.sparse import csc_matrix

        r_idx, c_idx = np.nonzero(pattern)
        group_of = np.empty(d, dtype=np.intp)
        for g, cols in enumerate(groups):
            group_of[cols] = g
        values = diff[group_of[c_idx], r_idx] / h[b][c_idx]
        result.append(csc_matrix((values, (r_idx, c_idx)), shape=(d, d)))
    return result, G


def _autograd(f: Callable[[Any, Any], Any], ts: list[float], ys: Any, shape: tuple[int, ...],
              ops: ArrayOps, vectorized: bool) -> tuple[Any, int, int]:
    """``(B, d, d)`` Jacobians of torch states ``ys`` (shape ``(B, d)``) by autograd, and the
    Python calls of ``f`` and states evaluated that it took (one forward pass)."""
    import torch
    from torch.autograd.functional import jacobian

    B, d = ys.shape
    base = ys.detach()
    with torch.enable_grad():
        if vectorized:
            tv = ops.times(ts)

            def total(flat: Any) -> Any:
                return f(tv, flat.reshape((B, *shape))).reshape(B, d).sum(0)

            J = jacobian(total, base, vectorize=True)  # (d, B, d)
            return J.permute(1, 0, 2).detach().to(ops.dtype), 1, B
        mats = []
        for b in range(B):
            tb = ops.time(ts[b])

            def one(flat: Any, tb: Any = tb) -> Any:
                return f(tb, flat.reshape(shape)).reshape(d)

            mats.append(jacobian(one, base[b]).detach())
        return torch.stack(mats).to(ops.dtype), B, B


def evaluate(
    request: JacobianRequest,
    y: Any,
    *,
    f: Callable[[Any, Any], Any],
    ops: ArrayOps,
    vectorized: bool,
    rows: Callable[[np.ndarray, Any], Any],
    count: Callable[[int, int], None] | None = None,
) -> tuple[Any, int, int, float]:
    """Answer a Jacobian request at ``y`` (one state, or stacked states with Lanes times).

    Parameters
    ----------
    request : JacobianRequest
        The request (its ``t`` is a float or :class:`~parareal.state.Lanes`).
    y : array
        The state, or the stacked states of a group.
    f : callable
        The raw right-hand side in its own convention (for autograd).
    ops : ArrayOps
        Operations of the state's kind.
    vectorized : bool
        Whether ``f`` takes batches.
    rows : callable
        ``rows(ts, Y)``: ``f`` at stacked single states ``Y`` with times ``ts`` (float64
        array), for finite differences; counted by the caller as evaluations of ``f``.

    count : callable, optional
        ``count(calls, evals)``: told of the calls of ``f`` that autograd makes (its forward
        pass), which do not go through ``rows``.

    Returns
    -------
    J, jac_evals, f_evals, seconds
        The Jacobian(s); Jacobians evaluated; evaluations of ``f`` for finite differences or
        autograd (0 for a user's ``jac``; those of finite differences are also counted
        through ``rows``); seconds spent.
    """
    start = time.perf_counter()
    grouped = isinstance(request.t, Lanes)
    ts = request.t.values.tolist() if grouped else [float(request.t)]
    states = y if grouped else y[None]
    shape = tuple(states.shape[1:])
    d = int(np.prod(shape)) if shape else 1
    B = len(ts)
    source = request.source
    f_evals = 0
    if source.jac is not None:
        mats = [_check_value(source.jac(ops.time(ts[b]), states[b]), d, shape, ops)
                for b in range(B)]
        if any(is_sparse(m) for m in mats):
            from scipy.sparse import csc_matrix

            out: Any = [m if is_sparse(m) else csc_matrix(m) for m in mats]
        else:
            out = ops.stack(mats)
    elif ops.kind == "torch" and not states.is_complex():
        out, calls, f_evals = _autograd(f, ts, states.reshape(B, d), shape, ops, vectorized)
        if count is not None:
            count(calls, f_evals)
    else:  # finite differences (torch's autograd has no complex Jacobians: those too)
        torch_in = ops.kind == "torch"
        flat = (ops.to_numpy(states) if torch_in else np.asarray(states)).reshape(B, d)
        rows_np = rows if not torch_in else (
            lambda tv, Y: ops.to_numpy(rows(tv, ops.from_numpy(Y))))
        mats, groups = _finite_differences(source, np.asarray(ts, dtype=np.float64), flat,
                                           shape, rows_np)
        f_evals = B * (groups + 1)
        if torch_in:
            out = ops.from_numpy(np.stack([m.toarray() if is_sparse(m) else m for m in mats]))
        else:
            out = mats if source.sparsity is not None else np.stack(mats)
    if not grouped:
        out = out[0]
    return out, B, f_evals, time.perf_counter() - start
