"""Golden results of the engine: hashes of the bytes of every solution plus its counts.

Usage::

    python benchmarks/golden_results.py --record benchmarks/results/golden-engine.json
    python benchmarks/golden_results.py --check benchmarks/results/golden-engine.json

Runs a fixed set of solves (both schedules; serial, batched and threads backends; numpy and
torch states, float64 and float32; Brusselator, Lorenz, Dahlquist, van der Pol, a (4, 3)-shaped
linear system; RK4, RK4 3/8, Euler, Heun and Midpoint propagators; several lookahead values;
``tol = 0`` to exactness and loose tolerances; vectorised and not) and records, per solve, the
sha256 of ``sol.y``'s bytes, the iterations, residuals, ``critical_path``,
``critical_path_per_iteration``, ``fine_calls``, ``coarse_calls``, ``f_evals`` and ``f_calls``.
``--check`` compares: everything but ``f_calls`` must be identical (a changed ``f_calls`` is
reported on its own, since a change in how calls are batched may justify it). On the threads
backend in the pipelined schedule ``f_evals`` and ``f_calls`` depend on the timing of the
workers (how waiting tasks merge, how much abandoned work had run when the run stopped), so
they are reported, not compared; everything else must be identical there too. Refactors of the
engine land behind this check (DESIGN.md, "golden results").
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

import parareal
from parareal import problems

STRICT = ("sha256", "iterations", "residuals", "critical_path", "critical_path_per_iteration",
          "fine_calls", "coarse_calls", "f_evals", "status")


def _torch_f(name: str) -> Callable[[Any, Any], Any]:
    import torch

    if name == "lorenz":
        def f(t: Any, y: Any) -> Any:
            x, w, z = y[..., 0], y[..., 1], y[..., 2]
            return torch.stack([10.0 * (w - x), x * (28.0 - z) - w, x * w - (8.0 / 3.0) * z],
                               dim=-1)
        return f
    if name == "brusselator":
        def g(t: Any, y: Any) -> Any:
            x, w = y[..., 0], y[..., 1]
            xxw = x * x * w
            return torch.stack([1.0 + xxw - 4.0 * x, 3.0 * x - xxw], dim=-1)
        return g
    raise ValueError(name)


def _linear(t: Any, y: Any) -> Any:
    """A (4, 3)-shaped linear system with a time-dependent forcing (numpy or torch)."""
    return -0.5 * y + 0.1 * y * y + _forcing(t, y)


def _forcing(t: Any, y: Any) -> Any:
    if isinstance(y, np.ndarray):
        tt = np.asarray(t, dtype=np.float64)
        return (np.cos(tt) if tt.ndim == 0 else np.cos(tt).reshape((-1,) + (1,) * (y.ndim - 1))
                ).astype(y.dtype)
    import torch

    if t.ndim == 0:
        return torch.cos(t).to(y.dtype)
    return torch.cos(t).to(y.dtype).reshape((-1,) + (1,) * (y.ndim - 1))


def cases() -> Iterator[tuple[str, dict[str, Any]]]:
    """``(name, keyword arguments of parareal.solve)`` of every golden solve."""
    from parareal.backends import Threads

    threads = Threads(2)
    bru = problems.get("brusselator", t_end=12.0, slices=32, coarse=parareal.RK4(steps=1),
                       fine=parareal.RK4(steps=20))
    lor = problems.get("lorenz")
    dah = problems.get("dahlquist")
    vdp = problems.get("vanderpol")
    base = {
        "brusselator": dict(f=bru.f, y0=np.array(bru.y0), t_span=bru.t_span, coarse=bru.coarse,
                            fine=bru.fine, slices=bru.slices),
        "lorenz": dict(f=lor.f, y0=np.array(lor.y0), t_span=lor.t_span, coarse=lor.coarse,
                       fine=lor.fine, slices=lor.slices),
        "dahlquist": dict(f=dah.f, y0=np.array(dah.y0), t_span=dah.t_span, coarse=dah.coarse,
                          fine=dah.fine, slices=dah.slices),
        "vanderpol-euler": dict(f=vdp.f, y0=np.array(vdp.y0), t_span=vdp.t_span,
                                coarse=parareal.Euler(steps=7), fine=parareal.Heun(steps=30),
                                slices=vdp.slices),
        "linear43-midpoint": dict(f=_linear, y0=np.arange(12.0).reshape(4, 3) / 7.0,
                                  t_span=(0.0, 2.0), coarse=parareal.Midpoint(steps=3),
                                  fine=parareal.RK4(steps=9, variant="3/8"), slices=12),
    }
    backends: dict[str, Any] = {"serial": "serial", "batched": "batched", "threads": threads}
    for pname, kw in base.items():
        for tol in (0.0, 1e-9):
            for bname, backend in backends.items():
                for schedule, lookaheads in (("synchronous", (2,)),
                                             ("pipelined", (None, 1, 2, 4))):
                    for la in lookaheads:
                        for vec in ((False, True) if bname == "batched" else (True,)):
                            if pname != "brusselator" and la == 4:
                                continue
                            name = f"{pname}/tol={tol:g}/{bname}/{schedule}/la={la}/vec={vec}"
                            yield name, dict(kw, tol=tol, backend=backend, schedule=schedule,
                                             lookahead=la, vectorized=vec)
    # float32 numpy states
    kw = dict(base["brusselator"], y0=np.array(bru.y0, dtype=np.float32))
    for bname in ("serial", "batched"):
        for schedule in ("synchronous", "pipelined"):
            yield (f"brusselator-f32/{bname}/{schedule}",
                   dict(kw, tol=1e-5, backend=bname, schedule=schedule, vectorized=True))
    # an initial guess and a max_iters bound
    kw = dict(base["lorenz"], initial=None, max_iters=4, tol=1e-12)
    for schedule in ("synchronous", "pipelined"):
        yield (f"lorenz-max4/batched/{schedule}",
               dict(kw, backend="batched", schedule=schedule, vectorized=True))
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is an optional extra
        print("torch not installed: no torch cases", file=sys.stderr)
        return
    for dtype in (torch.float64, torch.float32):
        tag = str(dtype).removeprefix("torch.")
        for pname in ("brusselator", "lorenz"):
            kw = dict(base[pname], f=_torch_f(pname),
                      y0=torch.tensor(np.array(base[pname]["y0"]), dtype=dtype))
            tol = 1e-9 if dtype == torch.float64 else 1e-4
            for bname, backend in backends.items():
                for schedule in ("synchronous", "pipelined"):
                    for la in ((2,) if schedule == "synchronous" else (None, 2)):
                        yield (f"torch-{tag}-{pname}/{bname}/{schedule}/la={la}",
                               dict(kw, tol=tol, backend=backend, schedule=schedule,
                                    lookahead=la, vectorized=True))
        kw = dict(base["linear43-midpoint"], y0=torch.arange(12.0, dtype=dtype).reshape(4, 3)
                  / 7.0)
        for schedule in ("synchronous", "pipelined"):
            yield (f"torch-{tag}-linear43/batched/{schedule}",
                   dict(kw, tol=0.0, backend="batched", schedule=schedule, vectorized=True))


def record(sol: parareal.Solution) -> dict[str, Any]:
    y = sol.y
    if not isinstance(y, np.ndarray):
        y = y.detach().cpu().numpy()
    st = sol.stats
    return {
        "sha256": hashlib.sha256(np.ascontiguousarray(y).tobytes()).hexdigest(),
        "iterations": sol.iterations,
        "status": sol.status.name,
        "residuals": [float(r).hex() for r in sol.residuals],
        "critical_path": st.critical_path,
        "critical_path_per_iteration": list(st.critical_path_per_iteration),
        "fine_calls": st.fine_calls,
        "coarse_calls": st.coarse_calls,
        "f_evals": st.f_evals,
        "f_calls": st.f_calls,
    }


def run_all() -> dict[str, dict[str, Any]]:
    out = {}
    for name, kw in cases():
        kw = {k: v for k, v in kw.items() if v is not None or k == "lookahead"}
        out[name] = record(parareal.solve(**kw))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--record", metavar="PATH")
    group.add_argument("--check", metavar="PATH")
    args = parser.parse_args(argv)
    results = run_all()
    if args.record:
        with open(args.record, "w") as fh:
            json.dump(results, fh, indent=1, sort_keys=True)
        print(f"recorded {len(results)} solves in {args.record}")
        return 0
    with open(args.check) as fh:
        golden = json.load(fh)
    bad, calls = [], []
    for name in sorted(set(golden) | set(results)):
        old, new = golden.get(name), results.get(name)
        if old is None or new is None:
            bad.append(f"{name}: {'new' if old is None else 'missing'}")
            continue
        timing = "/threads/" in name and "pipelined" in name
        for key in STRICT:
            if timing and key == "f_evals":
                continue
            if old[key] != new[key]:
                bad.append(f"{name}: {key} {old[key]} -> {new[key]}")
        if old["f_calls"] != new["f_calls"] and not timing:
            calls.append(f"{name}: f_calls {old['f_calls']} -> {new['f_calls']}")
    for line in calls:
        print("note:", line)
    for line in bad:
        print("DIFFERS:", line)
    print(f"{len(results)} solves: {len(bad)} differences, {len(calls)} changed f_calls")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
