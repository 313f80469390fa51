"""SRDS (Selvam et al. 2024): Parareal over the sampler's grid, as configuration of the engine.

Owns SRDS's options and defaults (blocks, the pipelined schedule's lookahead) and its
stopping rule: the engine's :class:`parareal.FinalChange` (the final sample stops changing) in
SRDS's change measure (:func:`srds_rule`), run by the engine like any rule, its state returned
in ``Solution.stop_state`` on every MPI rank.

Paper-to-code notation (arXiv 2412.08292):

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
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

import parareal
from parareal.backends import using_backend
from parareal.stopping import FinalChange, change_met
from parareal.validation import check_int

from ..pf_ode import OnGrid, SigmaGrid
from ..result import Outcome
from ..schedule import DDIMGrid
from .base import Chunk, Refining, change, optional_int, optional_propagator

__all__ = [
    "BLOCKS_PER_ROOT",
    "STOP_RULES",
    "SRDS",
    "default_blocks",
    "should_stop",
    "srds_block_options",
    "srds_rule",
    "srds_lookahead",
]

#: SRDS stopping rules (``stop=`` of :class:`SRDS`).
STOP_RULES = ("update", "estimate")

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


class SRDS(Refining):
    """SRDS: Parareal over the grid, ``B`` blocks, the blocks' own steps as the fine
    propagator and one step across a block as the coarse one; it stops when the final sample
    stops changing. Its result converges to the serial sample (bitwise with ``tol = 0`` after
    ``B`` iterations, up to the model's batch-size round-off).

    Prefer a scheduler without ``clip_sample``: clamping the predicted clean sample at every
    step makes the DDIM map non-smooth and the one-step coarse jump a poor guide, so SRDS
    converges slowly (on the digits model at N = 1000: 24 iterations, 760 sequential calls,
    against 3 and 125 without clipping, at the same sample quality).

    Parameters
    ----------
    steps : int
        ``N``.
    blocks : int, optional
        Blocks ``B`` (default :func:`default_blocks`: ``round(2 sqrt(N))``; uneven splits
        allowed; ``B <= N``). ``blocks=1`` is serial sampling; ``blocks=N`` makes every block
        one step (coarse = fine).
    pipelined : bool, optional
        Pipelined schedule (``None``, the default, means True) or synchronous.
    tol : float, optional
        Stopping tolerance (default 1/255 in data units, 0.1 in noise units: half an 8-bit
        level of an image in [-1, 1]). Parareal converges superlinearly near the end, so the
        error to the serial sample at the stop is typically one or two orders below the last
        change (on the digits model at N = 1000: changes of 1.8e-3 to 3.3e-3 at the stop,
        errors of 8e-5 to 4e-4). Use a smaller ``tol`` for latents decoded by a VAE (their
        scale differs), or ``tol_mode="noise"``. ``0`` runs ``B`` iterations: bitwise the
        serial sample up to model round-off.
    tol_mode : {"data", "noise"}, optional
        ``"data"`` (default): max-abs change of the final sample, in data units. ``"noise"``:
        per-sample RMS change compared with ``tol`` times the noise level of the last
        denoising step's input.
    stop : {"update", "estimate"}, optional
        The stopping rule (:func:`should_stop`). ``"update"`` (default): stop at iterate ``k``
        when the final sample's change ``d_k = |x^k - x^(k-1)|`` is at most ``tol``; the
        error left is then about the next change, usually far below ``tol``, but the last
        iteration only confirms. ``"estimate"``: stop when the error predicted from the
        convergence history, ``d_k rho / (1 - rho)`` with ``rho = d_k / d_(k-1)`` (Parareal's
        superlinear convergence: the next change is about ``d_k rho``), is at most ``tol``;
        it saves an iteration on some samples but the prediction can miss a stall and then
        leaves an error above ``tol`` (on the digits model: up to about twice ``tol``, and
        1.4-1.6 % of the 8-bit pixels changed with one sample against 0-0.3 % for
        ``"update"``; docs/benchmarks.md, "Stopping rule").
    max_iters : int, optional
        Iteration cap (default and maximum ``B``).
    callback : callable, optional
        ``callback(iteration, sample)`` with the current estimate of the final sample after
        every iterate (0 is the coarse sweep). It needs the whole batch in one chunk.
    backend : str or parareal.backends.Backend, optional
        Where the blocks' fine steps run (default ``"batched"``: all blocks in one batched
        model call per step). ``"mpi"`` or ``parareal.backends.MPI(device=
        "cuda:{local_rank}")`` spreads them over the ranks of an MPI job (every rank calls
        ``sample`` with the same arguments and gets the same result); ``"threads"`` or
        ``"cuda-streams"`` over workers of this process. The sample is the same. The stopping
        rule is evaluated on the root rank and shared with the others.
    fine : parareal propagator or spec, optional
        As for :class:`~.serial.Serial`: the fixed-step propagator of the probability-flow
        ODE on every grid interval (default: the scheduler's own method).
    coarse : parareal propagator or spec, optional
        The propagator taken across a whole block ``[sigma_a, sigma_b]`` in one step
        (``steps`` sub-steps). Default: one step of the scheduler's own method.
    """

    name = "srds"
    exact = True
    default_tol = {"data": 1 / 255, "noise": 0.1}
    default_tol_mode = "data"

    def __init__(
        self, steps: int, *, blocks: int | None = None, pipelined: bool | None = None,
        tol: float | None = None, tol_mode: str | None = None, stop: str | None = None,
        max_iters: int | None = None, callback: Callable[[int, torch.Tensor], Any] | None = None,
        backend: Any = None, fine: Any = None, coarse: Any = None,
    ) -> None:
        super().__init__(steps)
        blocks = optional_int(blocks, "blocks", 1)
        self.max_iters = optional_int(max_iters, "max_iters", 1)
        if blocks is not None and blocks > steps:
            raise ValueError(f"blocks must be <= num_inference_steps = {steps}, got {blocks}")
        if pipelined is not None and not isinstance(pipelined, bool):
            raise TypeError(f"pipelined must be True, False or None, got {pipelined!r}")
        self._refining_options(tol, tol_mode)
        if stop is not None and stop not in STOP_RULES:
            raise ValueError(f"stop must be one of {STOP_RULES}, got {stop!r}")
        self._set_callback(callback)
        self.fine = optional_propagator(fine, "fine")
        self.coarse = optional_propagator(coarse, "coarse")
        self.blocks = blocks if blocks is not None else default_blocks(steps)
        self.pipelined = True if pipelined is None else pipelined
        self.stop = "update" if stop is None else stop
        self.backend = _check_backend(backend)

    @property
    def rows_per_call(self) -> int:
        """``B + 4``: the largest call measured with the default blocks and
        :func:`srds_lookahead` (N = 16 to 1000)."""
        return self.blocks + 4

    @property
    def states_kept(self) -> int:
        """``10 (B + 1)``: at most ``9.2 (B + 1)`` stored states measured (N = 16 to 1000)."""
        return 10 * (self.blocks + 1)

    def run(self, chunk: Chunk) -> Outcome:
        steps = chunk.grid.steps
        edges = np.round(np.linspace(0, steps, self.blocks + 1))
        pairs = list(zip(edges[:-1].astype(int).tolist(), edges[1:].astype(int).tolist()))
        if isinstance(chunk.fine, OnGrid):
            assert isinstance(chunk.coarse, OnGrid)
            fine_calls = [chunk.fine.calls(a, b) for a, b in pairs]
            coarse_calls = [chunk.coarse.calls(a, b) for a, b in pairs]
        else:  # DDIM: one call per step, one per jump
            fine_calls, coarse_calls = [b - a for a, b in pairs], [1] * len(pairs)
        sol = parareal.solve(
            chunk.rhs.f,
            chunk.x_T,
            (0.0, float(steps)),
            coarse=chunk.coarse,
            fine=chunk.fine,
            slices=self.blocks,
            boundaries=edges,
            stop=srds_rule(self, chunk.grid),
            max_iters=self.max_iters,
            backend=self.backend,
            schedule="pipelined" if self.pipelined else "synchronous",
            lookahead=srds_lookahead(fine_calls, coarse_calls),
            vectorized=True,
            callback=_final_sample_callback(self.callback, chunk.grid),
        )
        iterations = sol.iterations  # diverged: that of the last finite iterate
        return Outcome(
            sample=sol.y_final,
            iterations=iterations,
            status=sol.status,
            sequential_evals=sol.stats.critical_path,
            evals=sol.stats.f_evals,
            residuals=tuple(sol.stop_state["changes"][:iterations]),
            stats=sol.stats,
            blocks=self.blocks,
        )


def _check_backend(backend: Any) -> Any:
    """``backend`` for SRDS (``None``: ``"batched"``), checked by making it once; a name is
    made again by every solve and closed with it, an instance stays the caller's."""
    if backend is None:
        return "batched"
    with using_backend(backend):
        return backend


def _data_change(delta: torch.Tensor) -> float:
    """Max-abs change of the final sample, in data units."""
    return change(delta, "data")


def _noise_change(delta: torch.Tensor) -> float:
    """The largest per-sample RMS change of the final sample."""
    return change(delta, "noise")


def srds_rule(method: SRDS, grid: DDIMGrid | SigmaGrid) -> FinalChange:
    """SRDS's stopping rule for ``grid``: the engine's :class:`~parareal.FinalChange` with the
    method's ``tol`` and ``stop``, measuring the final sample's change in ``tol_mode``'s units
    (``"noise"``: divided by the noise level of the last denoising step's input). A non-finite
    final sample or change is divergence, never convergence."""
    scale = grid.noise_level(grid.steps - 1) if method.mode == "noise" else 1.0
    norm = _noise_change if method.mode == "noise" else _data_change
    return FinalChange(method.tol, norm=norm, scale=scale, how=method.stop)


def _final_sample_callback(callback: Callable[[int, torch.Tensor], Any] | None,
                           grid: DDIMGrid | SigmaGrid) -> Callable[[Any], None] | None:
    """The engine's callback that shows the user's ``callback(iteration, sample)`` the current
    final sample (the probability-flow state times ``final_scale`` on DDIM grids)."""
    if callback is None:
        return None
    out_scale = getattr(grid, "final_scale", 1.0)

    def show(info: parareal.IterationInfo) -> None:
        final = info.y[-1]
        callback(info.iteration, final * out_scale if out_scale != 1.0 else final)

    return show


#: SRDS's stopping decision from the final sample's changes so far: the engine's
#: :func:`parareal.stopping.change_met` (``should_stop(updates, tol, stop)``).
should_stop = change_met


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
