"""The :class:`Problem` record and helpers shared by the test-problem factories."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..propagators import Propagator, resolve
from ..validation import check_positive, check_real, check_slices
from .reference import ReferenceUnavailable, integrate

__all__ = [
    "Problem",
    "ReferenceUnavailable",
    "check_positive",
    "check_propagators",
    "check_real",
    "check_state",
    "check_t_end",
    "integrate",
]


@dataclass(frozen=True, eq=False)
class Problem:
    """A test ODE ``dy/dt = f(t, y)`` with defaults for Parareal and a reference solution.

    Build one with a factory (:func:`parareal.problems.brusselator`...) or by name with
    :func:`parareal.problems.get`; then ``parareal.solve(p.f, p.y0, p.t_span, coarse=p.coarse,
    fine=p.fine, slices=p.slices)``.

    Attributes
    ----------
    name : str
        Registry name, e.g. ``"brusselator"``.
    f : callable
        Right-hand side ``f(t, y) -> dy/dt`` on numpy arrays. It accepts a single state (``t`` a
        float, ``y`` of shape ``y0.shape``) and a batch (``t`` of shape ``(B,)``, ``y`` of shape
        ``(B, *y0.shape)``), so pass ``vectorized=True`` to :func:`parareal.solve`. It is
        elementwise, so a batch gives the same bits as the stacked single calls. It is a
        picklable, hashable callable object.
    y0 : numpy.ndarray
        Initial state (float64; complex128 for the complex Dahlquist problem). Read-only.
    t_span : (float, float)
        ``(t0, t_end)``.
    coarse, fine : Propagator
        Default coarse ``G`` and fine ``F`` propagators (per slice).
    slices : int
        Default number of time slices.
    description : str
        One line on the problem and the defaults.
    lam : complex or None
        The eigenvalue of a Dahlquist problem ``y' = lam * y`` (for the theory bounds), else
        ``None``.
    exact : callable or None
        Closed-form solution ``exact(t) -> (len(t), *y0.shape)`` for a 1-D float array ``t``;
        ``None`` means :meth:`reference` integrates numerically with scipy.
    stiff : bool
        Whether the problem, with its parameters, is stiff: explicit methods need steps much
        shorter than the solution's own time scale. The factories set it (Van der Pol for
        ``mu >= 100``, the heat equation always); a stiff problem's numerical reference uses
        the implicit Radau method (see :mod:`parareal.problems.reference`).
    jacobian : callable or None
        ``jacobian(t, y) -> (n, n)``, the exact Jacobian ``df/dy`` of ``f`` for one flattened
        state of ``n`` entries, where it is cheap in closed form (Van der Pol and the classic
        test set: HIRES, Robertson, Pleiades, Kepler, the 1-D Brusselator); used by the Radau
        reference and by the default implicit fine propagators (``options={"jac": ...}``).
        The test-set Jacobians also accept a batch ``(B, n)`` and return ``(B, n, n)``.
    published_final : numpy.ndarray or None
        A published value of ``y(t_span[1])`` (e.g. from the Bari "Test Set for IVP Solvers"),
        returned by :meth:`reference_final` instead of a numerical integration; the factory
        sets it only for the exact parameters it was published for. Read-only.
    """

    name: str
    f: Callable[[Any, Any], Any]
    y0: np.ndarray
    t_span: tuple[float, float]
    coarse: Propagator
    fine: Propagator
    slices: int
    description: str
    lam: complex | None = None
    exact: Callable[[np.ndarray], np.ndarray] | None = None
    stiff: bool = False
    jacobian: Callable[[Any, Any], Any] | None = None
    published_final: np.ndarray | None = None

    def __post_init__(self) -> None:
        y0 = np.array(self.y0, copy=True)
        y0.setflags(write=False)
        object.__setattr__(self, "y0", y0)
        if self.published_final is not None:
            final = np.array(self.published_final, dtype=y0.dtype).reshape(y0.shape)
            final.setflags(write=False)
            object.__setattr__(self, "published_final", final)
        object.__setattr__(self, "t_span", (float(self.t_span[0]), float(self.t_span[1])))

    def __repr__(self) -> str:
        y0 = repr(self.y0.tolist()) if self.y0.size <= 6 else f"<array {self.y0.shape}>"
        return (
            f"Problem(name={self.name!r}, y0={y0}, t_span={self.t_span!r}, "
            f"coarse={self.coarse!r}, fine={self.fine!r}, slices={self.slices})"
        )

    def reference(self, t: Any) -> np.ndarray:
        """The exact (or high-accuracy) solution at the times ``t``.

        Parameters
        ----------
        t : 1-D array-like of float
            Times ``>= t_span[0]``, in any order (a scalar counts as one time).

        Returns
        -------
        numpy.ndarray
            Shape ``(len(t), *y0.shape)``, ``y0``'s dtype. The closed form where one exists,
            otherwise :func:`scipy.integrate.solve_ivp` at ``rtol = atol = 1e-13`` (needs scipy:
            ``pip install 'parareal[scipy]'``): ``DOP853``, or ``Radau`` for a :attr:`stiff`
            problem or when ``DOP853`` fails or runs out of evaluations. The integration is
            bounded in evaluations of ``f`` and in time (:mod:`parareal.problems.reference`).

        Raises
        ------
        ValueError
            If ``t`` is not 1-D, not finite, or has a time before ``t_span[0]``.
        ReferenceUnavailable
            If there is no closed form and the numerical reference cannot be computed: scipy
            is not installed, or the integration fails, runs out of its bounds, or is not
            finite. The message says which, prefixed by the problem's name.
        """
        times = np.atleast_1d(np.asarray(t, dtype=np.float64))
        if times.ndim != 1:
            raise ValueError(f"t must be a 1-D array of times, got shape {times.shape}")
        if not np.all(np.isfinite(times)):
            raise ValueError("t must be finite")
        t0 = self.t_span[0]
        if times.size and times.min() < t0:
            raise ValueError(f"reference times must be >= t_span[0] = {t0}, got {times.min()}")
        if self.exact is not None:
            out = np.asarray(self.exact(times), dtype=self.y0.dtype)
        else:
            try:
                out = integrate(self.f, self.y0, t0, times, stiff=self.stiff, jac=self.jacobian)
            except ReferenceUnavailable as exc:
                raise ReferenceUnavailable(f"{self.name}: {exc}") from None
        return out.reshape((times.size, *self.y0.shape))

    def reference_final(self) -> np.ndarray:
        """The reference solution at ``t_span[1]``, shape ``y0.shape``.

        The :attr:`published_final` value where the problem has one (a fresh copy), otherwise
        ``reference([t_span[1]])[0]``.
        """
        if self.published_final is not None:
            return self.published_final.copy()
        return self.reference([self.t_span[1]])[0]


def check_t_end(t_end: Any) -> float:
    """Return ``t_end`` as a positive finite float (the span is ``(0, t_end)``)."""
    return check_positive(t_end, "t_end")


def check_state(y0: Any, size: int, what: str) -> np.ndarray:
    """Return ``y0`` as a finite float64 vector of ``size`` entries (``what`` names them)."""
    try:
        arr = np.array(y0, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"y0 must be {size} real numbers {what}, got {y0!r}") from None
    if arr.shape != (size,):
        raise ValueError(f"y0 must have shape ({size},) {what}, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"y0 must be finite, got {arr}")
    return arr


def check_propagators(
    slices: Any,
    coarse: Propagator | str | None,
    fine: Propagator | str | None,
    default_coarse: Callable[[], Propagator],
    default_fine: Callable[[], Propagator],
) -> tuple[int, Propagator, Propagator]:
    """Validate ``slices`` and resolve ``coarse``/``fine`` (``None`` -> the problem's default)."""
    slices = check_slices(slices)
    coarse_p = default_coarse() if coarse is None else resolve(coarse, name="coarse")
    fine_p = default_fine() if fine is None else resolve(fine, name="fine")
    return slices, coarse_p, fine_p
