"""Golden results of the diffusion sampler, ``auto``'s plans and the engine on every problem.

Usage::

    python benchmarks/golden_diffusion.py --record benchmarks/results/golden-diffusion.json
    python benchmarks/golden_diffusion.py --check benchmarks/results/golden-diffusion.json
    python benchmarks/golden_diffusion.py --check benchmarks/results/golden-diffusion.json --quick

Recorded before the first edit of a refactor of the sampler (issue 19), byte-identical after:
the companion of ``benchmarks/golden_results.py`` (the engine's golden set, unchanged). Three
groups of runs, each independent of the others and of their order (caches are cleared before
every run, every run draws its noise from its own seeded generator, torch runs on one thread):

``diffusion/...``
    :func:`parareal.adapters.diffusion.sample` with the bundled digits model: every method
    (serial, srds, picard, auto) with the DDIM, Euler and Heun schedulers (Euler and Heun with
    and without ``use_karras_sigmas``) and, one option at a time from a base run (a covering
    set, not the cross product): eta 0.3 with a seeded generator (DDIM), ``max_batch`` None and
    2 with 5 samples, pipelined or not, the stopping rules, ``tol``, ``tol_mode``, blocks,
    window, ``max_iters``, anderson, ``fine``/``coarse`` Heun, the batched, serial and threads
    backends. Per run: the sha256 of the sample's bytes, its shape and dtype, the iterations,
    status, converged, sequential and total evaluations, residuals (``float.hex``, and their
    sha256), method, ``max_batch``, blocks, reason, ``predicted_s``, the engine's counters
    (``stats``), every chunk's fields (a split batch) and, for runs with a callback, the sha256
    of every sample the callback saw. ``auto`` runs under a fixed synthetic cost table (see
    :func:`fixed_costs`: ``auto._time_call`` returns the table's cost and ``auto``'s clock is
    frozen, so its predictions, choice and reason are deterministic).
``auto/...``
    ``auto._pattern`` (rows per sequential call, for several schedulers, ``N``, methods,
    iterations and blocks), ``srds_iterations``, ``picard_iterations``, ``default_blocks``,
    and ``predict``/``decide`` on :class:`~parareal.adapters.diffusion.auto.CallPlan` s built
    from those patterns with fixed cost tables.
``engine/...``
    :func:`parareal.solve` on every registered problem (``problems.CORE`` to ``tol = 1e-9``,
    ``problems.TEST_SET`` for ``max_iters = 2``) on the serial, batched and threads backends in
    both schedules, recorded as ``golden_results.record`` does plus the Jacobian counters.

``--check`` compares every recorded field; it fails on any difference, on a run missing from
the file, and on a run that is not in the file. ``--quick`` runs a subset (tagged in
:func:`cases`, well under a minute) and compares only the runs it ran. On the threads backend in
the pipelined schedule the evaluation and call counts (``f_evals``, ``f_calls``,
``total_evals``, ``serial_fine_cost``, ``speedup_bound``) depend on the timing of the workers
(how waiting tasks merge, how much abandoned work had ran), so they are neither recorded nor
compared there. A changed ``f_calls`` elsewhere (batched calls of the model or of ``f``) fails
too unless ``--allow-calls`` is given (a change in how calls are batched may justify it; the
changes are then listed as notes).

The script reaches into two private names of ``adapters/diffusion/auto.py`` (``_time_call``,
``_pattern``) and its ``time`` module, sets ``auto_timing.TIME_EVERY_ANCHOR`` and turns the
disk cache off (``PARAREAL_AUTO_CACHE=off``: in :func:`fixed_costs`, and for the whole run
in :func:`main`): a refactor that moves them must adapt :func:`fixed_costs` and
:func:`auto_cases` so that the same values are produced, not change the recorded file.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

import parareal  # noqa: E402
from parareal import problems  # noqa: E402

#: Fields whose value depends on worker timing on the threads backend's pipelined schedule.
TIMING = {"f_evals", "f_calls", "total_evals", "serial_fine_cost", "speedup_bound"}
#: Steps of the DDIM and Euler runs, and of the Heun runs (a Heun step makes two model calls).
STEPS = 12
HEUN_STEPS = 8
SCHEDULERS = ("ddim", "euler", "euler-karras", "heun", "heun-karras")
#: Synthetic seconds of a model call of ``rows`` rows for ``auto``: a fixed cost per call
#: (parallel methods win) or a cost per row (serial wins).
COSTS: dict[str, Callable[[int], float]] = {
    "per-call": lambda rows: 0.01 + 0.0001 * rows,
    "per-row": lambda rows: 0.001 * rows,
}


def _hex(value: float) -> str:
    return float(value).hex()


def _sha(data: Any) -> str:
    if hasattr(data, "detach"):
        data = data.detach().cpu().contiguous().numpy()
    return hashlib.sha256(np.ascontiguousarray(data).tobytes()).hexdigest()


# ---------------------------------------------------------------------------------- torch setup


def _torch() -> Any:
    import torch

    torch.set_num_threads(1)
    return torch


_MODEL: dict[str, Any] = {}


def _digits() -> tuple[Any, Any]:
    """The bundled digits UNet and its DDIM scheduler (loaded once)."""
    if not _MODEL:
        _torch()
        from parareal.adapters.diffusion import digits

        _MODEL["unet"], _MODEL["scheduler"] = digits.load_digits_model()
    return _MODEL["unet"], _MODEL["scheduler"]


def scheduler(name: str) -> Any:
    """A fresh scheduler ``name`` (:data:`SCHEDULERS`) built from the digits model's config."""
    from diffusers import DDIMScheduler, EulerDiscreteScheduler, HeunDiscreteScheduler

    config = _digits()[1].config
    if name == "ddim":
        return DDIMScheduler.from_config(config)
    cls = EulerDiscreteScheduler if name.startswith("euler") else HeunDiscreteScheduler
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cls.from_config(config, use_karras_sigmas=name.endswith("-karras"))


