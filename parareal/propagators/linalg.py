"""Newton matrices ``I - c J`` of implicit propagators, solved per lane, with a meter.

:class:`NewtonMatrix` factors ``M = I - c J`` for one state or for every lane of a group at
once (batched dense LU for numpy and torch, a sparse LU per lane for scipy sparse Jacobians)
and solves ``M x = b``. A lane whose Jacobian is not finite or whose matrix is singular is
*failed*: its solutions are NaN (so the run ends ``Status.DIVERGED``) and the reason is reported
to the current :class:`LinalgMeter` and issued as a :class:`RuntimeWarning`.

The meter (a context variable, set by the engine for its run and by every worker for its task)
collects the seconds spent factoring and solving and the failure reasons, which end up in
``Stats.wall_time["linear_solve"]`` and ``Solution.reason``. Propagators keep no state: the
meter belongs to the caller.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..state import Lanes, is_torch
from .jacobian import is_sparse

__all__ = [
    "LinalgMeter",
    "NewtonMatrix",
    "current_meter",
    "metered",
    "nan_lanes",
    "report_failure",
]


@dataclass
class LinalgMeter:
    """Seconds in linear algebra, number of factorisations and solves, failure reasons."""

    seconds: float = 0.0
    factorizations: int = 0
    solves: int = 0
    failures: list[str] = field(default_factory=list)

    def merge(self, other: LinalgMeter) -> None:
        """Add another meter's counts (a worker's) to this one."""
        self.seconds += other.seconds
        self.factorizations += other.factorizations
        self.solves += other.solves
        for reason in other.failures:
            if len(self.failures) < 20 and reason not in self.failures:
                self.failures.append(reason)


_METER: contextvars.ContextVar[LinalgMeter | None] = contextvars.ContextVar(
    "parareal_linalg_meter", default=None)


def current_meter() -> LinalgMeter | None:
    """The meter of the run or task in progress in this thread, if any."""
    return _METER.get()


@contextlib.contextmanager
def metered(meter: LinalgMeter) -> Iterator[LinalgMeter]:
    """Make ``meter`` the current meter inside the block."""
    token = _METER.set(meter)
    try:
        yield meter
    finally:
        _METER.reset(token)


def report_failure(reason: str, *, warn: bool = False) -> None:
    """Record why a propagation failed (its result is NaN) in the current meter, so that it
    ends up in ``Solution.reason``; outside a run (no meter), or with ``warn``, also issue it
    as a :class:`RuntimeWarning`."""
    meter = _METER.get()
    if meter is not None and len(meter.failures) < 20 and reason not in meter.failures:
        meter.failures.append(reason)
    if meter is None or warn:
        warnings.warn(reason, RuntimeWarning, stacklevel=3)


def nan_lanes(x: Any, bad: np.ndarray, grouped: bool) -> Any:
    """``x`` with the lanes flagged in ``bad`` replaced by NaN (``x`` itself when none is;
    an ungrouped state is one lane)."""
    if not bad.any():
        return x
    if is_torch(x):
        import torch

        mask = torch.as_tensor(bad, device=x.device)
        mask = mask.reshape((-1,) + (1,) * (x.ndim - 1)) if grouped else mask.reshape(())
        return torch.where(mask, torch.full_like(x, float("nan")), x)
    x = np.array(x, copy=True)
    if grouped:
        x[bad] = np.nan
    else:
        x[...] = np.nan
    return x


def _lane_values(c: Any, lanes: int) -> np.ndarray:
    return c.values if isinstance(c, Lanes) else np.full(lanes, float(c))


class NewtonMatrix:
    """``M = I - c J`` factored for one state or for each lane of a group.

    Parameters
    ----------
    J : array or list
        ``(d, d)`` (one state) or ``(B, d, d)`` (a group), numpy or torch; or a scipy sparse
        matrix (one state) or a list of them (a group).
    c : float or Lanes
        The scalar ``h * gamma`` (per lane in a group).
    shape : tuple of int
        The shape of the right-hand sides :meth:`solve` gets (a state, or stacked states).
    grouped : bool
        Whether the right-hand sides are stacked states (leading lane axis).
    who : str
        The propagator, for failure messages.
    t : float or Lanes
        The time of the step, for failure messages.
    """

    def __init__(self, J: Any, c: Any, *, shape: tuple[int, ...], grouped: bool, who: str,
                 t: Any) -> None:
        start = time.perf_counter()
        self.shape = shape
        self.grouped = grouped
        self.lanes = shape[0] if grouped else 1
        self.d = int(np.prod(shape[1:] if grouped else shape)) if (
            shape[1:] if grouped else shape) else 1
        self.sparse = isinstance(J, list) or is_sparse(J)
        self.torch = is_torch(J)
        times = _lane_values(t, self.lanes)
        cs = _lane_values(c, self.lanes)
        self.failed = np.zeros(self.lanes, dtype=bool)
        reasons: list[str] = []
        if self.sparse:
            self._factor_sparse(J if isinstance(J, list) else [J], cs, reasons, who, times)
        else:
            Jb = J if grouped else J[None]
            self._factor_dense(Jb, c, reasons, who, times)
        for reason in reasons:
            report_failure(reason)
        meter = _METER.get()
        if meter is not None:
            meter.seconds += time.perf_counter() - start
            meter.factorizations += self.lanes

    # -- factoring ----------------------------------------------------------------------------
    def _factor_dense(self, Jb: Any, c: Any, reasons: list[str], who: str,
                      times: np.ndarray) -> None:
        if self.torch:
            import torch

            finite = torch.isfinite(Jb).reshape(self.lanes, -1).all(dim=1).cpu().numpy()
            eye = torch.eye(self.d, dtype=Jb.dtype, device=Jb.device)
            scaled = c * Jb if isinstance(c, Lanes) else Jb * float(c)
            M = eye - scaled
            M = torch.where(torch.as_tensor(finite, device=M.device)[:, None, None], M, eye)
            LU, pivots, info = torch.linalg.lu_factor_ex(M)
            singular = info.cpu().numpy() > 0
            self._lu = (LU, pivots)
        else:
            finite = np.isfinite(Jb).reshape(self.lanes, -1).all(axis=1)
            eye = np.eye(self.d, dtype=Jb.dtype)
            scaled = c * Jb if isinstance(c, Lanes) else Jb * float(c)
            M = eye - scaled
            M[~finite] = eye
            singular = np.zeros(self.lanes, dtype=bool)  # found when solving (LAPACK raises)
            self._M = M
            self._who, self._times = who, times
        for b in range(self.lanes):
            if not finite[b]:
                self._fail(b, reasons, f"{who}: the Jacobian at t = {times[b]:.6g} is not "
                                       "finite")
            elif singular[b]:
                self._fail(b, reasons, f"{who}: the Newton matrix I - h*gamma*J at t = "
                                       f"{times[b]:.6g} is singular")

    def _factor_sparse(self, mats: list[Any], cs: np.ndarray, reasons: list[str], who: str,
                       times: np.ndarray) -> None:
        from scipy.sparse import identity
        from scipy.sparse.linalg import splu

        self._lus: list[Any] = []
        for b, J in enumerate(mats):
            J = J.tocsc()
            if not np.all(np.isfinite(J.data)):
                self._lus.append(None)
                self._fail(b, reasons, f"{who}: the Jacobian at t = {times[b]:.6g} is not "
                                       "finite")
                continue
            M = (identity(self.d, dtype=J.dtype, format="csc") - J * cs[b]).tocsc()
            try:
                self._lus.append(splu(M))
            except RuntimeError:
                self._lus.append(None)
                self._fail(b, reasons, f"{who}: the Newton matrix I - h*gamma*J at t = "
                                       f"{times[b]:.6g} is singular")

    def _fail(self, b: int, reasons: list[str], reason: str) -> None:
        self.failed[b] = True
        reasons.append(reason)

    def _solve_lanes(self, flat: np.ndarray) -> np.ndarray:
        out = np.empty_like(flat)
        eye = np.eye(self.d, dtype=self._M.dtype)
        for b in range(self.lanes):
            try:
                out[b] = np.linalg.solve(self._M[b], flat[b])
            except np.linalg.LinAlgError:
                self._M[b] = eye
                self.failed[b] = True
                report_failure(f"{self._who}: the Newton matrix I - h*gamma*J at t = "
                               f"{self._times[b]:.6g} is singular")
                out[b] = np.nan
        return out

    # -- solving ------------------------------------------------------------------------------
    def solve(self, rhs: Any) -> Any:
        """``M^{-1} rhs`` for a state (or stacked states) of :attr:`shape`; failed lanes NaN."""
        start = time.perf_counter()
        B, d = self.lanes, self.d
        if self.torch:
            import torch

            LU, pivots = self._lu
            x = nan_lanes(torch.linalg.lu_solve(LU, pivots, rhs.reshape(B, d, 1)).reshape(
                self.shape), self.failed, self.grouped)
        elif self.sparse:
            flat = np.asarray(rhs).reshape(B, d)
            out = np.empty_like(flat, dtype=np.result_type(flat.dtype, np.float64)
                                if flat.dtype.kind != "c" else flat.dtype)
            for b, lu in enumerate(self._lus):
                out[b] = np.nan if lu is None else lu.solve(flat[b])
            x = out.astype(flat.dtype, copy=False).reshape(self.shape)
        else:
            flat = np.asarray(rhs).reshape(B, d, 1)
            try:
                x = np.linalg.solve(self._M, flat).reshape(self.shape)
            except np.linalg.LinAlgError:  # an exactly singular lane: find it, fail it
                x = self._solve_lanes(flat).reshape(self.shape)
            x = nan_lanes(x, self.failed, self.grouped)
        meter = _METER.get()
        if meter is not None:
            meter.seconds += time.perf_counter() - start
            meter.solves += B
        return x
