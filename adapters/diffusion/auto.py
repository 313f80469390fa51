"""``method="auto"``: predict the wall-clock of serial, SRDS and Picard (also exact Picard), and
run the fastest.

How a prediction is made (the user's view: ``docs/diffusion.md``, section "method='auto'"):

1. **Call pattern.** The rows of ``x`` in every sequential model call of each method, for a
   one-sample run (a chunk of ``m`` samples multiplies every call by ``m``; chunks of a split
   batch run one after another). Serial and SRDS are *counted*, not modelled: the methods
   themselves (:mod:`.methods`, run through :mod:`.runner`, not through ``sample``) run on a
   one-element state with a stub model that returns zeros, which costs only the sampler's own
   work (milliseconds); SRDS runs for an estimated ``K`` iterations: its callback ends the
   stub run where iterate ``K`` completes on the pipelined schedule, which is where the
   stopping rule ends a real run. The stub run's wall time is the sampler's overhead in the
   prediction; patterns are cached in memory and on disk (:mod:`.auto_cache`). Picard's calls depend
   on how far its window slides each iteration, so they are estimated (below). SRDS is
   predicted twice, with the default ``2 sqrt(N)`` blocks and with the paper's ``sqrt(N)``
   (:func:`~.methods.srds_block_options`), and the faster stands for SRDS
   (``result.blocks`` says which ran): more blocks mean fewer sequential calls but more
   evaluations, which pays where a call's cost barely grows with its rows (a GPU), not where
   it grows in proportion (a CPU).
2. **Iterations.** SRDS: ``K = min(B, 3)`` (:data:`SRDS_ITERATIONS`; with the default
   ``2 sqrt(N)`` blocks the bundled digits model stops after 3 iterations at N = 25 and 100
   (one sample; 3 or 4 for eight) and after 2 at N = 1000, docs/benchmarks.md). Picard:
   ``ceil(2 N / p) + 4`` windows of ``p`` rows
   (:func:`picard_iterations`; measured 9, 14 and 31 at N = 25, 100, 1000 with ``p = 2
   sqrt(N)``). After ``auto`` has run SRDS or Picard, the iterations it observed for that model,
   shape and N replace the estimate.
3. **Costs.** The model is timed at the batch sizes the patterns use most (the serial chunk,
   the smallest and largest SRDS call and its most frequent one, the Picard window), smallest
   first, until the choice is clear or timing would cost more than a small part of the serial
   prediction (:mod:`.auto_timing`): per size, the fastest of a few calls (the least disturbed
   by other work on the machine; at most ``1 +`` :data:`TIMING_REPEATS`). Other sizes are
   interpolated linearly (extrapolated beyond the largest timed one).
   Timings and stub runs are cached in memory and on disk (:mod:`.auto_cache`: per model
   fingerprint, sample shape, dtype, device, threads and conditioning): later calls, in this
   process or the next, time nothing.
4. **Decision.** The smallest prediction among the *exact* methods, whose result is the serial
   sample: serial, SRDS (it stops when its final sample changes by at most half an 8-bit
   level, and converges to the serial sample) and exact Picard (``"picard-exact"``: the whole
   grid per call, a data-unit rule; predicted as ``exact_picard_iterations(N)`` calls of
   ``exact_picard_rows`` rows; on DDIM grids, :data:`PREDICT_EXACT_PICARD`). Picard, whose
   default noise-scaled tolerance leaves differences of several 8-bit levels, competes only
   with ``exact=False``.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .auto_cache import CostSlot, clear_disk, clear_memory, load_pattern, machine_key, save_pattern
from .auto_estimates import (
    SRDS_ITERATIONS,
    CallPlan,
    exact_picard_iterations,
    exact_picard_rows,
    interpolate_cost,
    picard_iterations,
    predict,
    srds_iterations,
)
from .auto_timing import TIMING_REPEATS, choice_is_clear, time_anchors
from .auto_timing import time_call as _time_call  # the golden-result script replaces it here
from .methods.registry import REGISTRY
from .methods.serial import Serial
from .methods.srds import SRDS
from .models import ModelFn, wrap_model
from .pf_ode import check_scheduler
from .runner import Sampling, sampler_grid

__all__ = [
    "SRDS_ITERATIONS",
    "TIMING_REPEATS",
    "AutoChoice",
    "CallPlan",
    "PlannedRun",
    "choose_method",
    "clear_cache",
    "decide",
    "exact_picard_iterations",
    "exact_picard_rows",
    "interpolate_cost",
    "picard_iterations",
    "predict",
    "srds_iterations",
]

#: Whether ``auto`` predicts exact Picard (``"picard-exact"``) beside serial, SRDS and Picard
#: (DDIM grids): it is chosen wherever its calls of up to ``N`` rows are predicted fastest.
PREDICT_EXACT_PICARD = True
#: The methods ``auto`` chooses from, and which of them give the serial sample.
EXACT_METHODS = tuple(name for name, cls in REGISTRY.items() if cls.exact)
CANDIDATES = tuple(REGISTRY)


@dataclass(frozen=True)
class AutoChoice:
    """What ``auto`` decided: the method to run, why, and the predicted seconds of each."""

    method: str
    reason: str
    predicted_s: dict[str, float]
    timing_s: float = 0.0
    observe: Callable[[int], None] | None = field(default=None, repr=False, compare=False)
    #: SRDS's blocks, when SRDS was chosen (the faster of the candidates); 0 otherwise.
    blocks: int = 0


def decide(
    predicted_s: Mapping[str, float], *, exact: bool = True, notes: Mapping[str, str] | None = None
) -> tuple[str, str]:
    """The method with the smallest prediction, and the reason, from given predictions.

    Parameters
    ----------
    predicted_s : mapping
        Method name to predicted seconds (methods absent cannot run).
    exact : bool
        Choose among :data:`EXACT_METHODS` only (Picard is predicted but not chosen).
    notes : mapping, optional
        Per method, how its prediction was made, appended to the reason.

    Returns
    -------
    method, reason : str
    """
    if not isinstance(exact, bool):
        raise TypeError(f"exact must be True or False, got {exact!r}")
    allowed = {m: s for m, s in predicted_s.items() if not exact or m in EXACT_METHODS}
    if not allowed:
        raise ValueError(f"no method to choose from: predictions {dict(predicted_s)}")
    method = min(allowed, key=lambda m: (allowed[m], CANDIDATES.index(m)))
    figures = ", ".join(f"{m} {s:.3g} s" for m, s in sorted(predicted_s.items(),
                                                           key=lambda kv: kv[1]))
    reason = f"predicted fastest: {method} (predicted {figures})"
    if exact and "picard" in predicted_s:
        reason += ("; picard not considered: its sample is not the serial one "
                   "(pass exact=False; CLI: --no-exact)")
    if notes:
        reason += "; " + "; ".join(f"{m}: {notes[m]}" for m in predicted_s if notes.get(m))
    return method, reason


# ---------------------------------------------------------------------------------------------
# Caches: model timings per (model, key), SRDS/serial call patterns, observed iterations.

_LOCK = threading.Lock()
_ITERATIONS: weakref.WeakKeyDictionary[Any, dict[Hashable, int]] = weakref.WeakKeyDictionary()
_PATTERNS: dict[Hashable, tuple[tuple[int, ...], float]] = {}


def clear_cache(*, disk: bool = True) -> None:
    """Forget every timing, call pattern and observed iteration count (e.g. to re-time); with
    ``disk`` (the default) the files of :mod:`.auto_cache` too."""
    with _LOCK:
        _ITERATIONS.clear()
        _PATTERNS.clear()
    clear_memory()
    if disk:
        clear_disk()


def _slot(table: weakref.WeakKeyDictionary, model: Any) -> dict | None:
    """The model's entry of a cache table (``None`` when the model cannot be weakly keyed)."""
    try:
        return table.setdefault(model, {})
    except TypeError:
        return None


