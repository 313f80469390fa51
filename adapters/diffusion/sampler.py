"""``sample``: serial DDIM, SRDS (Parareal over the DDIM grid) and Picard (ParaDiGMS).

Paper-to-code notation (SRDS, Selvam et al. 2024, arXiv 2412.08292):

=====================  ==============================================================
paper                  code
=====================  ==============================================================
N sampling steps       ``num_inference_steps``; grid points ``0..N`` (:class:`DDIMGrid`)
B = sqrt(N) blocks     ``blocks`` (default ``round(sqrt(N))``); Parareal ``slices``
fine solver F          :class:`DDIMSteps`: the block's own DDIM steps
coarse solver G        :class:`DDIMJump`: one DDIM step across the block
x_T                    ``x_T``: grid point 0 (``t_span = (0, N)`` in grid units)
SRDS iteration k       Parareal iteration ``k`` of :func:`parareal.solve`
pipelined SRDS         ``schedule="pipelined"`` of the engine
convergence check      change of the final sample between iterations (``tol``)
=====================  ==============================================================
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

import parareal
from parareal.backends import Rhs
from parareal.state import ops_for
from parareal.validation import check_int, check_tolerance

from .ddim import DDIMJump, DDIMSteps
from .models import ModelFn, wrap_model
from .schedule import DDIMGrid, NoiseSchedule

__all__ = ["DEFAULT_TOL", "METHODS", "DiffusionResult", "sample"]

METHODS = ("serial", "srds", "picard")
TOL_MODES = ("data", "noise")
#: Default tolerances by (method, tol_mode). SRDS in data units: 1/255, half an 8-bit level of
#: an image in [-1, 1] (the error at the stop is typically far smaller than the last change).
DEFAULT_TOL = {
    ("srds", "data"): 1 / 255,
    ("srds", "noise"): 0.1,
    ("picard", "data"): 1e-3,
    ("picard", "noise"): 0.1,
}


@dataclass(frozen=True)
class DiffusionResult:
    """Result of :func:`sample`.

    Attributes
    ----------
    sample : torch.Tensor
        The generated sample, shape and dtype of ``x_T``.
    iterations : int
        Refinement iterations (SRDS: Parareal iterations; Picard: window iterations; 0 for
        serial).
    converged : bool
        The stopping rule was met (serial: always True).
    sequential_evals : int
        Batched model calls on the critical path: the latency in model calls.
    total_evals : int
        Model evaluations per sample (a guided evaluation counts 2).
    residuals : tuple of float
        The quantity the stopping rule tested, per iteration.
    method : str
    wall_time_s : float
    stats : parareal.Stats or None
        The engine's counters (SRDS only).
    """

    sample: torch.Tensor
    iterations: int
    converged: bool
    sequential_evals: int
    total_evals: int
    residuals: tuple[float, ...]
    method: str = "srds"
    wall_time_s: float = 0.0
    stats: parareal.Stats | None = None


def _schedule(scheduler: Any) -> NoiseSchedule:
    if isinstance(scheduler, NoiseSchedule):
        return scheduler
    return NoiseSchedule.from_scheduler(scheduler)


def _optional_int(value: Any, name: str, minimum: int) -> int | None:
    return None if value is None else check_int(value, name, minimum)


class _ModelRhs:
    """The engine's vectorised ``f(s, X)``: the model at grid indices ``s`` for states ``X``."""

    def __init__(
        self, model: ModelFn, timesteps: np.ndarray, device: torch.device, bar: Any = None
    ) -> None:
        self.model = model
        self.timesteps = torch.as_tensor(timesteps, dtype=torch.long, device=device)
        self.bar = bar

    def __call__(self, s: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        slices, batch = states.shape[0], states.shape[1]
        index = torch.round(s).long().to(self.timesteps.device)
        t = self.timesteps[index].repeat_interleave(batch)
        out = self.model(states.reshape(slices * batch, *states.shape[2:]), t)
        if self.bar is not None:
            self.bar.update(1)
        return out.reshape(states.shape)


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


def _noises(
    grid: DDIMGrid, x_T: torch.Tensor, eta: float, generator: torch.Generator | None
) -> list[torch.Tensor] | None:
    """One noise tensor per step, drawn in step order as diffusers' step loop draws them."""
    if eta == 0:
        return None
    device = generator.device if generator is not None else x_T.device
    return [
        torch.randn(x_T.shape, generator=generator, device=device, dtype=x_T.dtype).to(x_T.device)
        for _ in range(grid.steps)
    ]


def _change(delta: torch.Tensor, mode: str) -> float:
    """Max-abs change (``data``) or the largest per-sample RMS change (``noise``)."""
    if mode == "data":
        return float(delta.abs().max()) if delta.numel() else 0.0
    per_sample = delta.reshape(delta.shape[0], -1).pow(2).mean(dim=1).sqrt()
    return float(per_sample.max())


def sample(
    model: Any,
    scheduler: Any,
    x_T: torch.Tensor,
    *,
    num_inference_steps: int,
    method: str = "srds",
    blocks: int | None = None,
    tol: float | None = None,
    tol_mode: str | None = None,
    pipelined: bool = True,
    max_iters: int | None = None,
    window: int | None = None,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    guidance_scale: float | None = None,
    prompt_embeds: torch.Tensor | None = None,
    negative_prompt_embeds: torch.Tensor | None = None,
    progress: bool = False,
    callback: Callable[[int, torch.Tensor], Any] | None = None,
) -> DiffusionResult:
    """Sample a diffusion model with DDIM steps: serially, with SRDS, or with Picard iterations.

    Parameters
    ----------
    model : callable or diffusers UNet
        ``model(x, t)`` returning the schedule's prediction type, a ``UNet2DModel`` or a
        ``UNet2DConditionModel`` (see :func:`wrap_model`).
    scheduler : DDIMScheduler, DDPMScheduler or NoiseSchedule
        The noise schedule and sampler settings; a diffusers scheduler is only read.
    x_T : torch.Tensor
        Initial noise, shape ``(batch, ...)``; the batch is sampled together.
    num_inference_steps : int
        ``N``, the DDIM steps of the serial sampler that SRDS and Picard reproduce.
    method : {"serial", "srds", "picard"}
    blocks : int, optional
        SRDS blocks ``B`` (default ``round(sqrt(N))``; uneven splits allowed; ``B <= N``).
    tol : float, optional
        Stopping tolerance; defaults in :data:`DEFAULT_TOL`. ``0`` runs SRDS for ``B``
        iterations (bitwise the serial sample up to model round-off) and Picard until every
        step is exact.
    tol_mode : {"data", "noise"}, optional
        ``"data"`` (SRDS default): max-abs change, in data units. ``"noise"`` (Picard default,
        ParaDiGMS's rule): per-sample RMS change compared with ``tol`` times a noise level --
        for SRDS the noise level of the last denoising step's input, for Picard each step's
        DDPM posterior standard deviation (floored at the smallest positive one).
        SRDS tests the final sample; Picard tests every step of its window and slides past
        the converged prefix.
    pipelined : bool
        SRDS schedule: pipelined (default) or synchronous.
    max_iters : int, optional
        Iteration cap (SRDS: default and maximum ``B``; Picard: default ``N``).
    window : int, optional
        Picard window ``p`` (default ``min(N, 2 * round(sqrt(N)))``).
    eta : float
        DDIM eta; ``eta > 0`` is stochastic sampling with noise drawn once up front from
        ``generator`` (in step order, exactly as diffusers' step loop draws it).
    generator : torch.Generator, optional
        Required for ``eta > 0`` with SRDS and Picard.
    guidance_scale, prompt_embeds, negative_prompt_embeds :
        For ``UNet2DConditionModel``: classifier-free guidance in one batch.
    progress : bool
        Show a progress bar (tqdm) of sequential model calls on standard error.
    callback : callable, optional
        ``callback(iteration, sample)`` with the current estimate of the final sample after
        every SRDS iterate (0 is the coarse sweep) or Picard iteration (not called for serial).

    Returns
    -------
    DiffusionResult
    """
    start = time.perf_counter()
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    schedule = _schedule(scheduler)
    if not isinstance(x_T, torch.Tensor):
        raise TypeError(f"x_T must be a torch.Tensor, got {type(x_T).__name__}")
    if not x_T.is_floating_point() or x_T.ndim < 1:
        raise TypeError(f"x_T must be a floating tensor with a batch axis, got {x_T.dtype}")
    if not bool(torch.isfinite(x_T).all()):
        raise ValueError("x_T contains NaN or inf")
    steps = schedule.check_steps(num_inference_steps)
    eta = check_tolerance(eta, "eta")
    if eta > 0 and method != "serial" and generator is None:
        raise ValueError(
            f"eta > 0 with method={method!r} needs a torch.Generator: the noise is drawn once up "
            "front so that the result is the serial stochastic sample for that noise"
        )
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    blocks = _optional_int(blocks, "blocks", 1)
    window = _optional_int(window, "window", 1)
    max_iters = _optional_int(max_iters, "max_iters", 1)
    if blocks is not None and method != "srds":
        raise ValueError("blocks applies to method='srds' only")
    if window is not None and method != "picard":
        raise ValueError("window applies to method='picard' only")
    if blocks is not None and blocks > steps:
        raise ValueError(f"blocks must be <= num_inference_steps = {steps}, got {blocks}")
    if not isinstance(pipelined, bool) or not isinstance(progress, bool):
        raise TypeError("pipelined and progress must be True or False")
    mode = tol_mode if tol_mode is not None else ("noise" if method == "picard" else "data")
    if mode not in TOL_MODES:
        raise ValueError(f"tol_mode must be one of {TOL_MODES}, got {tol_mode!r}")
    if method != "serial":
        tol = DEFAULT_TOL[(method, mode)] if tol is None else check_tolerance(tol, "tol")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable, got {type(callback).__name__}")

    fn = wrap_model(
        model,
        guidance_scale=guidance_scale,
        prompt_embeds=prompt_embeds,
        negative_prompt_embeds=negative_prompt_embeds,
    )
    fn.check_sample(x_T)
    grid = schedule.grid(steps)
    bar = _progress_bar(progress, steps, method)
    rhs = Rhs(_ModelRhs(fn, grid.timesteps, x_T.device, bar), ops_for(x_T), vectorized=True)
    noises = _noises(grid, x_T, eta, generator)
    run = _Run(rhs=rhs, grid=grid, x_T=x_T, fine=DDIMSteps(grid, eta=eta, noises=noises),
               coarse=DDIMJump(grid, eta=eta, noises=noises), tol=tol or 0.0, mode=mode,
               max_iters=max_iters, callback=callback)
    try:
        with torch.no_grad():
            if method == "srds":
                result = _srds(run, blocks, pipelined)
            elif method == "picard":
                result = _picard(run, window)
            else:
                out = run.fine.propagate(rhs.plain, x_T, 0.0, float(steps))
                result = dict(sample=out, iterations=0, converged=True,
                              sequential_evals=rhs.calls, residuals=(), stats=None)
    finally:
        if bar is not None:
            bar.close()
    return DiffusionResult(
        total_evals=rhs.evals * fn.evals_per_state,
        method=method,
        wall_time_s=time.perf_counter() - start,
        **result,
    )


@dataclass
class _Run:
    """What the SRDS and Picard runners share."""

    rhs: Rhs
    grid: DDIMGrid
    x_T: torch.Tensor
    fine: DDIMSteps
    coarse: DDIMJump
    tol: float
    mode: str
    max_iters: int | None
    callback: Callable[[int, torch.Tensor], Any] | None


def _srds(run: _Run, blocks: int | None, pipelined: bool) -> dict[str, Any]:
    grid, tol, mode = run.grid, run.tol, run.mode
    steps = grid.steps
    nblocks = blocks if blocks is not None else max(1, round(math.sqrt(steps)))
    edges = np.round(np.linspace(0, steps, nblocks + 1))
    scale = grid.noise_level(steps - 1) if mode == "noise" else 1.0
    residuals: list[float] = []
    last: list[torch.Tensor] = []

    def rule(info: parareal.IterationInfo) -> bool:
        final = info.y[-1]
        if run.callback is not None:
            run.callback(info.iteration, final)
        if last:
            residuals.append(_change(final - last[0], mode) / scale)
        last[:] = [final]
        return bool(residuals) and tol > 0 and residuals[-1] <= tol

    rhs = run.rhs
    sol = parareal.solve(
        rhs.f,
        run.x_T,
        (0.0, float(steps)),
        coarse=run.coarse,
        fine=run.fine,
        slices=nblocks,
        boundaries=edges,
        tol=0.0,
        max_iters=run.max_iters,
        backend="batched",
        schedule="pipelined" if pipelined else "synchronous",
        vectorized=True,
        callback=rule,
    )
    rhs.calls, rhs.evals = sol.stats.f_calls, sol.stats.f_evals
    return dict(
        sample=sol.y_final,
        iterations=sol.iterations,
        converged=sol.converged,
        sequential_evals=sol.stats.critical_path,
        residuals=tuple(residuals[: sol.iterations]),
        stats=sol.stats,
    )


def _picard(run: _Run, window: int | None) -> dict[str, Any]:
    """ParaDiGMS: Picard iterations over a sliding window, one batched model call each."""
    rhs, grid, fine, tol, mode = run.rhs, run.grid, run.fine, run.tol, run.mode
    steps = grid.steps
    p = window if window is not None else min(steps, 2 * max(1, round(math.sqrt(steps))))
    p = min(p, steps)
    cap = run.max_iters if run.max_iters is not None else steps
    if mode == "noise":
        variances = np.array([grid.posterior_variance(i) for i in range(steps)])
        floor = variances[variances > 0].min() if np.any(variances > 0) else 1.0
        scales = np.sqrt(np.maximum(variances, floor))
    else:
        scales = np.ones(steps)
    xs = [run.x_T] * (steps + 1)
    begin, iterations = 0, 0
    residuals: list[float] = []
    while begin < steps and iterations < cap:
        end = min(begin + p, steps)
        outs = rhs.batch([(float(j), xs[j]) for j in range(begin, end)])
        drifts = torch.stack(
            [fine.jump(xs[j], out, j, j + 1) - xs[j] for j, out in zip(range(begin, end), outs)]
        )
        new = xs[begin] + torch.cumsum(drifts, dim=0)
        errors = [
            _change(new[i] - xs[begin + 1 + i], mode) / scales[begin + i]
            for i in range(end - begin)
        ]
        for i in range(end - begin):
            xs[begin + 1 + i] = new[i]
        failing = [i for i, e in enumerate(errors) if not e <= tol]
        stride = max(failing[0] if failing else end - begin, 1)
        new_end = min(begin + stride + p, steps)
        for j in range(end + 1, new_end + 1):
            xs[j] = xs[end]  # initialise newly covered points with the latest value
        begin += stride
        iterations += 1
        residuals.append(max(errors))
        if run.callback is not None:
            run.callback(iterations, xs[steps])
    return dict(
        sample=xs[steps],
        iterations=iterations,
        converged=begin >= steps,
        sequential_evals=rhs.calls,
        residuals=tuple(residuals),
        stats=None,
    )
