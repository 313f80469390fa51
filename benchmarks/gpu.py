"""GPU benchmark of SRDS: the bundled digits model measured, a Stable-Diffusion-v2-sized UNet
timed and predicted. One command on a CUDA machine, no network needed::

    python benchmarks/gpu.py --json gpu.json          # the full run (a few minutes)
    python benchmarks/gpu.py --device cpu --quick     # a smoke test on a CPU, about 10 s

(a) **Bundled digits model** (``load_digits_model()``, a diffusers ``UNet2DModel`` and its
    ``DDIMScheduler``), serial / SRDS / Picard (ParaDiGMS' default rule) / "picard exact"
    (``tol=1e-4`` in data units, the whole grid as the window, ``anderson=3``: as exact as
    SRDS, :func:`method_options`) through ``sample(..., method=...)`` at
    ``--steps`` (default N = 25, 100, 1000), every seed of ``--seeds``, methods interleaved in
    an order that rotates from seed to seed: wall-clock (``torch.cuda.synchronize`` before and
    after), sequential model calls (``result.sequential_evals``), total evaluations per sample,
    and the 8-bit identity against the serial sample of the same seed. Every model call's
    batch (rows) is recorded by a counting wrapper: the *call pattern* of each method.
(b) **A Stable-Diffusion-v2-sized UNet**: ``UNet2DConditionModel`` built from the published
    configuration of SD 2 (768-v: ``sample_size`` 96, v-prediction) with random weights (no
    download), in ``--dtype`` (default float16 on CUDA), latents 4x96x96, text embeddings
    (1, 77, 1024), classifier-free guidance 7.5 (each call runs the unconditional and the
    conditional half in one batch: a call of ``r`` latent rows is a UNet batch of ``2 r``).
    Measured: the cost of one call against its rows (``--batch-sizes``, until the memory runs
    out). Predicted: each method's wall-clock at every N, the sum of the interpolated cost of
    every call of the pattern measured on the *trained* digits model (one pattern per seed).
    A random network does not converge like a trained one, so its own SRDS iterations say
    nothing about SD; the prediction borrows the trained model's. Checked: one measured SRDS
    run on the big UNet at the first N (its iterations fixed to the digits model's median with
    ``tol=0, max_iters=K``) and a measured serial run, against their predictions.

The target from the SRDS paper (Selvam et al., 2024): 1.7x wall-clock at 25 steps and 2.3x at
100 steps on Stable Diffusion v2 (guidance 7.5; 4 A100). Without CUDA (and ``--device cuda``,
the default) the script says so and exits with status 0, having measured nothing.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from parareal.adapters.diffusion import sample
from parareal.adapters.diffusion.auto import interpolate_cost
from parareal.adapters.diffusion.digits import load_digits_model, to_uint8
from parareal.adapters.diffusion.models import ModelFn, wrap_model

METHODS = ("serial", "srds", "picard", "picard exact")


def method_options(method: str, steps: int) -> dict[str, Any]:
    """``sample``'s arguments for a method of the table: ``picard`` is ParaDiGMS' default
    rule; ``picard exact`` reproduces the serial sample as SRDS does (data-unit ``tol=1e-4`` on
    the whole grid as the window, Anderson acceleration; ``benchmarks/srds.py --study picard``).
    """
    if method == "picard exact":
        return dict(method="picard", tol=1e-4, tol_mode="data", window=steps, anderson=3)
    return dict(method=method)
GUIDANCE = 7.5
#: Network evaluations per state with classifier-free guidance.
GUIDANCE_EVALS = 2
#: The SRDS paper's wall-clock speedups on Stable Diffusion v2, by N (the figure to beat).
PAPER_TARGET = {25: 1.7, 100: 2.3}
#: Stable Diffusion 2 (768-v) UNet, from its published ``unet/config.json``.
SD2_UNET = dict(
    sample_size=96, in_channels=4, out_channels=4, layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                      "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
                    "CrossAttnUpBlock2D"),
    cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20), use_linear_projection=True,
    upcast_attention=True, norm_num_groups=32, act_fn="silu", flip_sin_to_cos=True, freq_shift=0,
)
#: ``--quick`` on a CPU: the same block structure, tiny widths (seconds, not minutes).
TINY_UNET = dict(
    SD2_UNET, sample_size=8, layers_per_block=1, block_out_channels=(32, 64),
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
    attention_head_dim=(2, 4), norm_num_groups=8,
)
#: Stable Diffusion 2's scheduler (768-v), as a DDIMScheduler.
SD2_SCHEDULER = dict(
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
    prediction_type="v_prediction", clip_sample=False, set_alpha_to_one=False, steps_offset=1,
    timestep_spacing="leading",
)
PROMPT_TOKENS = 77


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected integers >= 1, got {text!r}")
    return values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cuda", help="torch device (default cuda)")
    p.add_argument("--quick", action="store_true",
                   help="smoke settings: N = 16, seed 0, batch sizes 1,2,4, 1 repeat; on a CPU "
                        "a tiny UNet of the SD 2 block structure instead of the full size")
    p.add_argument("--steps", type=_ints, default=None, help="N values (default 25,100,1000)")
    p.add_argument("--batch-sizes", type=_ints, default=None,
                   help="latent rows per call to time (default 1,2,4,8,16,32)")
    p.add_argument("--seeds", type=_ints, default=None, help="seeds of x_T (default 0..9)")
    p.add_argument("--dtype", choices=("float16", "bfloat16", "float32"), default=None,
                   help="the big UNet's dtype (default float16 on CUDA, float32 on a CPU)")
    p.add_argument("--repeats", type=int, default=None, help="timed calls per batch size (5)")
    p.add_argument("--json", metavar="PATH", help="write every raw number to this file")
    args = p.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        p.error("--repeats must be >= 1")
    quick = args.quick
    args.steps = args.steps or ([16] if quick else [25, 100, 1000])
    args.seeds = args.seeds or ([0] if quick else list(range(10)))
    args.batch_sizes = sorted(set(args.batch_sizes or ([1, 2, 4] if quick
                                                       else [1, 2, 4, 8, 16, 32])))
    args.repeats = args.repeats or (1 if quick else 5)
    return args


class Counting(ModelFn):
    """A model that records the rows of every call (the call pattern) and passes it on."""

    def __init__(self, inner: ModelFn, log: list[int]) -> None:
        self.inner, self.log = inner, log
        self.evals_per_state = inner.evals_per_state

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.log.append(int(x.shape[0]))
        return self.inner(x, t)

    def check_sample(self, x_T: torch.Tensor) -> None:
        self.inner.check_sample(x_T)

    def rows(self, start: int, stop: int) -> Counting:
        return Counting(self.inner.rows(start, stop), self.log)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_sample(fn: ModelFn, scheduler: Any, x_T: torch.Tensor, steps: int, method: str,
                 **kwargs: Any) -> tuple[Any, float, list[int]]:
    """``sample`` with a counting model: the result, synchronized seconds and the pattern."""
    log: list[int] = []
    _sync(x_T.device)
    begin = time.perf_counter()
    options = method_options(method, steps)
    options.update(kwargs)
    result = sample(Counting(fn, log), scheduler, x_T, num_inference_steps=steps, **options)
    _sync(x_T.device)
    return result, time.perf_counter() - begin, log


# ---------------------------------------------------------------------------------------------
# (a) the bundled digits model


def digits_part(args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    """Every method at every N and seed on the trained digits model: figures and patterns."""
    unet, scheduler = load_digits_model()
    fn = wrap_model(unet.to(device).eval())
    shape = (1, unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)
    x = torch.zeros(shape, device=device)
    timed_sample(fn, scheduler, x, 4, "serial")  # warm-up: kernels, allocator, lazy imports
    runs = []
    for steps in args.steps:
        for r, seed in enumerate(args.seeds):
            x_T = torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(device)
            order = METHODS[r % len(METHODS):] + METHODS[: r % len(METHODS)]
            out = {m: timed_sample(fn, scheduler, x_T, steps, m) for m in order}
            ref = to_uint8(out["serial"][0].sample).astype(int)
            for m in METHODS:
                res, wall, pattern = out[m]
                levels = np.abs(to_uint8(res.sample).astype(int) - ref)
                runs.append(dict(
                    steps=steps, seed=seed, method=m, iterations=res.iterations,
                    status=res.status.name.lower(), sequential_evals=res.sequential_evals,
                    total_evals=res.total_evals, wall_s=wall, pattern=pattern,
                    uint8_identical=float((levels == 0).mean()), max_levels=int(levels.max())))
    return runs


def digits_rows(runs: list[dict[str, Any]], steps_list: list[int]) -> list[dict[str, Any]]:
    rows = []
    for steps in steps_list:
        here = [r for r in runs if r["steps"] == steps]
        serial_wall = statistics.median(r["wall_s"] for r in here if r["method"] == "serial")
        for m in METHODS:
            rs = [r for r in here if r["method"] == m]
            wall = statistics.median(r["wall_s"] for r in rs)
            seq = [r["sequential_evals"] for r in rs]
            rows.append(dict(
                model="digits (trained)", steps=steps, method=m, kind="measured",
                iterations=statistics.median(r["iterations"] for r in rs),
                sequential=_spread(seq), total_evals=statistics.median(r["total_evals"]
                                                                       for r in rs),
                max_rows=max(max(r["pattern"]) for r in rs), wall_s=wall,
                vs_serial=serial_wall / wall,
                identical=min(r["uint8_identical"] for r in rs),
                max_levels=max(r["max_levels"] for r in rs),
                note="all converged" if all(r["status"] == "converged" for r in rs)
                else "NOT all converged: " + ", ".join(sorted({r["status"] for r in rs}))))
    return rows


def _spread(values: list[float]) -> str:
    lo, mid, hi = min(values), statistics.median(values), max(values)
    return f"{mid:g}" if lo == hi else f"{mid:g} ({lo:g}-{hi:g})"


# ---------------------------------------------------------------------------------------------
# (b) the Stable-Diffusion-v2-sized UNet


def build_big_unet(config: dict[str, Any], device: torch.device, dtype: torch.dtype) -> Any:
    from diffusers import UNet2DConditionModel
    from diffusers.utils import logging

    torch.manual_seed(0)
    with torch.device(device):  # initialise in place: no 3.5 GB float32 copy on the host
        unet = UNet2DConditionModel(**config)
    level = logging.get_verbosity()
    logging.set_verbosity_error()  # the cast's advice concerns from_pretrained, not this model
    try:
        return unet.to(dtype).eval()
    finally:
        logging.set_verbosity(level)


def big_model(config: dict[str, Any], device: torch.device, dtype: torch.dtype
              ) -> tuple[Any, ModelFn, Any, tuple[int, ...]]:
    """The random UNet, its guided model function, SD 2's DDIM scheduler and the latent shape."""
    from diffusers import DDIMScheduler

    unet = build_big_unet(config, device, dtype)
    gen = torch.Generator().manual_seed(1)
    dim = config["cross_attention_dim"]
    prompt = torch.randn(1, PROMPT_TOKENS, dim, generator=gen).to(device)
    negative = torch.randn(1, PROMPT_TOKENS, dim, generator=gen).to(device)
    fn = wrap_model(unet, guidance_scale=GUIDANCE, prompt_embeds=prompt,
                    negative_prompt_embeds=negative)
    size = config["sample_size"]
    return unet, fn, DDIMScheduler(**SD2_SCHEDULER), (config["in_channels"], size, size)


