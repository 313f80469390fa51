"""SRDS benchmark on the bundled digits model: serial vs SRDS (plain, pipelined) vs Picard.

Measures, for N in {25, 100, 1000} DDIM steps and several seeds, in one run with the methods
interleaved: iterations, sequential model calls, total model evaluations, CPU wall-clock
(median over seeds, ratio to serial from the same run), max |diff| to the serial sample and
the fraction of identical uint8 pixels; the sample quality (Frechet distance in the digits
classifier's feature space, mean classifier confidence) of serial, SRDS and Picard samples;
the cost of one batched model call against the batch size; the accuracy of
``method="auto"``'s predicted seconds against the measured ones (prediction error per
method); and two plots.

    python benchmarks/diffusion.py                      # the full run (several minutes)
    python benchmarks/diffusion.py --quick              # a smoke run (N = 12, n = 1), about 15 s
    python benchmarks/diffusion.py --json out.json --plots docs
    python benchmarks/diffusion.py --only-exact --seeds 0,1,2,3,4,5,6,7,8,9   # SRDS, exact Picard
    python benchmarks/diffusion.py --only-flow          # the flow-matching model: serial, SRDS
    python benchmarks/diffusion.py --tables RUN.json --update-doc docs/diffusion.md

The exact and flow tables of docs/diffusion.md are generated: ``--update-doc docs/diffusion.md``
rewrites them (between ``<!-- benchmarks/diffusion.py exact-table begin -->`` and its ``end``
marker, likewise ``flow-table``) from the run's data, with the command that made it; the
command is in the file, and ``--tables JSON`` redoes the rendering alone.

Threads: ``--threads N`` (default 2, the setting of the published figures in
docs/benchmarks.md) applies ``parareal.cli.threads.set_threads(N)`` before the work: torch's
intra-op threads (``torch.set_num_threads``), the BLAS/OpenMP environment variables and, where
threadpoolctl is installed, the BLAS pools already loaded. The header and the JSON
(``"threads"``) state the count torch uses.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import statistics
import sys
import time
from typing import Any

import numpy as np
import torch
from diffusion_tables import (
    DOC_TABLES,
    EXACT_COLUMNS,
    display_rows,
    render_doc_table,
    table,
    update_doc,
)
from parareal.adapters.diffusion import sample
from parareal.adapters.diffusion.digits import (
    load_digits_data,
    load_digits_model,
    sample_quality,
    to_uint8,
)

from parareal.cli.threads import set_threads


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


#: ``--quick``'s settings: every section at about its smallest: one seed, one sample, N = 12
#: (SRDS's three blocks of four steps, where it stops an iteration before exactness; at
#: N <= 10 it runs to exactness), two quality samples (the fewest sample_quality takes)
QUICK = dict(steps=[12], seeds=[0], n=[1], large_seeds=None, quality_n=2, quality_steps=12,
             batch_sizes=[1, 4])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=_ints, default=[25, 100, 1000], help="N values, e.g. 25,100")
    p.add_argument("--seeds", type=_ints, default=[0, 1, 2], help="seeds of x_T")
    p.add_argument("--n", type=_ints, default=[1, 8], help="samples per call (batch), e.g. 1,8")
    p.add_argument("--quality-n", type=int, default=256, help="samples for the quality metrics")
    p.add_argument("--quality-steps", type=int, default=100, help="N for the quality metrics")
    p.add_argument("--batch-sizes", type=_ints,
                   default=[1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024])
    p.add_argument("--quick", action="store_true",
                   help="tiny settings for a smoke test (options given explicitly,\n"
                        "e.g. --steps 16, still win)")
    p.add_argument("--only-samplers", action="store_true",
                   help="only the Euler/Heun samplers table (and its JSON)")
    p.add_argument("--only-auto", action="store_true",
                   help="only the table of auto's predictions against measured times")
    p.add_argument("--only-exact", action="store_true",
                   help="only the table of methods at equal exactness (SRDS, exact Picard)")
    p.add_argument("--only-flow", action="store_true",
                   help="only the table of the flow-matching model (serial, SRDS)\n"
                        "(--only-exact --only-flow: both tables, one JSON)")
    p.add_argument("--large-seeds", type=_ints,
                   help="seeds at N >= 1000 in the exact and flow tables (default: --seeds)")
    p.add_argument("--machine", help="the machine as the generated tables name it "
                                     "(default: CPU count, torch version, threads)")
    p.add_argument("--update-doc", metavar="MD",
                   help="rewrite the generated tables of this Markdown file (between\n"
                        "'<!-- benchmarks/diffusion.py NAME begin/end -->') from the run's data")
    p.add_argument("--tables", metavar="JSON",
                   help="run nothing: --update-doc (or print) the tables of a --json file")
    p.add_argument("--threads", type=int, default=2, help="torch/BLAS threads (default 2)")
    p.add_argument("--json", help="write every raw number to this file")
    p.add_argument("--plots", help="folder for the plots (PNG)")
    p.add_argument("--replot", metavar="JSON",
                   help="only redraw the plots (into --plots) from a --json file of a run")
    # --quick changes the defaults: an option given explicitly still wins (so a smoke run can
    # pin, say, --steps 16 and keep its expected call counts)
    if p.parse_known_args(argv)[0].quick:
        p.set_defaults(**QUICK)
    args = p.parse_args(argv)
    if args.threads < 1:
        p.error("--threads must be >= 1")
    if args.update_doc and not (args.json or args.tables):
        p.error("--update-doc names the JSON it renders: give --json (or --tables)")
    return args


def windows_for(steps: int) -> list[int]:
    """Picard windows compared: sqrt(N), 2 sqrt(N), 4 sqrt(N) (capped at N)."""
    root = max(1, round(math.sqrt(steps)))
    return sorted({min(steps, w) for w in (root, 2 * root, 4 * root)})


def method_variants(steps: int) -> list[tuple[str, dict[str, Any]]]:
    variants: list[tuple[str, dict[str, Any]]] = [
        ("serial", dict(method="serial")),
        ("srds plain", dict(method="srds", pipelined=False)),
        ("srds pipelined", dict(method="srds", pipelined=True)),
        ("srds pipelined tol=2/255", dict(method="srds", pipelined=True, tol=2 / 255)),
    ]
    for w in windows_for(steps):
        variants.append((f"picard w={w}", dict(method="picard", window=w)))
    return variants


def batch_cost(unet: Any, sizes: list[int], repeats: int = 7) -> list[dict[str, float]]:
    """Median seconds of one model call against the batch size."""
    rows = []
    with torch.no_grad():
        for b in sizes:
            x = torch.randn(b, 1, 8, 8)
            t = torch.full((b,), 500, dtype=torch.long)
            unet(x, t)  # warm-up
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                unet(x, t)
                times.append(time.perf_counter() - start)
            rows.append({"batch": b, "seconds": statistics.median(times)})
    base = rows[0]["seconds"]
    for row in rows:
        row["relative_to_batch_1"] = row["seconds"] / base
        row["per_sample_ms"] = 1e3 * row["seconds"] / row["batch"]
    return rows


def run_grid(unet: Any, scheduler: Any, steps: int, n: int, seeds: list[int]) -> dict[str, Any]:
    """All methods for one (N, n), seeds interleaved, rotating the order of methods."""
    variants = method_variants(steps)
    records: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in variants}
    histories: dict[str, list[float]] = {}
    for r, seed in enumerate(seeds):
        x_T = torch.randn((n, 1, 8, 8), generator=torch.Generator().manual_seed(seed))
        order = variants[r % len(variants):] + variants[: r % len(variants)]
        results = {}
        for name, kwargs in order:
            results[name] = sample(unet, scheduler, x_T, num_inference_steps=steps,
                                   max_batch=n, **kwargs)
        ref = results["serial"].sample
        for name, _ in variants:
            res = results[name]
            diff = float((res.sample - ref).abs().max())
            same = float((to_uint8(res.sample) == to_uint8(ref)).mean())
            records[name].append({
                "seed": seed, "iterations": res.iterations, "converged": res.converged,
                "sequential_evals": res.sequential_evals, "total_evals": res.total_evals,
                "wall_time_s": res.wall_time_s, "max_abs_diff": diff, "uint8_identical": same,
            })
        if r == 0:  # error to the serial sample after each iteration (first seed)
            for name, kwargs in variants[1:]:
                if "tol" in kwargs:  # same trajectory as its default-tolerance twin
                    continue
                errs: list[float] = []
                def record(k: int, y: torch.Tensor, errs: list = errs, ref: Any = ref) -> None:
                    errs.append(float((y - ref).abs().max()))

                # SRDS with tol = 0 (every iteration up to exactness); Picard as it runs
                exact = {"tol": 0.0} if kwargs["method"] == "srds" else {}
                sample(unet, scheduler, x_T, num_inference_steps=steps, callback=record,
                       **exact, **kwargs)
                histories[name] = errs
    return {"steps": steps, "n": n, "records": records, "histories": histories}


def summarize(grid: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    serial_wall = statistics.median(r["wall_time_s"] for r in grid["records"]["serial"])
    for name, recs in grid["records"].items():
        wall = statistics.median(r["wall_time_s"] for r in recs)
        seq = statistics.median(r["sequential_evals"] for r in recs)
        rows.append({
            "method": name,
            "iterations": statistics.median(r["iterations"] for r in recs),
            "converged": all(r["converged"] for r in recs),
            "sequential_evals": seq,
            "total_evals": statistics.median(r["total_evals"] for r in recs),
            "wall_time_s": wall,
            "speedup_wall": serial_wall / wall,
            "speedup_sequential": grid["steps"] / seq,
            "max_abs_diff": max(r["max_abs_diff"] for r in recs),
            "uint8_identical_min": min(r["uint8_identical"] for r in recs),
        })
    return rows


def quality(unet: Any, scheduler: Any, steps: int, n: int) -> list[dict[str, Any]]:
    x_T = torch.randn((n, 1, 8, 8), generator=torch.Generator().manual_seed(1234))
    rows = []
    window = min(steps, 2 * max(1, round(math.sqrt(steps))))
    for name, kwargs in [("serial", dict(method="serial")),
                         ("srds pipelined", dict(method="srds")),
                         (f"picard w={window}", dict(method="picard", window=window))]:
        # one chunk: the sequential calls of the whole batch, comparable with earlier runs
        res = sample(unet, scheduler, x_T, num_inference_steps=steps, max_batch=n, **kwargs)
        q = sample_quality(res.sample)
        rows.append({"method": name, "frechet_distance": q["frechet_distance"],
                     "confidence": q["confidence"], "sequential_evals": res.sequential_evals,
                     "wall_time_s": res.wall_time_s})
    heldout = load_digits_data("heldout")
    q = sample_quality(load_digits_data("train")[: len(heldout)], reference=heldout)
    rows.append({"method": "real digits (train vs held-out)", **{
        k: q[k] for k in ("frechet_distance", "confidence")}})
    noise = torch.randn((n, 1, 8, 8), generator=torch.Generator().manual_seed(99)).clamp(-1, 1)
    q = sample_quality(noise)
    rows.append({"method": "clipped Gaussian noise", **{
        k: q[k] for k in ("frechet_distance", "confidence")}})
    return rows


def clip_ablation(unet: Any, scheduler: Any, steps_list: list[int], n: int) -> list[dict]:
    """SRDS with the DDIM step's clip_sample on: slower convergence (one seed)."""
    from diffusers import DDIMScheduler

    rows = []
    x_T = torch.randn((n, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    for clip in (False, True):
        sch = DDIMScheduler.from_config(scheduler.config, clip_sample=clip)
        for steps in steps_list:
            ser = sample(unet, sch, x_T, num_inference_steps=steps, method="serial")
            res = sample(unet, sch, x_T, num_inference_steps=steps, method="srds")
            rows.append({
                "clip_sample": str(clip), "steps": steps, "iterations": res.iterations,
                "sequential_evals": res.sequential_evals,
                "max_abs_diff": float((res.sample - ser.sample).abs().max()),
                "uint8_identical": float((to_uint8(res.sample) == to_uint8(ser.sample)).mean()),
                "serial_wall_s": ser.wall_time_s, "srds_wall_s": res.wall_time_s,
            })
    return rows


GRID_COLUMNS = [
    ("method", "method", "s"), ("iterations", "iters", "g"),
    ("sequential_evals", "sequential evals", "g"), ("total_evals", "total evals", "g"),
    ("wall_time_s", "wall median (s)", ".3f"), ("speedup_wall", "wall speedup", ".2f"),
    ("speedup_sequential", "N / sequential", ".2f"), ("max_abs_diff", "max abs diff", ".1e"),
    ("uint8_identical_min", "uint8 identical (min)", ".4f"),
]


def plots(folder: str, grids: list[dict[str, Any]], summaries: list[list[dict[str, Any]]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(folder, exist_ok=True)
    n_main = max(g["n"] for g in grids)
    chosen = [g for g in grids if g["n"] == n_main]
    fig, axes = plt.subplots(1, len(chosen), figsize=(4.5 * len(chosen), 3.6), squeeze=False)
    for ax, grid in zip(axes[0], chosen):
        for name, errs in grid["histories"].items():
            ax.semilogy(range(len(errs)), np.maximum(errs, 1e-12), "o-", ms=3, label=name)
        ax.axhline(2 / 255, color="k", ls=":", lw=1, label="one 8-bit level (2/255)")
        ax.set_title(f"N = {grid['steps']}")
        ax.set_xlabel("iteration")
        ax.set_ylabel("max |sample - serial|")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(folder, "srds_error_per_iteration.png"), dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for n in sorted({g["n"] for g in grids}):
        rows_by_n = [(g["steps"], s) for g, s in zip(grids, summaries) if g["n"] == n]
        for method in ("srds plain", "srds pipelined"):
            xs = [steps for steps, _ in rows_by_n]
            picked = [next(r for r in s if r["method"] == method) for _, s in rows_by_n]
            wall = [r["speedup_wall"] for r in picked]
            seq = [r["speedup_sequential"] for r in picked]
            axes[0].semilogx(xs, wall, "o-", label=f"{method}, n={n}")
            if n == n_main:
                axes[1].semilogx(xs, seq, "o-", label=method)
    axes[0].axhline(1, color="k", lw=1)
    axes[0].set(xlabel="N (DDIM steps)", ylabel="serial wall time / method wall time",
                title="CPU wall-clock speedup")
    axes[1].set(xlabel="N (DDIM steps)", ylabel="N / sequential model calls",
                title="sequential-call speedup")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(folder, "srds_speedup_vs_n.png"), dpi=120)
    plt.close(fig)


SAMPLERS = (("euler", False), ("euler", True), ("heun", False), ("heun", True))


def sampler_rows(unet: Any, ddim: Any, steps_list: list[int], n_list: list[int],
                 seeds: list[int]) -> list[dict[str, Any]]:
    """Euler and Heun (with and without Karras sigmas): serial against SRDS, seeds interleaved."""
    from diffusers import EulerDiscreteScheduler, HeunDiscreteScheduler

    classes = {"euler": EulerDiscreteScheduler, "heun": HeunDiscreteScheduler}
    rows = []
    for name, karras in SAMPLERS:
        sch = classes[name].from_config(ddim.config, use_karras_sigmas=karras)
        for n in n_list:
            for steps in steps_list:
                recs: dict[str, list[dict[str, Any]]] = {"serial": [], "srds": []}
                for r, seed in enumerate(seeds):
                    x_T = torch.randn((n, 1, 8, 8), generator=torch.Generator().manual_seed(seed))
                    order = ["serial", "srds"] if r % 2 == 0 else ["srds", "serial"]
                    out = {m: sample(unet, sch, x_T, num_inference_steps=steps, method=m,
                                     max_batch=n) for m in order}
                    ref = out["serial"].sample
                    for m, res in out.items():
                        recs[m].append({
                            "iterations": res.iterations, "converged": res.converged,
                            "sequential_evals": res.sequential_evals,
                            "wall_time_s": res.wall_time_s,
                            "max_abs_diff": float((res.sample - ref).abs().max()),
                            "uint8_identical": float((to_uint8(res.sample)
                                                      == to_uint8(ref)).mean()),
                        })
                serial_wall = statistics.median(x["wall_time_s"] for x in recs["serial"])
                for m, rs in recs.items():
                    wall = statistics.median(x["wall_time_s"] for x in rs)
                    rows.append({
                        "sampler": name + (" karras" if karras else ""), "steps": steps, "n": n,
                        "method": m,
                        "iterations": statistics.median(x["iterations"] for x in rs),
                        "converged": all(x["converged"] for x in rs),
                        "sequential_evals": statistics.median(x["sequential_evals"] for x in rs),
                        "wall_time_s": wall, "speedup_wall": serial_wall / wall,
                        "max_abs_diff": max(x["max_abs_diff"] for x in rs),
                        "uint8_identical_min": min(x["uint8_identical"] for x in rs),
                    })
    return rows


def auto_accuracy(unet: Any, scheduler: Any, steps_list: list[int], n_list: list[int],
                  seeds: list[int]) -> list[dict[str, Any]]:
    """Per (N, n, method): auto's prediction, the median measured seconds and the error."""
    rows = []
    for n in n_list:
        for steps in steps_list:
            x_T = torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(seeds[0]))
            choice = sample(unet, scheduler, x_T, num_inference_steps=steps, method="auto")
            for method, predicted in sorted(choice.predicted_s.items()):
                walls = []
                for seed in seeds:
                    x = torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))
                    walls.append(sample(unet, scheduler, x, num_inference_steps=steps,
                                        method=method).wall_time_s)
                measured = statistics.median(walls)
                chosen = "yes" if choice.method == method else "no"
                rows.append(dict(steps=steps, n=n, method=method, chosen=chosen,
                                 predicted_s=predicted, measured_s=measured,
                                 error=(predicted - measured) / measured))
    return rows


