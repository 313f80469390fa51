"""What a diffusion method is: a class whose constructor takes the method's options (validated
there, against the ``N`` steps of the grid), whose properties say what chunking and ``auto``
need to know (is its result the serial sample, rows per model call, states kept), and whose
:meth:`Method.run` samples one chunk (:class:`Chunk`) into an :class:`~..result.Outcome`.

Shared here: the options of the refining methods (SRDS and Picard: ``tol``, ``tol_mode``,
``max_iters``, ``callback``) and the change measures their stopping rules test.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from parareal.backends import Rhs
from parareal.propagators import Propagator, SteppablePropagator
from parareal.validation import check_int, check_tolerance

from ..pf_ode import SigmaGrid, resolve_propagator
from ..result import Outcome
from ..schedule import DDIMGrid

__all__ = ["TOL_MODES", "Chunk", "Method"]

#: The ``tol_mode`` values of the refining methods (SRDS, Picard).
TOL_MODES = ("data", "noise")


@dataclass
class Chunk:
    """One chunk's run: what a method's :meth:`Method.run` works on.

    Attributes
    ----------
    grid : DDIMGrid or SigmaGrid
        The sampler's grid (engine time is the grid index ``0..N``).
    rhs : parareal.backends.Rhs
        The model as the engine's counted, vectorised ``f`` (:mod:`..model_rhs`).
    x_T : torch.Tensor
        The chunk's initial state (in the engine's variables).
    fine, coarse : Propagator
        The grid's fine propagator (the serial sampler's steps) and coarse one (one step
        across a block).
    """

    grid: DDIMGrid | SigmaGrid
    rhs: Rhs
    x_T: torch.Tensor
    fine: Propagator
    coarse: Propagator


class Method(ABC):
    """A diffusion sampling method for an ``N``-step grid; its options are keyword-only
    constructor arguments (``None``: the default), the source of
    :data:`~.registry.METHOD_OPTIONS`.

    Parameters
    ----------
    steps : int
        ``N``, the grid's steps (some options are bounded by it).
    """

    #: The method's name in the registry and in results.
    name: ClassVar[str]
    #: Whether its result is the serial sample (to its stopping rule's tolerance, converging
    #: to it): ``auto`` chooses among these unless ``exact=False``.
    exact: ClassVar[bool]
    #: Whether it also runs on the probability-flow grids in ``sigma`` (Euler, Heun,
    #: ``fine=``/``coarse=``), not only with DDIM steps.
    sigma_grids: ClassVar[bool] = True
    #: Whether ``eta > 0`` needs a ``torch.Generator``: the step noise is drawn once up front
    #: so that the result is the serial stochastic sample for that noise.
    needs_generator: ClassVar[bool] = True
    #: Default tolerance per ``tol_mode`` (refining methods).
    default_tol: ClassVar[dict[str, float]] = {}
    #: The fine and coarse propagators asked for (``None``: the scheduler's own method).
    fine: SteppablePropagator | None = None
    coarse: SteppablePropagator | None = None
    #: ``callback(iteration, sample)`` after every iteration (refining methods).
    callback: Callable[[int, torch.Tensor], Any] | None = None

    def __init__(self, steps: int) -> None:
        self.steps = steps

    @classmethod
    def options(cls) -> tuple[str, ...]:
        """The method's option names: its constructor's keyword-only parameters."""
        params = inspect.signature(cls.__init__).parameters.values()
        return tuple(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)

    @property
    @abstractmethod
    def rows_per_call(self) -> int:
        """Rows (states of one sample) of its largest batched model call."""

    @property
    @abstractmethod
    def states_kept(self) -> int:
        """States of one sample it keeps between model calls (step noises not included)."""

    @abstractmethod
    def run(self, chunk: Chunk) -> Outcome:
        """Sample one chunk."""


class Refining(Method):
    """A method that refines an estimate of the whole trajectory until a stopping rule holds
    (SRDS, Picard): the options ``tol``, ``tol_mode``, ``max_iters`` and ``callback``."""

    #: ``tol_mode`` when none is given.
    default_tol_mode: ClassVar[str]

    def _refining_options(self, tol: float | None, tol_mode: str | None) -> None:
        """Check ``tol_mode`` and ``tol`` and set their values (defaults: :attr:`default_tol`)."""
        if tol_mode is not None and tol_mode not in TOL_MODES:
            raise ValueError(f"tol_mode must be one of {TOL_MODES}, got {tol_mode!r}")
        if tol is not None:
            tol = check_tolerance(tol, "tol")
        self.mode = tol_mode if tol_mode is not None else self.default_tol_mode
        tol = self.default_tol[self.mode] if tol is None else tol
        self.tol = tol or 0.0

    def _set_callback(self, callback: Callable[[int, torch.Tensor], Any] | None) -> None:
        if callback is not None and not callable(callback):
            raise TypeError(
                f"callback must be callable as callback(iteration, sample), got {callback!r}")
        self.callback = callback


def optional_int(value: Any, name: str, minimum: int) -> int | None:
    """``None``, or ``value`` checked as an int ``>= minimum``."""
    return None if value is None else check_int(value, name, minimum)


def optional_propagator(value: Any, name: str) -> SteppablePropagator | None:
    """``None``, or the fixed-step engine propagator ``value`` names."""
    return None if value is None else resolve_propagator(value, name)


def change(delta: torch.Tensor, mode: str) -> float:
    """Max-abs change (``data``) or the largest per-sample RMS change (``noise``)."""
    if mode == "data":
        return float(delta.abs().max()) if delta.numel() else 0.0
    per_sample = delta.reshape(delta.shape[0], -1).pow(2).mean(dim=1).sqrt()
    return float(per_sample.max())


def finite(x: torch.Tensor) -> bool:
    """Whether every value of ``x`` is finite."""
    return bool(torch.isfinite(x).all())
