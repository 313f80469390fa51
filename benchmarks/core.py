"""Core benchmark: Parareal against serial fine integration and scipy, on CPU.

Usage::

    python benchmarks/core.py                      # default: 5 repeats, about 1-2 minutes
    python benchmarks/core.py --quick              # smaller systems, 1 repeat, no warm-up runs
                                                   # nor gc.collect() (a smoke run), about 12 s
    python benchmarks/core.py --repeats 7 --json out.json
    python benchmarks/core.py --only brusselator   # one problem (comma-separated list)
    python benchmarks/core.py --ticks --only brusselator --tick-repeats 15
                                                   # only the cost per tick of the schedules

Problems
--------
brusselator
    pymgrit's setup: A=1, B=3, y0=(0, 1), T=12, 32 slices, fine RK4 with 20 steps per slice
    (640 fine steps in total), coarse RK4 with 1 step per slice, Parareal ``tol=1e-10``. With
    pymgrit installed (``pip install pymgrit mpi4py``; not a dependency of parareal) it gets a
    row of its own: pymgrit's Parareal (two-level MGRIT with F-relaxation and nested
    iteration) with its own ``Brusselator`` application at the same tolerance in its own
    residual norm, timed in the same interleaved loop with its logging silenced; without
    pymgrit the problem's notes say so.
heat
    1-D heat equation, 1000 interior points (``parareal.problems.get("heat", points=1000)``),
    T=1e-3, 32 slices; the problem's default explicit propagators, which take their step
    counts from the stiffest eigenvalue (fine RK4 with ``h * lam_max <= 1``, coarse Euler with
    ``h * lam_max <= 1.8``). The stability factors are printed.
oscillators
    10 000 independent damped oscillators ``x'' + 2 zeta w x' + w^2 x = 0`` as one state of
    shape (10000, 2), ``w`` spread over [0.5, 2], ``zeta = 0.1``, T=10, 32 slices, fine RK4(20),
    coarse RK4(1); exact solution in closed form.

Variants, interleaved in every repeat (the order rotates from repeat to repeat) so that they
share the machine's noise: the plain serial fine solve (``parareal.solve_serial``), scipy's
``solve_ivp`` (RK45 and DOP853 at the loosest tolerance that reaches the fine solver's error
against the reference, found by an untimed calibration), and Parareal with the serial and
batched backends in the synchronous and pipelined schedules, ``tol=1e-8`` (``1e-10`` for the
Brusselator; ``--tol`` sets one value for every problem). The batched
backend gets ``vectorized=True`` (one call of ``f`` per tick); the serial backend gets
``vectorized=False`` (one state per call, its natural use; ``--serial-vectorized`` switches it).
The concurrent backends ``threads`` and ``processes`` run with 2 workers each (pools made once,
before the timed runs) and ``vectorized=True``: a worker runs its group of slices batched.
A separate exactness section runs the Brusselator with ``tol=0`` until all slices are exact
and checks the result bitwise against the serial fine solve (``--quick``: over its first 8
slices, see ``EXACTNESS_QUICK_SLICES``).

Cost per tick: for every problem, the batched backend (``vectorized=True``) runs both schedules
``--tick-repeats`` times (default 15), interleaved, with the garbage collector run before each;
the fastest run of each gives the wall time per tick (``critical_path`` ticks, one call of
``f`` each) and their ratio, pipelined over synchronous (``--tick-clock cpu``: this process's
CPU time instead, steadier on a shared machine). The pipelined schedule's shorter
critical path only turns into wall time if its ticks cost about what synchronous ones cost
(goal: ratio within 2). ``--ticks`` runs only this section.

Threads: ``--threads N`` (default 1) sets ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` and
``MKL_NUM_THREADS`` to ``N`` before numpy is loaded, overriding the environment, then applies
``parareal.cli.threads.set_threads(N)`` (torch, threadpoolctl where installed); the header and
the JSON (``"threads"``) state it. One thread by default: on a
small shared machine scipy's ``solve_ivp`` otherwise swings by 10x from run to run through
BLAS thread contention, and every other variant is single-threaded anyway.
"""

# The BLAS thread count must be set before numpy is imported, hence imports after code:
# ruff: noqa: E402
from __future__ import annotations

import argparse
import os
import sys