def exact_variants(steps: int, n: int) -> list[tuple[str, dict[str, Any]]]:
    """The methods compared at equal exactness (the serial sample to 8-bit pixels)."""
    return [
        ("srds", dict(method="srds")),
        ("picard-exact", dict(method="picard-exact")),
        ("picard-exact anderson=3", dict(method="picard-exact", anderson=3)),
        ("picard window=N anderson=3 tol=1e-4 (data)",
         dict(method="picard", window=steps, anderson=3, tol=1e-4, tol_mode="data")),
    ]


def flow_variants(steps: int, n: int) -> list[tuple[str, dict[str, Any]]]:
    """The flow-matching model's methods: serial, SRDS, exact Picard and Picard on its Euler
    steps; each Heun row is compared with serial Heun (Picard needs one model call per step:
    no Heun row). Kept small: SRDS with ``tol=0`` (every iteration, about N * sqrt(N)
    evaluations) at N * n <= 1000, the Heun rows at N <= 100."""
    variants: list[tuple[str, dict[str, Any]]] = [
        ("serial", dict(method="serial")), ("srds", dict(method="srds")),
        ("picard-exact", dict(method="picard-exact")), ("picard", dict(method="picard"))]
    if steps * n <= 1000:
        variants.append(("srds tol=0", dict(method="srds", tol=0.0)))
    if steps <= 100:
        variants += [("serial fine=heun", dict(method="serial", fine="heun")),
                     ("srds fine=heun", dict(method="srds", fine="heun"))]
    return variants


