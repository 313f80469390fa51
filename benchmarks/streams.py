"""CUDA streams benchmark: adaptive torchdiffeq fine solves on 1 and 4 streams of one GPU.

Usage (on a machine with CUDA; no network needed)::

    python benchmarks/streams.py                     # about a minute on a recent GPU
    python benchmarks/streams.py --quick --json out.json

Problem: ``B`` independent Van der Pol oscillators (``mu`` spread over [0.5, 3]) as one state of
shape ``(B, 2)`` in float64 on the GPU, ``t`` in ``[0, 8]``, 32 slices; fine
``TorchDiffEq("dopri5", rtol=1e-8, atol=1e-10)`` (adaptive: a sequence of small kernels, the
case where one stream leaves the GPU idle between launches), coarse ``RK4(2)`` in the caller.
Variants, interleaved each repeat: the serial fine solve, Parareal on the serial backend, and
Parareal on ``CudaStreams(streams_per_device=S)`` for S = 1 and 4. Reported: median wall
time, ratio to the serial backend, iterations, and whether ``y`` equals the serial backend's
bit for bit. Without CUDA the script says so and exits with status 0 (nothing to measure).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from typing import Any


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller problem, 1 repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=None, help="oscillators (default 4096)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    args = parser.parse_args(argv)

    import torch

    import parareal
    from parareal.backends import CudaStreams

    torch.set_num_threads(args.threads)
    if not torch.cuda.is_available():
        print("streams benchmark: no CUDA device here; nothing to measure")
        return 0
    batch = args.batch or (512 if args.quick else 4096)
    repeats = 1 if args.quick else args.repeats
    device = torch.device("cuda")
    mu = torch.linspace(0.5, 3.0, batch, dtype=torch.float64, device=device)

    def f(t: Any, y: Any) -> Any:
        x, v = y[..., 0], y[..., 1]
        return torch.stack([v, mu * (1 - x * x) * v - x], dim=-1)

    y0 = torch.stack([torch.full_like(mu, 2.0), torch.zeros_like(mu)], dim=-1)
    span, slices = (0.0, 8.0), 32
    fine = parareal.TorchDiffEq("dopri5", rtol=1e-8, atol=1e-10)
    kw = dict(coarse=parareal.RK4(2), fine=fine, slices=slices, tol=1e-8)
    variants = {
        "serial fine solve": lambda: parareal.solve_serial(f, y0, span, propagator=fine,
                                                           slices=slices),
        "parareal serial backend": lambda: parareal.solve(f, y0, span, **kw),
    }
    for streams in (1, 4):
        backend = CudaStreams(streams_per_device=streams)
        variants[f"parareal cuda-streams x{streams}"] = (
            lambda backend=backend: parareal.solve(f, y0, span, backend=backend, **kw)
        )
    times: dict[str, list[float]] = {name: [] for name in variants}
    outputs: dict[str, Any] = {}
    for _ in range(repeats):
        for name, run in variants.items():
            torch.cuda.synchronize()
            start = time.perf_counter()
            outputs[name] = run()
            torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    ref = outputs["parareal serial backend"]
    base = statistics.median(times["parareal serial backend"])
    rows = []
    for name, values in times.items():
        out = outputs[name]
        median = statistics.median(values)
        sol = out if isinstance(out, parareal.Solution) else None
        rows.append({
            "variant": name,
            "median_s": median,
            "vs_serial_backend": base / median,
            "iterations": sol.iterations if sol else None,
            "bitwise_equal": bool(torch.equal(sol.y, ref.y)) if sol else None,
        })
    info = {
        "device": torch.cuda.get_device_name(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "batch": batch,
        "slices": slices,
        "repeats": repeats,
        "threads": args.threads,
        "command": "python benchmarks/streams.py " + " ".join(argv or sys.argv[1:]),
    }
    print(f"CUDA streams: {info['device']}, torch {info['torch']}, {batch} Van der Pol "
          f"oscillators, {slices} slices, dopri5 fine, medians of {repeats}")
    print(f"{'variant':<30} {'median s':>9} {'speed-up':>9} {'iters':>6} {'bitwise':>8}")
    for row in rows:
        print(f"{row['variant']:<30} {row['median_s']:>9.3f} {row['vs_serial_backend']:>8.2f}x "
              f"{row['iterations'] if row['iterations'] is not None else '-':>6} "
              f"{row['bitwise_equal'] if row['bitwise_equal'] is not None else '-':>8}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"info": info, "rows": rows}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