def _early_threads(argv: list[str]) -> None:
    """Apply ``--threads`` to the environment before numpy loads its BLAS (checked in main)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--threads", default="1")
    known, _ = pre.parse_known_args(argv)
    if known.threads.isdigit() and int(known.threads) >= 1:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = known.threads


if __name__ == "__main__":
    _early_threads(sys.argv[1:])

import gc
import json
import logging
import math
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

import parareal
from parareal import problems, theory
from parareal.cli.threads import set_threads
from parareal.problems.heat import heat_eigenvalue

SCIPY_TOLS = tuple(10.0**-e for e in range(3, 14))
VARIANTS = (
    ("serial", "synchronous"),
    ("serial", "pipelined"),
    ("batched", "synchronous"),
    ("batched", "pipelined"),
)
#: Concurrent backends, 2 workers each (this machine has 2 cores); their pools are made once,
#: before the timed runs (``concurrent_backends``), and they get ``vectorized=True``.
CONCURRENT_VARIANTS = (
    ("threads", "synchronous"),
    ("threads", "pipelined"),
    ("processes", "synchronous"),
    ("processes", "pipelined"),
)
_POOLS: dict[str, Any] = {}


def concurrent_backends() -> dict[str, Any]:
    """``Threads(2)`` and a started ``Processes(2)`` pool, made once per benchmark process."""
    if not _POOLS:
        from parareal.backends import Processes, Threads

        _POOLS["threads"] = Threads(2)
        _POOLS["processes"] = Processes(2)
        warm = _POOLS["processes"]
        parareal.solve(lambda t, y: -y, np.ones(1), (0, 1), coarse=parareal.Euler(1),
                       fine=parareal.Euler(1), slices=4, backend=warm)  # starts the workers
    return _POOLS


# ----------------------------------------------------------------------------- problems
@dataclass(frozen=True)
class Oscillators:
    """``x' = v``, ``v' = -2 zeta w v - w^2 x`` for many oscillators, states ``(..., n, 2)``."""

    damping: np.ndarray  # 2 zeta w
    stiffness: np.ndarray  # w^2

    def __call__(self, t: Any, y: np.ndarray) -> np.ndarray:
        x, v = y[..., 0], y[..., 1]
        return np.stack([v, -self.damping * v - self.stiffness * x], axis=-1)


@dataclass
class Case:
    """One benchmark problem with its propagators, reference and notes."""

    name: str
    description: str
    f: Callable[[Any, Any], Any]
    y0: np.ndarray
    t_span: tuple[float, float]
    coarse: parareal.Propagator
    fine: parareal.Propagator
    slices: int
    reference: np.ndarray
    notes: list[str] = field(default_factory=list)
    implicit: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    #: Parareal tolerance unless ``--tol`` is given.
    tol: float = 1e-8
    #: Another library's Parareal on the same problem: ``peer(tol) -> (final, info)``.
    peer: Callable[[float], tuple[np.ndarray, dict[str, Any]]] | None = None
    peer_label: str = ""


def brusselator_case() -> Case:
    p = problems.get(
        "brusselator",
        t_end=12.0,
        slices=32,
        coarse=parareal.RK4(steps=1),
        fine=parareal.RK4(steps=20),
    )
    return Case(
        name="brusselator",
        description=p.description + "; 32 slices, fine RK4(20)/slice (640 steps), coarse RK4(1)",
        f=p.f,
        y0=np.array(p.y0),
        t_span=p.t_span,
        coarse=p.coarse,
        fine=p.fine,
        slices=p.slices,
        reference=p.reference_final(),
        tol=1e-10,
        **pymgrit_peer(p),
    )


def heat_case(points: int, t_end: float = 1e-3, slices: int = 32) -> Case:
    p = problems.get("heat", points=points, t_end=t_end, slices=slices)
    lam_max = heat_eigenvalue(points, points)
    dt = (p.t_span[1] - p.t_span[0]) / p.slices
    notes = [f"stiffest eigenvalue lam_max = -{lam_max:.4g}"]
    for role, prop in (("fine", p.fine), ("coarse", p.coarse)):
        h = dt / prop.steps
        r_slice = abs(theory.stability_factor(prop, -lam_max, dt))
        notes.append(
            f"{role} {prop!r}: h*lam_max = {h * lam_max:.3f}, "
            f"|R(h*lam_max)| over one slice = {r_slice:.3g} (< 1: stable)"
        )
    # scipy's implicit BDF with the exact sparse Jacobian, for context: the right tool for heat
    from scipy import sparse

    n = points
    jac = sparse.diags(
        [np.ones(n - 1), -2.0 * np.ones(n), np.ones(n - 1)], [-1, 0, 1], format="csc"
    ) * float((n + 1) ** 2)
    return Case(
        name="heat",
        description=p.description + f"; {p.slices} slices, fine {p.fine!r}, coarse {p.coarse!r}",
        f=p.f,
        y0=np.array(p.y0),
        t_span=p.t_span,
        coarse=p.coarse,
        fine=p.fine,
        slices=p.slices,
        reference=p.reference_final(),
        notes=notes,
        implicit=[("BDF", {"jac": jac})],
    )


def oscillators_case(count: int, zeta: float = 0.1, t_end: float = 10.0) -> Case:
    omega = np.linspace(0.5, 2.0, count)
    f = Oscillators(2.0 * zeta * omega, omega * omega)
    y0 = np.zeros((count, 2))
    y0[:, 0] = 1.0
    # exact: x = e^{-zeta w t} (cos(wd t) + zeta w / wd sin(wd t)), v = x'
    wd = omega * math.sqrt(1.0 - zeta * zeta)
    decay = np.exp(-zeta * omega * t_end)
    c, s = np.cos(wd * t_end), np.sin(wd * t_end)
    x = decay * (c + zeta * omega / wd * s)
    v = -decay * (omega * omega / wd) * s
    coarse, fine = parareal.RK4(steps=1), parareal.RK4(steps=20)
    h_coarse = t_end / 32
    return Case(
        name="oscillators",
        description=(
            f"{count} damped oscillators x''+2*zeta*w*x'+w^2*x=0, state ({count}, 2), "
            f"w in [0.5, 2], zeta={zeta}, T={t_end:g}; 32 slices, fine RK4(20), coarse RK4(1)"
        ),
        f=f,
        y0=y0,
        t_span=(0.0, t_end),
        coarse=coarse,
        fine=fine,
        slices=32,
        reference=np.stack([x, v], axis=-1),
        notes=[f"coarse step h*w_max = {h_coarse * 2.0:.3f} (RK4: stable up to 2.83)"],
    )


# ----------------------------------------------------------------------------- pymgrit
PYMGRIT_LABEL = "Parareal (two-level MGRIT, F-relaxation)"


def load_pymgrit() -> tuple[Any, Any, str] | str:
    """pymgrit's ``Brusselator`` and ``Mgrit`` and its version, or why they cannot be used."""
    try:
        from importlib.metadata import version

        from pymgrit import Brusselator, Mgrit
    except Exception as exc:  # ImportError, or mpi4py failing to start MPI
        return f"{type(exc).__name__}: {exc}"
    if not hasattr(np, "in1d"):
        # pymgrit 1.0.6, its last release, calls the function in1d, removed in numpy 2.4:
        # np.isin(a, b).ravel() is what it computed (this process only; parareal does not
        # use it)
        np.in1d = lambda a, b, **kw: np.isin(a, b, **kw).ravel()  # noqa: NPY201
    return Brusselator, Mgrit, version("pymgrit")


