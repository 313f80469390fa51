"""``parareal sample``: sample the bundled digits model serially, with SRDS or with Picard, or
with whichever is predicted fastest (``--method auto``, the default)."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Mapping
from typing import Any

from .flags import CUDA_FLAGS, in_flags, named
from .paths import atomic_path, check_writable
from .threads import set_threads

__all__ = ["MAX_MU", "MAX_SAMPLES", "METHOD_FLAGS", "SCHEDULERS", "add_sample_parser",
           "run_sample"]

#: ``--scheduler`` names: the bundled model's DDIMScheduler, or a diffusers scheduler built
#: from its config; ``flow``: the bundled flow-matching model's FlowMatchEulerDiscreteScheduler.
SCHEDULERS = ("ddim", "euler", "heun", "flow")
_SCHEDULER_CLASSES = {"euler": "EulerDiscreteScheduler", "heun": "HeunDiscreteScheduler"}

_EPILOG = (
    "There is no --prompt: the bundled digits model is unconditional and no text model ships "
    "with parareal. For Stable Diffusion pipelines and prompts use the Python API "
    "(parareal.adapters.diffusion; see docs/diffusion.md)."
)

#: The most samples ``--n`` takes: their grid (33 x 33 pixels a tile) stays within every
#: image format's size limit (WebP: 16383 pixels a side) and their states within 16 MiB.
MAX_SAMPLES = 2**16
#: Added to ``--seed`` (modulo ``2**64``) for the generator of the step noise (``--eta > 0``).
NOISE_SEED_OFFSET = 1_000_003


def add_sample_parser(sub: Any) -> None:
    """Register the ``sample`` subcommand on an argparse sub-parser collection."""
    p = sub.add_parser(
        "sample",
        help="sample the bundled digits diffusion model (auto, serial, SRDS or Picard)",
        description="Generate digits with the bundled diffusion model and write an image grid. "
                    "--method auto (the default) times a few model calls, predicts the "
                    "wall-clock of serial, SRDS and Picard, runs the fastest of serial, SRDS and "
                    "exact Picard "
                    "(Picard too with --no-exact) and prints which method ran and why. "
                    "Options that do not apply to --method are errors (auto takes none of the "
                    "method-specific ones). Exit status: 0, or 1 when the run diverged "
                    "(non-finite values; no image is written), 2 for bad input.",
        epilog=_EPILOG,
    )
    p.add_argument("--steps", type=int, default=100, help="DDIM steps N (default 100)")
    p.add_argument("--method", choices=("auto", "srds", "serial", "picard", "picard-exact"),
                   default="auto",
                   help="auto (default): the method predicted fastest on this machine; "
                        "picard-exact: Picard over the whole grid with a data-unit tolerance, "
                        "whose sample is the serial one, as SRDS's")
    p.add_argument("--exact", action=argparse.BooleanOptionalAction, default=None,
                   help="auto: choose among serial, SRDS and picard-exact, whose sample is the "
                        "serial one "
                        "(the default); --no-exact lets auto pick Picard too")
    p.add_argument("--scheduler", choices=SCHEDULERS, default="ddim",
                   help="sampler: ddim (the bundled DDIMScheduler, default), euler or heun "
                        "(diffusers' EulerDiscreteScheduler / HeunDiscreteScheduler built from "
                        "its config), flow (the bundled flow-matching model with diffusers' "
                        "FlowMatchEulerDiscreteScheduler)")
    p.add_argument("--karras", action="store_true",
                   help="euler/heun/flow: Karras sigmas (use_karras_sigmas=True)")
    p.add_argument("--shift", type=float, default=None,
                   help="flow: the scheduler's shift of the noise levels (default 1)")
    p.add_argument("--mu", type=float, default=None,
                   help="flow: dynamic shifting (use_dynamic_shifting=True) with this mu")
    p.add_argument("--blocks", type=int, default=None,
                   help="SRDS blocks (default round(2 sqrt(N)))")
    p.add_argument("--tol", type=float, default=None,
                   help="SRDS/Picard stopping tolerance (method default)")
    p.add_argument("--tol-mode", choices=("data", "noise"), default=None,
                   help="SRDS/Picard: tolerance in data units or noise-scaled (method default)")
    p.add_argument("--window", type=int, default=None,
                   help="Picard window (default 2 sqrt(N); picard-exact: N)")
    p.add_argument("--anderson", type=int, default=None, metavar="M",
                   help="Picard: Anderson acceleration with memory M (default: plain Picard)")
    p.add_argument("--max-iters", type=int, default=None, help="SRDS/Picard iteration cap")
    p.add_argument("--pipelined", action=argparse.BooleanOptionalAction, default=None,
                   help="SRDS schedule: pipelined (the default) or synchronous (--no-pipelined)")
    p.add_argument("--backend", choices=("batched", "threads", "cuda-streams", "mpi"),
                   default=None,
                   help="SRDS: where the blocks' fine steps run (default batched: one batched "
                        "model call per step); mpi spreads them over the ranks of an mpiexec "
                        "job (only the root rank prints and writes the image)")
    p.add_argument("--n", type=int, default=16,
                   help=f"number of samples (default 16, at most {MAX_SAMPLES})")
    p.add_argument("--max-batch", type=int, default=None, metavar="M",
                   help="sample the n samples in chunks of at most M, one after another, to "
                        "bound memory (default: automatic, from a memory budget; "
                        "see docs/diffusion.md)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the initial noise, 0 .. 2**64 - 1 (default 0)")
    p.add_argument("--eta", type=float, default=0.0,
                   help="DDIM eta in [0, 1] (0: deterministic, the default; 1: DDPM)")
    p.add_argument("--out", default="samples.png",
                   help="image grid to write; the extension picks the format: .png, .jpg, "
                        ".jpeg, .bmp, .gif, .tif, .tiff, .webp (default samples.png)")
    p.add_argument("--compare-serial", action="store_true",
                   help="also sample serially and report the difference")
    p.add_argument("--weights", default=None,
                   help="model weights file (default: the bundled model; for --scheduler flow "
                        "the bundled flow-matching model)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: when stderr is a terminal)")
    p.set_defaults(handler=run_sample)


#: Counts that must be >= 1 when given: option -> the flag named in errors.
_COUNTS = {"blocks": "--blocks", "window": "--window", "anderson": "--anderson",
           "max_iters": "--max-iters", "max_batch": "--max-batch"}
#: The method-specific options of ``sample()`` -> their flags (when true, when false).
METHOD_FLAGS: dict[str, tuple[str, str]] = {
    "blocks": ("--blocks", "--blocks"), "window": ("--window", "--window"),
    "tol": ("--tol", "--tol"), "tol_mode": ("--tol-mode", "--tol-mode"),
    "max_iters": ("--max-iters", "--max-iters"), "anderson": ("--anderson", "--anderson"),
    "pipelined": ("--pipelined", "--no-pipelined"), "exact": ("--exact", "--no-exact"),
}
#: The largest ``--mu``: diffusers' flow scheduler takes ``exp(mu)`` (a float up to 1.8e308).
MAX_MU = 709.0


def _check_numbers(args: argparse.Namespace) -> None:
    """The numeric options that need neither torch nor the model: counts, ranges, finiteness.

    Raises
    ------
    ValueError
        Naming the flag and what it takes.
    """
    if not 1 <= args.n <= MAX_SAMPLES:
        raise ValueError(f"--n must be in [1, {MAX_SAMPLES}], got {args.n}")
    if args.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")
    for name, flag in _COUNTS.items():
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be >= 1, got {value}")
    if args.blocks is not None and args.blocks > args.steps:
        raise ValueError(f"--blocks must be <= --steps = {args.steps}, got {args.blocks}")
    if args.tol is not None and not (math.isfinite(args.tol) and args.tol >= 0):
        raise ValueError(f"--tol must be a finite number >= 0, got {args.tol}")
    if not (math.isfinite(args.eta) and 0 <= args.eta <= 1):
        raise ValueError(f"--eta must be in [0, 1] (0: deterministic DDIM, 1: DDPM), got "
                         f"{args.eta}")
    if not 0 <= args.seed < 2**64:
        raise ValueError(f"--seed must be in [0, 2**64 - 1] = [0, {2**64 - 1}] (the seeds a "
                         f"torch.Generator holds), got {args.seed}")


def _check_scheduler(args: argparse.Namespace) -> None:
    """The options that depend on ``--scheduler`` (neither torch nor the model needed).

    Raises
    ------
    ValueError
        Naming the flags.
    """
    if args.karras and args.scheduler == "ddim":
        raise ValueError("--karras applies to --scheduler euler or heun (or flow), not ddim")
    for flag, value in (("--shift", args.shift), ("--mu", args.mu)):
        if value is not None and args.scheduler != "flow":
            raise ValueError(f"{flag} applies to --scheduler flow, not {args.scheduler}")
    if args.shift is not None and not (math.isfinite(args.shift) and args.shift > 0):
        raise ValueError(f"--shift must be a finite number > 0, got {args.shift}")
    if args.mu is not None and not (math.isfinite(args.mu) and args.mu <= MAX_MU):
        raise ValueError(f"--mu must be a finite number <= {MAX_MU:g} (the scheduler takes "
                         f"its exponential), got {args.mu}")
    if args.scheduler != "ddim" and args.eta > 0:
        raise ValueError(f"--eta applies to --scheduler ddim only: the {args.scheduler} sampler "
                         "integrates a deterministic ODE (--eta must be 0)")
    if args.scheduler == "heun" and args.method in ("picard", "picard-exact"):
        # a Picard window evaluates each step with one batched model call; a Heun step is two
        raise ValueError(f"--method {args.method} needs one model call per step, and a "
                         "--scheduler heun step takes two: use --scheduler euler, flow or ddim, "
                         "or --method serial, srds or auto")


def _check_method_flags(method: str, options: dict[str, Any],
                        applies: Mapping[str, tuple[str, ...]]) -> None:
    """Refuse the flags that do not apply to ``--method`` (``applies``: the adapter's
    ``METHOD_OPTIONS``, the methods each option of ``sample()`` applies to).

    Raises
    ------
    ValueError
        Naming the first such flag and the methods it applies to.
    """
    for name, value in options.items():
        if value is None or method in applies[name]:
            continue
        flag = METHOD_FLAGS[name][0 if value is not False else 1]
        methods = list(applies[name])
        where = methods[0] if len(methods) == 1 else (
            ", ".join(methods[:-1]) + " or " + methods[-1])
        raise ValueError(f"{flag} applies to --method {where}, not {method}")


def _check_steps(steps: int, scheduler: Any) -> None:
    """``--steps`` against the model's training steps (read from its config, not its weights)."""
    train = int(scheduler.config.num_train_timesteps)
    if steps > train:
        raise ValueError(f"--steps must be <= {train} (the model's training steps), got {steps}")


