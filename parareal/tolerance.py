"""Stopping tolerances that fit the state's dtype: :func:`default_tolerance`,
:func:`smallest_tolerance` and :func:`resolve_tolerance`.

Parareal stops when ``max_n |U_n^k - U_n^{k-1}| <= tol + rtol * max_n |U_n^k|``. Once the
iterates have converged, the update does not shrink to zero: it sits on a round-off floor of
a few to a few tens of ``eps * max_n |U_n^k|`` (``eps`` the dtype's machine epsilon; measured on
the bundled problems, up to about ``30 eps`` for the Brusselator in float32). A tolerance below
that floor is met only when the slices become exact one by one, i.e. after about ``slices``
iterations: float32 with the float64 default ``tol = 1e-8`` (``eps = 1.2e-7``) runs every
iteration.

The rule used when ``tol`` is not given::

    tol = max(1e-8, RESOLUTION * eps * scale)

with ``RESOLUTION = 32`` and ``scale`` the states' magnitude (``max |y0|`` at the start of a
run). For float64 (``eps = 2.2e-16``) this is the historical ``1e-8`` for every ``scale`` below
about ``1.4e6``; for float32 it is ``3.8e-6 * scale``, for float16 ``0.031 * scale``, for
bfloat16 ``0.25 * scale`` (such low precisions give only a rough solution). Complex dtypes use
the epsilon of their real components. Where the rule gives more than ``1e-8``, ``rtol`` is
raised to at least ``RESOLUTION * eps`` too, so that the test follows the states as they grow
(Lorenz: from 1.7 to 47).

Measured on the bundled problems (``PYTHONPATH=. python tests/scripts/dtype_tolerance_table.py``):
iterations ``K`` in float64 at ``tol = 1e-8``, in float32 at ``tol = 1e-8`` and in float32 at
the default tolerance (numpy / torch), and the max error of float32 Parareal and of the
float32 serial fine solution against the float64 serial fine solution, in units of float32's
``eps * max abs U``::

    problem             N   K f64   K f32 1e-8   K f32 default   error Parareal   error serial
    dahlquist           10  3       5            2 / 2           5.4e-08 (0.5)    5.4e-08 (0.5)
    dahlquist-complex   10  7       10           5 / 5           4.5e-07 (3.8)    5.1e-07 (4.2)
    brusselator         32  7       21           6 / 6           1.9e-05 (34.2)   2.0e-05 (35.9)
    lorenz              30  5       27           3 / 3           3.9e-05 (7.0)    3.5e-05 (6.4)
    vanderpol           20  4       19           3 / 3           4.2e-06 (13.3)   1.0e-05 (32.7)
    heat                10  2       10           2 / 2           5.0e-06 (42.0)   5.1e-06 (42.5)

The float32 runs with the default tolerance stop within the float64 run's iterations and are
as accurate as the float32 serial fine solution itself: float32 cannot hold more.
"""

from __future__ import annotations

import numbers
import sys
import warnings
from typing import Any

import numpy as np

from .errors import ToleranceWarning
from .state import is_torch
from .validation import check_real, check_tolerance

__all__ = [
    "LEGACY_TOLERANCE",
    "RESOLUTION",
    "WARN_RESOLUTION",
    "default_tolerance",
    "machine_epsilon",
    "resolve_tolerance",
    "smallest_tolerance",
    "state_scale",
]

#: The default tolerance of float64 runs (and the floor of every default): kept from before
#: tolerances followed the dtype, so float64 results do not change.
LEGACY_TOLERANCE = 1e-8
#: The default tolerance is ``RESOLUTION * eps * scale`` (at least :data:`LEGACY_TOLERANCE`):
#: just above the round-off floor of converged updates measured on the bundled problems (a few
#: to about 30 ``eps`` times the states' magnitude), so a float32 run stops within an
#: iteration of the float64 run of the same problem.
RESOLUTION = 32.0
#: An explicit tolerance below ``WARN_RESOLUTION * eps * scale`` is a
#: :class:`~parareal.ToleranceWarning`: updates rarely drop below a few ``eps`` times the
#: states' magnitude before the slices become exact one by one.
WARN_RESOLUTION = 4.0


