"""``sample``: serial DDIM, SRDS (Parareal over the DDIM grid) and Picard (ParaDiGMS), or
``method="auto"`` (:mod:`.auto`): the one predicted fastest on this machine.

Paper-to-code notation (SRDS, Selvam et al. 2024, arXiv 2412.08292):

=====================  ==============================================================
paper                  code
=====================  ==============================================================
N sampling steps       ``num_inference_steps``; grid points ``0..N`` (:class:`DDIMGrid`)
B = sqrt(N) blocks     ``blocks`` (default ``round(2 sqrt(N))``: see
                       :func:`default_blocks`); Parareal ``slices``
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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

import parareal
from parareal import Status
from parareal.backends import Rhs
from parareal.state import VECTORIZED_HINT, ops_for
from parareal.validation import check_int, check_tolerance

from .anderson import PrefixAnderson
from .chunks import (
    CALL_BUDGET_BYTES,
    STORE_BUDGET_BYTES,
    _auto_max_batch,
    _chunk_bounds,
    _combine,
    _Noises,
)
from .checks import check_eta, check_x_T
from .ddim import DDIMJump, DDIMSteps
from .models import ModelCall, ModelFn, wrap_model
from .result import DiffusionResult, Outcome
from .pf_ode import OnGrid, ProbabilityFlowRhs, SigmaGrid, check_scheduler, propagators, sigma_grid
from .schedule import DDIMGrid, NoiseSchedule

__all__ = [
    "CALL_BUDGET_BYTES",
    "DEFAULT_TOL",
    "METHODS",
    "METHOD_OPTIONS",
    "STORE_BUDGET_BYTES",
    "DiffusionResult",
    "check_method_options",
    "default_blocks",
    "sample",
    "srds_lookahead",
]

METHODS = ("serial", "srds", "picard", "auto")
TOL_MODES = ("data", "noise")
#: SRDS stopping rules (``stop=`` of :func:`sample`).
STOP_RULES = ("update", "estimate")
#: Default tolerances by (method, tol_mode). SRDS in data units: 1/255, half an 8-bit level of
#: an image in [-1, 1] (the error at the stop is typically far smaller than the last change).
DEFAULT_TOL = {
    ("srds", "data"): 1 / 255,
    ("srds", "noise"): 0.1,
    ("picard", "data"): 1e-3,
    ("picard", "noise"): 0.1,
}
#: The methods each method-specific option of :func:`sample` applies to; passing it (not
#: ``None``) with another method is a ``ValueError``.
METHOD_OPTIONS: Mapping[str, tuple[str, ...]] = {
    "blocks": ("srds",),
    "pipelined": ("srds",),
    "window": ("picard",),
    "anderson": ("picard",),
    "tol": ("srds", "picard"),
    "tol_mode": ("srds", "picard"),
    "stop": ("srds",),
    "max_iters": ("srds", "picard"),
    "callback": ("srds", "picard"),
    "backend": ("srds",),
    "fine": ("serial", "srds"),
    "coarse": ("srds",),
    "exact": ("auto",),
}
def check_method_options(method: str, options: Mapping[str, Any]) -> None:
    """Refuse options that do not apply to ``method`` (see :data:`METHOD_OPTIONS`).

    Parameters
    ----------
    method : {"serial", "srds", "picard", "auto"}
    options : mapping
        Option names of :func:`sample` to their values; ``None`` means not passed.

    Raises
    ------
    ValueError
        For an unknown method, or the first option passed that ``method`` does not use,
        naming the methods it applies to.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    for name, value in options.items():
        methods = METHOD_OPTIONS[name]
        if value is not None and method not in methods:
            where = (f"method {methods[0]!r} only" if len(methods) == 1
                     else "methods " + " and ".join(repr(m) for m in methods))
            raise ValueError(f"{name} applies to {where}, not to method {method!r}")


def _schedule(scheduler: Any) -> NoiseSchedule:
    if isinstance(scheduler, NoiseSchedule):
        return scheduler
    return NoiseSchedule.from_scheduler(scheduler)


def _optional_int(value: Any, name: str, minimum: int) -> int | None:
    return None if value is None else check_int(value, name, minimum)


#: The default blocks are ``round(BLOCKS_PER_ROOT * sqrt(N))`` (see :func:`default_blocks`).
BLOCKS_PER_ROOT = 2.0