def pymgrit_peer(p: Any) -> dict[str, Any]:
    """The ``peer`` of the Brusselator case: pymgrit's Parareal with its own application.

    pymgrit's ``Brusselator`` is hard-wired to ``A = 1, B = 3, y0 = (0, 1)`` and one classic
    RK4 step between neighbouring points of its time grid; its Parareal is two-level MGRIT with
    F-relaxation (``cf_iter=0``) and nested iteration (iterate 0 = the coarse sweep), as in its
    documentation. The fine grid has ``slices * steps + 1`` points, the coarse one every
    ``steps``-th: the same 32 slices, RK4(20) fine and RK4(1) coarse. Empty (no pymgrit row)
    when pymgrit is missing or the case is not that setup.
    """
    loaded = load_pymgrit()
    if isinstance(loaded, str):
        return {"notes": [f"no pymgrit row: pymgrit cannot be imported ({loaded}); "
                          "pip install pymgrit mpi4py to add it"]}
    same = (
        (p.f.a, p.f.b) == (1.0, 3.0)
        and tuple(np.asarray(p.y0).tolist()) == (0.0, 1.0)
        and p.t_span[0] == 0.0
        and isinstance(p.fine, parareal.RK4) and p.fine.variant == "classic"
        and p.coarse == parareal.RK4(steps=1)
    )
    if not same:
        return {"notes": ["no pymgrit row: pymgrit's Brusselator is only A=1, B=3, y0=(0, 1), "
                          "classic RK4 with one coarse step per slice"]}
    brusselator_app, mgrit_cls, pymgrit_version = loaded
    t_end, slices, steps = float(p.t_span[1]), p.slices, p.fine.steps

    def run(tol: float, app: Any = brusselator_app) -> tuple[np.ndarray, dict[str, Any]]:
        fine_grid = app(t_start=0.0, t_stop=t_end, nt=slices * steps + 1)
        coarse_grid = app(t_interval=fine_grid.t[::steps])
        previous = logging.root.manager.disable
        logging.disable(logging.INFO)  # pymgrit logs every iteration at INFO on stdout
        try:
            mgrit = mgrit_cls(problem=[fine_grid, coarse_grid], cf_iter=0,
                              nested_iteration=True, tol=tol, max_iter=slices,
                              logging_lvl=logging.WARNING)
            info = mgrit.solve()
        finally:
            logging.disable(previous)
        return np.array(mgrit.u[0][-1].get_values()), {
            "iterations": len(info["conv"]),
            "residuals": [float(r) for r in info["conv"]],
            "time_setup": float(info["time_setup"]),
            "time_solve": float(info["time_solve"]),
        }

    class Counting(brusselator_app):  # type: ignore[misc, valid-type]
        """pymgrit's Brusselator, counting its RK4 steps (4 calls of f each)."""

        steps = 0

        def step(self, u_start: Any, t_start: float, t_stop: float) -> Any:
            Counting.steps += 1
            return super().step(u_start, t_start, t_stop)

    def peer(tol: float) -> tuple[np.ndarray, dict[str, Any]]:
        return run(tol)

    def count(tol: float) -> int:
        """Calls of f in one run (untimed: the counting costs time)."""
        Counting.steps = 0
        run(tol, Counting)
        return 4 * Counting.steps

    peer.count = count  # type: ignore[attr-defined]
    return {"peer": peer, "peer_label": f"pymgrit {pymgrit_version} {PYMGRIT_LABEL}"}


