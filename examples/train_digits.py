"""Train the bundled digits diffusion model and classifier (reproducible, CPU, ~13 minutes).

A small ``diffusers.UNet2DModel`` (8x8, one channel, 0.7 M parameters) is trained as a DDPM
(epsilon prediction, 1000 training timesteps, linear betas 1e-4..0.02: ``DDPMScheduler()``'s
defaults) on the 1527 training digits of :func:`parareal.adapters.diffusion.digits.
load_digits_data`, with AdamW, a linear warmup and cosine learning-rate decay, gradient
clipping and an exponential moving average of the weights; the EMA weights are saved. No data
augmentation (the digits are centred, and neither flips nor shifts preserve their
distribution). The scheduler is saved as a ``DDIMScheduler`` config with the same betas,
``clip_sample=False`` (the plain probability-flow ODE: clamping the predicted clean sample
makes the DDIM map non-smooth and step-count dependent, and SRDS then converged far more
slowly at N = 1000 -- see docs/benchmarks.md) and ``set_alpha_to_one=True``,
``timestep_spacing="leading"`` (diffusers' defaults).

Then a small MLP classifier is trained on the same training digits (a few seconds); its
penultimate features define the Frechet distance of
:func:`parareal.adapters.diffusion.digits.sample_quality`.

Outputs (in ``--out``, default ``digits_model/`` in the current folder): ``digits_unet.safetensors``
and ``digits_unet.json`` (UNet config, scheduler config, training metadata),
``digits_classifier.safetensors`` and ``digits_classifier.json``; and a grid of 64 serial
DDIM samples (100 steps, seed 0), ``digits_samples.png``. Load the result with
``load_digits_model("digits_model/digits_unet.safetensors")`` or
``parareal sample --weights digits_model/digits_unet.safetensors``. The package's bundled assets
(and ``docs/digits_samples.png``) are written only with ``--replace-bundled``; an ``--out``
inside the package's ``assets`` folder without it is an error.
Finally it prints the sample quality of 500 serial DDIM samples (100 steps) and, as
yardsticks, of 500 real training digits and of 500 uniform-noise images, all against the
held-out digits.

Usage::

    python examples/train_digits.py                    # into ./digits_model (~13 min, 2 threads)
    python examples/train_digits.py --replace-bundled  # rebuild the bundled assets themselves
    python examples/train_digits.py --quick            # a smoke run into a temporary folder
    python examples/train_digits.py --classifier-only  # retrain only the classifier
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
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel
from parareal.adapters.diffusion import sample
from parareal.adapters.diffusion.digits import (
    ASSETS,
    DigitsClassifier,
    load_digits_data,
    load_digits_labels,
    sample_quality,
    save_grid,
)
from safetensors.torch import save_file

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS_GRID = ROOT / "docs" / "digits_samples.png"
#: Default output folder (relative to the current folder).
DEFAULT_OUT = pathlib.Path("digits_model")

UNET_CONFIG: dict[str, Any] = dict(
    sample_size=8,
    in_channels=1,
    out_channels=1,
    block_out_channels=(32, 64),
    down_block_types=("DownBlock2D", "AttnDownBlock2D"),
    up_block_types=("AttnUpBlock2D", "UpBlock2D"),
    layers_per_block=1,
    norm_num_groups=8,
)
CLASSIFIER_ARCH: dict[str, Any] = {"in_features": 64, "hidden": [128, 64], "classes": 10}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command-line options.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; ``None`` reads ``sys.argv``.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=None,
                        help="diffusion training steps (default 5000; 300 with --quick)")
    parser.add_argument("--seed", type=int, default=0, help="seed of everything (default 0)")
    parser.add_argument("--batch-size", type=int, default=128, help="batch size (default 128)")
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (1e-3)")
    parser.add_argument("--out", type=pathlib.Path, default=None,
                        help=f"output folder (default: ./{DEFAULT_OUT}; a new temporary folder "
                             "with --quick); never the package's bundled assets unless "
                             "--replace-bundled")
    parser.add_argument("--replace-bundled", action="store_true",
                        help=f"overwrite the package's bundled weights in {ASSETS} and "
                             "docs/digits_samples.png (the assets the tests and docs rely on)")
    parser.add_argument("--classifier-only", action="store_true",
                        help="train only the classifier (and print the yardstick numbers)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 300 steps, 16 quality samples, 5 DDIM steps, one noising "
                             "per image for the denoising losses, the training loss on 270 "
                             "training digits")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args(argv)
    if args.steps is None:
        args.steps = 300 if args.quick else 5000
    if args.steps < 1 or args.batch_size < 1:
        parser.error("--steps and --batch-size must be positive")
    if args.replace_bundled:
        if args.quick:
            parser.error("--replace-bundled cannot be combined with --quick (a smoke run)")
        if args.out is not None and not inside(args.out, ASSETS):
            parser.error(f"--replace-bundled writes to {ASSETS}; drop --out {args.out}")
        args.out = ASSETS
    elif args.out is not None and inside(args.out, ASSETS):
        parser.error(f"--out {args.out} is in the package's bundled assets ({ASSETS}); pass "
                     "--replace-bundled to overwrite them, or choose another folder")
    elif args.out is None and not args.quick:
        args.out = DEFAULT_OUT
    return args


def inside(path: pathlib.Path, folder: pathlib.Path) -> bool:
    """True if ``path`` is ``folder`` or lies under it (after resolving links)."""
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def noisy(
    x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, alphas_cumprod: torch.Tensor
) -> torch.Tensor:
    """The forward process ``sqrt(ab_t) x0 + sqrt(1 - ab_t) noise`` (DDPMScheduler.add_noise)."""
    ab = alphas_cumprod[t].reshape(-1, 1, 1, 1)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


@torch.no_grad()
def denoising_loss(
    unet: UNet2DModel,
    data: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    *,
    seed: int = 1234,
    repeats: int = 8,
) -> float:
    """Mean noise-prediction MSE over ``repeats`` noisings of every image (fixed seed).

    The timesteps are stratified: copy ``r`` of the data uses timesteps spread evenly over
    ``[0, 1000)`` with a seeded random offset, so every evaluation sees the same (x0, t, noise).
    """
    gen = torch.Generator().manual_seed(seed)
    total, count = 0.0, 0
    n, steps = data.shape[0], alphas_cumprod.shape[0]
    for _ in range(repeats):
        offset = torch.rand(n, generator=gen)
        t = ((torch.arange(n) + offset) / n * steps).long().clamp(max=steps - 1)
        t = t[torch.randperm(n, generator=gen)]
        noise = torch.randn(data.shape, generator=gen)
        pred = unet(noisy(data, t, noise, alphas_cumprod), t).sample
        total += float((pred - noise).pow(2).sum())
        count += noise.numel()
    return total / count


def optimise(unet: torch.nn.Module, ema: torch.nn.Module, optimizer: torch.optim.Optimizer,
             loss: torch.Tensor, lr: float, step: int, ema_decay: float) -> None:
    """One training step: learning rate ``lr``, a gradient step clipped to norm 1, and the
    exponential moving average of the weights (decay warming up to ``ema_decay``)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
    optimizer.step()
    decay = min(ema_decay, (1 + step) / (10 + step))
    with torch.no_grad():
        for p_ema, p in zip(ema.parameters(), unet.parameters()):
            p_ema.lerp_(p, 1 - decay)


