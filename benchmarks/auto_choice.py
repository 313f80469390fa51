"""How long ``method="auto"`` takes to choose: cold cache, second call, warm cache (issue 20).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/auto_choice.py --cases 100x16,1000x1,100x1 --repeats 3 \
        [--json benchmarks/results/auto-choice-2cpu.json]

For each case ``N x n`` (DDIM steps, samples of the bundled digits model) and each repeat, with
a fresh, empty cache folder (``XDG_CACHE_HOME`` pointed at a temporary directory, never the
user's):

``cold``
    ``result.choice_s`` of the first ``sample(..., method="auto")`` of a new process with an
    empty cache: stub runs counted, the model timed. Goal: at most 10 % of the predicted serial
    seconds (``result.predicted_s["serial"]``).
``second``
    ``choice_s`` of the next call in that process (memory cache). Goal: at most 0.05 s.
``warm``
    ``choice_s`` of the first call of another new process with the cache the first one left.
    Goal: at most 0.25 s.
``full``
    The choice when every batch size is timed (``auto_timing.TIME_EVERY_ANCHOR``, disk cache
    off), in a third process: whether stopping early chose the same method.

Each measurement runs in its own process with torch on one thread: forked from this one where
the OS can fork (after this process imported torch, diffusers and the adapter, which sampled
nothing, so every cache starts empty as in a new process), else a new ``python``. The table
shows the median over the repeats (and the worst).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from typing import Any

GOALS = {"cold_fraction": 0.10, "second_s": 0.05, "warm_s": 0.25}


def child(steps: int, n: int, calls: int, full: bool) -> dict[str, Any]:
    """Run in a fresh process: ``calls`` auto runs; their choice seconds and predictions."""
    import torch

    torch.set_num_threads(1)
    from parareal.adapters.diffusion import auto_timing, sample
    from parareal.adapters.diffusion.digits import load_digits_model

    if full:
        auto_timing.TIME_EVERY_ANCHOR = True
    unet, scheduler = load_digits_model()
    x_T = torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    out = []
    for _ in range(calls):
        result = sample(unet, scheduler, x_T, num_inference_steps=steps, method="auto")
        out.append({"choice_s": result.choice_s, "method": result.method,
                    "blocks": result.blocks, "predicted_s": result.predicted_s,
                    "run_s": result.wall_time_s - result.choice_s,
                    "extrapolated": "extrapolated" in result.reason})
    return {"calls": out}


def _spawn(cache: str, steps: int, n: int, calls: int, full: bool = False) -> dict[str, Any]:
    env = dict(os.environ, XDG_CACHE_HOME=cache, OMP_NUM_THREADS="1")
    env.pop("PARAREAL_AUTO_CACHE", None)
    if full:
        env["PARAREAL_AUTO_CACHE"] = "off"
    if hasattr(os, "fork"):
        return _forked(env, steps, n, calls, full)
    argv = [sys.executable, __file__, "--child", f"{steps}x{n}", "--calls", str(calls)]
    proc = subprocess.run(argv + (["--full"] if full else []), env=env, capture_output=True,
                          text=True, check=False, timeout=1800)
    if proc.returncode:
        raise RuntimeError(f"child {argv} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _preload() -> None:
    """Import what every child imports (torch, diffusers, the adapter: seconds), once, in
    this process, before any child is forked; nothing is run or cached by it."""
    import diffusers  # noqa: F401
    import torch

    torch.set_num_threads(1)
    import parareal.adapters.diffusion.digits  # noqa: F401


def _forked(env: dict[str, str], steps: int, n: int, calls: int, full: bool) -> dict[str, Any]:
    """:func:`child` in a forked copy of this process with ``env``: its caches (memory and
    disk) are as empty as a new process's, since this process never samples."""
    _preload()
    read, write = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        status = 1
        try:
            os.close(read)
            os.environ.clear()
            os.environ.update(env)
            data = json.dumps(child(steps, n, calls, full)).encode()
            with os.fdopen(write, "wb") as fh:
                fh.write(data)
            status = 0
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(status)
    os.close(write)
    with os.fdopen(read, "rb") as fh:
        data = fh.read()
    _, wait = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(wait) != 0:
        raise RuntimeError(f"the forked child for {steps}x{n} failed (its traceback is above)")
    return json.loads(data)


