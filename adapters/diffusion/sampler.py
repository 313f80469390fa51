"""``sample``: the front door of the diffusion sampler.

It checks the arguments every method shares, builds the grid of the scheduler, the method
(its class validates its own options: :mod:`.methods`) -- or lets ``method="auto"`` choose one
(:mod:`.auto`) --, splits the batch into chunks (:mod:`.chunks`) and runs them
(:mod:`.runner`). Re-exports the public names that lived here before (``METHODS``,
``METHOD_OPTIONS``, ``DEFAULT_TOL``, ``default_blocks``, ``srds_lookahead``...).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch

from .auto import CANDIDATES, AutoChoice, PlannedRun, choose_method
from .checks import check_eta, check_x_T
from .chunks import CALL_BUDGET_BYTES, STORE_BUDGET_BYTES, _auto_max_batch, _chunk_bounds, _Noises
from .flow import with_mu
from .methods import (
    AUTO,
    DEFAULT_TOL,
    METHOD_OPTIONS,
    METHODS,
    REGISTRY,
    STOP_RULES,
    TOL_MODES,
    Method,
    Picard,
    check_method_options,
    default_blocks,
    should_stop,
    srds_block_options,
    srds_lookahead,
)
from .methods.base import optional_int
from .models import ModelFn, wrap_model
from .pf_ode import SigmaGrid, check_scheduler
from .result import DiffusionResult
from .runner import Sampling, as_schedule, sampler_grid

__all__ = [
    "CALL_BUDGET_BYTES",
    "DEFAULT_TOL",
    "METHODS",
    "METHOD_OPTIONS",
    "STOP_RULES",
    "STORE_BUDGET_BYTES",
    "TOL_MODES",
    "DiffusionResult",
    "check_method_options",
    "default_blocks",
    "sample",
    "should_stop",
    "srds_block_options",
    "srds_lookahead",
]


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
    mu: float | None = None,
) -> DiffusionResult:
    """Sample a diffusion model: serially, with SRDS, with Picard iterations, or with whichever
    of them is predicted fastest (``method="auto"``).

    Parameters
    ----------
    model : callable or diffusers UNet
        ``model(x, t)`` returning the schedule's prediction type as a tensor of ``x``'s shape,
        a ``UNet2DModel`` or a ``UNet2DConditionModel`` (see :func:`wrap_model`).
    scheduler : DDIMScheduler, DDPMScheduler, EulerDiscreteScheduler, HeunDiscreteScheduler, \
FlowMatchEulerDiscreteScheduler or NoiseSchedule
        Only read. DDIM and DDPM are sampled with DDIM steps; Euler and Heun (also with
        ``use_karras_sigmas``) as the probability-flow ODE in ``sigma`` (:mod:`.pf_ode`);
        flow matching as the velocity ODE in ``sigma`` (:mod:`.flow`). Others: ``TypeError``.
    x_T : torch.Tensor
        Finite unit-variance initial noise ``(batch, ...)``, multiplied by the scheduler's
        ``init_noise_sigma`` as diffusers' pipelines do.
    num_inference_steps : int
        ``N``, the steps of the serial sampler that SRDS and Picard reproduce.
    method : {"serial", "srds", "picard", "picard-exact", "auto"}
        ``"auto"`` predicts each method's seconds from timed model calls and runs the fastest
        (:mod:`.auto`; ``result.reason`` says why, ``result.choice_s`` how long choosing took).
        It takes none of the method-specific options (choose the method to tune it); with
        ``eta > 0`` and no ``generator`` only serial can run, and does, untimed.
    blocks, tol, tol_mode, stop, pipelined, max_iters, window, callback, backend, fine, \