# ----------------------------------------------------------------------------- variants
@dataclass
class Variant:
    """A timed computation: ``run()`` returns ``(final state, info dict)``."""

    label: str
    kind: str  # "serial-fine", "scipy", "parareal"
    run: Callable[[], tuple[np.ndarray, dict[str, Any]]]
    times: list[float] = field(default_factory=list)
    infos: list[dict[str, Any]] = field(default_factory=list)
    final: np.ndarray | None = None


def flat_rhs(f: Callable[[Any, Any], Any], shape: tuple[int, ...]) -> Callable:
    def rhs(t: float, u: np.ndarray) -> np.ndarray:
        return np.ravel(f(t, u.reshape(shape)))

    return rhs


def run_ivp(case: Case, method: str, tol: float, options: dict[str, Any]) -> tuple[Any, Any]:
    from scipy.integrate import solve_ivp

    sol = solve_ivp(
        flat_rhs(case.f, case.y0.shape),
        case.t_span,
        case.y0.ravel(),
        method=method,
        rtol=tol,
        atol=tol,
        **options,
    )
    return sol, sol.y[:, -1].reshape(case.y0.shape)


def calibrate_ivp(case: Case, method: str, target: float, options: dict[str, Any]) -> float:
    """The loosest tolerance in SCIPY_TOLS whose final error is <= target (else the tightest)."""
    for tol in SCIPY_TOLS:
        sol, y = run_ivp(case, method, tol, options)
        if sol.success and err(y, case.reference) <= target:
            return tol
    return SCIPY_TOLS[-1]


def err(y: np.ndarray, ref: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(y) - ref)))


def make_variants(
    case: Case, tol: float, fine_error: float, serial_vectorized: bool
) -> list[Variant]:
    variants = []

    def serial_fine() -> tuple[np.ndarray, dict[str, Any]]:
        ys = parareal.solve_serial(
            case.f, case.y0, case.t_span, propagator=case.fine, slices=case.slices
        )
        return ys[-1], {}

    variants.append(Variant("serial fine (solve_serial)", "serial-fine", serial_fine))

    ivps: list[tuple[str, dict[str, Any]]] = [("RK45", {}), ("DOP853", {})] + case.implicit
    for method, options in ivps:
        ivp_tol = calibrate_ivp(case, method, fine_error, options)

        def ivp(method: str = method, ivp_tol: float = ivp_tol, options=options):
            sol, y = run_ivp(case, method, ivp_tol, options)
            return y, {"nfev": int(sol.nfev), "njev": int(sol.njev), "tol": ivp_tol}

        extra = ", sparse jac" if "jac" in options else ""
        variants.append(Variant(f"scipy {method} (tol {ivp_tol:.0e}{extra})", "scipy", ivp))

    pools = concurrent_backends()
    for backend, schedule in VARIANTS + CONCURRENT_VARIANTS:

        def para(backend: str = backend, schedule: str = schedule):
            sol = parareal.solve(
                case.f,
                case.y0,
                case.t_span,
                coarse=case.coarse,
                fine=case.fine,
                slices=case.slices,
                tol=tol,
                backend=pools.get(backend, backend),
                schedule=schedule,
                vectorized=backend != "serial" or serial_vectorized,
            )
            return sol.y_final, {
                "iterations": sol.iterations,
                "status": sol.status.value,
                "residuals": list(sol.residuals),
                "stats": sol.stats.as_dict(),
                "cp_speedup": theory.critical_path_speedup(sol, fine=case.fine),
                "model_speedup": theory.model_speedup(sol, coarse=case.coarse, fine=case.fine)
                if sol.iterations > 0
                else float("nan"),
            }

        label = f"{backend}(2)" if backend in pools else backend
        variants.append(Variant(f"parareal {label}/{schedule}", "parareal", para))
    if case.peer is not None:
        f_evals = case.peer.count(tol)  # type: ignore[attr-defined]

        def peer() -> tuple[np.ndarray, dict[str, Any]]:
            y, info = case.peer(tol)  # type: ignore[misc]
            return y, {**info, "f_evals": f_evals}

        variants.append(Variant(case.peer_label, "peer", peer))
    return variants


def timed(variant: Variant, collect: bool = True) -> None:
    if collect:
        gc.collect()
    start = time.perf_counter()
    y, info = variant.run()
    variant.times.append(time.perf_counter() - start)
    variant.infos.append(info)
    variant.final = np.asarray(y)