def default_blocks(steps: int) -> int:
    """SRDS's default number of blocks for ``steps`` sampling steps: ``round(2 sqrt(N))``,
    at least 1 and at most ``N``.

    The paper's ``sqrt(N)`` minimises the pipelined latency ``K N / B + B - K`` for a fixed
    iteration count ``K``, but ``K`` barely grows with ``B`` (a shorter block has a better
    coarse step), so more blocks pay: measured on the bundled digits model (seeds 0-9,
    ``benchmarks/srds.py --study blocks``, docs/benchmarks.md), ``2 sqrt(N)`` needs fewer
    sequential model calls than ``sqrt(N)`` at N = 25, 100 and 1000, and its worst seeds far
    fewer. The pipelined schedule then needs a looser lookahead (:func:`srds_lookahead`).

    Raises
    ------
    TypeError, ValueError
        Unless ``steps`` is an int >= 1.
    """
    steps = check_int(steps, "steps", 1)
    return min(steps, max(1, round(BLOCKS_PER_ROOT * math.sqrt(steps))))


def srds_block_options(steps: int) -> tuple[int, ...]:
    """The blocks ``method="auto"`` predicts SRDS with: the default and the paper's
    ``round(sqrt(N))`` (fewer model evaluations, more sequential calls: the faster of the two
    where a model call's cost grows with its rows, as on a CPU)."""
    return tuple(sorted({default_blocks(steps), min(steps, max(1, round(math.sqrt(steps))))},
                        reverse=True))


def _blocks(steps: int, blocks: int | None) -> int:
    return blocks if blocks is not None else default_blocks(steps)


def _window(steps: int, window: int | None) -> int:
    p = window if window is not None else 2 * max(1, round(math.sqrt(steps)))
    return min(p, steps)