def _is_oom(error: BaseException) -> bool:
    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error)


def call_costs(fn: ModelFn, shape: tuple[int, ...], sizes: list[int], repeats: int,
               device: torch.device) -> list[dict[str, Any]]:
    """Median seconds of one guided call of ``r`` latent rows, until the memory runs out."""
    rows = []
    t_value = 500
    with torch.no_grad():
        for r in sizes:
            x = torch.randn((r, *shape), generator=torch.Generator().manual_seed(r)).to(device)
            t = torch.full((r,), t_value, dtype=torch.long, device=device)
            try:
                fn(x, t)  # warm-up
                _sync(device)
                times = []
                for _ in range(repeats):
                    begin = time.perf_counter()
                    fn(x, t)
                    _sync(device)
                    times.append(time.perf_counter() - begin)
            except (RuntimeError, MemoryError) as error:
                if not _is_oom(error):
                    raise
                del x, t
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                rows.append(dict(rows=r, unet_batch=r * fn.evals_per_state, seconds=None,
                                 note="out of memory: larger sizes not timed"))
                break
            rows.append(dict(rows=r, unet_batch=r * fn.evals_per_state,
                             seconds=statistics.median(times), note=""))
    timed = [row for row in rows if row["seconds"] is not None]
    if not timed:
        raise SystemExit("the big UNet does not fit even one latent row per call")
    for row in timed:
        row["per_image_s"] = row["seconds"] / row["rows"]
        row["vs_one_row"] = row["seconds"] / timed[0]["seconds"]
    return rows


