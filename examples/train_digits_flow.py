"""Train the bundled flow-matching digits model (reproducible, CPU, ~10-25 minutes on 1 thread).

The same ``diffusers.UNet2DModel`` as the DDPM digits model (``examples/train_digits.py``:
8x8, one channel, 0.7 M parameters, the same optimiser, learning-rate schedule, EMA, seed and
training digits; 1600 steps of batch 64 instead of 5000 of 128, to fit a shared 2-core
machine), trained by rectified flow matching instead: a clean digit ``x0`` and noise
``eps`` give ``x_sigma = (1 - sigma) x0 + sigma eps`` for ``sigma`` uniform in ``[0, 1]``, and
the model, at timestep ``t = 1000 sigma``, learns the velocity ``eps - x0`` (MSE). That is the
objective of Stable Diffusion 3 and Flux; it is sampled with diffusers'
``FlowMatchEulerDiscreteScheduler`` (``shift=1``): Euler steps of ``dx/dsigma = v(x, t)`` from
``sigma = 1`` (pure noise) to ``sigma = 0``.

Outputs (in ``--out``, default ``digits_flow_model/``): ``digits_flow.safetensors`` and
``digits_flow.json`` (UNet config, scheduler config, training metadata, sample quality). The
package's bundled assets are written only with ``--replace-bundled``. ``--eval-only`` skips
training and measures the sample quality of the weights already in ``--out`` (500 serial
samples of 100 Euler steps, seed 1, against the held-out digits, as for the DDPM model),
writing it into the JSON.

Usage::

    python examples/train_digits_flow.py --replace-bundled  # the bundled model (1452 s here)
    python examples/train_digits_flow.py --quick
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import pathlib
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import diffusers
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, UNet2DModel
from parareal.adapters.diffusion.digits import ASSETS, load_digits_data, sample_quality
from safetensors.torch import save_file

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from train_digits import UNET_CONFIG, inside, optimise, quality_line, yardsticks  # noqa: E402

DEFAULT_OUT = pathlib.Path("digits_flow_model")
#: The sampling scheduler's config (diffusers' defaults: 1000 training timesteps, no shift).
SCHEDULER_CONFIG: dict[str, Any] = {"num_train_timesteps": 1000, "shift": 1.0}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command-line options (``argv`` without the program name)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=None,
                        help="training steps (default 1600; 300 with --quick)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--out", type=pathlib.Path, default=None)
    parser.add_argument("--replace-bundled", action="store_true",
                        help=f"write the package's bundled flow model in {ASSETS}")
    parser.add_argument("--eval-only", action="store_true",
                        help="measure the sample quality of the weights in --out only")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 300 steps, losses over one noising (the training "
                             "loss on 270 training digits), 16 samples at 5 steps")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    if args.steps is None:
        args.steps = 300 if args.quick else 1600
    if args.replace_bundled:
        if args.quick:
            parser.error("--replace-bundled cannot be combined with --quick")
        args.out = ASSETS
    elif args.out is not None and inside(args.out, ASSETS):
        parser.error(f"--out {args.out} is in the bundled assets; pass --replace-bundled")
    elif args.out is None:
        args.out = (pathlib.Path(tempfile.mkdtemp(prefix="digits_flow_quick_")) if args.quick
                    else DEFAULT_OUT)
    return args


def flow_pair(x0: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """``x_sigma = (1 - sigma) x0 + sigma noise`` and the velocity ``noise - x0``."""
    s = sigma.reshape(-1, 1, 1, 1)
    return (1 - s) * x0 + s * noise, noise - x0


@torch.no_grad()
def velocity_loss(unet: UNet2DModel, data: torch.Tensor, *, seed: int = 1234,
                  repeats: int = 8) -> float:
    """Mean velocity MSE over ``repeats`` noisings per image, stratified ``sigma`` (fixed seed)."""
    gen = torch.Generator().manual_seed(seed)
    total, count, n = 0.0, 0, data.shape[0]
    for _ in range(repeats):
        sigma = (torch.arange(n) + torch.rand(n, generator=gen)) / n
        sigma = sigma[torch.randperm(n, generator=gen)]
        noise = torch.randn(data.shape, generator=gen)
        x, v = flow_pair(data, sigma, noise)
        total += float((unet(x, sigma * 1000).sample - v).pow(2).sum())
        count += v.numel()
    return total / count


def train_flow(args: argparse.Namespace) -> tuple[UNet2DModel, dict[str, Any]]:
    """Flow-matching training with train_digits.py's optimiser, schedule and EMA."""
    torch.manual_seed(args.seed)
    data, heldout = load_digits_data("train"), load_digits_data("heldout")
    unet = UNet2DModel(**UNET_CONFIG)
    random_init = copy.deepcopy(unet).eval()
    ema = copy.deepcopy(unet).eval().requires_grad_(False)
    params = sum(p.numel() for p in unet.parameters())
    print(f"UNet2DModel: {params:,} parameters; {args.steps} flow-matching steps", flush=True)
    warmup, ema_decay = min(200, args.steps // 10), 0.999
    optimizer = torch.optim.AdamW(unet.parameters(), lr=args.lr, weight_decay=0.01)

    def lr_at(step: int) -> float:
        if step < warmup:
            return args.lr * (step + 1) / warmup
        progress = (step - warmup) / max(1, args.steps - warmup)
        return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

    gen = torch.Generator().manual_seed(args.seed)
    order, cursor, smooth = torch.randperm(len(data), generator=gen), 0, None
    report = max(1, min(250, args.steps // 10))
    unet.train()
    start = time.perf_counter()
    for step in range(args.steps):
        if cursor + args.batch_size > len(order):
            order, cursor = torch.randperm(len(data), generator=gen), 0
        x0 = data[order[cursor:cursor + args.batch_size]]
        cursor += args.batch_size
        sigma = torch.rand(x0.shape[0], generator=gen)
        x, v = flow_pair(x0, sigma, torch.randn(x0.shape, generator=gen))
        loss = torch.nn.functional.mse_loss(unet(x, sigma * 1000).sample, v)
        optimise(unet, ema, optimizer, loss, lr_at(step), step, ema_decay)
        smooth = loss.item() if smooth is None else 0.99 * smooth + 0.01 * loss.item()
        if (step + 1) % report == 0 or step + 1 == args.steps:
            elapsed = time.perf_counter() - start
            print(f"step {step + 1:5d}/{args.steps}  loss {smooth:.4f}  {elapsed:6.1f} s",
                  flush=True)
    wall = time.perf_counter() - start
    repeats = 1 if args.quick else 8  # noisings per image of the loss evaluations
    # a smoke run's training loss: on the first as many training digits as there are held-out
    # ones (all 1527 cost more than the rest of the smoke run)
    train_eval = data[:len(heldout)] if args.quick else data
    meta = {
        "seed": args.seed, "steps": args.steps, "batch_size": args.batch_size,
        "parameters": params,
        "optimizer": {"name": "AdamW", "lr": args.lr, "weight_decay": 0.01,
                      "schedule": f"linear warmup {warmup} steps, cosine to 10 %",
                      "grad_clip_norm": 1.0},
        "ema_decay": ema_decay,
        "objective": "rectified flow matching: velocity (noise - x0) MSE at "
                     "x = (1 - sigma) x0 + sigma noise, sigma uniform in [0, 1], t = 1000 sigma",
        "train_wall_time_s": round(wall, 1),
        "seconds_per_step": round(wall / args.steps, 4),
        "final_train_loss_ema": smooth,
        "heldout_loss": velocity_loss(ema, heldout, repeats=repeats),
        "heldout_loss_random_init": velocity_loss(random_init, heldout, repeats=repeats),
        "train_loss_eval": velocity_loss(ema, train_eval, repeats=repeats),
        "train_loss_eval_digits": len(train_eval),
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "diffusers": diffusers.__version__, "python": platform.python_version(),
        "command": " ".join(["python", "examples/train_digits_flow.py", *sys.argv[1:]]),
    }
    print(f"trained in {wall:.0f} s; held-out loss {meta['heldout_loss']:.4f}", flush=True)
    return ema, meta


def save_model(unet: UNet2DModel, meta: dict[str, Any], out: pathlib.Path) -> None:
    """Write ``digits_flow.safetensors`` (float32) and ``digits_flow.json``."""
    state = {k: v.detach().float().contiguous() for k, v in unet.state_dict().items()}
    save_file(state, str(out / "digits_flow.safetensors"), metadata={"format": "pt"})
    scheduler = FlowMatchEulerDiscreteScheduler(**SCHEDULER_CONFIG)
    config = {
        "unet": {k: v for k, v in dict(unet.config).items() if not k.startswith("_")},
        "scheduler": {k: v for k, v in dict(scheduler.config).items() if not k.startswith("_")},
        "training": meta,
    }
    (out / "digits_flow.json").write_text(json.dumps(config, indent=2, default=list) + "\n")


def evaluate(out: pathlib.Path, n: int, steps: int, seed: int) -> None:
    """Sample quality of ``n`` serial ``steps``-step Euler samples, written into the JSON."""
    from parareal.adapters.diffusion import sample
    from parareal.adapters.diffusion.digits import load_digits_flow_model

    unet, scheduler = load_digits_flow_model(out / "digits_flow.safetensors")
    x_T = torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed + 1))
    result = sample(unet, scheduler, x_T, num_inference_steps=steps, method="serial")
    quality = {f"serial_euler{steps}_{n}": sample_quality(result.sample),
               **yardsticks(load_classifier_cached(), n, seed)}
    for name, q in quality.items():
        print(quality_line(name, q))
    path = out / "digits_flow.json"
    config = json.loads(path.read_text())
    config["training"]["sample_quality"] = {
        "reference": "held-out digits (270), classifier penultimate features",
        "samples_seed": seed + 1, **quality}
    path.write_text(json.dumps(config, indent=2, default=list) + "\n")


def load_classifier_cached() -> Any:
    """The bundled classifier (the one ``sample_quality`` uses by default)."""
    from parareal.adapters.diffusion.digits import load_classifier

    return load_classifier()


def main(argv: Sequence[str] | None = None) -> int:
    """Train (unless ``--eval-only``), save, and measure the sample quality."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"writing to {args.out}", flush=True)
    if not args.eval_only:
        unet, meta = train_flow(args)
        save_model(unet, meta, args.out)
    n, steps = (16, 5) if args.quick else (500, 100)
    evaluate(args.out, n, steps, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