def run_sample(args: argparse.Namespace) -> int:
    """Handler of ``parareal sample``: every argument is checked before the model is loaded.

    The initial noise is ``torch.randn((n, 1, 8, 8))`` from a generator seeded with ``--seed``;
    with ``--eta > 0`` the step noise comes from a second generator seeded with ``--seed +``
    :data:`NOISE_SEED_OFFSET` (modulo ``2**64``), the same for the method and its serial
    comparison. ``--out`` picks the image format by its extension (``.png``, ``.jpg``/``.jpeg``
    at quality 95, ``.bmp``, ``.gif``, ``.tif``/``.tiff``, lossless ``.webp``) and is written
    atomically. ``--scheduler euler|heun`` builds diffusers' scheduler from the bundled
    ``DDIMScheduler``'s config; ``--scheduler flow`` loads the bundled flow-matching model
    (``--weights`` then names flow weights). Under ``--backend mpi`` every rank runs the
    command and only the root prints and writes the image.

    The summary gives the method that ran (with ``--method auto``, first why), the status,
    iterations, sequential model calls against serial's, model evaluations per sample, the
    wall time, and with ``--compare-serial`` the max-abs difference to the serial sample and
    the fraction of identical 8-bit pixels. ``--json`` prints one object instead, with the
    keys ``method`` (the method that ran), ``requested_method``, ``reason``, ``predicted_s``
    (with ``auto``), ``scheduler``, ``karras``, ``shift``, ``mu``, ``steps``, ``n``,
    ``status`` (``converged``, ``max_iters`` or ``diverged``), ``iterations``, ``converged``,
    ``sequential_evals``, ``total_evals``, ``wall_time_s`` (``auto``'s choosing included),
    ``choice_s``, ``image`` (its absolute path; ``null`` when the run diverged), ``seed``,
    ``eta``, ``max_batch``, ``chunks``; ``pipelined`` and ``blocks`` for SRDS; and with
    ``--compare-serial`` ``max_abs_diff_vs_serial`` (data units), ``uint8_identical_fraction``,
    ``serial_wall_time_s`` (never including a choice: when ``auto`` ran serial itself, that
    run's ``wall_time_s - choice_s``) and ``serial_sequential_evals``.

    Returns
    -------
    int
        The exit status: 0, or 1 when the run diverged (no image is written). Bad input raises
        (``ValueError``, ``TypeError``...), which the command line reports in one line with
        exit status 2.
    """
    _check_numbers(args)
    _check_scheduler(args)
    # the adapter's ImportError names the extra to install when torch & co. are missing;
    # diffusers (seconds to import) only after the flags and --out are checked
    from ..adapters.diffusion import METHOD_OPTIONS, sample
    from ..adapters.diffusion.images import image_format

    flow = args.scheduler == "flow"
    options: dict[str, Any] = dict(
        blocks=args.blocks, pipelined=args.pipelined, window=args.window, tol=args.tol,
        tol_mode=args.tol_mode, max_iters=args.max_iters, exact=args.exact,
        anderson=args.anderson,
    )
    _check_method_flags(args.method, options, METHOD_OPTIONS)
    if args.backend is not None and args.method != "srds":
        raise ValueError(f"--backend applies to --method srds, not {args.method}")
    reporter = True  # MPI: only the root writes and prints
    if args.backend is not None:  # passed by name: every run makes it and closes it
        from ..backends import using_backend

        try:
            with using_backend(args.backend) as backend:
                reporter = backend.drives()
        except RuntimeError as exc:  # cuda-streams without CUDA
            raise ValueError(in_flags(str(exc), CUDA_FLAGS)) from exc
        options["backend"] = args.backend
    with named("--out"):
        image_format(args.out)
        check_writable(args.out, "the image")
    from ..adapters.diffusion.digits import (
        load_digits_flow_model,
        load_digits_flow_scheduler,
        load_digits_model,
        load_digits_scheduler,
        save_grid,
        to_uint8,
    )

    _check_steps(args.steps, (load_digits_flow_scheduler if flow
                              else load_digits_scheduler)(args.weights))
    import torch

    if args.threads is not None:  # main() set the environment; torch is loaded only now
        set_threads(args.threads, torch=True)
    unet, scheduler = (load_digits_flow_model if flow else load_digits_model)(args.weights)
    scheduler = _scheduler(args.scheduler, args.karras, scheduler, args.shift, args.mu)
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    x_T = torch.randn((args.n, 1, 8, 8), generator=torch.Generator().manual_seed(args.seed))
    noise_seed = (args.seed + NOISE_SEED_OFFSET) % 2**64

    def run(method: str, **kwargs: Any) -> Any:
        generator = torch.Generator().manual_seed(noise_seed) if args.eta > 0 else None
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        try:
            return sample(unet, scheduler, x_T, num_inference_steps=args.steps, method=method,
                          eta=args.eta, generator=generator, progress=progress,
                          max_batch=args.max_batch, mu=args.mu, **kwargs)
        except TypeError as exc:
            if args.scheduler == "ddim" or "unsupported scheduler" not in str(exc):
                raise
            raise ValueError(f"--scheduler {args.scheduler}: this version of the sampler does "
                             f"not support it ({exc})") from exc

    result = run(args.method, **options)
    diverged = result.status.value == "diverged"  # its sample is no digit: write none
    if not reporter:  # MPI: the root writes and prints, once
        if args.compare_serial and result.method != "serial":
            run("serial")  # every rank runs what the root runs
        return 1 if diverged else 0
    if not diverged:
        with atomic_path(args.out) as tmp:  # no partial file if interrupted
            save_grid(result.sample, tmp)
    summary: dict[str, Any] = {
        "method": result.method,
        "requested_method": args.method,
        "reason": result.reason,
        "predicted_s": result.predicted_s,
        "scheduler": args.scheduler,
        "karras": args.karras,
        "shift": args.shift,
        "mu": args.mu,
        "steps": args.steps,
        "n": args.n,
        "status": result.status.value,
        "iterations": result.iterations,
        "converged": result.converged,
        "sequential_evals": result.sequential_evals,
        "total_evals": result.total_evals,
        "wall_time_s": result.wall_time_s,
        "choice_s": result.choice_s,
        "image": None if diverged else os.path.abspath(args.out),
        "seed": args.seed,
        "eta": args.eta,
        "max_batch": result.max_batch,
        "chunks": max(1, len(result.chunks)),
    }
    if result.method == "srds":
        summary["pipelined"] = True if args.pipelined is None else args.pipelined
        summary["blocks"] = result.blocks
    if args.compare_serial:
        serial = result if result.method == "serial" else run("serial")
        # auto ran serial itself: its run without the choosing is the serial run
        serial_wall = serial.wall_time_s - serial.choice_s
        diff = float((result.sample - serial.sample).abs().max())
        comparable = bool(torch.isfinite(result.sample).all() & torch.isfinite(serial.sample).all())
        same = to_uint8(result.sample) == to_uint8(serial.sample) if comparable else None
        summary.update(
            max_abs_diff_vs_serial=diff if comparable else None,
            uint8_identical_fraction=float(same.mean()) if same is not None else None,
            serial_wall_time_s=serial_wall,
            serial_sequential_evals=serial.sequential_evals,
        )
    if args.json:
        print(json.dumps(summary, allow_nan=False))
    else:
        _print_summary(summary)
    return 1 if diverged else 0