def train_diffusion(args: argparse.Namespace) -> tuple[UNet2DModel, dict[str, Any]]:
    """DDPM training with AdamW, warmup + cosine LR and an EMA; returns the EMA model."""
    torch.manual_seed(args.seed)
    data = load_digits_data("train")
    heldout = load_digits_data("heldout")
    ddpm = DDPMScheduler()
    alphas = ddpm.alphas_cumprod.float()
    unet = UNet2DModel(**UNET_CONFIG)
    random_init = copy.deepcopy(unet).eval()  # the seeded initialisation, for comparison
    ema = copy.deepcopy(unet).eval().requires_grad_(False)
    params = sum(p.numel() for p in unet.parameters())
    print(f"UNet2DModel: {params:,} parameters; {len(data)} training digits, "
          f"{len(heldout)} held out; {args.steps} steps of batch {args.batch_size}", flush=True)

    warmup = min(200, args.steps // 10)
    ema_decay = 0.999
    optimizer = torch.optim.AdamW(unet.parameters(), lr=args.lr, weight_decay=0.01)

    def lr_at(step: int) -> float:
        if step < warmup:
            return args.lr * (step + 1) / warmup
        progress = (step - warmup) / max(1, args.steps - warmup)
        return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

    gen = torch.Generator().manual_seed(args.seed)
    order = torch.randperm(len(data), generator=gen)
    cursor = 0
    smooth = None
    report = max(1, min(250, args.steps // 10))
    unet.train()
    start = time.perf_counter()
    for step in range(args.steps):
        if cursor + args.batch_size > len(order):
            order, cursor = torch.randperm(len(data), generator=gen), 0
        x0 = data[order[cursor:cursor + args.batch_size]]
        cursor += args.batch_size
        t = torch.randint(0, alphas.shape[0], (x0.shape[0],), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        loss = torch.nn.functional.mse_loss(unet(noisy(x0, t, noise, alphas), t).sample, noise)
        optimise(unet, ema, optimizer, loss, lr_at(step), step, ema_decay)
        value = loss.item()
        smooth = value if smooth is None else 0.99 * smooth + 0.01 * value
        if (step + 1) % report == 0 or step + 1 == args.steps:
            elapsed = time.perf_counter() - start
            eta = elapsed / (step + 1) * (args.steps - step - 1)
            print(f"step {step + 1:5d}/{args.steps}  loss {smooth:.4f}  lr {lr_at(step):.2e}  "
                  f"{elapsed:6.1f} s  (eta {eta:5.0f} s)", flush=True)
    wall = time.perf_counter() - start
    for buffer_ema, buffer in zip(ema.buffers(), unet.buffers()):
        buffer_ema.copy_(buffer)

    print("evaluating held-out denoising loss...", flush=True)
    # a smoke run: one noising of every image, and the training loss on the first as many
    # training digits as there are held-out ones (all 1527 cost more than the whole smoke run)
    repeats = 1 if args.quick else 8
    train_eval = data[:len(heldout)] if args.quick else data
    losses = {
        "heldout_loss": denoising_loss(ema, heldout, alphas, repeats=repeats),
        "heldout_loss_random_init": denoising_loss(random_init, heldout, alphas,
                                                   repeats=repeats),
        "train_loss_eval": denoising_loss(ema, train_eval, alphas, repeats=repeats),
    }
    meta = {
        "seed": args.seed,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "parameters": params,
        "optimizer": {"name": "AdamW", "lr": args.lr, "weight_decay": 0.01,
                      "schedule": f"linear warmup {warmup} steps, cosine to 10 %",
                      "grad_clip_norm": 1.0},
        "ema_decay": ema_decay,
        "objective": "epsilon MSE, t uniform in [0, 1000), DDPMScheduler() betas",
        "augmentation": None,
        "train_wall_time_s": round(wall, 1),
        "seconds_per_step": round(wall / args.steps, 4),
        "final_train_loss_ema": smooth,
        **losses,
        "loss_protocol": (f"noise-prediction MSE, {repeats} noising{'s' * (repeats > 1)} per "
                          "image, stratified t, seed 1234"
                          + (f"; train loss on the first {len(train_eval)} training digits"
                             if args.quick else "")),
        "data": {"source": "sklearn.datasets.load_digits", "train": len(data),
                 "heldout": len(heldout), "scaling": "v / 8 - 1 (0..16 -> [-1, 1])"},
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "command": " ".join(["python", "examples/train_digits.py", *sys.argv[1:]]),
    }
    print(f"trained in {wall:.0f} s; final loss (EMA-smoothed) {smooth:.4f}; held-out loss "
          f"{losses['heldout_loss']:.4f} (random init {losses['heldout_loss_random_init']:.4f},"
          f" train {losses['train_loss_eval']:.4f})", flush=True)
    return ema, meta


def scheduler_config() -> dict[str, Any]:
    """The sampling scheduler: DDIM with DDPMScheduler()'s betas, without clipping."""
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02,
                              beta_schedule="linear", clip_sample=False, set_alpha_to_one=True,
                              prediction_type="epsilon", timestep_spacing="leading")
    return dict(scheduler.config)


def save_model(unet: UNet2DModel, meta: dict[str, Any], out: pathlib.Path) -> None:
    """Write ``digits_unet.safetensors`` (float32) and ``digits_unet.json``."""
    state = {k: v.detach().float().contiguous() for k, v in unet.state_dict().items()}
    save_file(state, str(out / "digits_unet.safetensors"), metadata={"format": "pt"})
    config = {
        "unet": {k: v for k, v in dict(unet.config).items() if not k.startswith("_")},
        "scheduler": {k: v for k, v in scheduler_config().items() if not k.startswith("_")},
        "training": meta,
    }
    (out / "digits_unet.json").write_text(json.dumps(config, indent=2, default=list) + "\n")


def train_classifier(seed: int, out: pathlib.Path, epochs: int = 60) -> DigitsClassifier:
    """Train the MLP classifier on the training digits for ``epochs`` epochs (60 for the
    bundled one); save it with its held-out accuracy."""
    torch.manual_seed(seed)
    x, y = load_digits_data("train"), load_digits_labels("train")
    xh, yh = load_digits_data("heldout"), load_digits_labels("heldout")
    model = DigitsClassifier(CLASSIFIER_ARCH["in_features"], CLASSIFIER_ARCH["hidden"],
                             CLASSIFIER_ARCH["classes"], dropout=0.1)
    batch = 64
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, epochs * math.ceil(len(x) / batch))
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch):
            idx = order[i:i + batch]
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            sched.step()
    wall = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        accuracy = float((model(xh).argmax(1) == yh).float().mean())
        train_accuracy = float((model(x).argmax(1) == y).float().mean())
    state = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "digits_classifier.safetensors"), metadata={"format": "pt"})
    meta = {
        "architecture": CLASSIFIER_ARCH,
        "activation": "SiLU",
        "features": "output of the last hidden layer (64 values), for Frechet distances",
        "training": {"seed": seed, "epochs": epochs, "batch_size": batch,
                     "optimizer": "AdamW lr 2e-3 wd 1e-2, cosine", "dropout": 0.1,
                     "wall_time_s": round(wall, 2), "train_accuracy": train_accuracy,
                     "heldout_accuracy": accuracy, "heldout": len(xh)},
    }
    (out / "digits_classifier.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"classifier: held-out accuracy {accuracy:.4f} (train {train_accuracy:.4f}), "
          f"{wall:.1f} s", flush=True)
    return model


