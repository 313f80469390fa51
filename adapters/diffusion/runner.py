"""Sampling the chunks of a batch with a method: the sampler's grid for a scheduler, the model
as the engine's ``f`` on that grid, the fine and coarse propagators, the method's run of every
chunk and the results merged (:func:`.chunks._combine`). Shared by
:func:`~.sampler.sample` and ``auto``'s stub runs (:mod:`.auto`), which run methods directly.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, replace
from typing import Any

import torch

from parareal import Status
from parareal.backends import Rhs
from parareal.state import VECTORIZED_HINT, ops_for

from .chunks import _combine, _Noises
from .ddim import DDIMJump, DDIMSteps
from .flow import FlowGrid, FlowRhs, with_mu
from .methods.base import Chunk, Method, finite
from .model_rhs import GridTimesteps, ModelRhs
from .models import ModelFn
from .pf_ode import OnGrid, ProbabilityFlowRhs, SigmaGrid, propagators, sigma_grid
from .result import DiffusionResult
from .schedule import DDIMGrid, NoiseSchedule

__all__ = ["Sampling", "as_schedule", "sampler_grid"]


def as_schedule(scheduler: Any) -> NoiseSchedule:
    """The :class:`NoiseSchedule` of a DDIM or DDPM scheduler (or the schedule itself)."""
    if isinstance(scheduler, NoiseSchedule):
        return scheduler
    return NoiseSchedule.from_scheduler(scheduler)


def sampler_grid(scheduler: Any, num_inference_steps: int, *, pf: bool) -> DDIMGrid | SigmaGrid:
    """The grid the sampler runs on: the DDIM grid, or (``pf``) the probability-flow ODE's
    grid of noise levels (:mod:`.pf_ode`)."""
    if pf:
        return sigma_grid(with_mu(scheduler, None), num_inference_steps)
    schedule = as_schedule(scheduler)
    return schedule.grid(schedule.check_steps(num_inference_steps))


def _sample_notes(exc: BaseException) -> None:
    """Drop the engine's note about ``vectorized=`` (an option ``sample`` does not have) from an
    exception raised in a model call; the model call's own note says what applies."""
    notes = getattr(exc, "__notes__", None)
    if notes:
        notes[:] = [note for note in notes if VECTORIZED_HINT not in note]


def _progress_bar(enabled: bool, total: int, method: str) -> Any:
    """A tqdm bar over sequential model calls (``None`` when disabled or tqdm is missing)."""
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with diffusers
        return None
    return tqdm(total=total, desc=f"{method}: sequential model calls", unit="call",
                file=sys.stderr, leave=False)


@dataclass(frozen=True)
class Sampling:
    """What every chunk of one sampling call shares: the method, the grid, DDIM's ``eta`` and
    (on a grid of noise levels) the fine and coarse propagators.

    Build it with :meth:`build`.
    """

    method: Method
    grid: DDIMGrid | SigmaGrid
    eta: float = 0.0
    #: The probability-flow path's (fine, coarse); ``None`` for DDIM steps.
    propagators: tuple[OnGrid, OnGrid] | None = None

    @classmethod
    def build(cls, method: Method, grid: DDIMGrid | SigmaGrid, eta: float = 0.0) -> Sampling:
        """The sampling of ``method`` on ``grid`` (its ``fine``/``coarse``, or the scheduler's
        own method, on a grid of noise levels)."""
        props = (propagators(grid, method.fine, method.coarse)
                 if isinstance(grid, SigmaGrid) else None)
        return cls(method, grid, eta, props)

    def calls(self) -> int:
        """Sequential model calls of the serial sampler (the progress bar's total per chunk)."""
        return self.propagators[0].calls() if self.propagators else self.grid.steps

    def run(
        self, fn: ModelFn, x_T: torch.Tensor, bounds: list[tuple[int, int]], noises: _Noises,
        progress: bool, start: float,
    ) -> DiffusionResult:
        """Sample the chunks ``x_T[a:b]`` of ``bounds`` one after another and merge them
        (wall time from ``start``)."""
        name = self.method.name
        bar = _progress_bar(progress, self.calls() * len(bounds), name)
        try:
            with torch.no_grad():
                parts = [
                    self.run_chunk(fn.rows(a, b), x_T[a:b], noises.rows(a, b), bar)
                    for a, b in bounds
                ]
        finally:
            if bar is not None:
                bar.close()
        return _combine(parts, name, time.perf_counter() - start)

    def run_chunk(
        self, fn: ModelFn, x_T: torch.Tensor, noises: list[torch.Tensor] | None, bar: Any = None,
    ) -> DiffusionResult:
        """Sample one chunk (under ``torch.no_grad()``, as :meth:`run` calls it)."""
        begin = time.perf_counter()
        grid = self.grid
        if isinstance(grid, SigmaGrid):  # the probability-flow ODE in sigma (pf_ode)
            assert self.propagators is not None
            ode = FlowRhs if isinstance(grid, FlowGrid) else ProbabilityFlowRhs
            rhs = Rhs(ode(fn, grid, x_T.device, bar), ops_for(x_T), vectorized=True)
            fine, coarse = self.propagators
            chunk = Chunk(grid=grid, rhs=rhs, x_T=x_T * grid.init_scale, fine=fine,
                          coarse=coarse)
        else:
            model = ModelRhs(fn, GridTimesteps(grid.timesteps, x_T.device), bar=bar)
            rhs = Rhs(model, ops_for(x_T), vectorized=True)
            chunk = Chunk(grid=grid, rhs=rhs, x_T=x_T,
                          fine=DDIMSteps(grid, eta=self.eta, noises=noises),
                          coarse=DDIMJump(grid, eta=self.eta, noises=noises))
        try:
            result = self.method.run(chunk)
        except Exception as exc:
            _sample_notes(exc)
            raise
        if isinstance(grid, SigmaGrid) and grid.final_scale != 1.0:
            result = replace(result, sample=result.sample * grid.final_scale)
        if not finite(result.sample):
            result = replace(result, status=Status.DIVERGED)  # a non-finite sample: never converged
        return DiffusionResult(
            sample=result.sample,
            iterations=result.iterations,
            converged=result.status is Status.CONVERGED,
            status=result.status,
            sequential_evals=result.sequential_evals,
            total_evals=result.evals * fn.evals_per_state,
            residuals=result.residuals,
            method=self.method.name,
            wall_time_s=time.perf_counter() - begin,
            stats=result.stats,
            max_batch=x_T.shape[0],
            blocks=result.blocks,
        )