def seeds_at(steps: int, seeds: list[int], large_seeds: list[int] | None) -> list[int]:
    """``--large-seeds`` at N >= 1000 (where one run takes seconds), ``--seeds`` below."""
    return large_seeds if large_seeds is not None and steps >= 1000 else seeds


def compare_rows(unet: Any, scheduler: Any, steps_list: list[int], n_list: list[int],
                 seeds: list[int], large_seeds: list[int] | None,
                 variants: Any) -> list[dict[str, Any]]:
    """Per (N, n, method), every seed's sequential calls, model evaluations per sample and
    wall time; 8-bit pixels equal to the serial sample's (pooled over the seeds, and the
    worst seed) and the largest difference in 8-bit levels. The reference of a method is
    the serial sample of the same ``fine`` step (a serial row reuses its reference run)."""
    rows = []
    for steps in steps_list:
        for n in n_list:
            used = seeds_at(steps, seeds, large_seeds)
            refs: dict[str | None, list[tuple[torch.Tensor, np.ndarray, Any]]] = {}
            for name, kwargs in variants(steps, n):
                fine = kwargs.get("fine")
                if fine not in refs:
                    refs[fine] = []
                    extra = {"fine": fine} if fine else {}
                    for seed in used:
                        x_T = torch.randn((n, 1, 8, 8),
                                          generator=torch.Generator().manual_seed(seed))
                        ser = sample(unet, scheduler, x_T, num_inference_steps=steps,
                                     max_batch=n, method="serial", **extra)
                        refs[fine].append((x_T, to_uint8(ser.sample).astype(int), ser))
                calls, evals, walls, same, worst, levels, err = [], [], [], 0, 1.0, 0, 0.0
                for x_T, ref8, ref in refs[fine]:
                    serial_row = kwargs == {"method": "serial", **({"fine": fine} if fine
                                                                   else {})}
                    res = ref if serial_row else sample(
                        unet, scheduler, x_T, num_inference_steps=steps, max_batch=n, **kwargs)
                    out8 = to_uint8(res.sample).astype(int)
                    calls.append(res.sequential_evals)
                    evals.append(res.total_evals)  # model evaluations per sample
                    walls.append(res.wall_time_s)
                    same += int((out8 == ref8).sum())
                    worst = min(worst, float((out8 == ref8).mean()))
                    levels = max(levels, int(np.abs(out8 - ref8).max()))
                    err = max(err, float((res.sample - ref.sample).abs().max()))
                rows.append(dict(
                    steps=steps, n=n, method=name, seeds=used, calls=calls, evals=evals,
                    wall_time_s=walls, identical=same / (len(used) * refs[fine][0][1].size),
                    worst=worst, levels=levels, max_abs_diff=err))
                print(f"  N={steps} n={n} {name}: calls {calls}, identical "
                      f"{rows[-1]['identical']:.4f}, {sum(walls):.1f} s", file=sys.stderr)
                sys.stderr.flush()
    return rows