# ----------------------------------------------------------------------------- benchmark
def bench_case(
    case: Case, repeats: int, tol: float, warmup: bool, serial_vectorized: bool = False
) -> dict[str, Any]:
    serial_evals = case.slices * case.fine.evals
    # untimed: the serial fine solution and its error set the scipy tolerance target
    fine_final = parareal.solve_serial(
        case.f, case.y0, case.t_span, propagator=case.fine, slices=case.slices
    )[-1]
    fine_error = err(fine_final, case.reference)
    variants = make_variants(case, tol, fine_error, serial_vectorized)
    if warmup:
        for v in variants:
            v.run()
    for r in range(repeats):
        shift = r % len(variants)
        for v in variants[shift:] + variants[:shift]:
            timed(v, collect=warmup)  # --quick (no warm-up): no collection either
    serial_median = statistics.median(variants[0].times)
    rows = []
    for v in variants:
        info = v.infos[-1]
        row: dict[str, Any] = {
            "variant": v.label,
            "kind": v.kind,
            "times": v.times,
            "median_s": statistics.median(v.times),
            "min_s": min(v.times),
            "speedup_vs_serial": serial_median / statistics.median(v.times),
            "error_vs_reference": err(v.final, case.reference),
            "error_vs_serial_fine": err(v.final, fine_final),
        }
        if v.kind == "serial-fine":
            row.update(f_evals=serial_evals, f_calls=serial_evals, critical_path=serial_evals)
        elif v.kind == "scipy":
            row.update(
                f_evals=info["nfev"],
                f_calls=info["nfev"],
                critical_path=info["nfev"],
                njev=info["njev"],
                tol=info["tol"],
            )
        elif v.kind == "peer":
            row.update(
                iterations=info["iterations"],
                residuals=info["residuals"],
                f_evals=info["f_evals"],
                f_calls=info["f_evals"],
                critical_path=None,
                time_setup_median=statistics.median(i["time_setup"] for i in v.infos),
                time_solve_median=statistics.median(i["time_solve"] for i in v.infos),
            )
        else:
            st = info["stats"]
            # "batching" (stacking/splitting batches) is reported apart by newer versions of
            # the library; older ones count it in "engine"
            walls = {
                key: statistics.median(i["stats"]["wall_time"][key] for i in v.infos)
                for key in ("total", "f", "propagators", "batching", "engine")
                if all(key in i["stats"]["wall_time"] for i in v.infos)
            }
            row.update(
                iterations=info["iterations"],
                status=info["status"],
                residuals=info["residuals"],
                f_evals=st["f_evals"],
                f_calls=st["f_calls"],
                fine_calls=st["fine_calls"],
                coarse_calls=st["coarse_calls"],
                critical_path=st["critical_path"],
                critical_path_per_iteration=st["critical_path_per_iteration"],
                cp_speedup=info["cp_speedup"],
                model_speedup=info["model_speedup"],
                wall_time_median=walls,
                stats_per_repeat=[i["stats"] for i in v.infos],
            )
        rows.append(row)
    k = next(r["iterations"] for r in rows if r["kind"] == "parareal")
    peer = next((r for r in rows if r["kind"] == "peer"), None)
    if peer is not None:
        finals = {v.label: v.final for v in variants}
        peer["diff_vs_parareal"] = {
            r["variant"]: err(finals[r["variant"]], finals[peer["variant"]])
            for r in rows if r["kind"] == "parareal"
        }
        peer["peer_over_variant"] = {
            r["variant"]: peer["median_s"] / r["median_s"] for r in rows if r["kind"] != "peer"
        }
    return {
        "name": case.name,
        "description": case.description,
        "notes": case.notes,
        "slices": case.slices,
        "state_shape": list(case.y0.shape),
        "coarse": repr(case.coarse),
        "fine": repr(case.fine),
        "serial_fine_f_evals": serial_evals,
        "coarse_over_fine_cost": case.coarse.evals / case.fine.evals,
        "fine_error_vs_reference": fine_error,
        "tol": tol,
        "speedup_limit": theory.speedup_limit(
            max(k, 1),
            slices=case.slices,
            coarse_cost=case.coarse.evals,
            fine_cost=case.fine.evals,
        ),
        "repeats": repeats,
        "rows": rows,
    }


def bench_ticks(case: Case, repeats: int, tol: float, clock: str = "wall",
                settle: bool = True) -> dict[str, Any]:
    """Time per tick of the batched backend's two schedules: fastest of ``repeats``.

    ``settle=False`` (``--quick``, a smoke run) leaves out the untimed warm-up runs and the
    garbage collection before each timed run.

    ``clock`` is ``"wall"`` (``time.perf_counter``) or ``"cpu"`` (``time.process_time``, this
    process's CPU time: less sensitive to other jobs on a shared machine).
    """
    timer = time.perf_counter if clock == "wall" else time.process_time
    runs: dict[str, list[float]] = {"synchronous": [], "pipelined": []}
    sols: dict[str, parareal.Solution] = {}

    def run(schedule: str) -> parareal.Solution:
        return parareal.solve(case.f, case.y0, case.t_span, coarse=case.coarse, fine=case.fine,
                              slices=case.slices, tol=tol, backend="batched",
                              schedule=schedule, vectorized=True)

    for schedule in runs if settle else ():  # warm-up, untimed
        run(schedule)
    for r in range(repeats):
        for schedule in sorted(runs, reverse=r % 2 == 1):
            if settle:
                gc.collect()
            start = timer()
            sols[schedule] = run(schedule)
            runs[schedule].append(timer() - start)
    rows = {}
    for schedule, times in runs.items():
        st = sols[schedule].stats
        rows[schedule] = {
            "times": times,
            "min_s": min(times),
            "median_s": statistics.median(times),
            "ticks": st.critical_path,
            "f_calls": st.f_calls,
            "f_evals": st.f_evals,
            "us_per_tick": min(times) / st.critical_path * 1e6,
            "median_us_per_tick": statistics.median(times) / st.critical_path * 1e6,
        }
    return {
        "name": case.name,
        "repeats": repeats,
        "clock": clock,
        "tol": tol,
        "rows": rows,
        "ratio": rows["pipelined"]["us_per_tick"] / rows["synchronous"]["us_per_tick"],
        "median_ratio": (rows["pipelined"]["median_us_per_tick"]
                         / rows["synchronous"]["median_us_per_tick"]),
    }


