"""Stopping rules: objects the engine asks, after every iterate, whether the run has converged.

Modelled on pySDC's convergence controllers (``pySDC/core/convergence_controller.py``): a rule
is an object with its own state, reset when a run starts, consulted at a fixed point of the
iteration, and reporting what it saw. Here the point is the end of every iterate ``k``
(``0`` is the coarse sweep); the engine hands the rule an :class:`Iterate` view and acts on its
verdict:

* ``None``: go on (until ``max_iters``);
* ``Status.CONVERGED``: stop and return iterate ``k``;
* ``Status.DIVERGED``: the rule saw a non-finite quantity that the engine's own check of the
  boundary values did not; stop and return the last finite iterate, ``k - 1``.

The engine keeps what is not a rule's business: the non-finite check of every boundary value,
``max_iters``, exactness after ``N`` iterations, and the callback, which may stop a run too.
A rule runs where the iteration is driven (on the root rank of an MPI job); its
:meth:`StopRule.state` travels in :attr:`Solution.stop_state`, which every rank receives.

Rules:

:class:`MaxUpdate`
    The default: the largest change of a boundary value, ``max_n |U_n^k - U_n^(k-1)|``, at most
    ``tol + rtol * max_n |U_n^k|`` (what ``solve(tol=, rtol=)`` asks for).
:class:`FinalChange`
    The change of the final value ``U_N`` alone, in a norm of the caller's, at most ``tol``,
    or its predicted remaining error (SRDS's rule: the final sample is what a user keeps).
:class:`FineResidual`
    pymgrit's rule: the residual at the coarse points, ``r_n = F(U_(n-1)^k) - U_n^k``, in the
    2-norm over all of them, at most ``tol``.
A user's own: subclass :class:`StopRule` and implement :meth:`~StopRule.check`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from .result import Status
from .state import ArrayOps
from .validation import check_tolerance

__all__ = [
    "PREDICTIONS",
    "FinalChange",
    "FineResidual",
    "Iterate",
    "MaxUpdate",
    "StopRule",
    "change_met",
    "check_stop",
]

#: How :class:`FinalChange` decides from the changes so far (see :func:`change_met`).
PREDICTIONS = ("update", "estimate")


@dataclass(frozen=True)
class Iterate:
    """What a stopping rule sees of iterate ``k``.

    Attributes
    ----------
    iteration : int
        ``k`` (0: the coarse sweep).
    update : float
        ``max_n |U_n^k - U_n^(k-1)|`` over the boundaries that changed (NaN for ``k = 0``).
    t : numpy.ndarray
        The ``N + 1`` boundaries.
    ops : ArrayOps
        Array operations for the state's kind.
    fine_defects : tuple of float or None
        For rules with ``needs_fine_defects``: per slice ``n``, the squared 2-norm of
        ``F(U_n^(k-1)) - U_(n+1)^(k-1)``, the fine residual of the *previous* iterate (its
        fine values are what iterate ``k`` was built from); ``None`` otherwise and for ``k = 0``.
    """

    iteration: int
    update: float
    t: np.ndarray
    ops: ArrayOps
    _value: Callable[[int], Any] = field(repr=False)
    fine_defects: tuple[float, ...] | None = None

    @property
    def slices(self) -> int:
        """``N``."""
        return len(self.t) - 1

    def value(self, n: int) -> Any:
        """``U_n^k``, the value at boundary ``n`` (not a copy: do not modify it)."""
        return self._value(n)

    @property
    def final(self) -> Any:
        """``U_N^k``, the value at the end of the span."""
        return self._value(self.slices)


class StopRule(ABC):
    """A stopping rule: subclass it and implement :meth:`check`.

    The engine calls :meth:`start` when a run starts (state from an earlier run is dropped),
    then :meth:`check` at the end of every iterate, :meth:`reason` when the rule stopped the run
    and :meth:`state` for :attr:`Solution.stop_state`. :meth:`fingerprint` identifies the rule
    for checkpoints and for the agreement of MPI ranks.
    """

    #: The short name of the rule (in ``state()`` and messages).
    name: ClassVar[str] = "rule"
    #: True if :meth:`check` reads ``Iterate.fine_defects`` (the engine then computes them and
    #: keeps each iteration's fine values until its iterate is complete).
    needs_fine_defects: ClassVar[bool] = False

    def bind(self, y0: Any) -> StopRule:
        """The rule for a run from ``y0`` (default: this rule). A rule whose defaults depend on
        the state's dtype resolves them here; errors name the rule's arguments."""
        return self

    def start(self) -> None:  # noqa: B027 - optional hook
        """Forget the state of any earlier run (default: nothing to forget)."""

    @abstractmethod
    def check(self, iterate: Iterate) -> Status | None:
        """The verdict after ``iterate``: ``None`` (go on), ``Status.CONVERGED`` or
        ``Status.DIVERGED`` (a non-finite quantity)."""

    def reason(self) -> str:
        """Why the rule stopped the run, in words."""
        return f"the stopping rule {self.name!r} was met"

    def state(self) -> dict[str, Any]:
        """What the rule saw, for :attr:`Solution.stop_state` (plain values: it is pickled to
        every MPI rank)."""
        return {"rule": self.name}

    def fingerprint(self) -> str:
        """What identifies the rule and its settings (default: its ``repr``)."""
        return repr(self)

    def update_tolerance(self) -> tuple[float, float]:
        """``(tol, rtol)`` on the largest boundary update that this rule stands about equal to:
        what ``coarse="auto"`` predicts the iterations of its candidates with. Default: the
        rule's ``tol`` attribute if it has one (0: no tolerance, the run goes to
        ``max_iters``), no ``rtol``."""
        return float(getattr(self, "tol", 0.0) or 0.0), 0.0


def check_stop(stop: Any) -> StopRule:
    """``stop`` if it is a :class:`StopRule`, else a ``TypeError`` naming ``stop``."""
    if not isinstance(stop, StopRule):
        raise TypeError("stop must be a parareal.StopRule (MaxUpdate, FinalChange, FineResidual "
                        f"or a subclass of your own) or None, got {type(stop).__name__}")
    return stop


class MaxUpdate(StopRule):
    """Stop when ``max_n |U_n^k - U_n^(k-1)| <= tol + rtol * max_n |U_n^k|`` (``k >= 1``).

    Parameters
    ----------
    tol : float or None
        Absolute tolerance; ``None``: the dtype's default (see
        :func:`parareal.tolerance.resolve_tolerance`, applied by :meth:`bind`).
    rtol : float
        Relative tolerance, times the largest boundary value of the iterate.

    Notes
    -----
    ``tol = rtol = 0`` never stops: the run takes ``max_iters`` iterations.
    """

    name = "max-update"

    def __init__(self, tol: float | None = None, rtol: float = 0.0) -> None:
        self.rtol = check_tolerance(rtol, "rtol")  # first, as resolve_tolerance checks
        self.tol = None if tol is None else check_tolerance(tol, "tol")
        self.met = math.nan

    def bind(self, y0: Any) -> MaxUpdate:
        """The rule with ``tol = None`` resolved for ``y0``'s dtype (and ``rtol`` raised for
        low precisions), as :func:`~parareal.tolerance.resolve_tolerance` does."""
        from .tolerance import resolve_tolerance

        tol, rtol = resolve_tolerance(self.tol, self.rtol, y0)
        return MaxUpdate(tol, rtol)

    def check(self, iterate: Iterate) -> Status | None:
        if iterate.iteration == 0 or (self.tol == 0.0 and self.rtol == 0.0):
            return None
        scale = 0.0
        if self.rtol > 0.0:
            ops = iterate.ops
            scale = max(ops.max_abs(iterate.value(n)) for n in range(iterate.slices + 1))
        if iterate.update <= (self.tol or 0.0) + self.rtol * scale:
            self.met = iterate.update
            return Status.CONVERGED
        return None

    def reason(self) -> str:
        return f"the boundary update {self.met:.3e} met the tolerance"

    def state(self) -> dict[str, Any]:
        return {"rule": self.name, "tol": self.tol, "rtol": self.rtol}

    def update_tolerance(self) -> tuple[float, float]:
        return float(self.tol or 0.0), self.rtol

    def __repr__(self) -> str:
        return f"MaxUpdate(tol={self.tol!r}, rtol={self.rtol!r})"


def change_met(changes: Sequence[float], tol: float, how: str) -> bool:
    """Whether a run should stop, from the changes ``d_1 .. d_k`` of a value so far.

    Parameters
    ----------
    changes : sequence of float
        The change at each iteration (``d_k`` the latest).
    tol : float
        The tolerance (> 0).
    how : {"update", "estimate"}
        ``"update"``: ``d_k <= tol``. ``"estimate"``: with ``rho = d_k / d_(k-1) < 1``, the
        predicted remaining error ``d_k rho / (1 - rho) <= tol`` (a geometric tail of changes
        that shrink at least by ``rho``; Parareal's superlinear convergence makes the next
        change about ``d_k rho``); no decision before two changes, never with ``rho >= 1``.
        ``d_k = 0`` stops under both.
    """
    if not changes:
        return False
    last = changes[-1]
    if last == 0.0 or how == "update":
        return last <= tol
    if len(changes) < 2 or changes[-2] <= 0.0:
        return False
    rho = last / changes[-2]
    return rho < 1.0 and last * rho / (1.0 - rho) <= tol


def _max_abs(delta: Any) -> float:
    """``max |delta|`` (0 for an empty state)."""
    size = delta.numel() if hasattr(delta, "numel") else np.size(delta)
    return float(abs(delta).max()) if size else 0.0


class FinalChange(StopRule):
    """Stop when the final value ``U_N`` stops changing: ``norm(U_N^k - U_N^(k-1)) / scale``
    at most ``tol`` (``how="update"``), or its predicted remaining error (``"estimate"``, see
    :func:`change_met`). SRDS's rule: of a diffusion sampler's trajectory only the final
    sample is kept.

    Parameters
    ----------
    tol : float
        Tolerance, >= 0 (``0`` never stops).
    norm : callable, optional
        ``norm(delta) -> float`` of a difference of final values (default: max abs).
    scale : float
        The changes are divided by it (> 0).
    how : {"update", "estimate"}
        The decision from the changes so far.

    Notes
    -----
    A non-finite final value or change is divergence (``Status.DIVERGED``), never convergence.
    ``state()`` holds ``changes``, the change of every iterate ``1..k`` (after a resume: of the
    iterates since).
    """

    name = "final-change"

    def __init__(self, tol: float, norm: Callable[[Any], float] | None = None,
                 scale: float = 1.0, how: str = "update") -> None:
        self.tol = check_tolerance(tol, "tol")
        if norm is not None and not callable(norm):
            raise TypeError(f"norm must be callable as norm(delta) -> float, got {norm!r}")
        self.norm = norm if norm is not None else _max_abs
        if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
        self.scale = float(scale)
        if how not in PREDICTIONS:
            raise ValueError(f"how must be one of {PREDICTIONS}, got {how!r}")
        self.how = how
        self.start()

    def start(self) -> None:
        self.changes: list[float] = []
        self.last: Any = None
        self.diverged = False

    def check(self, iterate: Iterate) -> Status | None:
        final = iterate.final
        if not iterate.ops.all_finite(final):
            self.diverged = True
            return Status.DIVERGED
        if self.last is not None:
            change = self.norm(final - self.last) / self.scale
            if not math.isfinite(change):
                self.diverged = True
                return Status.DIVERGED
            self.changes.append(change)
        self.last = final
        if self.tol > 0 and change_met(self.changes, self.tol, self.how):
            return Status.CONVERGED
        return None

    def reason(self) -> str:
        return f"the final value's change {self.changes[-1]:.3e} met the tolerance ({self.how})"

    def state(self) -> dict[str, Any]:
        return {"rule": self.name, "tol": self.tol, "how": self.how,
                "changes": tuple(self.changes), "diverged": self.diverged}

    def __repr__(self) -> str:
        norm = getattr(self.norm, "__qualname__", type(self.norm).__qualname__)
        return (f"FinalChange(tol={self.tol!r}, norm={norm}, scale={self.scale!r}, "
                f"how={self.how!r})")


class FineResidual(StopRule):
    """pymgrit's rule: stop when the residual at the coarse points is small.

    The residual of iterate ``j`` at boundary ``n + 1`` is ``F(U_n^j) - U_(n+1)^j``: how far
    the iterate is from being a serial fine solution (zero on the exact prefix). Its 2-norm
    over all boundaries and entries (pymgrit: the 2-norm of the points' norms) is compared
    with ``tol``. The fine values of iterate ``j`` are those iterate ``j + 1`` is built from,
    so the rule decides at the end of iterate ``j + 1`` and returns it: one iteration later
    than a rule on ``j`` alone, and at least as accurate.

    Parameters
    ----------
    tol : float
        Tolerance on the 2-norm, >= 0 (``0`` never stops; pymgrit's default is ``1e-7``).

    Notes
    -----
    The engine keeps an iteration's fine values until its iterate is complete: one state per
    slice more than the other rules. ``state()`` holds ``residuals``, one per iterate
    ``0..k-1``.
    """

    name = "fine-residual"
    needs_fine_defects = True

    def __init__(self, tol: float = 1e-7) -> None:
        self.tol = check_tolerance(tol, "tol")
        self.start()

    def start(self) -> None:
        self.residuals: list[float] = []

    def check(self, iterate: Iterate) -> Status | None:
        if iterate.fine_defects is None:
            return None
        residual = math.sqrt(math.fsum(iterate.fine_defects))
        if not math.isfinite(residual):
            return Status.DIVERGED
        self.residuals.append(residual)
        return Status.CONVERGED if self.tol > 0 and residual <= self.tol else None

    def reason(self) -> str:
        return (f"the fine residual {self.residuals[-1]:.3e} of iterate "
                f"{len(self.residuals) - 1} met the tolerance")

    def state(self) -> dict[str, Any]:
        return {"rule": self.name, "tol": self.tol, "residuals": tuple(self.residuals)}

    def __repr__(self) -> str:
        return f"FineResidual(tol={self.tol!r})"
