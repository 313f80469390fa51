"""SRDS (Selvam et al. 2024): Parareal over the sampler's grid, as configuration of the engine.

Owns SRDS's options and defaults (blocks, the pipelined schedule's lookahead), its stopping
rule (the final sample stops changing) and the two places that touch an SPMD backend's
internals (:func:`_srds_backend`, :func:`_share_rule_state`), each in one small function to
be replaced by a backend API and an engine stopping-rule object.

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
from parareal import Status
from parareal.validation import check_int

from ..pf_ode import OnGrid, SigmaGrid
from ..result import Outcome
from ..schedule import DDIMGrid
from .base import Chunk, Refining, change, finite, optional_int, optional_propagator

__all__ = [
    "BLOCKS_PER_ROOT",
    "STOP_RULES",
    "SRDS",
    "default_blocks",
    "should_stop",
    "srds_block_options",
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

    Parameters
    ----------
    steps : int
        ``N``.
    blocks : int, optional
        Blocks ``B`` (default :func:`default_blocks`: ``round(2 sqrt(N))``; uneven splits
        allowed; ``B <= N``).
    pipelined : bool, optional
        Pipelined schedule (``None``, the default, means True) or synchronous.
    tol : float, optional
        Stopping tolerance (default 1/255 in data units, 0.1 in noise units: half an 8-bit
        level of an image in [-1, 1]). ``0`` runs ``B`` iterations: bitwise the serial
        sample up to model round-off.
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
        leaves an error above ``tol`` (measured in docs/diffusion.md, "Stopping rule").
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
        ``"cuda-streams"`` over workers of this process. The sample is the same.
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
        self.backend = _srds_backend(backend)

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
        scale = chunk.grid.noise_level(steps - 1) if self.mode == "noise" else 1.0
        rule = _FinalSampleRule(self, chunk.grid, scale)
        sol = parareal.solve(
            chunk.rhs.f,
            chunk.x_T,
            (0.0, float(steps)),
            coarse=chunk.coarse,
            fine=chunk.fine,
            slices=self.blocks,
            boundaries=edges,
            tol=0.0,
            max_iters=self.max_iters,
            backend=self.backend,
            schedule="pipelined" if self.pipelined else "synchronous",
            lookahead=srds_lookahead(fine_calls, coarse_calls),
            vectorized=True,
            callback=rule,
        )
        _share_rule_state(self.backend, rule)
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
            blocks=self.blocks,
        )


def _srds_backend(backend: Any) -> Any:
    """``backend`` for SRDS: a name (checked; made per solve, so that its workers end with it,
    except an SPMD backend such as ``"mpi"``, whose communicator the sampler needs) or a Backend
    instance. Reads the backend's SPMD internals (``spmd``)."""
    if backend is None:
        return "batched"
    resolved = parareal.backends.resolve_backend(backend)
    if isinstance(backend, str) and not getattr(resolved, "spmd", False):
        resolved.close()
        return backend
    return resolved


def _share_rule_state(backend: Any, rule: _FinalSampleRule) -> None:
    """On an SPMD backend the stopping rule ran on the root: broadcast its verdict (residuals,
    divergence, last finite sample) to every rank. Reads the backend's SPMD internals
    (``spmd``, ``comm``, ``root``)."""
    if getattr(backend, "spmd", False):
        rule.residuals, rule.diverged, rule.last = backend.comm.bcast(
            (rule.residuals, rule.diverged, rule.last), root=backend.root)


class _FinalSampleRule:
    """SRDS's stopping rule, the engine's callback: stop when the final sample stops changing.

    A non-finite final sample (or change) is divergence, never convergence: the rule records
    it and stops the run.
    """

    def __init__(self, settings: SRDS, grid: DDIMGrid | SigmaGrid, scale: float) -> None:
        self.tol, self.mode, self.scale = settings.tol, settings.mode, scale
        self.callback = settings.callback
        self.settings = settings
        self.grid = grid
        self.residuals: list[float] = []
        self.last: torch.Tensor | None = None
        self.diverged = False

    def __call__(self, info: parareal.IterationInfo) -> bool:
        final = info.y[-1]
        if not finite(final):
            self.diverged = True
            return True
        residual = None
        if self.last is not None:
            residual = change(final - self.last, self.mode) / self.scale
            if not math.isfinite(residual):
                self.diverged = True
                return True
            self.residuals.append(residual)
        self.last = final
        if self.callback is not None:
            # the probability-flow state y is the sample divided by final_scale (DDIM grids)
            out_scale = getattr(self.grid, "final_scale", 1.0)
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