def _scheduler(name: str, karras: bool, bundled: Any, shift: float | None = None,
               mu: float | None = None) -> Any:
    """The bundled DDIMScheduler, or the diffusers scheduler ``name`` made from its config;
    for ``flow`` the flow model's scheduler with ``karras``, ``shift`` and (dynamic) ``mu``."""
    if name == "flow":
        extra = {} if shift is None else {"shift": shift}
        return type(bundled).from_config(bundled.config, use_karras_sigmas=karras,
                                         use_dynamic_shifting=mu is not None, **extra)
    if name == "ddim":
        return bundled
    ddim = bundled
    import diffusers
    from diffusers.utils import logging as diffusers_logging

    cls = getattr(diffusers, _SCHEDULER_CLASSES[name])
    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # DDIM-only config keys are ignored, not errors
    try:
        return cls.from_config(ddim.config, use_karras_sigmas=karras)
    finally:
        diffusers_logging.set_verbosity(level)


def _print_summary(s: dict[str, Any]) -> None:
    if s["requested_method"] == "auto":
        print(f"auto ran {s['method']}: {s['reason']}")
    chunks = ""
    if s["chunks"] > 1:
        chunks = f" in {s['chunks']} chunks of at most {s['max_batch']}"
    per_chunk = " per chunk" if s["chunks"] > 1 else ""
    steps_name = {"ddim": "DDIM", "euler": "Euler", "heun": "Heun",
                  "flow": "flow-matching Euler"}[s["scheduler"]]
    # a Heun step calls the model twice, except the last one (an Euler step to sigma = 0)
    serial_calls = 2 * s["steps"] - 1 if s["scheduler"] == "heun" else s["steps"]
    print(
        f"{s['method']}: {s['n']} samples{chunks}, {s['steps']} {steps_name} steps, "
        f"{s['iterations']} iteration(s), status {s['status']}; {s['sequential_evals']} "
        f"sequential model calls "
        f"(serial: {serial_calls}{per_chunk}), {s['total_evals']} model evaluations per sample; "
        f"{s['wall_time_s']:.2f} s"
        + (f" ({s['choice_s']:.2f} s of it choosing the method)"
           if s["requested_method"] == "auto" else "")
    )
    if s.get("max_abs_diff_vs_serial") is not None:
        print(
            f"vs serial: max |diff| {s['max_abs_diff_vs_serial']:.2e} (data units), "
            f"{100 * s['uint8_identical_fraction']:.2f}% of 8-bit pixels identical; "
            f"serial took {s['serial_wall_time_s']:.2f} s"
        )
    if s["image"] is None:
        print("no image written: the run diverged (non-finite values)")
    else:
        print(f"wrote {s['image']}")
