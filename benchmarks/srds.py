"""SRDS against the serial sample on the bundled digits model and a Gaussian mixture: stopping
rules, blocks, coarse propagators, and Picard at equal exactness.

Every row is one run (N steps, n samples, one seed, one configuration) compared with the serial
sample of the same ``x_T``: sequential model calls, iterations, the max-abs error and the 8-bit
pixels left identical. The tables give the distribution over seeds (min / median / max).

Studies (``--study``, several allowed; default all):

* ``stop``: ``stop="update"`` against ``stop="estimate"`` at the default blocks.
* ``blocks``: the default blocks against ``round(sqrt(N))`` (the paper's) and others.
* ``coarse``: the coarse propagator across a block: the DDIM jump (default), two Euler
  sub-steps, Heun (digits model and Gaussian mixture).
* ``picard``: ParaDiGMS' Picard iterations (its default rule, then data-unit tolerances down
  to ones that reproduce the serial sample as SRDS does), with the default window
  ``2 sqrt(N)`` and the whole grid as the window, with and without Anderson acceleration,
  beside SRDS's default.

Run ``python benchmarks/srds.py`` (N = 25, 100, 1000; n = 1 and 8; seeds 0-9; long) or
``--quick`` (N = 25 and 100, n = 1, seeds 0-4; about 100 s on 2 cores); ``--json PATH``
writes every row.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
from collections.abc import Callable, Iterable
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
from diffusers import DDIMScheduler  # noqa: E402
from parareal.adapters.diffusion import (  # noqa: E402
    GaussianMixture,
    NoiseSchedule,
    default_blocks,
    sample,
)
from parareal.adapters.diffusion.digits import load_digits_model  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from srds_tables import TOL, summarise  # noqa: E402, I001

LEVEL = 2 / 255  # one 8-bit level in [-1, 1] data units
STUDIES = ("stop", "blocks", "coarse", "picard")
#: Picard tolerances tried with the default window (data units, max-abs change of every point
#: of the window).
PICARD_TOLS = (1e-3, 3e-4, 1e-4, 3e-5, 1e-5)
#: Anderson memory tried with Picard.
ANDERSON = 3


def _bytes(x: torch.Tensor) -> torch.Tensor:
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.int16)


def _compare(out: torch.Tensor, serial: torch.Tensor) -> dict[str, float]:
    a, b = _bytes(out), _bytes(serial)
    return dict(max_abs_err=float((out - serial).abs().max()),
                identical=int((a == b).sum()), pixels=int(a.numel()),
                max_levels=int((a - b).abs().max()))


def _models() -> dict[str, tuple[Any, Any, Callable[[int, int], torch.Tensor]]]:
    """Name -> (model, scheduler, x_T(n, seed))."""
    unet, scheduler = load_digits_model()
    gmm = GaussianMixture.random(64, 10, seed=0)
    mix_scheduler = DDIMScheduler(clip_sample=False)
    mix_model = gmm.model(NoiseSchedule.from_scheduler(mix_scheduler))

    def digits_x(n: int, seed: int) -> torch.Tensor:
        return torch.randn((n, 1, 8, 8), generator=torch.Generator().manual_seed(seed))

    def mixture_x(n: int, seed: int) -> torch.Tensor:
        return torch.randn((n, 64), generator=torch.Generator().manual_seed(seed))

    return {"digits": (unet, scheduler, digits_x), "mixture": (mix_model, mix_scheduler, mixture_x)}


def _configs(study: str, steps: int) -> list[tuple[str, dict[str, Any]]]:
    """(label, keyword arguments of ``sample``) of one study at ``steps``."""
    root = max(1, round(math.sqrt(steps)))
    if study == "stop":
        return [("update", dict(stop="update")), ("estimate", dict(stop="estimate"))]
    if study == "blocks":
        chosen = sorted({root, default_blocks(steps), min(steps, round(1.5 * root)),
                         min(steps, round(2.5 * root))})
        return [(f"B={b}" + (" (default)" if b == default_blocks(steps) else "")
                 + (" (sqrt N)" if b == root else ""), dict(blocks=b)) for b in chosen]
    if study == "coarse":
        return [("ddim jump", {}), ("euler:2", dict(coarse="euler:2")),
                ("heun", dict(coarse="heun"))]
    exact = dict(method="picard", tol=1e-4, tol_mode="data")
    return ([("srds default", {}), ("picard default", dict(method="picard"))]
            + [(f"picard tol={t:g}", dict(method="picard", tol=t, tol_mode="data"))
               for t in PICARD_TOLS]
            + [("picard tol=1e-4 +anderson", dict(exact, anderson=ANDERSON)),
               ("picard tol=1e-4 window=N", dict(exact, window=steps)),
               ("picard tol=3e-5 window=N", dict(exact, tol=3e-5, window=steps)),
               ("picard 1e-4 N +anderson", dict(exact, window=steps, anderson=ANDERSON))])


def run(study: str, models: Iterable[str], steps: list[int], sizes: list[int],
        seeds: list[int]) -> list[dict[str, Any]]:
    """One row per (model, N, n, seed, configuration)."""
    table = _models()
    rows = []
    for name in models:
        model, scheduler, make_x = table[name]
        for n_steps in steps:
            configs = _configs(study, n_steps)
            for n in sizes:
                for seed in seeds:
                    x_T = make_x(n, seed)
                    serial = {}
                    for label, kwargs in configs:
                        fine = "euler" if "coarse" in kwargs else None  # the same ODE's serial
                        if fine not in serial:
                            serial[fine] = sample(
                                model, scheduler, x_T, num_inference_steps=n_steps,
                                method="serial", **({"fine": fine} if fine else {})).sample
                        options = dict(method="srds", max_batch=n)
                        options.update(kwargs)
                        if fine:
                            options["fine"] = fine
                        res = sample(model, scheduler, x_T, num_inference_steps=n_steps,
                                     **options)
                        rows.append(dict(study=study, model=name, N=n_steps, n=n, seed=seed,
                                         config=label, iterations=res.iterations,
                                         sequential=res.sequential_evals,
                                         total_evals=res.total_evals,
                                         status=res.status.name,
                                         **_compare(res.sample, serial[fine])))
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """Per (model, N, n, configuration): sequential calls and iterations (min / median / max
    over seeds), the worst error, the pooled share of identical 8-bit pixels, the worst run's
    share, and the largest difference in 8-bit levels (``srds_tables.summarise``)."""
    head = (f"{'model':>7} {'N':>5} {'n':>2} {'configuration':>22}  seq min/med/max  "
            f"iters min/med/max  max err  >tol  8-bit same (pooled / worst)  max levels")
    lines = [head]
    for s in summarise(rows):
        seq, its = s["seq"], s["iters"]
        lines.append(
            f"{s['model']:>7} {s['N']:>5} {s['n']:>2} {s['config']:>22}  {min(seq):>3} "
            f"{statistics.median(seq):>5g} {max(seq):>4}    {min(its):>3} "
            f"{statistics.median(its):>4g} {max(its):>3}    {s['max_err']:.1e}  "
            f"{s['above_tol']:>2}/{s['seeds']:<3} {s['pooled']:>8.4f} / {s['worst']:.4f}"
            f"  {s['levels']:>5}")
    return "\n".join(lines)


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", action="append", choices=STUDIES,
                        help="which study to run (repeatable; default: all)")
    parser.add_argument("--quick", action="store_true", help="N = 25, 100; n = 1; seeds 0-4")
    parser.add_argument("--steps", type=_ints, help="comma-separated N (overrides --quick)")
    parser.add_argument("--n", type=_ints, help="comma-separated batch sizes")
    parser.add_argument("--seeds", type=int, help="seeds 0..S-1")
    parser.add_argument("--model", action="append", choices=("digits", "mixture"),
                        help="models (default: digits; the coarse study adds the mixture)")
    parser.add_argument("--json", metavar="PATH", help="write every row as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    steps, sizes, seeds = ([25, 100], [1], 5) if args.quick else ([25, 100, 1000], [1, 8], 10)
    steps, sizes = args.steps or steps, args.n or sizes
    seeds = list(range(args.seeds if args.seeds is not None else seeds))
    print(f"tol = 1/255 = {TOL:.2e} (data units); one 8-bit level = {LEVEL:.2e}; "
          f"threads = {torch.get_num_threads()}")
    rows: list[dict[str, Any]] = []
    for study in args.study or STUDIES:
        models = args.model or (["digits", "mixture"] if study == "coarse" else ["digits"])
        part = run(study, models, steps, sizes, seeds)
        print(f"\n## {study}\n" + table(part), flush=True)
        rows += part
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(dict(tol=TOL, rows=rows), fh, indent=1)


if __name__ == "__main__":
    main()
