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
        (Euler for DDIM, DDPM, Euler and flow-matching schedulers -- Euler in ``sigma`` is
        DDIM's step --, Heun for Heun). Passing it with a DDIM schedule samples it in these
        variables instead of with DDIM steps (the grid: the noise levels of the model inputs,
        then the final one).

    Notes
    -----
    A sub-step that ends at ``sigma = 0`` is always an Euler step: the right side is ``0 / 0``
    there (Karras et al. 2022, Algorithm 1; diffusers' Heun scheduler does the same). So RK4
    on ``N`` intervals costs ``4 N - 3`` model calls, Heun ``2 N - 1``.

    With the default ``fine``, serial sampling equals diffusers' own loop
    (``scale_model_input``, the model, ``scheduler.step``) for ``EulerDiscreteScheduler`` and
    ``HeunDiscreteScheduler``, with or without Karras sigmas, for every prediction type,
    ``timestep_spacing``, ``final_sigmas_type``, ``timestep_type="continuous"`` and Heun's
    ``clip_sample`` (to 1e-5 relative in float32 in the tests; bitwise where we looked), and
    for ``FlowMatchEulerDiscreteScheduler`` (bitwise in the tests). Euler runs with
    ``s_churn = 0`` (diffusers' default: deterministic). ``fine="heun"`` on an Euler
    scheduler's grid is diffusers' Heun sampler on that grid; ``fine="euler"`` on a DDIM
    schedule without ``clip_sample`` (whose clipping DDIM applies to ``x0`` but not to its
    noise estimate) is DDIM, up to the float32 rounding of DDIM's coefficients.
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
