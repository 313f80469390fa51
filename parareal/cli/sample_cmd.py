"""``parareal sample``: sample the bundled digits model serially, with SRDS or with Picard."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from .paths import check_writable

__all__ = ["add_sample_parser", "run_sample"]


def add_sample_parser(sub: Any) -> None:
    """Register the ``sample`` subcommand on an argparse sub-parser collection."""
    p = sub.add_parser(
        "sample",
        help="sample the bundled digits diffusion model (serial, SRDS or Picard)",
        description="Generate digits with the bundled diffusion model and write a PNG grid.",
    )
    p.add_argument("--steps", type=int, default=100, help="DDIM steps N (default 100)")
    p.add_argument("--method", choices=("srds", "serial", "picard"), default="srds")
    p.add_argument("--blocks", type=int, default=None, help="SRDS blocks (default sqrt(N))")
    p.add_argument("--tol", type=float, default=None, help="stopping tolerance (method default)")
    p.add_argument("--tol-mode", choices=("data", "noise"), default=None,
                   help="tolerance in data units or noise-scaled (method default)")
    p.add_argument("--window", type=int, default=None, help="Picard window (default 2 sqrt(N))")
    p.add_argument("--max-iters", type=int, default=None, help="iteration cap")
    p.add_argument("--pipelined", action=argparse.BooleanOptionalAction, default=True,
                   help="pipelined SRDS schedule (default) or synchronous (--no-pipelined)")
    p.add_argument("--n", type=int, default=16, help="number of samples (default 16)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial noise (default 0)")
    p.add_argument("--eta", type=float, default=0.0, help="DDIM eta (0: deterministic)")
    p.add_argument("--out", default="samples.png", help="PNG grid to write (default samples.png)")
    p.add_argument("--compare-serial", action="store_true",
                   help="also sample serially and report the difference")
    p.add_argument("--weights", default=None, help="model weights file (default: bundled)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: when stderr is a terminal)")
    p.set_defaults(handler=run_sample)


def run_sample(args: argparse.Namespace) -> int:
    """Handler of ``parareal sample``."""
    if args.n < 1:
        raise ValueError(f"--n must be >= 1, got {args.n}")
    check_writable(args.out, "the image")
    import torch

    from ..adapters.diffusion import sample
    from ..adapters.diffusion.digits import load_digits_model, save_grid, to_uint8

    unet, scheduler = load_digits_model(args.weights)
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    x_T = torch.randn((args.n, 1, 8, 8), generator=torch.Generator().manual_seed(args.seed))
    noise_seed = args.seed + 1_000_003

    def run(method: str, **kwargs: Any) -> Any:
        generator = torch.Generator().manual_seed(noise_seed) if args.eta > 0 else None
        return sample(unet, scheduler, x_T, num_inference_steps=args.steps, method=method,
                      eta=args.eta, generator=generator, progress=progress, **kwargs)

    options: dict[str, Any] = {}
    if args.method != "serial":
        options.update(tol=args.tol, tol_mode=args.tol_mode, max_iters=args.max_iters)
    if args.method == "srds":
        options.update(blocks=args.blocks, pipelined=args.pipelined)
    if args.method == "picard":
        options.update(window=args.window)
    result = run(args.method, **options)
    save_grid(result.sample, args.out)
    summary: dict[str, Any] = {
        "method": args.method,
        "steps": args.steps,
        "n": args.n,
        "iterations": result.iterations,
        "converged": result.converged,
        "sequential_evals": result.sequential_evals,
        "total_evals": result.total_evals,
        "wall_time_s": result.wall_time_s,
        "image": os.path.abspath(args.out),
        "seed": args.seed,
        "eta": args.eta,
    }
    if args.method == "srds":
        summary["pipelined"] = args.pipelined
    if args.compare_serial:
        serial = result if args.method == "serial" else run("serial")
        diff = (result.sample - serial.sample).abs()
        same = to_uint8(result.sample) == to_uint8(serial.sample)
        summary.update(
            max_abs_diff_vs_serial=float(diff.max()),
            uint8_identical_fraction=float(same.mean()),
            serial_wall_time_s=serial.wall_time_s,
            serial_sequential_evals=serial.sequential_evals,
        )
    if args.json:
        print(json.dumps(summary))
    else:
        _print_summary(summary)
    return 0


def _print_summary(s: dict[str, Any]) -> None:
    status = "converged" if s["converged"] else "not converged"
    line = (
        f"{s['method']}: {s['n']} samples, {s['steps']} DDIM steps, {s['iterations']} "
        f"iteration(s) ({status}); {s['sequential_evals']} sequential model calls "
        f"(serial: {s['steps']}), {s['total_evals']} model evaluations; {s['wall_time_s']:.2f} s"
    )
    print(line)
    if "max_abs_diff_vs_serial" in s:
        print(
            f"vs serial: max |diff| {s['max_abs_diff_vs_serial']:.2e} (data units), "
            f"{100 * s['uint8_identical_fraction']:.2f}% of 8-bit pixels identical; "
            f"serial took {s['serial_wall_time_s']:.2f} s"
        )
    print(f"wrote {s['image']}")