def predicted_rows(runs: list[dict[str, Any]], costs: dict[int, float], steps_list: list[int]
                   ) -> tuple[list[dict[str, Any]], dict[int, dict[str, float]]]:
    """Each method's wall-clock on the big UNet from the digits patterns (median over seeds)."""
    biggest = max(costs)
    rows, medians = [], {}
    for steps in steps_list:
        here = [r for r in runs if r["steps"] == steps]
        pred = {m: [sum(interpolate_cost(costs, k) for k in r["pattern"])
                    for r in here if r["method"] == m] for m in METHODS}
        medians[steps] = {m: statistics.median(v) for m, v in pred.items()}
        for m in METHODS:
            rs = [r for r in here if r["method"] == m]
            widest = max(max(r["pattern"]) for r in rs)
            note = "pattern of the trained digits model"
            if widest > biggest:
                note += f"; calls of {widest} rows extrapolated beyond the {biggest} timed"
            if m == "srds" and steps in PAPER_TARGET:
                note += f"; SRDS paper on SD v2: {PAPER_TARGET[steps]}x"
            rows.append(dict(
                model="SD2-size UNet (random)", steps=steps, method=m, kind="predicted",
                iterations=statistics.median(r["iterations"] for r in rs),
                sequential=_spread([r["sequential_evals"] for r in rs]),
                total_evals=statistics.median(r["total_evals"] for r in rs) * GUIDANCE_EVALS,
                max_rows=widest, wall_s=medians[steps][m],
                vs_serial=medians[steps]["serial"] / medians[steps][m], note=note))
    return rows, medians