@contextlib.contextmanager
def fixed_costs(table: str) -> Iterator[None]:
    """Run ``auto`` under the synthetic cost table ``COSTS[table]`` with a frozen clock.

    ``auto._time_call`` returns the table's cost for the rows of the call instead of timing
    the model, and ``auto``'s ``time.perf_counter`` always returns 0 (so the stub runs'
    overheads and the time the predictions took are 0): the predictions, the choice and the
    reason are then functions of the table. Every anchor is timed
    (``auto_timing.TIME_EVERY_ANCHOR``: no early stop, no budget) and the disk cache is off
    (``PARAREAL_AUTO_CACHE=off``), as when the file was recorded. Caches are cleared before
    and after.
    """
    from types import SimpleNamespace

    from parareal.adapters.diffusion import auto, auto_cache, auto_timing

    cost = COSTS[table]
    saved = auto._time_call, auto.time, auto_timing.TIME_EVERY_ANCHOR
    saved_env = os.environ.get(auto_cache.ENV_VAR)
    os.environ[auto_cache.ENV_VAR] = "off"
    auto.clear_cache()
    auto._time_call = lambda fn, x, t: cost(int(x.shape[0]))
    auto.time = SimpleNamespace(perf_counter=lambda: 0.0)
    auto_timing.TIME_EVERY_ANCHOR = True
    try:
        yield
    finally:
        auto._time_call, auto.time, auto_timing.TIME_EVERY_ANCHOR = saved
        auto.clear_cache()
        if saved_env is None:
            os.environ.pop(auto_cache.ENV_VAR)
        else:
            os.environ[auto_cache.ENV_VAR] = saved_env


# ------------------------------------------------------------------------------ diffusion runs


