"""SRDS stopping rules on the bundled digits model: iterations, sequential model calls and the
true error to the serial sample, per seed, for ``stop="update"`` and ``stop="estimate"``.

Run ``python benchmarks/srds.py`` (N = 25, 100, 1000; n = 1 and 8; seeds 0-9) or ``--quick``
(N = 25 and 100, n = 1, seeds 0-4); ``--json PATH`` writes every row.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
from parareal.adapters.diffusion import sample  # noqa: E402
from parareal.adapters.diffusion.digits import load_digits_model  # noqa: E402

LEVEL = 2 / 255  # one 8-bit level in [-1, 1] data units


def _bytes(x: torch.Tensor) -> torch.Tensor:
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def run(steps: list[int], sizes: list[int], seeds: list[int], rules: list[str]) -> list[dict]:
    """One row per (N, n, seed, rule)."""
    unet, scheduler = load_digits_model()
    rows = []
    for n_steps in steps:
        for n in sizes:
            for seed in seeds:
                x_T = torch.randn((n, 1, 8, 8), generator=torch.Generator().manual_seed(seed))
                serial = sample(unet, scheduler, x_T, num_inference_steps=n_steps,
                                method="serial").sample
                for rule in rules:
                    res = sample(unet, scheduler, x_T, num_inference_steps=n_steps,
                                 method="srds", stop=rule, max_batch=n)
                    err = float((res.sample - serial).abs().max())
                    same = float((_bytes(res.sample) == _bytes(serial)).float().mean())
                    rows.append(dict(N=n_steps, n=n, seed=seed, stop=rule,
                                     iterations=res.iterations, sequential=res.sequential_evals,
                                     max_abs_err=err, identical_8bit=same,
                                     status=res.status.name))
    return rows


def table(rows: list[dict], tol: float) -> str:
    """Min/median/max of sequential calls and the worst error per (N, n, rule)."""
    lines = [f"{'N':>5} {'n':>2} {'stop':>8}  seq min/med/max   iters min/med/max  "
             f"max err   err>tol  min 8-bit same"]
    keys = sorted({(r["N"], r["n"], r["stop"]) for r in rows})
    for n_steps, n, rule in keys:
        sel = [r for r in rows if (r["N"], r["n"], r["stop"]) == (n_steps, n, rule)]
        seq = [r["sequential"] for r in sel]
        its = [r["iterations"] for r in sel]
        errs = [r["max_abs_err"] for r in sel]
        lines.append(
            f"{n_steps:>5} {n:>2} {rule:>8}  {min(seq):>3} {statistics.median(seq):>5} "
            f"{max(seq):>3}      {min(its):>2} {statistics.median(its):>4} {max(its):>2}     "
            f"{max(errs):.1e}  {sum(e > tol for e in errs):>2}/{len(errs):<3}  "
            f"{min(r['identical_8bit'] for r in sel):.4f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 25, 100; n = 1; seeds 0-4")
    parser.add_argument("--json", metavar="PATH", help="write every row as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.quick:
        steps, sizes, seeds = [25, 100], [1], list(range(5))
    else:
        steps, sizes, seeds = [25, 100, 1000], [1, 8], list(range(10))
    rows = run(steps, sizes, seeds, ["update", "estimate"])
    tol = 1 / 255
    print(f"tol = 1/255 = {tol:.2e} (data units); one 8-bit level = {LEVEL:.2e}")
    print(table(rows, tol))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(dict(tol=tol, rows=rows), fh, indent=1)


if __name__ == "__main__":
    main()