def check_run(fn: ModelFn, scheduler: Any, shape: tuple[int, ...], steps: int,
              runs: list[dict[str, Any]], costs: dict[int, float], device: torch.device
              ) -> list[dict[str, Any]]:
    """Measured serial and SRDS on the big UNet at ``steps`` against their predictions."""
    here = [r for r in runs if r["steps"] == steps and r["method"] == "srds"]
    k = int(statistics.median_low(r["iterations"] for r in here))
    digits_pattern = next(r["pattern"] for r in here if r["iterations"] == k)
    x_T = torch.randn((1, *shape), generator=torch.Generator().manual_seed(0)).to(device)
    timed_sample(fn, scheduler, x_T, 2, "serial")  # warm-up
    serial, serial_wall, serial_pattern = timed_sample(fn, scheduler, x_T, steps, "serial")
    srds, srds_wall, srds_pattern = timed_sample(fn, scheduler, x_T, steps, "srds", tol=0.0,
                                                 max_iters=k)
    diff = float((srds.sample - serial.sample).abs().max())
    out = []
    for m, res, wall, own, borrowed in (
            ("serial", serial, serial_wall, serial_pattern, serial_pattern),
            ("srds", srds, srds_wall, srds_pattern, digits_pattern)):
        own_s = sum(interpolate_cost(costs, r) for r in own)
        borrowed_s = sum(interpolate_cost(costs, r) for r in borrowed)
        note = (f"predicted {borrowed_s:.3f} s from the digits pattern "
                f"({(borrowed_s - wall) / wall:+.0%}), {own_s:.3f} s from its own calls "
                f"({(own_s - wall) / wall:+.0%})")
        if m == "srds":
            note += (f"; K = {k} iterations forced (tol=0, max_iters={k}); latents max abs "
                     f"diff to serial {diff:.2g} (a random network: not a convergence test)")
            if steps in PAPER_TARGET:
                note += f"; SRDS paper on SD v2: {PAPER_TARGET[steps]}x"
        out.append(dict(
            model="SD2-size UNet (random)", steps=steps, method=m, kind="measured",
            iterations=res.iterations, sequential=f"{res.sequential_evals}",
            total_evals=res.total_evals, max_rows=max(own), wall_s=wall,
            vs_serial=serial_wall / wall, predicted_s=borrowed_s, predicted_own_s=own_s,
            status=res.status.name.lower(), note=note))
    return out


# ---------------------------------------------------------------------------------------------
# output