def diffusion_cases() -> Iterator[tuple[str, dict[str, Any], bool]]:
    """``(name, spec, quick)`` of every diffusion run: a base run per (scheduler, method) and
    one option changed at a time."""
    for sched in SCHEDULERS:
        ddim = sched == "ddim"
        quick_sched = sched in ("ddim", "heun-karras")
        steps = HEUN_STEPS if sched.startswith("heun") else STEPS
        # serial
        base = dict(sched=sched, method="serial", n=2, steps=steps, options={})
        yield from _variants(base, quick_sched, [
            ("base", {}),
            *([("eta=0.3", dict(eta=0.3, generator=11))] if ddim else []),
            ("n=5/max_batch=None", dict(n=5)),
            ("n=5/max_batch=2", dict(n=5, max_batch=2)),
            ("fine=heun", dict(fine="heun")),
            ("fine=euler", dict(fine="euler")),
            ("fine=rk4", dict(fine=parareal.RK4(steps=1))),
        ])
        # srds
        base = dict(sched=sched, method="srds", n=2, steps=steps, options={})
        yield from _variants(base, quick_sched, [
            ("base", dict(callback=True)),
            ("pipelined=False", dict(pipelined=False)),
            ("pipelined=True", dict(pipelined=True)),
            ("stop=update", dict(stop="update")),
            ("stop=estimate", dict(stop="estimate")),
            ("stop=estimate/pipelined=False", dict(stop="estimate", pipelined=False)),
            ("tol=0", dict(tol=0.0)),
            ("tol=0.05", dict(tol=0.05)),
            ("tol_mode=noise", dict(tol_mode="noise")),
            ("blocks=3", dict(blocks=3)),
            ("max_iters=2", dict(max_iters=2)),
            ("backend=serial", dict(backend="serial")),
            ("backend=threads", dict(backend="threads")),
            ("backend=threads/pipelined=False", dict(backend="threads", pipelined=False)),
            ("backend=threads/stop=estimate", dict(backend="threads", stop="estimate")),
            ("n=5/max_batch=None", dict(n=5)),
            ("n=5/max_batch=2", dict(n=5, max_batch=2)),
            ("n=5/max_batch=2/pipelined=False", dict(n=5, max_batch=2, pipelined=False)),
            ("fine=heun/coarse=heun", dict(fine="heun", coarse="heun")),
            ("coarse=heun", dict(coarse="heun")),
            ("fine=euler/coarse=euler:2", dict(fine="euler", coarse=parareal.Euler(steps=2))),
            *([("eta=0.3", dict(eta=0.3, generator=11)),
               ("eta=0.3/pipelined=False", dict(eta=0.3, generator=11, pipelined=False)),
               ("eta=0.3/n=5/max_batch=2", dict(eta=0.3, generator=11, n=5, max_batch=2)),
               ("eta=0.3/backend=threads", dict(eta=0.3, generator=11, backend="threads"))]
              if ddim else []),
        ])
        # picard: DDIM steps only
        if ddim:
            base = dict(sched=sched, method="picard", n=2, steps=steps, options={})
            yield from _variants(base, quick_sched, [
                ("base", dict(callback=True)),
                ("tol_mode=data", dict(tol_mode="data")),
                ("tol_mode=noise", dict(tol_mode="noise")),
                ("tol=0", dict(tol=0.0)),
                ("window=4", dict(window=4)),
                ("max_iters=3", dict(max_iters=3)),
                ("anderson=2", dict(anderson=2)),
                ("anderson=3/tol_mode=data", dict(anderson=3, tol_mode="data")),
                ("eta=0.3", dict(eta=0.3, generator=11)),
                ("eta=0.3/anderson=2", dict(eta=0.3, generator=11, anderson=2)),
                ("n=5/max_batch=None", dict(n=5)),
                ("n=5/max_batch=2", dict(n=5, max_batch=2)),
                ("n=5/max_batch=2/anderson=2", dict(n=5, max_batch=2, anderson=2)),
                ("eta=0.3/n=5/max_batch=2", dict(eta=0.3, generator=11, n=5, max_batch=2)),
            ])
        # auto, under each synthetic cost table
        for table in COSTS:
            base = dict(sched=sched, method="auto", n=2, steps=steps, options={}, costs=table)
            yield from _variants(base, quick_sched and table == "per-call", [
                (f"costs={table}", {}),
                (f"costs={table}/exact=False", dict(exact=False)),
                (f"costs={table}/n=5/max_batch=None", dict(n=5)),
                (f"costs={table}/n=5/max_batch=2", dict(n=5, max_batch=2)),
                *([(f"costs={table}/eta=0.3", dict(eta=0.3, generator=11)),
                   (f"costs={table}/eta=0.3/exact=False", dict(eta=0.3, generator=11,
                                                               exact=False)),
                   (f"costs={table}/eta=0.3/no-generator", dict(eta=0.3))] if ddim else []),
            ])
    # longer grids: the default blocks and windows of other N
    for sched, method, steps in (("ddim", "srds", 25), ("ddim", "picard", 25),
                                 ("heun-karras", "srds", 20), ("euler", "srds", 25),
                                 ("ddim", "serial", 25), ("heun", "serial", 20)):
        yield (f"diffusion/{sched}/{method}/steps={steps}",
               dict(sched=sched, method=method, n=2, steps=steps, options={}), False)