def measure(steps: int, n: int) -> dict[str, Any]:
    """One repeat of a case: cold + second call, warm, full (each a new process)."""
    with tempfile.TemporaryDirectory(prefix="parareal-auto-choice-") as cache:
        first, second = _spawn(cache, steps, n, 2)["calls"]
        warm = _spawn(cache, steps, n, 1)["calls"][0]
        full = _spawn(cache, steps, n, 1, full=True)["calls"][0]
    serial = first["predicted_s"]["serial"]
    return {
        "steps": steps, "n": n, "predicted_serial_s": serial,
        "cold_s": first["choice_s"], "cold_fraction": first["choice_s"] / serial,
        "second_s": second["choice_s"], "warm_s": warm["choice_s"],
        "full_s": full["choice_s"], "method": f"{first['method']}{first['blocks'] or ''}",
        "full_method": f"{full['method']}{full['blocks'] or ''}",
        "extrapolated": first["extrapolated"],
    }


COLUMNS = [("steps", "N", "d"), ("n", "n", "d"),
           ("predicted_serial_s", "serial predicted s", ".2f"),
           ("cold_s", "cold s", ".3f"), ("cold_fraction", "cold / serial", ".1%"),
           ("second_s", "2nd call s", ".4f"), ("warm_s", "warm cache s", ".3f"),
           ("full_s", "time all sizes s", ".3f"), ("method", "chose", "s"),
           ("full_method", "with all sizes", "s")]


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median over repeats; the worst of the goal figures; every method chosen."""
    row: dict[str, Any] = {k: runs[0][k] for k in ("steps", "n")}
    for key in ("predicted_serial_s", "cold_s", "cold_fraction", "second_s", "warm_s", "full_s"):
        row[key] = statistics.median(r[key] for r in runs)
        row[key + "_max"] = max(r[key] for r in runs)
    for key in ("method", "full_method"):
        row[key] = "/".join(sorted({r[key] for r in runs}))
    return row


def table(rows: list[dict[str, Any]]) -> str:
    head = "| " + " | ".join(title for _, title, _ in COLUMNS) + " |"
    rule = "|" + "|".join("---:" if fmt != "s" else "---" for _, _, fmt in COLUMNS) + "|"
    lines = [head, rule]
    for row in rows:
        cells = []
        for key, _, fmt in COLUMNS:
            cell = format(row[key], fmt)
            if key + "_max" in row and key != "predicted_serial_s":
                cell += f" ({format(row[key + '_max'], fmt)})"
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _case(text: str) -> tuple[int, int]:
    steps, n = text.lower().split("x")
    return int(steps), int(n)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default="100x16,1000x1,100x1",
                        help="comma-separated N x n (default 100x16,1000x1,100x1)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", metavar="PATH", help="also write every run as JSON")
    parser.add_argument("--child", metavar="NxN", help=argparse.SUPPRESS)
    parser.add_argument("--calls", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--full", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(*_case(args.child), args.calls, args.full)))
        return 0
    begin = time.perf_counter()
    runs = {c: [measure(*_case(c)) for _ in range(args.repeats)] for c in args.cases.split(",")}
    rows = [summarise(r) for r in runs.values()]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# auto's choosing time, digits model, torch 1 thread, {os.cpu_count()} CPUs, "
          f"load average {load:.1f}; median (worst) of {args.repeats}; "
          f"{time.perf_counter() - begin:.0f} s\n")
    print(table(rows))
    # the cold goal on the median (the machine's load varies), the others on the worst run
    field = {"cold_fraction": "cold_fraction", "second_s": "second_s_max", "warm_s": "warm_s_max"}
    failed = [f"{r['steps']}x{r['n']}: {field[goal]} {r[field[goal]]:.3g}"
              for r in rows for goal, limit in GOALS.items() if r[field[goal]] > limit]
    print("\ngoals (cold <= 10 % of serial, median; 2nd <= 0.05 s, warm <= 0.25 s, worst): "
          + ("all met" if not failed else "missed: " + "; ".join(failed)))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"runs": runs, "rows": rows, "load_average": load}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