def _model_key(fn: ModelFn, x_T: torch.Tensor) -> Hashable:
    embeds = getattr(fn, "prompt_embeds", None)
    return (tuple(x_T.shape[1:]), x_T.dtype, str(x_T.device), fn.evals_per_state,
            None if embeds is None else tuple(embeds.shape[1:]))


def _cost_key(fn: ModelFn, x_T: torch.Tensor) -> dict[str, Any]:
    """What the cost of a call depends on besides the model (:class:`.auto_cache.CostSlot`)."""
    embeds = getattr(fn, "prompt_embeds", None)
    return {"shape": list(x_T.shape[1:]), "dtype": str(x_T.dtype), **machine_key(x_T.device),
            "evals_per_state": fn.evals_per_state,
            "embeds": None if embeds is None else list(embeds.shape[1:])}


class _IterateDone(Exception):
    """Ends a stub run of SRDS where iterate ``K`` completes."""


def _pattern(scheduler: Any, steps: int, method: str, iterations: int, blocks: int
             ) -> tuple[tuple[int, ...], float]:
    """Rows per sequential call of a one-sample run, and its seconds, from a stub-model run."""
    key = (type(scheduler).__name__, steps, method, iterations, blocks)
    with _LOCK:
        if key in _PATTERNS:
            return _PATTERNS[key]
    saved = load_pattern(key)
    if saved is not None:
        with _LOCK:
            _PATTERNS[key] = saved
        return saved
    rows: list[int] = []

    def stub(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        rows.append(x.shape[0])
        return torch.zeros_like(x)

    def cut(k: int, _: torch.Tensor) -> None:
        if k >= iterations:  # where iterate K completes, as the stopping rule ends a run
            raise _IterateDone

    begin = time.perf_counter()
    grid = sampler_grid(scheduler, steps, pf=check_scheduler(scheduler) != "ddim")
    runner = (SRDS(grid.steps, blocks=blocks, tol=0.0, max_iters=min(iterations + 1, blocks),
                   callback=cut) if method == "srds" else Serial(grid.steps))
    try:
        with torch.inference_mode():
            Sampling.build(runner, grid).run_chunk(wrap_model(stub), torch.zeros(1, 1), None)
    except _IterateDone:
        pass
    seconds = time.perf_counter() - begin
    out = tuple(rows)
    with _LOCK:
        _PATTERNS[key] = (out, seconds)
    save_pattern(key, out, seconds)
    return out, seconds


@dataclass(frozen=True)
class PlannedRun:
    """The run ``auto`` plans: what :func:`choose_method` predicts each method's seconds for.

    Attributes
    ----------
    scheduler : object
        What :func:`~parareal.adapters.diffusion.sample` was given (for the stub runs).
    x_T : torch.Tensor
        The batch to sample (its shape, dtype and device; its rows are the timing inputs).
    steps, window : int
        ``N`` and Picard's ``p``.
    blocks : tuple of int
        SRDS's candidate ``B``: each is predicted and the fastest stands for SRDS
        (``AutoChoice.blocks``).
    chunks : mapping
        Per method, the sizes of the chunks the batch is split into for it.
    timestep : int
        The model timestep of the timing calls.
    exact : bool
        Choose among the methods whose result is the serial sample (:data:`EXACT_METHODS`).
    parallel_ok : bool
        False when only serial can run (``eta > 0`` without a generator).
    picard_ok : bool
        False when Picard cannot run at all (the probability-flow samplers): it is then
        neither predicted nor mentioned.
    """

    scheduler: Any
    x_T: torch.Tensor
    steps: int
    blocks: tuple[int, ...]
    window: int
    chunks: Mapping[str, Sequence[int]]
    timestep: int
    exact: bool = True
    parallel_ok: bool = True
    picard_ok: bool = True


def choose_method(model: Any, fn: ModelFn, run: PlannedRun) -> AutoChoice:
    """Time the model (or reuse cached timings), predict each method's seconds and choose.

    Parameters
    ----------
    model : object
        The model as the caller passed it: the timing cache's key (held weakly).
    fn : ModelFn
        The wrapped model, called for the timings.
    run : PlannedRun
        The run to plan.
    """
    scheduler, x_T, steps, window = run.scheduler, run.x_T, run.steps, run.window
    blocks, chunks, exact = run.blocks, run.chunks, run.exact
    parallel_ok, picard_ok, timestep = run.parallel_ok, run.picard_ok, run.timestep
    if not parallel_ok:
        return AutoChoice("serial", "eta > 0 without a generator: SRDS and Picard need one "
                          "(pass generator=...), so serial ran without timing", {})
    begin = time.perf_counter()
    model_key = _model_key(fn, x_T)
    options = tuple(blocks)
    if not options:
        raise ValueError("blocks: give at least one candidate")
    with _LOCK:
        slot = _slot(_ITERATIONS, model)
        seen = {b: dict(slot.get((model_key, steps, b, window), {})) if slot is not None else {}
                for b in options}
    picard_seen = seen[options[0]]
    k_picard = picard_seen.get("picard", picard_iterations(steps, window))
    notes = {"picard": f"{k_picard} windows of {window} steps "
                       + ("(seen in the last auto run)" if "picard" in picard_seen
                          else "(estimate)")}
    serial_rows, serial_s = _pattern(scheduler, steps, "serial", 0, options[0])
    stub_s = serial_s
    methods: list[tuple[str, tuple[int, ...], float, int]] = [
        ("serial", serial_rows, serial_s, 0)]
    for b in options:
        k = min(seen[b].get("srds", srds_iterations(steps, b)), b)
        rows, seconds = _pattern(scheduler, steps, "srds", k, b)
        stub_s += seconds
        note = f"B = {b} blocks, K = {k} iterations " + (
            "(seen in the last auto run)" if "srds" in seen[b] else "(estimate)")
        methods.append((f"srds B={b}", rows, seconds, b))
        notes[f"srds B={b}"] = note
    if picard_ok:
        methods.append(("picard", (window,) * k_picard,
                        serial_s * k_picard * window / max(len(serial_rows), 1), 0))
    else:
        notes.pop("picard")
    if picard_ok and PREDICT_EXACT_PICARD and "picard-exact" in chunks:
        k_exact = exact_picard_iterations(steps)
        rows_exact = exact_picard_rows(steps, k_exact)
        methods.append(("picard-exact", rows_exact,
                        serial_s * sum(rows_exact) / max(len(serial_rows), 1), 0))
        notes["picard-exact"] = f"{k_exact} calls over the whole grid (estimate)"
    plans: dict[str, CallPlan] = {}
    anchors: set[tuple[int, int]] = set()  # (chunk size, rows)
    for name, pattern, overhead, b in methods:
        sizes = list(chunks[name.split()[0]])
        plans[name] = CallPlan(name, tuple(r * m for m in sizes for r in pattern),
                               overhead * len(sizes), notes.get(name, ""))
        if b and b != options[0]:
            continue  # other SRDS block counts: costs interpolated, not timed (saves time)
        common = Counter(pattern).most_common(1)[0][0]
        for m in set(sizes):
            anchors.update((m, r * m) for r in {min(pattern), max(pattern), common})
    slot = CostSlot(model, _cost_key(fn, x_T))
    t = torch.full((1,), int(timestep), dtype=torch.long, device=x_T.device)

    def measure(m: int, rows: int) -> float:
        x = x_T[:m][torch.arange(rows, device=x_T.device) % m]
        return _time_call(fn.rows(0, m), x, t.expand(rows))

    allowed = {name for name in plans if not exact or name.split()[0] in EXACT_METHODS}
    pattern_of = {name: plan.rows for name, plan in plans.items()}
    overhead_of = {name: plan.overhead_s for name, plan in plans.items()}
    with torch.no_grad():
        got = time_anchors(
            {rows: m for m, rows in sorted(anchors, reverse=True)}, slot.costs, measure,
            lambda costs: predict(plans, costs),
            lambda costs, pred: choice_is_clear(pattern_of, overhead_of, pred, allowed, costs),
            stub_s)
    slot.update(got.timed)
    costs = got.costs
    variants = predict(plans, costs)
    # SRDS stands for its fastest blocks; the others are mentioned in its note
    srds_names = [name for name, *_ in methods if name.startswith("srds")]
    best = min(srds_names, key=lambda name: (variants[name], srds_names.index(name)))
    chosen_blocks = next(b for name, *_, b in methods if name == best)
    predicted = {name.split()[0]: s for name, s in variants.items()
                 if not name.startswith("srds") or name == best}
    notes["srds"] = notes[best] + "".join(
        f" (B = {b}: predicted {variants[name]:.3g} s)"
        for name, *_, b in methods if name in srds_names and name != best)
    method, reason = decide(predicted, exact=exact, notes=notes)
    run_key = (model_key, steps, chosen_blocks if method == "srds" else options[0], window)
    if got.untimed:
        why = ("the choice was clear" if got.stopped == "clear"
               else "timing the rest would cost more than the choice is worth")
        reason += (f"; calls of {len(got.costs)} batch sizes timed, "
                   f"{len(got.untimed)} extrapolated ({why})")
    timing = time.perf_counter() - begin
    reason += f"; predictions took {timing:.2g} s"

    def observe(iterations: int) -> None:
        with _LOCK:
            slot = _slot(_ITERATIONS, model)
            if slot is not None and iterations > 0:
                slot.setdefault(run_key, {})[method] = iterations

    return AutoChoice(method, reason, predicted, timing,
                      observe if method != "serial" else None,
                      blocks=chosen_blocks if method == "srds" else 0)
