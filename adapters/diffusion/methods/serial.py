"""Serial sampling: the scheduler's own steps, one model call after another (the reference
that SRDS reproduces)."""

from __future__ import annotations

from typing import Any

from parareal import Status

from ..result import Outcome
from .base import Chunk, Method, optional_propagator

__all__ = ["Serial"]


class Serial(Method):
    """The serial sampler: ``N`` steps (a Heun step two model calls, but the last), each one
    model call on the chunk's samples.

    Parameters
    ----------
    steps : int
        ``N``.
    fine : parareal propagator or spec, optional
        An engine fixed-step propagator (``parareal.Euler()``, ``Heun()``, ``RK4()`` or a spec
        such as ``"heun"``) that integrates the probability-flow ODE
        ``dy/dsigma = (y - x0_hat) / sigma`` on every interval of the scheduler's grid of noise
        levels (``steps`` equal sub-steps per interval). Default: the scheduler's own method
        (Euler for DDIM, DDPM and Euler schedulers -- Euler in ``sigma`` is DDIM --, Heun for
        Heun). Passing it with a DDIM schedule samples it in these variables instead of with
        DDIM steps.
    """

    name = "serial"
    exact = True
    needs_generator = False

    def __init__(self, steps: int, *, fine: Any = None) -> None:
        super().__init__(steps)
        self.fine = optional_propagator(fine, "fine")

    @property
    def rows_per_call(self) -> int:
        """One state per sample."""
        return 1

    @property
    def states_kept(self) -> int:
        """The current state and the model output."""
        return 2

    def run(self, chunk: Chunk) -> Outcome:
        rhs = chunk.rhs
        out = chunk.fine.propagate(rhs.plain, chunk.x_T, 0.0, float(chunk.grid.steps))
        return Outcome(sample=out, iterations=0, status=Status.CONVERGED,
                       sequential_evals=rhs.calls, evals=rhs.evals)