#: The variants of the quick subset (by their suffix, or ``method/suffix`` for one method's
#: alone), for the schedulers it covers. The batch split and the noise tolerance run for one
#: method (Picard: the cheapest), eta for the parallel methods: the full check has the rest.
QUICK = {"base", "picard/n=5/max_batch=2", "stop=estimate", "backend=threads",
         "fine=heun/coarse=heun", "srds/eta=0.3", "picard/eta=0.3", "anderson=2",
         "picard/tol_mode=noise", "costs=per-call", "costs=per-call/exact=False",
         "pipelined=False"}
#: The quick variants of the other quick scheduler (Heun with Karras sigmas): its base runs and
#: auto's plan; the options (batch splits, backends, fine/coarse) are DDIM's quick variants.
QUICK_PF = {"base", "costs=per-call"}


def _variants(base: dict[str, Any], quick: bool, variants: list[tuple[str, dict[str, Any]]]
              ) -> Iterator[tuple[str, dict[str, Any], bool]]:
    for suffix, change in variants:
        spec = dict(base, options=dict(base["options"]))
        for key in ("n", "steps"):
            if key in change:
                spec[key] = change[key]
        spec["options"].update({k: v for k, v in change.items() if k not in ("n", "steps")})
        name = f"diffusion/{base['sched']}/{base['method']}/{suffix}"
        chosen = QUICK if base["sched"] == "ddim" else QUICK_PF
        yield name, spec, quick and (suffix in chosen or f"{base['method']}/{suffix}" in chosen)


def _timing_dependent(spec: dict[str, Any]) -> bool:
    """Threads backend, pipelined schedule (the SRDS default): counts depend on timing."""
    opts = spec["options"]
    return opts.get("backend") == "threads" and opts.get("pipelined", True)