def _real_dtype_name(dtype_or_state: Any) -> tuple[str, float]:
    """The dtype's name and the machine epsilon of its real components."""
    if is_torch(dtype_or_state):
        dtype_or_state = dtype_or_state.dtype
    torch = sys.modules.get("torch")  # a torch dtype means torch is imported
    if torch is not None and isinstance(dtype_or_state, torch.dtype):
        name = str(dtype_or_state).removeprefix("torch.")
        if dtype_or_state.is_complex:
            real = {torch.complex32: torch.float16, torch.complex64: torch.float32,
                    torch.complex128: torch.float64}[dtype_or_state]
            return name, float(torch.finfo(real).eps)
        if not dtype_or_state.is_floating_point:
            raise TypeError(
                "dtype_or_state must be a floating or complex dtype (or a state of one), "
                f"got {name}"
            )
        return name, float(torch.finfo(dtype_or_state).eps)
    if isinstance(dtype_or_state, (bool, numbers.Number)) or dtype_or_state is None:
        raise TypeError(
            "dtype_or_state must be a dtype (numpy or torch) or a state (array or tensor), "
            f"got {dtype_or_state!r}"
        )
    if isinstance(dtype_or_state, np.ndarray):
        dtype = dtype_or_state.dtype
    else:
        try:
            dtype = np.dtype(dtype_or_state)
        except TypeError as exc:
            raise TypeError(
                "dtype_or_state must be a dtype (numpy or torch) or a state (array or tensor), "
                f"got {dtype_or_state!r}"
            ) from exc
    if dtype.kind not in "fc":
        raise TypeError(
            f"dtype_or_state must be a floating or complex dtype (or a state of one), got {dtype}"
        )
    return dtype.name, float(np.finfo(dtype).eps)


def machine_epsilon(dtype_or_state: Any) -> float:
    """The machine epsilon of a dtype's real components.

    Parameters
    ----------
    dtype_or_state : numpy dtype, torch.dtype, numpy.ndarray or torch.Tensor
        A floating or complex dtype, or a state of one (``complex64`` counts as float32).

    Returns
    -------
    float

    Raises
    ------
    TypeError
        If ``dtype_or_state`` is not a floating or complex dtype or a state of one.
    """
    return _real_dtype_name(dtype_or_state)[1]


def state_scale(state: Any) -> float:
    """The magnitude ``max |state|`` a tolerance is relative to (1 for an all-zero state).

    Parameters
    ----------
    state : numpy.ndarray or torch.Tensor

    Returns
    -------
    float
        ``max |state|``, or ``1.0`` when that is 0 (nothing tells the magnitude then) or
        not finite.
    """
    if is_torch(state):
        scale = float(state.detach().abs().max().item()) if state.numel() else 0.0
    else:
        arr = np.asarray(state)
        scale = float(np.max(np.abs(arr))) if arr.size else 0.0
    return scale if np.isfinite(scale) and scale > 0.0 else 1.0


def _scale(dtype_or_state: Any, scale: Any) -> float:
    if scale is None:
        if is_torch(dtype_or_state) or isinstance(dtype_or_state, np.ndarray):
            return state_scale(dtype_or_state)
        return 1.0
    value = check_real(scale, "scale")
    if not value > 0.0:
        raise ValueError(f"scale must be positive (the states' magnitude), got {value}")
    return value


def default_tolerance(dtype_or_state: Any, scale: float | None = None) -> float:
    """The default absolute stopping tolerance for states of a dtype.

    ``max(1e-8, RESOLUTION * eps * scale)`` with ``RESOLUTION = 32``: ``1e-8`` for float64
    (as before tolerances followed the dtype) while ``scale`` is below about ``1.4e6``;
    ``3.8e-6 * scale`` for float32, ``0.031 * scale`` for float16, ``0.25 * scale`` for
    bfloat16. See :mod:`parareal.tolerance` for the measurements behind it.

    Parameters
    ----------
    dtype_or_state : numpy dtype, torch.dtype, numpy.ndarray or torch.Tensor
        A floating or complex dtype (complex uses its real components' epsilon), or a state.
    scale : float, optional
        The states' magnitude. Default: ``max |state|`` for a state (1 if it is all
        zero), 1 for a dtype.

    Returns
    -------
    float

    Raises
    ------
    TypeError
        If ``dtype_or_state`` is not a floating or complex dtype or state, or ``scale`` is
        not a real number.
    ValueError
        If ``scale`` is not positive and finite.

    Examples
    --------
    >>> import numpy as np
    >>> from parareal import default_tolerance
    >>> default_tolerance(np.float64)
    1e-08
    >>> f"{default_tolerance(np.float32, scale=10.0):.3g}"
    '3.81e-05'
    """
    eps = machine_epsilon(dtype_or_state)
    return max(LEGACY_TOLERANCE, RESOLUTION * eps * _scale(dtype_or_state, scale))


