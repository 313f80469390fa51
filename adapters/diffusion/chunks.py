"""Splitting a batch into chunks: their size (the automatic ``max_batch``), their bounds, the
replay of the step noises chunk by chunk, and the merging of the chunks' results.

A chunk is sampled as a batch of its own, one after another, so that memory is bounded
whatever the batch size; everything here is independent of the method that samples a chunk
(a method states its footprint: rows per model call and states kept, see
:mod:`.methods`).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from parareal import Status

from .result import DiffusionResult
from .schedule import DDIMGrid

__all__ = ["CALL_BUDGET_BYTES", "STORE_BUDGET_BYTES"]

#: Automatic ``max_batch``: bytes of states in the largest batched model call of one chunk.
#: A network's activations are a model-dependent multiple of its input (about 600x for the
#: bundled digits UNet: 2048 states of 256 bytes peak near 300 MiB).
CALL_BUDGET_BYTES = 2**19
#: Automatic ``max_batch``: bytes of states the sampler keeps between model calls per chunk.
STORE_BUDGET_BYTES = 2**28

_SEVERITY = {Status.CONVERGED: 0, Status.MAX_ITERS: 1, Status.DIVERGED: 2}


def _auto_max_batch(
    x_T: torch.Tensor, rows_per_call: int, states_kept: int, steps: int, eta: float,
    evals_per_state: int,
) -> int:
    """The automatic ``max_batch``: the largest chunk whose states fit both budgets.

    Per sample, a chunk's largest batched model call holds ``rows_per_call`` states (the
    method's; twice that with guidance: ``evals_per_state``) and the sampler keeps
    ``states_kept`` states between calls (the method's; plus ``N`` step noises with
    ``eta > 0``). With ``s`` bytes per sample state, the chunk is the largest ``m >= 1`` with
    ``m * calls * s <= CALL_BUDGET_BYTES`` and ``m * kept * s <= STORE_BUDGET_BYTES``.
    """
    state = max(1, x_T[0].numel() * x_T.element_size())
    calls = rows_per_call * evals_per_state
    kept = states_kept
    if eta > 0:
        kept += steps
    return max(1, min(CALL_BUDGET_BYTES // (calls * state), STORE_BUDGET_BYTES // (kept * state)))


def _chunk_bounds(n: int, max_batch: int) -> list[tuple[int, int]]:
    """``ceil(n / max_batch)`` contiguous chunks of the batch, as equal in size as possible."""
    count = -(-n // max_batch)
    sizes = [n // count + (i < n % count) for i in range(count)]
    bounds = np.concatenate([[0], np.cumsum(sizes)]).tolist()
    return list(zip(bounds[:-1], bounds[1:]))


class _Noises:
    """The step noises of the whole batch, drawn as diffusers' step loop draws them (one tensor
    of the batch's shape per step, in step order), served chunk by chunk.

    One chunk: drawn once. Several: each chunk replays the generator from its starting state
    and keeps its own rows, so that only one chunk's noises are ever held, and the generator
    ends where the unsplit draw leaves it.
    """

    def __init__(
        self, grid: DDIMGrid, x_T: torch.Tensor, eta: float, generator: torch.Generator | None,
        split: bool,
    ) -> None:
        self.steps, self.like, self.eta = grid.steps, x_T, eta
        self.generator = generator
        self.all: list[torch.Tensor] | None = None
        if eta == 0:
            return
        if not split:
            self.all = self._draw()
            return
        if self.generator is None:
            self.generator = _default_generator(x_T.device)
        self.start = self.generator.get_state()

    def _draw(self) -> list[torch.Tensor]:
        x = self.like
        device = self.generator.device if self.generator is not None else x.device
        return [
            torch.randn(x.shape, generator=self.generator, device=device, dtype=x.dtype).to(
                x.device)
            for _ in range(self.steps)
        ]

    def rows(self, start: int, stop: int) -> list[torch.Tensor] | None:
        """The noises of samples ``start:stop``, one tensor per step (``None`` for eta = 0)."""
        if self.eta == 0:
            return None
        if self.all is not None:
            return [z[start:stop] for z in self.all]
        assert self.generator is not None
        self.generator.set_state(self.start)
        x = self.like
        device = self.generator.device
        return [
            torch.randn(x.shape, generator=self.generator, device=device, dtype=x.dtype)[
                start:stop].to(x.device, copy=True)
            for _ in range(self.steps)
        ]


def _default_generator(device: torch.device) -> torch.Generator:
    """The generator ``torch.randn(..., device=device)`` draws from without one."""
    if device.type == "cpu":
        return torch.default_generator
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return torch.cuda.default_generators[index]
    raise ValueError(f"eta > 0 with a batch split into chunks on {device.type} needs a "
                     "torch.Generator (or max_batch >= the batch size)")


def _combine(parts: list[DiffusionResult], method: str, wall: float) -> DiffusionResult:
    """One result from the results of the chunks, in batch order."""
    if len(parts) == 1:
        return replace(parts[0], wall_time_s=wall)
    sample = torch.cat([part.sample for part in parts])
    sizes = [part.sample.shape[0] for part in parts]
    views = torch.split(sample, sizes)
    status = max((part.status for part in parts), key=_SEVERITY.__getitem__)
    longest = max(len(part.residuals) for part in parts)
    residuals = tuple(
        max(part.residuals[k] for part in parts if k < len(part.residuals)) for k in range(longest)
    )
    evals = sum(size * part.total_evals for size, part in zip(sizes, parts))
    return DiffusionResult(
        sample=sample,
        iterations=max(part.iterations for part in parts),
        converged=status is Status.CONVERGED,
        status=status,
        sequential_evals=sum(part.sequential_evals for part in parts),
        total_evals=round(evals / sample.shape[0]),
        residuals=residuals,
        method=method,
        wall_time_s=wall,
        stats=None,
        max_batch=max(sizes),
        chunks=tuple(replace(part, sample=view) for part, view in zip(parts, views)),
        blocks=parts[0].blocks,
    )