def run_diffusion(spec: dict[str, Any]) -> dict[str, Any]:
    torch = _torch()
    from parareal.adapters.diffusion import sample

    unet, _ = _digits()
    opts = dict(spec["options"])
    torch.manual_seed(0)
    x_T = torch.randn((spec["n"], 1, 8, 8), generator=torch.Generator().manual_seed(1234))
    if "generator" in opts:
        opts["generator"] = torch.Generator().manual_seed(opts["generator"])
    seen: list[str] = []
    if opts.pop("callback", False):
        opts["callback"] = lambda k, x: seen.append(f"{k}:{_sha(x)}")
    costs = spec.get("costs")
    with fixed_costs(costs) if costs else contextlib.nullcontext(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = sample(unet, scheduler(spec["sched"]), x_T,
                        num_inference_steps=spec["steps"], method=spec["method"], **opts)
    out = _diffusion_record(result, _timing_dependent(spec))
    out["sample_shape"] = list(result.sample.shape)
    out["sample_dtype"] = str(result.sample.dtype)
    if "callback" in opts:
        out["callback"] = seen
    return out


def _diffusion_record(result: Any, timing: bool) -> dict[str, Any]:
    residuals = np.array(result.residuals, dtype=np.float64)
    out: dict[str, Any] = {
        "sha256": _sha(result.sample),
        "iterations": result.iterations,
        "status": result.status.name,
        "converged": result.converged,
        "sequential_evals": result.sequential_evals,
        "total_evals": result.total_evals,
        "residuals": [_hex(r) for r in result.residuals],
        "residuals_sha256": _sha(residuals),
        "method": result.method,
        "max_batch": result.max_batch,
        "blocks": result.blocks,
        "reason": result.reason,
        "predicted_s": {k: _hex(v) for k, v in sorted(result.predicted_s.items())},
        "stats": None if result.stats is None else _stats(result.stats),
        "chunks": [_diffusion_record(chunk, timing) for chunk in result.chunks],
    }
    return _drop_timing(out) if timing else out


def _stats(st: parareal.Stats) -> dict[str, Any]:
    return {
        "fine_calls": st.fine_calls,
        "coarse_calls": st.coarse_calls,
        "f_evals": st.f_evals,
        "f_calls": st.f_calls,
        "critical_path": st.critical_path,
        "critical_path_per_iteration": list(st.critical_path_per_iteration),
        "jac_evals": st.jac_evals,
        "jac_calls": st.jac_calls,
        "serial_fine_cost": _hex(st.serial_fine_cost),
        "speedup_bound": _hex(st.speedup_bound),
    }


def _drop_timing(record: Any) -> Any:
    if isinstance(record, dict):
        return {k: _drop_timing(v) for k, v in record.items() if k not in TIMING}
    if isinstance(record, list):
        return [_drop_timing(v) for v in record]
    return record


# -------------------------------------------------------------------------------- auto's plans


def auto_cases() -> Iterator[tuple[str, Callable[[], dict[str, Any]], bool]]:
    """``(name, thunk, quick)``: ``auto``'s call patterns and its decisions for fixed costs."""
    for sched, steps in (("ddim", 10), ("ddim", 25), ("ddim", 100), ("euler", 25),
                         ("euler-karras", 16), ("heun", 16), ("heun-karras", 25)):
        quick = steps <= 25 and sched in ("ddim", "heun-karras")
        yield f"auto/pattern/{sched}/N={steps}", _pattern_case(sched, steps), quick
    for sched, steps in (("ddim", 25), ("ddim", 100), ("heun-karras", 25)):
        for table in COSTS:
            for exact in (True, False):
                quick = steps == 25 and sched == "ddim"
                yield (f"auto/decide/{sched}/N={steps}/costs={table}/exact={exact}",
                       _decide_case(sched, steps, table, exact), quick)
    yield "auto/estimates", _estimates, True


def _patterns(sched: str, steps: int) -> dict[str, Any]:
    from parareal.adapters.diffusion import auto
    from parareal.adapters.diffusion.sampler import default_blocks

    blocks = default_blocks(steps)
    window = min(steps, 2 * round(math.sqrt(steps)))
    sch = scheduler(sched)
    plans: dict[str, tuple[tuple[int, ...], int, int]] = {
        "serial": (auto._pattern(sch, steps, "serial", 0, blocks)[0], 0, 0)}
    for b in sorted({max(1, round(math.sqrt(steps))), blocks}):
        for k in sorted({1, auto.srds_iterations(steps, b)}):
            k = min(k, b)
            plans[f"srds B={b} K={k}"] = (auto._pattern(sch, steps, "srds", k, b)[0], b, k)
    if sched == "ddim":
        k = auto.picard_iterations(steps, window)
        plans["picard"] = ((window,) * k, 0, k)
    return plans


def _pattern_case(sched: str, steps: int) -> Callable[[], dict[str, Any]]:
    def run() -> dict[str, Any]:
        with fixed_costs("per-call"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            plans = _patterns(sched, steps)
        return {name: {"rows": list(rows), "blocks": b, "iterations": k}
                for name, (rows, b, k) in plans.items()}
    return run


def _decide_case(sched: str, steps: int, table: str, exact: bool) -> Callable[[], dict[str, Any]]:
    def run() -> dict[str, Any]:
        from parareal.adapters.diffusion import auto

        with fixed_costs(table), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            plans = _patterns(sched, steps)
        cost = COSTS[table]
        sizes = sorted({r for rows, _, _ in plans.values() for r in rows})
        anchors = {r: cost(r) for r in (sizes[0], sizes[-1], sizes[len(sizes) // 2])}
        call_plans = {name: auto.CallPlan(name, rows, 0.001 * len(rows), note=name)
                      for name, (rows, _, _) in plans.items()}
        predicted = auto.predict(call_plans, anchors)
        # one SRDS entry, the fastest, as choose_method keeps it
        srds = min((n for n in predicted if n.startswith("srds")), key=predicted.__getitem__)
        candidates = {n.split()[0]: s for n, s in predicted.items()
                      if not n.startswith("srds") or n == srds}
        method, reason = auto.decide(candidates, exact=exact,
                                     notes={m: f"plan {srds}" if m == "srds" else m
                                            for m in candidates})
        return {
            "costs": {str(r): _hex(c) for r, c in sorted(anchors.items())},
            "interpolated": {str(r): _hex(auto.interpolate_cost(anchors, r)) for r in sizes},
            "predicted": {n: _hex(s) for n, s in sorted(predicted.items())},
            "method": method,
            "reason": reason,
        }
    return run


def _estimates() -> dict[str, Any]:
    from parareal.adapters.diffusion import auto
    from parareal.adapters.diffusion.sampler import default_blocks

    out = {}
    for steps in (1, 2, 5, 10, 12, 16, 25, 50, 100, 1000):
        blocks = default_blocks(steps)
        out[str(steps)] = {
            "default_blocks": blocks,
            "srds_iterations": [auto.srds_iterations(steps, b)
                                for b in sorted({1, max(1, round(math.sqrt(steps))), blocks})],
            "picard_iterations": [auto.picard_iterations(steps, p)
                                  for p in sorted({1, min(steps, 2 * round(math.sqrt(steps))),
                                                   steps})],
        }
    return out


# ----------------------------------------------------------------------------- engine problems


def engine_cases() -> Iterator[tuple[str, dict[str, Any], bool]]:
    """``(name, keyword arguments of parareal.solve, quick)`` for every registered problem."""
    for pname in problems.CORE + problems.TEST_SET:
        p = problems.get(pname)
        stiff = pname in problems.TEST_SET
        kw = dict(f=p.f, y0=p.y0, t_span=p.t_span, coarse=p.coarse, fine=p.fine,
                  slices=p.slices, tol=1e-9, max_iters=2 if stiff else None, vectorized=True)
        for bname in ("serial", "batched", "threads"):
            for schedule in ("synchronous", "pipelined"):
                # the quick subset: Dahlquist on every backend, the Brusselator on the
                # batched and threads ones (its serial runs, the slowest of the subset, take the
                # serial backend's code path that Dahlquist's take)
                quick = pname == "dahlquist" or (pname == "brusselator" and bname != "serial")
                yield (f"engine/{pname}/{bname}/{schedule}",
                       dict(kw, backend=bname, schedule=schedule), quick)


def run_engine(kw: dict[str, Any]) -> dict[str, Any]:
    from parareal.backends import Threads

    kw = {k: v for k, v in kw.items() if v is not None}
    timing = kw["backend"] == "threads" and kw["schedule"] == "pipelined"
    backend = Threads(2) if kw["backend"] == "threads" else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sol = parareal.solve(**dict(kw, backend=backend or kw["backend"]))
    finally:
        if backend is not None:
            backend.close()
    y = sol.y if isinstance(sol.y, np.ndarray) else sol.y.detach().cpu().numpy()
    out = {
        "sha256": _sha(y),
        "iterations": sol.iterations,
        "status": sol.status.name,
        "residuals": [_hex(r) for r in sol.residuals],
        "stats": _stats(sol.stats),
    }
    return _drop_timing(out) if timing else out


# -------------------------------------------------------------------------------------- driver


def cases(quick: bool = False) -> Iterator[tuple[str, Callable[[], dict[str, Any]]]]:
    """``(name, thunk)`` of every golden run (the quick subset with ``quick``)."""
    for name, spec, q in diffusion_cases():
        if q or not quick:
            yield name, (lambda spec=spec: run_diffusion(spec))
    for name, thunk, q in auto_cases():
        if q or not quick:
            yield name, thunk
    for name, kw, q in engine_cases():
        if q or not quick:
            yield name, (lambda kw=kw: run_engine(kw))


def run_all(quick: bool = False, match: str | None = None, verbose: bool = False
            ) -> dict[str, dict[str, Any]]:
    out = {}
    begin = time.perf_counter()
    for name, thunk in cases(quick):
        if match is not None and match not in name:
            continue
        start = time.perf_counter()
        out[name] = thunk()
        if verbose:
            print(f"{time.perf_counter() - start:6.2f} s  {name}", file=sys.stderr, flush=True)
    if verbose:
        print(f"{len(out)} runs in {time.perf_counter() - begin:.1f} s", file=sys.stderr)
    return out


def _flatten(record: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(record, dict):
        flat: dict[str, Any] = {}
        for key, value in record.items():
            flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return flat if flat or not prefix else {prefix: {}}
    if isinstance(record, list) and record and isinstance(record[0], dict):
        flat = {f"{prefix}.len": len(record)}
        for i, value in enumerate(record):
            flat.update(_flatten(value, f"{prefix}[{i}]"))
        return flat
    return {prefix: record}


def compare(golden: dict[str, Any], results: dict[str, Any], *, subset: bool,
            allow_calls: bool = False) -> tuple[list[str], list[str]]:
    """The differences (``bad``) and changed ``f_calls`` (``calls``) of ``results`` against
    ``golden``; with ``subset``, runs of ``golden`` that were not run are not compared."""
    bad, calls = [], []
    names = set(results) if subset else set(golden) | set(results)
    for name in sorted(names):
        old, new = golden.get(name), results.get(name)
        if old is None or new is None:
            bad.append(f"{name}: {'not in the golden file' if old is None else 'missing'}")
            continue
        old_flat, new_flat = _flatten(old), _flatten(new)
        for key in sorted(set(old_flat) | set(new_flat)):
            a, b = old_flat.get(key, "<absent>"), new_flat.get(key, "<absent>")
            if a == b:
                continue
            line = f"{name}: {key} {a} -> {b}"
            if key.rsplit(".", 1)[-1] == "f_calls" and allow_calls:
                calls.append(line)
            else:
                bad.append(line)
    return bad, calls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--record", metavar="PATH")
    group.add_argument("--check", metavar="PATH")
    parser.add_argument("--quick", action="store_true",
                        help="the quick subset only (with --check: compare only those runs)")
    parser.add_argument("--match", metavar="TEXT",
                        help="only the runs whose name contains TEXT (--check: compare those)")
    parser.add_argument("--allow-calls", action="store_true",
                        help="--check: report changed f_calls as notes, not differences")
    parser.add_argument("--verbose", "-v", action="store_true", help="the time of every run")
    args = parser.parse_args(argv)
    # auto's disk cache holds real timings and stub runs: never read (nor written) here
    os.environ["PARAREAL_AUTO_CACHE"] = "off"
    if args.record and (args.quick or args.match):
        parser.error("--record records every run (no --quick or --match)")
    results = run_all(quick=args.quick, match=args.match, verbose=args.verbose)
    if args.record:
        with open(args.record, "w") as fh:
            json.dump(results, fh, indent=1, sort_keys=True)
            fh.write("\n")
        print(f"recorded {len(results)} runs in {args.record}")
        return 0
    with open(args.check) as fh:
        golden = json.load(fh)
    # JSON round trip: tuples become lists, as in the file
    results = json.loads(json.dumps(results))
    bad, calls = compare(golden, results, subset=bool(args.quick or args.match),
                         allow_calls=args.allow_calls)
    for line in calls:
        print("note:", line)
    for line in bad:
        print("DIFFERS:", line)
    print(f"{len(results)} runs: {len(bad)} differences, {len(calls)} changed f_calls")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