coarse, anderson
        The options of the method, documented with its class: :class:`~.methods.Serial`,
        :class:`~.methods.SRDS`, :class:`~.methods.Picard` (:data:`METHOD_OPTIONS`).
    mu : float, optional
        ``set_timesteps``'s ``mu``: required by a flow scheduler with
        ``use_dynamic_shifting=True``, refused otherwise (a ``ValueError`` naming ``mu``).
    eta : float
        DDIM eta in ``[0, 1]`` (``1``: DDPM's ancestral noise); DDIM steps only (``eta > 0``
        with Euler, Heun, flow matching or ``fine=``/``coarse=`` is a ``ValueError``).
        ``eta > 0`` draws the step noise once up front from ``generator`` (in step order, as
        diffusers' step loop, for the whole batch however it is split); SRDS and Picard then
        converge to the serial sample for that noise (``tol=0``: to round-off).
    generator : torch.Generator, optional
        Required for ``eta > 0`` with SRDS and Picard.
    guidance_scale, prompt_embeds, negative_prompt_embeds :
        For ``UNet2DConditionModel``: classifier-free guidance in one batch (finite values).
    max_batch : int, optional
        Samples per chunk, sampled one after another, chunks as equal in size as possible
        (default: the largest chunk that fits :data:`CALL_BUDGET_BYTES` for the largest model
        call -- per sample serial 1 state, SRDS ``B + 4``, Picard its window, twice that with
        guidance -- and :data:`STORE_BUDGET_BYTES` for the states kept; :mod:`.chunks`).
        Serial samples do not depend on the split (to the model's batch-size round-off), nor
        does the step noise; SRDS and Picard test their stopping rule per chunk (with
        ``tol=0`` they give the serial sample however the batch is split). A ``callback``
        needs one chunk: a batch that would be split is a ``ValueError`` (pass
        ``max_batch=len(x_T)``). The result of a split batch: :class:`DiffusionResult`.
    progress : bool
        Show a progress bar (tqdm) of sequential model calls on standard error.
    exact : bool, optional
        ``method="auto"`` only: choose among the methods whose result is the serial sample
        (default True), or Picard too (False).

    Returns
    -------
    DiffusionResult
        With ``status``; never converged when the sample is not finite.

    Raises
    ------
    ValueError, TypeError
        Naming the argument and what is allowed, before any model call: ``x_T`` not a finite,
        dense floating tensor with a non-empty batch on a real device, or not matching a
        UNet's channels or ``sample_size``; ``eta`` outside ``[0, 1]`` or not a real number;
        ``num_inference_steps`` below 1 or above the training steps; ``blocks > N``; an
        unsupported scheduler class, prediction type or spacing; ``eta > 0`` without a
        generator (SRDS, Picard); guidance or embeddings with an unconditional model; a
        non-finite ``guidance_scale``; embeddings that are not finite floating tensors or of
        the wrong shape; an option that does not apply to ``method`` (e.g. ``tol`` for
        ``"serial"``) or an unknown keyword. A model output that is not a floating tensor of
        its input's shape is refused at the first call, naming both shapes.

    Notes
    -----
    Counts far above what a run can use are bounded, not worked through: ``max_batch`` by the
    batch, ``window`` and Picard's ``max_iters`` by the steps, SRDS's ``max_iters`` by the
    blocks.

    The model gets a stack of states along the batch axis (serial: the samples of a chunk;
    SRDS and Picard: several states of each sample at once). An exception raised in a model
    call carries a note with the shape of the model's input and what applies: a model that
    takes one sample at a time needs ``method="serial"`` with ``max_batch=1``. A model that
    failed once is not called again in that run. The model is handed copies of ``x`` and
    ``t`` (:class:`ModelFn`), so a model that writes into its input changes neither ``x_T``
    nor any state of the sampler.
    """
    start = time.perf_counter()
    options = dict(blocks=blocks, pipelined=pipelined, window=window, tol=tol,
                   tol_mode=tol_mode, stop=stop, max_iters=max_iters, callback=callback,
                   backend=backend, fine=fine, coarse=coarse, exact=exact, anderson=anderson)
    check_method_options(method, options)
    family, scheduler = check_scheduler(scheduler), with_mu(scheduler, mu)
    pf = family != "ddim" or fine is not None or coarse is not None
    schedule = None if pf else as_schedule(scheduler)
    check_x_T(x_T)
    eta = check_eta(eta)
    grid = sampler_grid(scheduler if schedule is None else schedule, num_inference_steps, pf=pf)
    if pf:
        _check_pf_options(family, method, eta)
    _check_randomness(method, eta, generator, exact)
    chosen = None if method == AUTO else _method(method, grid.steps, options)
    max_batch = optional_int(max_batch, "max_batch", 1)
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be True or False, got {progress!r}")
    fn = wrap_model(model, guidance_scale=guidance_scale, prompt_embeds=prompt_embeds,
                    negative_prompt_embeds=negative_prompt_embeds)
    fn.check_sample(x_T)
    choice, choice_s = None, 0.0
    if chosen is None:
        choice, choice_s = _choose(model, fn, scheduler, x_T, grid, eta, generator, max_batch,
                                   exact)
        chosen = _method(choice.method, grid.steps, {"blocks": choice.blocks or None})
    bounds = _bounds(chosen, x_T, max_batch, eta, fn)
    noises = _Noises(grid, x_T, eta, generator, split=len(bounds) > 1)
    result = Sampling.build(chosen, grid, eta).run(fn, x_T, bounds, noises, progress, start)
    if choice is None:
        return result
    if choice.observe is not None and result.converged:
        choice.observe(result.iterations)
    return replace(result, reason=choice.reason, predicted_s=dict(choice.predicted_s),
                   choice_s=choice_s)


def _bounds(chosen: Method, x_T: torch.Tensor, max_batch: int | None, eta: float,
            fn: ModelFn) -> list[tuple[int, int]]:
    """The chunks of the batch, sampled one after another (:mod:`.chunks`)."""
    n, size = x_T.shape[0], _chunk_size(chosen, x_T, max_batch, eta, fn)
    bounds = _chunk_bounds(n, size)
    if chosen.callback is not None and len(bounds) > 1:
        raise ValueError(
            f"callback needs the whole batch in one chunk, but the {n} samples of x_T are split "
            f"into {len(bounds)} chunks of at most {size}; pass max_batch={n}")
    return bounds


def _method(name: str, steps: int, options: dict[str, Any]) -> Method:
    """The method ``name`` with the options it takes (the others are ``None``, checked)."""
    cls = REGISTRY[name]
    return cls(steps, **{k: v for k, v in options.items() if k in cls.options()})


def _check_pf_options(family: str, method: str, eta: float) -> None:
    """Refuse what the probability-flow samplers (Euler, Heun, ``fine=``/``coarse=``) lack."""
    what = (f"the {family.capitalize()} scheduler" if family != "ddim"
            else "fine=/coarse= propagators")
    if method in REGISTRY and not REGISTRY[method].sigma_grids:
        able = " or ".join(repr(name) for name, cls in REGISTRY.items() if cls.sigma_grids)
        raise ValueError(
            f"method {method!r} runs DDIM steps only (DDIMScheduler, DDPMScheduler, without "
            f"fine=/coarse=); with {what} use method {able}")
    if eta > 0:
        raise ValueError(
            f"eta applies to DDIM steps only; {what} integrate the deterministic "
            "probability-flow ODE (eta must be 0)")


def _check_randomness(method: str, eta: float, generator: Any, exact: Any) -> None:
    """Refuse a bad ``exact``, a missing generator where ``eta > 0`` needs one, a bad one."""
    if exact is not None and not isinstance(exact, bool):
        raise TypeError(f"exact must be True, False or None, got {exact!r}")
    if eta > 0 and method in REGISTRY and REGISTRY[method].needs_generator and generator is None:
        raise ValueError(
            f"eta > 0 with method={method!r} needs a torch.Generator: the noise is drawn once up "
            "front so that the result is the serial stochastic sample for that noise"
        )
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")


def _chunk_size(
    method: Method, x_T: torch.Tensor, max_batch: int | None, eta: float, fn: ModelFn
) -> int:
    """Samples per chunk: ``max_batch``, or the automatic one for ``method``, at most the batch."""
    size = max_batch if max_batch is not None else _auto_max_batch(
        x_T, method.rows_per_call, method.states_kept, method.steps, eta, fn.evals_per_state)
    return min(size, x_T.shape[0])


def _choose(
    model: Any, fn: ModelFn, scheduler: Any, x_T: torch.Tensor, grid: Any, eta: float,
    generator: torch.Generator | None, max_batch: int | None, exact: bool | None,
) -> tuple[AutoChoice, float]:
    """``method="auto"``: plan the run for each candidate with its default options, choose;
    the choice and the seconds it took."""
    begin = time.perf_counter()
    steps, n = grid.steps, x_T.shape[0]
    defaults = {name: REGISTRY[name](steps) for name in CANDIDATES}
    sizes = {name: _chunk_size(m, x_T, max_batch, eta, fn) for name, m in defaults.items()}
    run = PlannedRun(
        scheduler=scheduler, x_T=x_T, steps=steps, blocks=srds_block_options(steps),
        window=Picard(steps).window,
        chunks={name: [b - a for a, b in _chunk_bounds(n, size)] for name, size in sizes.items()},
        timestep=int(grid.timesteps[steps // 2]),
        exact=True if exact is None else exact, picard_ok=not isinstance(grid, SigmaGrid),
        parallel_ok=eta == 0 or generator is not None)
    return choose_method(model, fn, run), time.perf_counter() - begin