#: Slices of the exactness section under ``--quick``: ``tol=0`` runs ``N`` iterations over
#: ``N`` slices (work growing as ``N**2``), so the smoke run takes the first 8 of the 32 slices
#: (the same span per slice, so the same fine and coarse steps) and checks the same properties.
EXACTNESS_QUICK_SLICES = 8


def exactness_case(case: Case, slices: int | None = None) -> Case:
    """``case``, or its first ``slices`` slices (same span per slice) for the exactness runs.

    Parameters
    ----------
    case : Case
        The benchmark problem.
    slices : int or None
        Slices to keep, the first ones of ``case``'s; None keeps ``case`` whole.

    Returns
    -------
    Case
        ``case`` itself, or a copy over ``t0 .. t0 + slices * dt`` with ``slices`` slices.
    """
    if slices is None or slices >= case.slices:
        return case
    t0, t1 = case.t_span
    return replace(case, slices=slices, t_span=(t0, t0 + (t1 - t0) * slices / case.slices))


def bench_exactness(case: Case, serial_vectorized: bool = False,
                    collect: bool = True) -> dict[str, Any]:
    """tol=0 runs to all-slices-exact: bitwise check against the serial fine solve.

    ``collect=False`` (``--quick``): no garbage collection before each timed run.
    """
    serial = parareal.solve_serial(
        case.f, case.y0, case.t_span, propagator=case.fine, slices=case.slices
    )
    errors: list[float] = []

    def record(info: parareal.IterationInfo) -> None:
        errors.append(err(info.y, serial))

    sol = parareal.solve(
        case.f,
        case.y0,
        case.t_span,
        coarse=case.coarse,
        fine=case.fine,
        slices=case.slices,
        tol=0.0,
        backend="batched",
        vectorized=True,
        callback=record,
    )
    residuals = list(sol.residuals)
    first_below = {
        f"{thr:.0e}": next((i + 1 for i, r in enumerate(residuals) if r <= thr), None)
        for thr in (1e-8, 1e-10, 1e-12)
    }
    rows = []
    for backend, schedule in VARIANTS:
        if collect:
            gc.collect()
        start = time.perf_counter()
        s = parareal.solve(
            case.f,
            case.y0,
            case.t_span,
            coarse=case.coarse,
            fine=case.fine,
            slices=case.slices,
            tol=0.0,
            backend=backend,
            schedule=schedule,
            vectorized=backend == "batched" or serial_vectorized,
        )
        elapsed = time.perf_counter() - start
        rows.append(
            {
                "variant": f"parareal {backend}/{schedule}",
                "seconds": elapsed,
                "iterations": s.iterations,
                "bitwise_equal_serial": bool(np.array_equal(s.y, serial)),
                "max_abs_diff_serial": err(s.y, serial),
                "f_evals": s.stats.f_evals,
                "f_calls": s.stats.f_calls,
                "critical_path": s.stats.critical_path,
                "cp_speedup": theory.critical_path_speedup(s, fine=case.fine),
            }
        )
    return {
        "name": case.name,
        "slices": case.slices,
        "t_span": list(case.t_span),
        "residuals": residuals,
        "error_vs_serial_fine_per_iteration": errors,
        "first_iteration_residual_below": first_below,
        "rows": rows,
    }


# ----------------------------------------------------------------------------- output
def fmt_time(s: float) -> str:
    return f"{s * 1e3:.1f} ms" if s < 1.0 else f"{s:.2f} s"