COLUMNS: list[tuple[str, str, Callable[[Any], str]]] = [
    ("model", "model", str), ("steps", "N", str), ("method", "method", str),
    ("kind", "measured / predicted", str), ("iterations", "iters", lambda v: f"{v:g}"),
    ("sequential", "sequential calls (median, range)", str),
    ("total_evals", "evals per sample", lambda v: f"{v:g}"),
    ("max_rows", "widest call (rows)", str), ("wall_s", "wall s", lambda v: f"{v:.4f}"),
    ("vs_serial", "vs serial", lambda v: f"{v:.2f}x"),
    ("identical", "8-bit identical (min)", lambda v: f"{v:.4f}"),
    ("max_levels", "max 8-bit diff", str), ("note", "note", str),
]


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(title for _, title, _ in COLUMNS) + " |",
             "|" + "|".join("---" for _ in COLUMNS) + "|"]
    for row in rows:
        cells = [fmt(row[key]) if row.get(key) is not None else "-" for key, _, fmt in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cost_rows(costs: list[dict[str, Any]], dtype: torch.dtype) -> list[dict[str, Any]]:
    """The call costs as rows of the one table."""
    out = []
    for row in costs:
        done = row["seconds"] is not None
        out.append(dict(
            model="SD2-size UNet (random)", steps="-", method=f"one call, {row['rows']} rows",
            kind="measured", max_rows=row["rows"], wall_s=row["seconds"],
            note=(f"UNet batch {row['unet_batch']} (guidance doubles it), {dtype}; "
                  + (f"{row['vs_one_row']:.2f}x one row, {row['per_image_s'] * 1e3:.2f} ms "
                     "per row" if done else row["note"]))))
    return out


def machine(device: torch.device) -> dict[str, Any]:
    import diffusers

    info = dict(python=platform.python_version(), torch=torch.__version__,
                diffusers=diffusers.__version__, device=str(device),
                cpu=platform.processor() or platform.machine())
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    cuda=torch.version.cuda)
    return info


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu benchmark: no CUDA device here (torch.cuda.is_available() is False); "
              "nothing measured. On a CPU run `python benchmarks/gpu.py --device cpu --quick` "
              "for a smoke test.")
        return 0
    dtype = getattr(torch, args.dtype or ("float16" if device.type == "cuda" else "float32"))
    config = TINY_UNET if args.quick and device.type == "cpu" else SD2_UNET
    begin = time.perf_counter()
    info = machine(device)
    print("# SRDS GPU benchmark\n")
    print(f"device: {info.get('gpu', info['cpu'])} ({device}); torch {info['torch']}, diffusers "
          f"{info['diffusers']}; N = {args.steps}, seeds {args.seeds}\n")
    if config is TINY_UNET:
        print("**CPU smoke run**: the 'SD2-size' rows use a tiny UNet of the SD 2 block "
              "structure (latents 4x8x8), not the full-size one.\n")
    sys.stdout.flush()

    runs = digits_part(args, device)
    rows = digits_rows(runs, args.steps)
    unet, fn, scheduler, shape = big_model(config, device, dtype)
    params = sum(p.numel() for p in unet.parameters())
    costs = call_costs(fn, shape, args.batch_sizes, args.repeats, device)
    cost_map = {c["rows"]: c["seconds"] for c in costs if c["seconds"] is not None}
    predicted, medians = predicted_rows(runs, cost_map, args.steps)
    check = check_run(fn, scheduler, shape, args.steps[0], runs, cost_map, device)
    rows += cost_rows(costs, dtype) + predicted + check

    print(f"big UNet: UNet2DConditionModel, {params / 1e6:.0f} M parameters, random weights, "
          f"{dtype}, latents {'x'.join(map(str, shape))}, embeddings (1, {PROMPT_TOKENS}, "
          f"{config['cross_attention_dim']}), guidance {GUIDANCE}, SD 2 DDIM scheduler "
          f"(v-prediction)\n")
    print(table(rows))
    print("\n'predicted' rows: the cost of every call of the method's call pattern, measured "
          "on the trained digits model (the rows of each call; one sample), interpolated from "
          "the one-call costs above; median over the seeds; the sampler's own work is not in "
          "the prediction. A random network does not converge like a trained one, so its own "
          "SRDS iterations would say nothing about Stable Diffusion: the measured SRDS row on "
          "the big UNet runs the digits model's median iteration count (tol=0, max_iters=K) to "
          "check the cost model, not convergence. Target (SRDS paper, SD v2, guidance 7.5, 4 "
          "A100): 1.7x at 25 steps, 2.3x at 100.")
    print(f"\ntotal benchmark time {time.perf_counter() - begin:.1f} s")
    if args.json:
        payload = dict(machine=info, args=vars(args), dtype=str(dtype), big_unet_config=config,
                       big_unet_parameters=params, guidance_scale=GUIDANCE,
                       scheduler=SD2_SCHEDULER, paper_target=PAPER_TARGET, digits_runs=runs,
                       call_costs=costs, predicted_s=medians, check=check, table=rows)
        with open(args.json, "w") as fh:
            json.dump(payload, fh, indent=1, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