class _ModelRhs:
    """The engine's vectorised ``f(s, X)``: the model at grid indices ``s`` for states ``X``."""

    def __init__(
        self, model: ModelFn, timesteps: np.ndarray, device: torch.device, bar: Any = None
    ) -> None:
        self.model = model
        self.call = ModelCall(model)
        self.timesteps = torch.as_tensor(timesteps, dtype=torch.long, device=device)
        self.bar = bar

    def __call__(self, s: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        slices, batch = states.shape[0], states.shape[1]
        index = torch.round(s).long().to(self.timesteps.device)
        t = self.timesteps[index].repeat_interleave(batch)
        x = states.reshape(slices * batch, *states.shape[2:])
        out = self.call(x, t)
        if self.bar is not None:
            self.bar.update(1)
        return out.reshape(states.shape)


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


def _change(delta: torch.Tensor, mode: str) -> float:
    """Max-abs change (``data``) or the largest per-sample RMS change (``noise``)."""
    if mode == "data":
        return float(delta.abs().max()) if delta.numel() else 0.0
    per_sample = delta.reshape(delta.shape[0], -1).pow(2).mean(dim=1).sqrt()
    return float(per_sample.max())


def _finite(x: torch.Tensor) -> bool:
    return bool(torch.isfinite(x).all())


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
    stop: str | None = None,
    pipelined: bool | None = None,
    max_iters: int | None = None,
    window: int | None = None,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    guidance_scale: float | None = None,
    prompt_embeds: torch.Tensor | None = None,
    negative_prompt_embeds: torch.Tensor | None = None,
    max_batch: int | None = None,
    progress: bool = False,
    callback: Callable[[int, torch.Tensor], Any] | None = None,
    backend: Any = None,
    fine: Any = None,
    coarse: Any = None,
    exact: bool | None = None,
    anderson: int | None = None,
) -> DiffusionResult:
    """Sample a diffusion model: serially, with SRDS, with Picard iterations, or with whichever
    of them is predicted fastest (``method="auto"``).

    Parameters
    ----------
    model : callable or diffusers UNet
        ``model(x, t)`` returning the schedule's prediction type as a tensor of ``x``'s shape,
        a ``UNet2DModel`` or a ``UNet2DConditionModel`` (see :func:`wrap_model`).
    scheduler : DDIMScheduler, DDPMScheduler, EulerDiscreteScheduler, HeunDiscreteScheduler \
or NoiseSchedule
        The noise schedule and sampler settings; a diffusers scheduler is only read. DDIM and
        DDPM are sampled with DDIM steps; Euler and Heun (also with ``use_karras_sigmas``)
        with their own steps, as the probability-flow ODE in ``sigma`` (:mod:`.pf_ode`).
        Multistep and stochastic schedulers are refused (``TypeError``, saying why).
    x_T : torch.Tensor
        Initial noise, shape ``(batch, ...)``, finite, unit variance: the sampler multiplies
        it by the scheduler's ``init_noise_sigma`` as diffusers' pipelines do. The batch is
        sampled together (in chunks of at most ``max_batch`` samples).
    num_inference_steps : int
        ``N``, the steps of the serial sampler that SRDS and Picard reproduce (a Heun step
        makes two model calls, except the last, to ``sigma = 0``, which is an Euler step).
    method : {"serial", "srds", "picard", "auto"}
        ``"auto"`` times a few model calls at the batch sizes each method would use (cached per
        model, sample shape, dtype and device), predicts the seconds of serial, SRDS and Picard
        from those costs and each method's sequence of calls, and runs the fastest of serial
        and SRDS (Picard too with ``exact=False``); ``result.method`` names the method that ran,
        ``result.reason`` says why and ``result.predicted_s`` holds the predictions (see
        :mod:`parareal.adapters.diffusion.auto`). It takes no method-specific option: those
        belong to the method they tune.
    blocks : int, optional
        SRDS only: blocks ``B`` (default :func:`default_blocks`: ``round(2 sqrt(N))``;
        uneven splits allowed; ``B <= N``).
    tol : float, optional
        SRDS and Picard: stopping tolerance; defaults in :data:`DEFAULT_TOL`. ``0`` runs SRDS
        for ``B`` iterations (bitwise the serial sample up to model round-off) and Picard until
        every step is exact.
    tol_mode : {"data", "noise"}, optional
        SRDS and Picard. ``"data"`` (SRDS default): max-abs change, in data units. ``"noise"``
        (Picard default, ParaDiGMS's rule): per-sample RMS change compared with ``tol`` times a
        noise level -- for SRDS the noise level of the last denoising step's input, for Picard
        each step's DDPM posterior standard deviation (floored at the smallest positive one).
        SRDS tests the final sample; Picard tests every step of its window and slides past
        the converged prefix.
    stop : {"update", "estimate"}, optional
        SRDS only: the stopping rule. ``"update"`` (default): stop at iterate ``k`` when the
        final sample's change ``d_k = |x^k - x^(k-1)|`` is at most ``tol``; the error left is
        then about the next change, usually far below ``tol``, but the last iteration only
        confirms. ``"estimate"``: stop when the error predicted from the convergence history,
        ``d_k rho / (1 - rho)`` with ``rho = d_k / d_(k-1)`` (Parareal's superlinear
        convergence: the next change is about ``d_k rho``), is at most ``tol``; it saves an
        iteration on some samples but the prediction can miss a stall and then leaves an
        error above ``tol`` (measured in docs/diffusion.md, "Stopping rule").
    pipelined : bool, optional
        SRDS only: pipelined schedule (``None``, the default, means True) or synchronous.
    max_iters : int, optional
        SRDS and Picard: iteration cap (SRDS: default and maximum ``B``; Picard: default ``N``).
    window : int, optional
        Picard only: window ``p`` (default ``min(N, 2 * round(sqrt(N)))``).
    eta : float
        DDIM eta; ``eta > 0`` is stochastic sampling with noise drawn once up front from
        ``generator`` (in step order, exactly as diffusers' step loop draws it, for the whole
        batch however it is split).
    generator : torch.Generator, optional
        Required for ``eta > 0`` with SRDS and Picard.
    guidance_scale, prompt_embeds, negative_prompt_embeds :
        For ``UNet2DConditionModel``: classifier-free guidance in one batch (finite values).
    max_batch : int, optional
        Split the batch axis of ``x_T`` into chunks of at most this many samples (as equal as
        possible), sampled one after another, so that memory is bounded whatever the batch
        size. ``None`` (default): the largest chunk whose states fit fixed budgets --
        :data:`CALL_BUDGET_BYTES` for the largest batched model call (per sample: serial 1
        state, SRDS ``B + 4``, Picard ``p``, twice that with guidance) and
        :data:`STORE_BUDGET_BYTES` for the states kept between calls (serial 2, SRDS
        ``10 (B + 1)``, Picard ``N + 1 + 2 p``, plus ``N`` step noises with ``eta > 0``).
        Serial samples do not depend on the split (up to the model's batch-size round-off);
        SRDS and Picard test their stopping rule per chunk (with ``tol = 0`` they too give
        the serial sample).
    progress : bool
        Show a progress bar (tqdm) of sequential model calls on standard error.
    callback : callable, optional
        SRDS and Picard: ``callback(iteration, sample)`` with the current estimate of the final
        sample after every SRDS iterate (0 is the coarse sweep) or Picard iteration. It needs
        the whole batch in one chunk (a ``ValueError`` otherwise: pass ``max_batch``).
    backend : str or parareal.backends.Backend, optional
        SRDS only: where the blocks' fine DDIM steps run (default ``"batched"``: all blocks in
        one batched model call per step). ``"mpi"`` or ``parareal.backends.MPI(device=
        "cuda:{local_rank}")`` spreads them over the ranks of an MPI job (every rank calls
        ``sample`` with the same arguments and gets the same result); ``"threads"`` or
        ``"cuda-streams"`` over workers of this process. The sample is the same.
    fine : parareal propagator or spec, optional
        Serial and SRDS: an engine fixed-step propagator (``parareal.Euler()``, ``Heun()``,
        ``RK4()`` or a spec such as ``"heun"``) that integrates the probability-flow ODE
        ``dy/dsigma = (y - x0_hat) / sigma`` on every interval of the scheduler's grid of noise
        levels (``steps`` equal sub-steps per interval). Default: the scheduler's own method
        (Euler for DDIM, DDPM and Euler schedulers -- Euler in ``sigma`` is DDIM --, Heun for
        Heun). Passing ``fine`` or ``coarse`` with a DDIM schedule samples it in these
        variables instead of with DDIM steps.
    coarse : parareal propagator or spec, optional
        SRDS only: the propagator taken across a whole block ``[sigma_a, sigma_b]`` in one
        step (``steps`` sub-steps). Default: one step of the scheduler's own method.
    anderson : int, optional
        Picard only: Anderson acceleration of the window's fixed-point iteration with this
        memory ``m`` (ParaTAA's idea; :mod:`.anderson`): each point mixes its Picard update
        with the last ``m`` differences, by least squares over the points up to it. It adds no
        model call and typically saves a quarter of Picard's sequential calls at the same
        tolerance (docs/benchmarks.md). Default: plain Picard.
    exact : bool, optional
        ``method="auto"`` only. ``True`` (default): choose between the methods whose result is
        the serial sample, serial and SRDS. ``False``: Picard too (its default tolerance leaves
        differences of a few 8-bit levels).

    Returns
    -------
    DiffusionResult
        With ``status`` (converged, max_iters or diverged); never converged when the sample is
        not finite.

    Raises
    ------
    ValueError, TypeError
        Naming the argument: bad values, options that do not apply to ``method``
        (:data:`METHOD_OPTIONS`), and a model output that is not a tensor of ``x``'s shape.
    """
    start = time.perf_counter()
    check_method_options(method, dict(
        blocks=blocks, pipelined=pipelined, window=window, tol=tol, tol_mode=tol_mode,
        stop=stop, max_iters=max_iters, callback=callback, backend=backend, fine=fine,
        coarse=coarse, exact=exact, anderson=anderson))
    family = check_scheduler(scheduler)
    pf = family != "ddim" or fine is not None or coarse is not None
    schedule = None if pf else _schedule(scheduler)
    check_x_T(x_T)
    eta = check_eta(eta)
    pf_grid = sigma_grid(scheduler, num_inference_steps) if pf else None
    steps = pf_grid.steps if pf_grid is not None else schedule.check_steps(num_inference_steps)
    if pf_grid is not None:
        _check_pf_options(family, method, eta)
    if exact is not None and not isinstance(exact, bool):
        raise TypeError(f"exact must be True, False or None, got {exact!r}")
    if eta > 0 and method not in ("serial", "auto") and generator is None:
        raise ValueError(
            f"eta > 0 with method={method!r} needs a torch.Generator: the noise is drawn once up "
            "front so that the result is the serial stochastic sample for that noise"
        )
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    blocks = _optional_int(blocks, "blocks", 1)
    window = _optional_int(window, "window", 1)
    anderson = _optional_int(anderson, "anderson", 1)
    max_iters = _optional_int(max_iters, "max_iters", 1)
    max_batch = _optional_int(max_batch, "max_batch", 1)
    if blocks is not None and blocks > steps:
        raise ValueError(f"blocks must be <= num_inference_steps = {steps}, got {blocks}")
    if pipelined is not None and not isinstance(pipelined, bool):
        raise TypeError(f"pipelined must be True, False or None, got {pipelined!r}")
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be True or False, got {progress!r}")
    if tol_mode is not None and tol_mode not in TOL_MODES:
        raise ValueError(f"tol_mode must be one of {TOL_MODES}, got {tol_mode!r}")
    if tol is not None:
        tol = check_tolerance(tol, "tol")
    if stop is not None and stop not in STOP_RULES:
        raise ValueError(f"stop must be one of {STOP_RULES}, got {stop!r}")
    if callback is not None and not callable(callback):
        raise TypeError(
            f"callback must be callable as callback(iteration, sample), got {callback!r}")

    fn = wrap_model(
        model,
        guidance_scale=guidance_scale,
        prompt_embeds=prompt_embeds,
        negative_prompt_embeds=negative_prompt_embeds,
    )
    fn.check_sample(x_T)
    grid = pf_grid if pf_grid is not None else schedule.grid(steps)
    nblocks, p = _blocks(steps, blocks), _window(steps, window)
    n = x_T.shape[0]

    def chunk_size(name: str) -> int:
        rows = {"serial": 1, "srds": nblocks + 4, "picard": p}[name]
        kept = {"serial": 2, "srds": 10 * (nblocks + 1), "picard": steps + 1 + 2 * p}[name]
        size = max_batch if max_batch is not None else _auto_max_batch(
            x_T, rows, kept, steps, eta, fn.evals_per_state)
        return min(size, n)

    choice = None
    if method == "auto":
        from .auto import CANDIDATES, choose_method

        choice = choose_method(
            model, fn, scheduler, x_T, steps=steps, blocks=srds_block_options(steps), window=p,
            chunks={m: [b - a for a, b in _chunk_bounds(n, chunk_size(m))] for m in CANDIDATES},
            timestep=int(grid.timesteps[steps // 2]),
            exact=True if exact is None else exact, picard_ok=pf_grid is None,
            parallel_ok=eta == 0 or generator is not None)
        method = choice.method
        nblocks = choice.blocks or nblocks
    mode = tol_mode if tol_mode is not None else ("noise" if method == "picard" else "data")
    if method != "serial":
        tol = DEFAULT_TOL[(method, mode)] if tol is None else tol
    size = chunk_size(method)
    bounds = _chunk_bounds(n, size)
    if callback is not None and len(bounds) > 1:
        raise ValueError(
            f"callback needs the whole batch in one chunk, but the {n} samples of x_T are split "
            f"into {len(bounds)} chunks of at most {size}; pass max_batch={n}"
        )
    settings = _Settings(grid=grid, method=method, eta=eta, tol=tol or 0.0, mode=mode,
                         max_iters=max_iters, blocks=nblocks, window=p, anderson=anderson,
                         stop="update" if stop is None else stop,
                         pipelined=True if pipelined is None else pipelined, callback=callback,
                         backend=_check_backend(backend),
                         propagators=propagators(pf_grid, fine, coarse) if pf_grid else None)
    noises = _Noises(grid, x_T, eta, generator, split=len(bounds) > 1)
    calls = settings.propagators[0].calls() if settings.propagators else steps
    bar = _progress_bar(progress, calls * len(bounds), method)
    try:
        with torch.no_grad():
            parts = [
                _sample_chunk(settings, fn.rows(a, b), x_T[a:b], noises.rows(a, b), bar)
                for a, b in bounds
            ]
    finally:
        if bar is not None:
            bar.close()
    result = _combine(parts, method, time.perf_counter() - start)
    if choice is None:
        return result
    if choice.observe is not None and result.converged:
        choice.observe(result.iterations)
    return replace(result, reason=choice.reason, predicted_s=dict(choice.predicted_s))


def _check_pf_options(family: str, method: str, eta: float) -> None:
    """Refuse what the probability-flow samplers (Euler, Heun, ``fine=``/``coarse=``) lack."""
    what = (f"the {family.capitalize()} scheduler" if family != "ddim"
            else "fine=/coarse= propagators")
    if method == "picard":
        raise ValueError(
            f"method 'picard' runs DDIM steps only (DDIMScheduler, DDPMScheduler, without "
            f"fine=/coarse=); with {what} use method 'serial' or 'srds'")
    if eta > 0:
        raise ValueError(
            f"eta applies to DDIM steps only; {what} integrate the deterministic "
            "probability-flow ODE (eta must be 0)")


@dataclass(frozen=True)
class _Settings:
    """The sampler's validated settings, shared by every chunk."""

    grid: DDIMGrid | SigmaGrid
    method: str
    eta: float
    tol: float
    mode: str
    max_iters: int | None
    blocks: int
    window: int
    pipelined: bool
    stop: str
    callback: Callable[[int, torch.Tensor], Any] | None
    backend: Any = None
    #: The probability-flow path's (fine, coarse); ``None`` for DDIM steps.
    propagators: tuple[OnGrid, OnGrid] | None = None
    #: Picard's Anderson memory (``None``: plain Picard).
    anderson: int | None = None


@dataclass
class _Run:
    """What the SRDS and Picard runners of one chunk share."""

    settings: _Settings
    rhs: Rhs
    x_T: torch.Tensor
    fine: DDIMSteps | OnGrid
    coarse: DDIMJump | OnGrid


def _sample_chunk(
    settings: _Settings, fn: ModelFn, x_T: torch.Tensor, noises: list[torch.Tensor] | None,
    bar: Any,
) -> DiffusionResult:
    """Sample one chunk of the batch."""
    begin = time.perf_counter()
    grid, method = settings.grid, settings.method
    if isinstance(grid, SigmaGrid):  # the probability-flow ODE in sigma (pf_ode)
        assert settings.propagators is not None
        rhs = Rhs(ProbabilityFlowRhs(fn, grid, x_T.device, bar), ops_for(x_T), vectorized=True)
        fine, coarse = settings.propagators
        run = _Run(settings=settings, rhs=rhs, x_T=x_T * grid.init_scale, fine=fine,
                   coarse=coarse)
    else:
        rhs = Rhs(_ModelRhs(fn, grid.timesteps, x_T.device, bar), ops_for(x_T), vectorized=True)
        run = _Run(settings=settings, rhs=rhs, x_T=x_T,
                   fine=DDIMSteps(grid, eta=settings.eta, noises=noises),
                   coarse=DDIMJump(grid, eta=settings.eta, noises=noises))
    try:
        result = _run_method(run)
    except Exception as exc:
        _sample_notes(exc)
        raise
    if isinstance(grid, SigmaGrid) and grid.final_scale != 1.0:
        result = replace(result, sample=result.sample * grid.final_scale)
    if not _finite(result.sample):
        result = replace(result, status=Status.DIVERGED)  # a non-finite sample never converged
    return DiffusionResult(
        sample=result.sample,
        iterations=result.iterations,
        converged=result.status is Status.CONVERGED,
        status=result.status,
        sequential_evals=result.sequential_evals,
        total_evals=result.evals * fn.evals_per_state,
        residuals=result.residuals,
        method=method,
        wall_time_s=time.perf_counter() - begin,
        stats=result.stats,
        max_batch=x_T.shape[0],
        blocks=result.blocks,
    )


def _run_method(run: _Run) -> Outcome:
    """The chunk's sample by ``run.settings.method``."""
    method = run.settings.method
    if method == "srds":
        return _srds(run)
    if method == "picard":
        return _picard(run)
    rhs = run.rhs
    out = run.fine.propagate(rhs.plain, run.x_T, 0.0, float(run.settings.grid.steps))
    return Outcome(sample=out, iterations=0, status=Status.CONVERGED,
                   sequential_evals=rhs.calls, evals=rhs.evals)


class _FinalSampleRule:
    """SRDS's stopping rule, the engine's callback: stop when the final sample stops changing.

    A non-finite final sample (or change) is divergence, never convergence: the rule records
    it and stops the run.
    """

    def __init__(self, settings: _Settings, scale: float) -> None:
        self.tol, self.mode, self.scale = settings.tol, settings.mode, scale
        self.callback = settings.callback
        self.settings = settings
        self.residuals: list[float] = []
        self.last: torch.Tensor | None = None
        self.diverged = False

    def __call__(self, info: parareal.IterationInfo) -> bool:
        final = info.y[-1]
        if not _finite(final):
            self.diverged = True
            return True
        residual = None
        if self.last is not None:
            residual = _change(final - self.last, self.mode) / self.scale
            if not math.isfinite(residual):
                self.diverged = True
                return True
            self.residuals.append(residual)
        self.last = final
        if self.callback is not None:
            # the probability-flow state y is the sample divided by final_scale (DDIM grids)
            out_scale = getattr(self.settings.grid, "final_scale", 1.0)
            self.callback(info.iteration, final * out_scale if out_scale != 1.0 else final)
        return self.tol > 0 and should_stop(self.residuals, self.tol, self.settings.stop)


def should_stop(updates: list[float] | tuple[float, ...], tol: float, stop: str) -> bool:
    """SRDS's stopping decision after an iterate, from the final sample's changes so far.

    Parameters
    ----------
    updates : sequence of float
        ``d_1 .. d_k``: the change of the final sample at each iteration (``d_k`` the latest).
    tol : float
        The tolerance (> 0).
    stop : {"update", "estimate"}
        ``"update"``: ``d_k <= tol``. ``"estimate"``: with ``rho = d_k / d_(k-1) < 1``, the
        predicted remaining error ``d_k rho / (1 - rho) <= tol`` (a geometric tail of changes
        that shrink at least by ``rho``; Parareal's superlinear convergence makes the next
        change about ``d_k rho``); no decision before two changes, never with ``rho >= 1``.
        ``d_k = 0`` stops under both.

    Returns
    -------
    bool
        Whether to stop now.
    """
    if not updates:
        return False
    last = updates[-1]
    if last == 0.0 or stop == "update":
        return last <= tol
    if len(updates) < 2 or updates[-2] <= 0.0:
        return False
    rho = last / updates[-2]
    return rho < 1.0 and last * rho / (1.0 - rho) <= tol


def _check_backend(backend: Any) -> Any:
    """``backend`` for SRDS: a name (checked; made per solve, so that its workers end with it,
    except ``"mpi"``, whose communicator the sampler needs) or a Backend instance."""
    if backend is None:
        return "batched"
    resolved = parareal.backends.resolve_backend(backend)
    if isinstance(backend, str) and not getattr(resolved, "spmd", False):
        resolved.close()
        return backend
    return resolved


def srds_lookahead(fine_calls: list[int], coarse_calls: list[int]) -> int | None:
    """The pipelined schedule's ``lookahead`` for SRDS: the smallest bound that keeps the
    latency of the unbounded pipeline.

    Fine work for iteration ``k + 1`` may start only once iterate ``k - L`` is complete
    (``docs/algorithm.md``); that costs no latency while ``L (m - g) >= g B``, with ``m`` the
    calls of the shortest block's fine solve, ``g`` those of the longest coarse step and ``B``
    the blocks. The engine's default ``L = 2`` is too tight for SRDS's many short blocks: at
    N = 100 with 16 blocks (``m = 6``, ``g = 1``) it cost 2 sequential calls per iteration from
    the third on, 4 at N = 100 with 20 blocks.

    Parameters
    ----------
    fine_calls, coarse_calls : list of int
        Model calls of each block's fine solve and coarse step.

    Returns
    -------
    int or None
        ``max(2, ceil(g B / (m - g)))``; ``None`` (no bound) when a fine solve is no longer
        than a coarse step (then nothing races ahead, and the work is at most ``B`` sweeps).

    Raises
    ------
    TypeError, ValueError
        Unless both are non-empty lists of ints >= 1 of the same length.
    """
    if len(fine_calls) != len(coarse_calls) or not fine_calls:
        raise ValueError(f"fine_calls and coarse_calls must give one count per block, got "
                         f"{len(fine_calls)} and {len(coarse_calls)}")
    for name, calls in (("fine_calls", fine_calls), ("coarse_calls", coarse_calls)):
        for value in calls:
            check_int(value, name, 1)
    m, g, blocks = min(fine_calls), max(coarse_calls), len(fine_calls)
    if m <= g:
        return None
    return max(2, math.ceil(g * blocks / (m - g)))


def _srds(run: _Run) -> Outcome:
    settings = run.settings
    steps = settings.grid.steps
    edges = np.round(np.linspace(0, steps, settings.blocks + 1))
    pairs = list(zip(edges[:-1].astype(int).tolist(), edges[1:].astype(int).tolist()))
    if isinstance(run.fine, OnGrid):
        assert isinstance(run.coarse, OnGrid)
        fine_calls = [run.fine.calls(a, b) for a, b in pairs]
        coarse_calls = [run.coarse.calls(a, b) for a, b in pairs]
    else:  # DDIM: one call per step, one per jump
        fine_calls, coarse_calls = [b - a for a, b in pairs], [1] * len(pairs)
    scale = settings.grid.noise_level(steps - 1) if settings.mode == "noise" else 1.0
    rule = _FinalSampleRule(settings, scale)
    rhs = run.rhs
    sol = parareal.solve(
        rhs.f,
        run.x_T,
        (0.0, float(steps)),
        coarse=run.coarse,
        fine=run.fine,
        slices=settings.blocks,
        boundaries=edges,
        tol=0.0,
        max_iters=settings.max_iters,
        backend=settings.backend,
        schedule="pipelined" if settings.pipelined else "synchronous",
        lookahead=srds_lookahead(fine_calls, coarse_calls),
        vectorized=True,
        callback=rule,
    )
    if getattr(settings.backend, "spmd", False):  # the rule ran on the root: share its verdict
        backend = settings.backend
        rule.residuals, rule.diverged, rule.last = backend.comm.bcast(
            (rule.residuals, rule.diverged, rule.last), root=backend.root)
    status, final, iterations = sol.status, sol.y_final, sol.iterations
    if rule.diverged:  # the rule saw the first non-finite iterate: keep the last finite one
        status, iterations = Status.DIVERGED, max(iterations - 1, 0)
        final = rule.last if rule.last is not None else final
    return Outcome(
        sample=final,
        iterations=iterations,
        status=status,
        sequential_evals=sol.stats.critical_path,
        evals=sol.stats.f_evals,
        residuals=tuple(rule.residuals[:iterations]),
        stats=sol.stats,
        blocks=settings.blocks,
    )


def _picard(run: _Run) -> Outcome:
    """ParaDiGMS: Picard iterations over a sliding window, one batched model call each."""
    settings, rhs, fine = run.settings, run.rhs, run.fine
    grid, tol, mode = settings.grid, settings.tol, settings.mode
    steps, p = grid.steps, settings.window
    cap = settings.max_iters if settings.max_iters is not None else steps
    if mode == "noise":
        variances = np.array([grid.posterior_variance(i) for i in range(steps)])
        floor = variances[variances > 0].min() if np.any(variances > 0) else 1.0
        scales = np.sqrt(np.maximum(variances, floor))
    else:
        scales = np.ones(steps)
    xs = [run.x_T] * (steps + 1)
    accel = PrefixAnderson(settings.anderson) if settings.anderson else None
    begin, iterations = 0, 0
    residuals: list[float] = []
    diverged = False
    while begin < steps and iterations < cap:
        end = min(begin + p, steps)
        outs = rhs.batch([(float(j), xs[j]) for j in range(begin, end)])
        drifts = torch.stack(
            [fine.jump(xs[j], out, j, j + 1) - xs[j] for j, out in zip(range(begin, end), outs)]
        )
        new = xs[begin] + torch.cumsum(drifts, dim=0)
        if accel is not None:
            new = accel.update(begin + 1, torch.stack(xs[begin + 1:end + 1]), new)
        if not _finite(new):  # stop at once; xs keeps the last finite iterate
            diverged = True
            break
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
        if settings.callback is not None:
            settings.callback(iterations, xs[steps])
    if diverged:
        status = Status.DIVERGED
    else:
        status = Status.CONVERGED if begin >= steps else Status.MAX_ITERS
    return Outcome(
        sample=xs[steps],
        iterations=iterations,
        status=status,
        sequential_evals=rhs.calls,
        evals=rhs.evals,
        residuals=tuple(residuals),
    )