def smallest_tolerance(dtype_or_state: Any, scale: float | None = None) -> float:
    """The smallest sensible stopping tolerance: ``WARN_RESOLUTION * eps * scale``.

    Updates of converged iterates rarely drop below this, so a smaller ``tol`` (with a
    smaller ``rtol * scale``) is met only through exactness, after about ``slices``
    iterations. :func:`resolve_tolerance` warns below it.

    Parameters
    ----------
    dtype_or_state, scale
        As for :func:`default_tolerance`.

    Returns
    -------
    float
    """
    eps = machine_epsilon(dtype_or_state)
    return WARN_RESOLUTION * eps * _scale(dtype_or_state, scale)


def resolve_tolerance(tol: Any, rtol: Any, y0: Any) -> tuple[float, float]:
    """The ``(tol, rtol)`` a run with initial state ``y0`` uses, checked.

    ``tol=None`` means the dtype's default: ``tol = default_tolerance(y0)`` (scale
    ``max |y0|``); when that is above ``1e-8`` (the dtype cannot resolve ``1e-8``: float32
    and lower precisions), ``rtol`` is also raised to at least ``RESOLUTION * eps``, so that
    the tolerance follows the states as they grow during the run (Lorenz: from 1.7 to 47).
    For float64 this gives ``(1e-8, rtol)`` unchanged.

    An explicit ``tol`` with ``tol + rtol * max |y0|`` below :func:`smallest_tolerance`
    issues a :class:`~parareal.ToleranceWarning`, except ``tol = rtol = 0`` (which asks for
    exactly ``max_iters`` iterations).

    Parameters
    ----------
    tol : float or None
        Absolute tolerance on the boundary updates; ``None`` for the dtype's default.
    rtol : float
        Relative tolerance (times ``max_n |U_n^k|``).
    y0 : numpy.ndarray or torch.Tensor
        The initial state (already checked).

    Returns
    -------
    (float, float)

    Raises
    ------
    TypeError, ValueError
        If ``tol`` or ``rtol`` is not a finite real number ``>= 0`` (``tol`` may be None).

    Notes
    -----
    How :func:`parareal.odeint` (or any entry point taking ``tol=None``) uses it:
    ``tol, rtol = resolve_tolerance(tol, rtol, y0)`` after checking ``y0``, or pass
    ``tol=None`` through to ``parareal.solve``'s internals, which call it.
    """
    rtol = check_tolerance(rtol, "rtol")
    scale = state_scale(y0)
    if tol is None:
        tol = default_tolerance(y0, scale)
        if tol > LEGACY_TOLERANCE:
            rtol = max(rtol, RESOLUTION * machine_epsilon(y0))
        return tol, rtol
    tol = check_tolerance(tol, "tol")
    floor = smallest_tolerance(y0, scale)
    if (tol > 0.0 or rtol > 0.0) and tol + rtol * scale < floor:
        warnings.warn(
            ToleranceWarning(
                f"tol={tol:g} (rtol={rtol:g}) is below what {_real_dtype_name(y0)[0]} states "
                f"of magnitude {scale:.3g} can resolve: updates stop shrinking near round-off, "
                f"so the run will likely take max_iters iterations (all slices exact). The "
                f"smallest sensible tol is {floor:.3g}; the default (tol=None) is "
                f"{default_tolerance(y0, scale):.3g}. Pass tol=0, rtol=0 to run exactly "
                "max_iters iterations on purpose.",
                dtype=_real_dtype_name(y0)[0], tol=tol, smallest=floor,
            ),
            stacklevel=4,
        )
    return tol, rtol
