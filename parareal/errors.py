"""Warnings and errors that report a run's outcome: :class:`ConvergenceWarning`,
:class:`DivergenceError`, :class:`CoarseStabilityWarning`, :class:`ToleranceWarning`,
:class:`NoSpeedupWarning`, :class:`OversubscriptionWarning`."""

from __future__ import annotations

from typing import Any

__all__ = [
    "CoarseStabilityWarning",
    "ConvergenceWarning",
    "DivergenceError",
    "NoSpeedupWarning",
    "OversubscriptionWarning",
    "ToleranceWarning",
]


class ConvergenceWarning(UserWarning):
    """A run stopped at its iteration cap without meeting the tolerance.

    Issued by entry points that return bare arrays (:func:`parareal.odeint`); the values
    returned are the last iterate, which may be far from the serial solution.

    Attributes
    ----------
    iterations : int
        Iterations completed.
    residual : float
        The last boundary update (NaN when no iteration ran).
    solution : parareal.Solution or None
        The run's full result.
    """

    def __init__(
        self, message: str, *, iterations: int = 0, residual: float = float("nan"),
        solution: Any = None,
    ) -> None:
        super().__init__(message)
        self.iterations = iterations
        self.residual = residual
        self.solution = solution


class DivergenceError(FloatingPointError):
    """A run produced NaN or inf (``Status.DIVERGED``).

    Raised by entry points that return bare arrays (:func:`parareal.odeint`), where a
    non-finite or garbage result could otherwise pass unnoticed. ``solution`` holds the
    run's result (its ``y`` is the last finite iterate).
    """

    def __init__(self, message: str, *, solution: Any = None) -> None:
        super().__init__(message)
        self.solution = solution


class CoarseStabilityWarning(UserWarning):
    """The coarse propagator amplifies a mode that the ODE itself does not amplify.

    Parareal then converges slowly, often only through exactness (one slice per iteration),
    doing far more work than the serial solver. See :func:`parareal.theory.coarse_stability`.
    """


class ToleranceWarning(UserWarning):
    """A stopping tolerance below what the state's dtype can resolve.

    Updates of converged iterates stop shrinking at a few ``eps`` times the states'
    magnitude, so such a run is likely to stop only through exactness, after about
    ``slices`` iterations. See :func:`parareal.default_tolerance`.

    Attributes
    ----------
    dtype : str
        The state's dtype, e.g. ``"float32"``.
    tol : float
        The tolerance asked for.
    smallest : float
        The smallest sensible tolerance for that dtype and the states' magnitude.
    """

    def __init__(
        self, message: str, *, dtype: str = "", tol: float = float("nan"),
        smallest: float = float("nan"),
    ) -> None:
        super().__init__(message)
        self.dtype = dtype
        self.tol = tol
        self.smallest = smallest


class NoSpeedupWarning(UserWarning):
    """A run that cannot have been faster than the serial fine solve.

    Issued by :func:`parareal.solve`, :func:`parareal.odeint` and the CLI when the speed-up
    bound (``Stats.speedup_bound``: serial fine calls / critical-path calls, i.e. the speed-up
    with one worker or batch slot per slice) is below 1, or when the run converged only because
    every slice became exact (as many iterations as slices). The message carries the figures
    and advice.

    Attributes
    ----------
    speedup_bound : float
        ``Stats.speedup_bound`` of the run.
    iterations, slices : int
        Iterations run and slices.
    solution : parareal.Solution or None
        The run's full result.
    """

    def __init__(self, message: str, *, speedup_bound: float = float("nan"),
                 iterations: int = 0, slices: int = 0, solution: Any = None) -> None:
        super().__init__(message)
        self.speedup_bound = speedup_bound
        self.iterations = iterations
        self.slices = slices
        self.solution = solution


class OversubscriptionWarning(RuntimeWarning):
    """A concurrent backend is about to start far more workers than there are CPU cores.

    Issued by ``Threads`` and ``Processes`` when the workers a run will start (their
    ``workers``, at most one per slice) are at least four times the CPU cores this process
    may use: the workers then only take turns on the cores, each process costs its memory,
    and the run is slower than with one worker per core. Pass ``workers`` at most the number
    of cores (the default).
    """