def exact_rows(unet: Any, scheduler: Any, steps_list: list[int], n_list: list[int],
               seeds: list[int], large_seeds: list[int] | None = None) -> list[dict[str, Any]]:
    """SRDS and the Picards at equal exactness on the DDPM digits model (DDIM steps)."""
    return compare_rows(unet, scheduler, steps_list, n_list, seeds, large_seeds,
                        exact_variants)


def flow_rows(steps_list: list[int], n_list: list[int], seeds: list[int],
              large_seeds: list[int] | None = None) -> list[dict[str, Any]]:
    """Serial and SRDS on the bundled flow-matching digits model (Euler and Heun steps)."""
    from parareal.adapters.diffusion.digits import load_digits_flow_model

    unet, scheduler = load_digits_flow_model()
    return compare_rows(unet, scheduler, steps_list, n_list, seeds, large_seeds, flow_variants)


SAMPLER_COLUMNS = [("sampler", "sampler", "s"), ("steps", "N", "d"), ("n", "n", "d"),
                   ("method", "method", "s"), ("iterations", "iters", "g"),
                   ("sequential_evals", "sequential calls", "g"),
                   ("wall_time_s", "wall s", ".3f"), ("speedup_wall", "vs serial", ".2f"),
                   ("max_abs_diff", "max diff", ".1e"),
                   ("uint8_identical_min", "uint8 identical (min)", ".4f")]