def markdown_case(res: dict[str, Any]) -> str:
    lines = [
        f"### {res['name']}",
        "",
        f"{res['description']}.",
        "",
        f"- state shape {tuple(res['state_shape'])}, serial fine = {res['serial_fine_f_evals']} "
        f"calls of f, cost(G)/cost(F) = {res['coarse_over_fine_cost']:.3g}, fine error vs "
        f"reference {res['fine_error_vs_reference']:.2e}, Parareal tol {res['tol']:g}, "
        f"{res['repeats']} repeats (median, min); model limit min(N/K, cost F/cost G) = "
        f"{res['speedup_limit']:.2f}x",
    ]
    lines += [f"- {note}" for note in res["notes"]]
    lines += [
        "",
        "| variant | median | min | speedup vs serial F | iters | f_evals | f_calls "
        "| critical path | CP speedup | model S (P=N) | error vs ref "
        "| f / prop / batching / engine |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in res["rows"]:
        if r["kind"] == "parareal":
            w = r["wall_time_median"]
            iters = str(r["iterations"])
            cp_s = f"{r['cp_speedup']:.2f}x"
            model = f"{r['model_speedup']:.2f}x"
            batching = fmt_time(w["batching"]) if "batching" in w else "-"
            split = (
                f"{fmt_time(w['f'])} / {fmt_time(w['propagators'])} / {batching} "
                f"/ {fmt_time(w['engine'])}"
            )
        elif r["kind"] == "peer":
            iters, cp_s, model = str(r["iterations"]), "-", "-"
            split = (f"setup {fmt_time(r['time_setup_median'])} / solve "
                     f"{fmt_time(r['time_solve_median'])}")
        else:
            iters, model, split = "-", "-", "-"
            cp_s = f"{res['serial_fine_f_evals'] / r['critical_path']:.2f}x"
        path = "-" if r["critical_path"] is None else r["critical_path"]
        lines.append(
            f"| {r['variant']} | {fmt_time(r['median_s'])} | {fmt_time(r['min_s'])} "
            f"| {r['speedup_vs_serial']:.2f}x | {iters} | {r['f_evals']} | {r['f_calls']} "
            f"| {path} | {cp_s} | {model} | {r['error_vs_reference']:.1e} "
            f"| {split} |"
        )
    para = [r for r in res["rows"] if r["kind"] == "parareal"]
    if para:
        res_str = ", ".join(f"{x:.1e}" for x in para[0]["residuals"])
        lines += ["", f"Residuals (max boundary update) per iteration: {res_str}."]
    lines += markdown_peer(res)
    return "\n".join(lines)


def markdown_peer(res: dict[str, Any]) -> list[str]:
    """The comparison with another library's Parareal (the ``peer`` row), if there is one."""
    peer = next((r for r in res["rows"] if r["kind"] == "peer"), None)
    if peer is None:
        return []
    ratios = ", ".join(
        f"{label} {ratio:.2f}x" for label, ratio in peer["peer_over_variant"].items()
    )
    diffs = max(peer["diff_vs_parareal"].values())
    return [
        "",
        f"{peer['variant']}: its residual (the 2-norm over the coarse points of the fine "
        "defect Phi(u_(n-1)) - u_n, one fine step into each C-point after F-relaxation) per "
        "iteration: " + ", ".join(f"{x:.1e}" for x in peer["residuals"]) + f"; it stops at "
        f"residual < tol = {res['tol']:g}. Its final state differs from every Parareal row's "
        f"by at most {diffs:.1e}.",
        "",
        f"pymgrit's median time / each variant's (above 1: the variant is faster): {ratios}.",
    ]


def markdown_ticks(res: dict[str, Any], threads: int) -> str:
    lines = [
        f"### {res['name']}: cost per tick, batched backend (vectorized f), threads {threads}",
        "",
        f"Fastest of {res['repeats']} interleaved runs (and median), {res['clock']} clock, "
        f"tol {res['tol']:g}.",
        "",
        "| schedule | ticks (critical path) | f_calls | f_evals per tick | fastest run "
        "| us per tick | median us per tick |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for schedule, r in res["rows"].items():
        lines.append(
            f"| {schedule} | {r['ticks']} | {r['f_calls']} | {r['f_evals'] / r['ticks']:.1f} "
            f"| {fmt_time(r['min_s'])} | {r['us_per_tick']:.1f} "
            f"| {r['median_us_per_tick']:.1f} |"
        )
    lines += ["", f"Pipelined / synchronous per tick: **{res['ratio']:.2f}** fastest "
              f"({res['median_ratio']:.2f} median); goal <= 2."]
    return "\n".join(lines)


def markdown_exactness(res: dict[str, Any]) -> str:
    lines = [
        f"### {res['name']}: tol = 0 until every slice is exact"
        + (f" ({res['slices']} slices)" if "slices" in res else ""),
        "",
        "| variant | time (1 run) | iters | bitwise = serial F | f_evals | f_calls "
        "| critical path | CP speedup |",
        "|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in res["rows"]:
        same = "yes" if r["bitwise_equal_serial"] else f"no ({r['max_abs_diff_serial']:.1e})"
        lines.append(
            f"| {r['variant']} | {fmt_time(r['seconds'])} | {r['iterations']} | {same} "
            f"| {r['f_evals']} | {r['f_calls']} | {r['critical_path']} "
            f"| {r['cp_speedup']:.2f}x |"
        )
    errs = res["error_vs_serial_fine_per_iteration"]
    first_zero = next((k for k, e in enumerate(errs) if e == 0.0), None)
    lines += [
        "",
        "Max boundary error vs the serial fine solution, iterations 0..12: "
        + ", ".join(f"{e:.1e}" for e in errs[:13])
        + f"; exactly 0 from iteration {first_zero}.",
        "",
        "First iteration whose residual is below 1e-8 / 1e-10 / 1e-12: "
        + " / ".join(str(v) for v in res["first_iteration_residual_below"].values())
        + ".",
    ]
    return "\n".join(lines)


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "parareal": parareal.__version__,
        "platform": platform.platform(),
        "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
    }
    from importlib.metadata import PackageNotFoundError, version

    # the installed versions, from their metadata: importing torch only to read its
    # version would cost every benchmark that records the machine seconds
    for mod in ("scipy", "torch", "pymgrit"):
        try:
            info[mod] = version(mod)
        except PackageNotFoundError:
            info[mod] = None
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("Model name", "CPU(s)"):
                info[key.strip()] = value.strip()
    except OSError:
        pass
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (default 5)")
    parser.add_argument("--quick", action="store_true", help="small systems, 1 repeat, < 30 s")
    parser.add_argument("--tol", type=float, default=None,
                        help="Parareal tolerance (default: 1e-10 for brusselator, pymgrit's "
                        "setup, 1e-8 for the others)")
    parser.add_argument("--only", default="", help="comma-separated problems to run")
    parser.add_argument("--json", metavar="PATH", help="write all raw numbers as JSON")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads of BLAS/OpenMP and torch (default 1)")
    parser.add_argument("--ticks", action="store_true",
                        help="only the cost per tick of the batched backend's two schedules")
    parser.add_argument("--tick-repeats", type=int, default=15,
                        help="runs of each schedule for the cost per tick (default 15)")
    parser.add_argument("--tick-clock", choices=("wall", "cpu"), default="wall",
                        help="clock of the cost per tick: wall (default) or this process's "
                        "CPU time")
    parser.add_argument(
        "--serial-vectorized",
        action="store_true",
        help="call f with batches of one in the serial backend (default: single states)",
    )
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    if args.threads < 1:
        parser.error("--threads must be >= 1")
    if args.tick_repeats < 1:
        parser.error("--tick-repeats must be >= 1")
    threads = set_threads(args.threads)  # no torch here: importing it costs seconds
    repeats = 1 if args.quick else args.repeats
    builders: dict[str, Callable[[], Case]] = {
        "brusselator": brusselator_case,
        "heat": lambda: heat_case(200 if args.quick else 1000),
        "oscillators": lambda: oscillators_case(1000 if args.quick else 10_000),
    }
    names = [n for n in args.only.split(",") if n] or list(builders)
    unknown = set(names) - set(builders)
    if unknown:
        parser.error(f"unknown problem(s) {sorted(unknown)}; known: {', '.join(builders)}")

    try:
        import scipy.integrate  # noqa: F401  (solve_ivp rows and the references)
    except ImportError:
        parser.error("this benchmark needs scipy: pip install 'parareal[scipy]'")
    started = time.perf_counter()
    machine = machine_info()
    print(
        f"# parareal core benchmark\n\nmachine: {machine.get('Model name', '?')}, "
        f"{machine.get('CPU(s)', '?')} CPUs; Python {machine['python']}, numpy "
        f"{machine['numpy']}, scipy {machine['scipy']}, torch {machine['torch']}, "
        f"pymgrit {machine['pymgrit']}; "
        f"threads {args.threads} (OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}, "
        f"torch {threads['torch'] or 'not loaded'}); "
        f"repeats {repeats}{' (--quick)' if args.quick else ''}; serial backend "
        f"vectorized={args.serial_vectorized}\n",
        flush=True,
    )
    results, exactness, ticks = [], [], []
    for name in names:
        case = builders[name]()
        tol = case.tol if args.tol is None else args.tol
        tick = bench_ticks(case, 1 if args.quick else args.tick_repeats, tol, args.tick_clock,
                           settle=not args.quick)
        ticks.append(tick)
        print(markdown_ticks(tick, args.threads) + "\n", flush=True)
        if args.ticks:
            continue
        res = bench_case(case, repeats, tol, not args.quick, args.serial_vectorized)
        results.append(res)
        print(markdown_case(res) + "\n", flush=True)
        if name == "brusselator":
            ex = bench_exactness(exactness_case(case, EXACTNESS_QUICK_SLICES if args.quick
                                                else None),
                                 args.serial_vectorized, collect=not args.quick)
            exactness.append(ex)
            print(markdown_exactness(ex) + "\n", flush=True)
    total = time.perf_counter() - started
    print(f"total benchmark time {total:.1f} s")
    if args.json:
        payload = {
            "machine": machine,
            "argv": sys.argv[1:],
            "repeats": repeats,
            "quick": args.quick,
            "serial_vectorized": args.serial_vectorized,
            "tol": args.tol,
            "threads": args.threads,
            "total_seconds": total,
            "problems": results,
            "exactness": exactness,
            "ticks": ticks,
        }
        with open(args.json, "w") as fh:
            json.dump(payload, fh, indent=1, default=float)
    for pool in _POOLS.values():
        pool.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