def quality_line(name: str, quality: dict[str, Any]) -> str:
    """One line of the quality table."""
    return (f"{name:<34} FD {quality['frechet_distance']:8.3f}   confidence "
            f"{quality['confidence']:.3f}   classes {quality['predicted_classes']}")


def yardsticks(classifier: DigitsClassifier, n: int, seed: int) -> dict[str, Any]:
    """Quality of ``n`` real training digits and of ``n`` uniform-noise images vs held-out."""
    gen = torch.Generator().manual_seed(seed)
    train = load_digits_data("train")
    real = train[torch.randperm(len(train), generator=gen)[:n]]
    noise = torch.rand(n, 1, 8, 8, generator=gen) * 2 - 1
    return {
        f"train_digits_{n}": sample_quality(real, classifier=classifier),
        f"uniform_noise_{n}": sample_quality(noise, classifier=classifier),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the training; return the exit status."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    out = args.out if args.out is not None else pathlib.Path(
        tempfile.mkdtemp(prefix="digits_quick_"))
    out.mkdir(parents=True, exist_ok=True)
    grid_path = DOCS_GRID if args.replace_bundled else out / "digits_samples.png"
    n_quality, ddim_steps = (16, 5) if args.quick else (500, 100)
    print(f"writing to {out}", flush=True)
    total = time.perf_counter()

    unet = meta = None
    if not args.classifier_only:
        unet, meta = train_diffusion(args)
        save_model(unet, meta, out)
    classifier = train_classifier(args.seed, out, epochs=3 if args.quick else 60)

    print(f"\nsample quality vs the {len(load_digits_data('heldout'))} held-out digits:")
    quality = yardsticks(classifier, n_quality, args.seed)
    if unet is not None and meta is not None:
        scheduler = DDIMScheduler.from_config(scheduler_config())
        x_T = torch.randn(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))
        grid = sample(unet, scheduler, x_T, num_inference_steps=ddim_steps, method="serial")
        save_grid(grid.sample, grid_path, nrow=8)
        print(f"wrote {grid_path} ({ddim_steps}-step serial DDIM, seed 0)")
        x_T = torch.randn(n_quality, 1, 8, 8,
                          generator=torch.Generator().manual_seed(args.seed + 1))
        result = sample(unet, scheduler, x_T, num_inference_steps=ddim_steps, method="serial")
        key = f"serial_ddim{ddim_steps}_{n_quality}"
        quality = {key: sample_quality(result.sample, classifier=classifier), **quality}
        print(f"sampled {n_quality} in {result.wall_time_s:.1f} s")
        meta["sample_quality"] = {
            "reference": "held-out digits (270), classifier penultimate features",
            "samples_seed": args.seed + 1,
            **quality,
        }
        meta["total_wall_time_s"] = round(time.perf_counter() - total, 1)
        save_model(unet, meta, out)
    for name, q in quality.items():
        print(quality_line(name, q))
    print(f"done in {time.perf_counter() - total:.0f} s; outputs in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
