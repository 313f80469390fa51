"""The sampler's results: :class:`DiffusionResult` (public, one per call of
:func:`~parareal.adapters.diffusion.sample` and per chunk of a split batch) and
:class:`Outcome`, what a method's runner returns for one chunk."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

import parareal
from parareal import Status

__all__ = ["DiffusionResult", "Outcome"]


@dataclass(frozen=True)
class DiffusionResult:
    """Result of :func:`sample`.

    Attributes
    ----------
    sample : torch.Tensor
        The generated sample, shape and dtype of ``x_T``. When the run diverged: for SRDS and
        Picard the last finite estimate of the final sample, for serial the sampler's output
        as it is.
    iterations : int
        Refinement iterations (SRDS: Parareal iterations; Picard: window iterations; 0 for
        serial). For a split batch, the most any chunk ran.
    converged : bool
        ``status is Status.CONVERGED``.
    status : parareal.Status
        ``CONVERGED``: the stopping rule was met (serial: the sample is finite);
        ``MAX_ITERS``: ``max_iters`` ran out first; ``DIVERGED``: a non-finite value
        appeared (a non-finite sample is never converged). For a split batch, the worst chunk's.
    sequential_evals : int
        Batched model calls on the critical path: the latency in model calls (summed over the
        chunks of a split batch, which run one after another).
    total_evals : int
        Model evaluations per sample (a guided evaluation counts 2). For a split batch, the
        mean over all samples of their chunk's count, rounded to an integer.
    residuals : tuple of float
        The quantity the stopping rule tested, per iteration; for a split batch the largest
        over the chunks that ran that iteration (the unsplit value when they all ran it).
    method : str
        The method that ran (never ``"auto"``: the one ``auto`` chose).
    wall_time_s : float
        Seconds of the whole call. With ``method="auto"`` choosing is included: ``choice_s``
        of them; ``wall_time_s - choice_s`` is the run of the chosen method.
    stats : parareal.Stats or None
        The engine's counters (SRDS only, ``None`` for a split batch: see ``chunks``).
    max_batch : int
        Samples per chunk: the largest chunk (the whole batch when it was not split).
    chunks : tuple of DiffusionResult
        The result of every chunk, in batch order, when the batch was split (their samples are
        views of ``sample``); empty otherwise.
    reason : str
        Why this method ran: ``"requested"``, or with ``method="auto"`` the choice and the
        predicted seconds of every method.
    predicted_s : dict of str to float
        ``method="auto"``: the predicted seconds of each method (empty otherwise).
    blocks : int
        SRDS: the blocks it ran (with ``method="auto"``, the ones it chose); 0 otherwise.
    choice_s : float
        ``method="auto"``: the seconds spent choosing the method (timing the model, counting
        call patterns, predicting; part of ``wall_time_s``); 0 for a named method.
    """

    sample: torch.Tensor
    iterations: int
    converged: bool
    status: Status
    sequential_evals: int
    total_evals: int
    residuals: tuple[float, ...]
    method: str = "srds"
    wall_time_s: float = 0.0
    stats: parareal.Stats | None = None
    max_batch: int = 0
    chunks: tuple[DiffusionResult, ...] = ()
    reason: str = "requested"
    predicted_s: dict[str, float] = field(default_factory=dict)
    blocks: int = 0
    choice_s: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.status, Status):
            raise TypeError(f"status must be a parareal.Status, got {self.status!r}")
        if self.converged != (self.status is Status.CONVERGED):
            raise ValueError(f"converged={self.converged} contradicts status {self.status}")


@dataclass(frozen=True)
class Outcome:
    """What a method's runner returns for one chunk: the fields of its :class:`DiffusionResult`
    that the method decides (the chunk runner adds the counts, timing and method name).

    Attributes
    ----------
    sample : torch.Tensor
        The chunk's sample (in the engine's variables: before ``final_scale``).
    iterations : int
    status : parareal.Status
        As the method ends; a non-finite sample is made ``DIVERGED`` by the chunk runner.
    sequential_evals : int
        Batched model calls on the critical path.
    evals : int
        Model calls per state (one per state of every batched call).
    residuals : tuple of float
    stats : parareal.Stats or None
        The engine's counters (SRDS).
    blocks : int
        SRDS's blocks; 0 for the other methods.
    """

    sample: torch.Tensor
    iterations: int
    status: Status
    sequential_evals: int
    evals: int
    residuals: tuple[float, ...] = ()
    stats: parareal.Stats | None = None
    blocks: int = 0