AUTO_COLUMNS = [("steps", "N", "d"), ("n", "n", "d"), ("method", "method", "s"),
                ("chosen", "auto ran it", "s"), ("predicted_s", "predicted s", ".3f"),
                ("measured_s", "measured s", ".3f"), ("error", "prediction error", "+.0%")]


def only_tables(args: argparse.Namespace, argv: list[str] | None,
                parts: list[tuple[str, str, list[dict[str, Any]], list]], begin: float) -> int:
    """``--only-*``: the tables asked for (and their JSON, one key each) alone."""
    print(f"# On the bundled digits models: N = {args.steps}, n = {args.n}, seeds "
          f"{args.seeds} (at N >= 1000: {args.large_seeds or args.seeds}); "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs")
    data: dict[str, Any] = {}
    for title, key, rows, columns in parts:
        print(f"\n## {title}\n")
        shown = display_rows(rows) if columns is EXACT_COLUMNS else rows
        print(table(shown, columns))
        data[key] = rows
    env = " ".join(f"{k}={os.environ[k]}" for k in ("OMP_NUM_THREADS",) if k in os.environ)
    command = " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    data.update(
        args=vars(args), threads=torch.get_num_threads(),
        command=f"{env + ' ' if env else ''}python benchmarks/diffusion.py {command}",
        machine=args.machine or (f"{os.cpu_count()}-CPU {platform.machine()}, torch "
                                 f"{torch.__version__}, {torch.get_num_threads()} thread(s)"),
        date=time.strftime("%Y-%m-%d"), json_path=args.json, seconds=time.perf_counter() - begin)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(data, fh, indent=1)
            fh.write("\n")
    if args.update_doc:
        print(f"\n{args.update_doc}: rewrote {update_doc(args.update_doc, data)}")
    print(f"\ntotal benchmark time {data['seconds']:.1f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.tables:
        with open(args.tables) as fh:
            data = json.load(fh)
        if args.update_doc:
            print(f"{args.update_doc}: rewrote {update_doc(args.update_doc, data)}")
        else:
            print("\n\n".join(render_doc_table(data, name) for name, (key, _) in
                                DOC_TABLES.items() if key in data))
        return 0
    if args.replot:
        with open(args.replot) as fh:
            data = json.load(fh)
        plots(args.plots or ".", data["grids"], data["summaries"])
        return 0
    set_threads(args.threads)
    unet, scheduler = load_digits_model()
    begin = time.perf_counter()
    parts = []
    if args.only_samplers:
        rows = sampler_rows(unet, scheduler, args.steps, args.n, args.seeds)
        parts.append(("Euler and Heun samplers", "samplers", rows, SAMPLER_COLUMNS))
    if args.only_exact:
        rows = exact_rows(unet, scheduler, args.steps, args.n, args.seeds, args.large_seeds)
        parts.append((DOC_TABLES["exact-table"][1], "exact", rows, EXACT_COLUMNS))
    if args.only_flow:
        rows = flow_rows(args.steps, args.n, args.seeds, args.large_seeds)
        parts.append((DOC_TABLES["flow-table"][1], "flow", rows, EXACT_COLUMNS))
    if args.only_auto:
        rows = auto_accuracy(unet, scheduler, args.steps, args.n, args.seeds)
        parts.append(("method='auto'", "auto_accuracy", rows, AUTO_COLUMNS))
    if parts:
        return only_tables(args, argv, parts, begin)
    print("# SRDS benchmark on the bundled digits model\n")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
          f"Python {platform.python_version()}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads)\n")
    costs = batch_cost(unet, args.batch_sizes)
    print("## Cost of one batched model call\n")
    print(table(costs, [("batch", "batch", "d"), ("seconds", "seconds", ".4f"),
                        ("relative_to_batch_1", "x batch 1", ".2f"),
                        ("per_sample_ms", "ms per sample", ".3f")]))
    grids, summaries = [], []
    for n in args.n:
        for steps in args.steps:
            grid = run_grid(unet, scheduler, steps, n, args.seeds)
            rows = summarize(grid)
            grids.append(grid)
            summaries.append(rows)
            print(f"\n## N = {steps}, n = {n} samples per call, seeds {args.seeds}\n")
            print(table(rows, GRID_COLUMNS))
            sys.stdout.flush()
    sampler_steps = [s for s in args.steps if s <= 100] or args.steps[:1]
    print(f"\n## Euler and Heun samplers (diffusers' schedulers, with and without Karras "
          f"sigmas): N = {sampler_steps}, seeds {args.seeds}\n")
    samplers = sampler_rows(unet, scheduler, sampler_steps, args.n, args.seeds)
    print(table(samplers, SAMPLER_COLUMNS))
    sys.stdout.flush()
    print(f"\n## Sample quality: N = {args.quality_steps}, {args.quality_n} samples\n")
    qual = quality(unet, scheduler, args.quality_steps, args.quality_n)
    print(table(qual, [("method", "samples", "s"), ("frechet_distance", "Frechet distance", ".3f"),
                       ("confidence", "mean confidence", ".3f"),
                       ("sequential_evals", "sequential evals", "g")]))
    print(f"\n## method='auto': predicted against measured seconds (median of seeds "
          f"{args.seeds})\n")
    accuracy = auto_accuracy(unet, scheduler, args.steps, args.n, args.seeds)
    print(table(accuracy, AUTO_COLUMNS))
    ablation_steps = [s for s in args.steps if s >= 100] or args.steps[-1:]
    print(f"\n## SRDS with and without clip_sample: N = {ablation_steps}, n = {args.n[-1]}, "
          "seed 0\n")
    ablation = clip_ablation(unet, scheduler, ablation_steps, args.n[-1])
    print(table(ablation, [("clip_sample", "clip_sample", "s"), ("steps", "N", "d"),
                           ("iterations", "iters", "d"),
                           ("sequential_evals", "sequential evals", "d"),
                           ("max_abs_diff", "max abs diff", ".1e"),
                           ("uint8_identical", "uint8 identical", ".4f"),
                           ("serial_wall_s", "serial s", ".2f"), ("srds_wall_s", "srds s", ".2f")]))
    print(f"\n## {DOC_TABLES['exact-table'][1]}: seeds {args.seeds}\n")
    exact = exact_rows(unet, scheduler, args.steps, args.n, args.seeds, args.large_seeds)
    print(table(display_rows(exact), EXACT_COLUMNS))
    print(f"\n## {DOC_TABLES['flow-table'][1]}: seeds {args.seeds}\n")
    flow = flow_rows(args.steps, args.n, args.seeds, args.large_seeds)
    print(table(display_rows(flow), EXACT_COLUMNS))
    sys.stdout.flush()
    if args.plots:
        plots(args.plots, grids, summaries)
        print(f"\nplots written to {args.plots}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"batch_cost": costs, "grids": grids, "summaries": summaries,
                       "quality": qual, "clip_ablation": ablation, "auto_accuracy": accuracy,
                       "samplers": samplers, "exact": exact, "flow": flow,
                       "args": vars(args),
                       "threads": torch.get_num_threads()}, fh, indent=1)
    print(f"\ntotal benchmark time {time.perf_counter() - begin:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
