"""The ODE sections of docs/benchmarks.md (core problems, cost per tick, test sets, lookahead,
memory, concurrency, MPI), rendered from ``benchmarks/results/*.json`` by
``benchmarks/report.py``. Each section function takes the :class:`report_common.Results` and
returns the section's Markdown.
"""

from __future__ import annotations

from typing import Any

from report_common import Results, grid, ms, section, sources, times

#: The runs of ``benchmarks/payoff.py``, in the order shown (the first is the README's).
PAYOFF_RUNS = ("payoff-2cpu.json", "payoff-2cpu-loaded.json", "payoff-2cpu-tol1e-6.json")

CORE_COLUMNS = [("variant", "variant"), ("median", "median"), ("speedup", "vs serial fine"),
                ("iters", "K"), ("f_evals", "f evals"), ("path", "critical path"),
                ("cp", "CP speedup")]


def core_table(problem: dict[str, Any]) -> str:
    """One problem of ``benchmarks/core.py --json``: a row per variant."""
    rows = []
    for r in problem["rows"]:
        path = r["critical_path"]
        rows.append(dict(
            variant=r["variant"], median=ms(r["median_s"]), speedup=times(r["speedup_vs_serial"]),
            iters=r.get("iterations"), f_evals=r["f_evals"], path=path,
            cp=times(problem["serial_fine_f_evals"] / path) if path else None))
    return grid(rows, CORE_COLUMNS)


def core_problems(results: Results, name: str, problems: list[str], title: str) -> str:
    """A subsection of the core benchmark: some problems of one result file."""
    parts = []
    for problem in problems:
        (res,) = [p for p in results(name)["problems"] if p["name"] == problem]
        parts += [f"{res['description']}; Parareal `tol={res['tol']:g}`; median of "
                  f"{res['repeats']} repeats:", core_table(res)]
    return section(title, sources(results, name), *parts, level=3)


def exactness(results: Results, name: str) -> str:
    """``tol = 0`` until every slice is exact: one timed run per variant."""
    (res,) = results(name)["exactness"]
    rows = [dict(variant=r["variant"], seconds=ms(r["seconds"]), iters=r["iterations"],
                 same=("yes" if r["bitwise_equal_serial"]
                       else f"no ({r['max_abs_diff_serial']:.1e})"),
                 f_evals=r["f_evals"], path=r["critical_path"]) for r in res["rows"]]
    return section(
        "Brusselator to exactness (tol = 0)",
        "The same run with `tol=0`, until every slice is exact; one timed run each.",
        grid(rows, [("variant", "variant"), ("seconds", "time"), ("iters", "K"),
                    ("same", "bitwise = serial fine"), ("f_evals", "f evals"),
                    ("path", "critical path")]), level=3)


def ticks(results: Results, *names: str) -> str:
    """``core.py --ticks``: microseconds per tick of both schedules, per clock."""
    rows = []
    for name in names:
        (res,) = results(name)["ticks"]
        for schedule, r in res["rows"].items():
            rows.append(dict(
                clock=res["clock"], schedule=schedule, ticks=r["ticks"],
                per_tick=f"{r['f_evals'] / r['ticks']:.1f}", fastest=f"{r['us_per_tick']:.1f}",
                median=f"{r['median_us_per_tick']:.1f}",
                ratio=f"{res['ratio']:.2f}" if schedule == "pipelined" else None))
    return section(
        "Cost per tick of the two schedules (batched backend)",
        "The Brusselator on the batched backend, both schedules interleaved: microseconds per "
        "tick (one stacked call of `f`) on the CPU-time and the wall clock.",
        sources(results, *names),
        grid(rows, [("clock", "clock"), ("schedule", "schedule"), ("ticks", "ticks"),
                    ("per_tick", "f evals per tick"), ("fastest", "us per tick (fastest)"),
                    ("median", "us per tick (median)"), ("ratio", "ratio (fastest)")]),
        level=3)


def core(results: Results) -> str:
    """Core benchmarks: Brusselator, exactness, cost per tick, heat, oscillators."""
    intro = (
        "Parareal's backends and schedules (and pymgrit) against the serial fine solve and "
        "scipy's `solve_ivp` at matched accuracy. K: iterations; f evals: total work; critical "
        "path: sequential batched calls of `f`, the latency with a worker per slice; CP "
        "speedup: serial fine calls / critical path.")
    return section(
        "Core benchmarks", intro,
        core_problems(results, "core-brusselator-2cpu.json", ["brusselator"],
                      "Brusselator (pymgrit's setup)"),
        exactness(results, "core-brusselator-2cpu.json"),
        ticks(results, "core-ticks-cpu-2cpu.json", "core-ticks-wall-2cpu.json"),
        core_problems(results, "core-lookahead-2cpu.json", ["heat", "oscillators"],
                      "Heat equation and damped oscillators"))


def testset(results: Results) -> str:
    """The classic test sets: iterations and speed-up bounds per configuration, wall times."""
    name = "testset-2cpu.json"
    data = results(name)
    configs = [k for k in data["rows"][0] if "/" in k]
    rows = []
    for r in data["rows"]:
        row: dict[str, Any] = dict(problem=r["problem"])
        for config in configs:
            row[config] = f"{r[config]['iterations']}, {r[config]['speedup_bound']:.2f}"
        wall = r.get("wall", {})
        if wall:
            best = min((k for k in wall if k != "serial_fine"), key=wall.get)
            row["serial"] = f"{wall['serial_fine']:.3f}"
            row["best"] = f"{wall[best]:.3f} ({best})"
        rows.append(row)
    columns = ([("problem", "problem")] + [(c, f"{c}: K, bound") for c in configs]
               + [("serial", "serial fine s"),
                  ("best", "fastest Parareal s")])
    intro = (
        f"`parareal.problems.TEST_SET`, {data['rows'][0]['slices']} slices, default fine "
        "solver, `coarse=\"auto\"`; equal or `boundaries=\"work\"` slices, both schedules. "
        "Cells: iterations K, `Stats.speedup_bound`. Wall times use 2 workers.")
    return section("Classic test sets", intro, sources(results, name), grid(rows, columns))


def lookahead(results: Results) -> str:
    """How far fine work may run ahead in the pipelined schedule."""
    name = "lookahead-2cpu.json"
    data = results(name)
    default = data["machine"]["default_lookahead"]
    differ = [f"{res['case']} (lookahead {r['lookahead']})" for res in data["results"]
              for r in res["rows"] if not r["same_iterates"]]
    shown: list[Any] = [1, 2, "unbounded"]
    rows = []
    for res in data["results"]:
        by = {r["lookahead"]: r for r in res["rows"]}
        sync = by["-"]
        row: dict[str, Any] = dict(case=res["case"], slices=res["slices"], iters=sync["iterations"],
                                   sync=f"{sync['critical_path']} / {sync['f_evals']}")
        for value in shown:
            r = by.get(value)
            row[str(value)] = ("not run" if r is None else
                               f"{r['path_vs_sync']:.2f}, {r['evals_vs_sync']:.2f}x")
        rows.append(row)
    columns = ([("case", "case"), ("slices", "slices"), ("iters", "K"),
                ("sync", "synchronous: path / f evals")]
               + [(str(v), f"{v} (default)" if v == default else str(v)) for v in shown])
    intro = (
        "The pipelined schedule's `lookahead` (docs/algorithm.md), batched backend, `tol=1e-8`. "
        "Cells: critical path and evaluations of `f` relative to the synchronous schedule's. "
        "Iterates were bitwise the synchronous schedule's" + (
            f" except in {', '.join(differ)}." if differ else " in every run."))
    return section("Lookahead", intro, sources(results, name), grid(rows, columns))


def memory_table(rows: list[dict[str, Any]]) -> str:
    """Peak RSS in states per slice, synchronous and pipelined side by side."""
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in rows:
        row = out.setdefault((r["kind"], r["size"], r["backend"]), dict(
            kind=r["kind"], size=f"{r['size']:,}", backend=r["backend"]))
        row[r["schedule"]] = f"{r['rss_states_per_slice']:.2f}"
    return grid(list(out.values()), [("kind", "state"), ("size", "entries"),
                                     ("backend", "backend"), ("synchronous", "synchronous"),
                                     ("pipelined", "pipelined")])


def memory(results: Results) -> str:
    """Peak memory of one solve per slice, in states."""
    numpy, torch = results("memory.json"), results("memory-torch-2cpu.json")
    r = numpy["rows"][0]
    intro = (
        f"Peak memory of one `solve`, in states (`y0.nbytes`) per slice: `y' = -y`, "
        f"{r['slices']} slices, `tol=0`, {r['iterations']} iterations, a fresh process per "
        "case: the rise of `ru_maxrss` (`tracemalloc` peaks are in the JSON).")
    return section("Memory", intro, sources(results, "memory.json"),
                   memory_table(numpy["rows"]),
                   sources(results, "memory-torch-2cpu.json"),
                   memory_table(torch["rows"]))


def _descriptions(cases: list[dict[str, Any]]) -> str:
    """The cases' descriptions; a case that only swaps one word of the first is said so."""
    first = cases[0]
    lines = [f"`{first['case']}`: {first['description']}."]
    for case in cases[1:]:
        swaps = {(a, b) for a, b in zip(first["description"].split(),
                                        case["description"].split()) if a != b}
        if len(swaps) == 1:
            ((old, new),) = swaps
            if case["description"] == first["description"].replace(old, new):
                lines.append(f"`{case['case']}`: the same with {new} for {old}.")
                continue
        lines.append(f"`{case['case']}`: {case['description']}.")
    return " ".join(lines)


def concurrency(results: Results) -> str:
    """Fine solves on threads, processes and Dask workers, two cases, two runs."""
    main, kept = "concurrency-2cpu.json", "concurrency-2cpu-keep-freed-memory.json"
    runs = {main: results(main), kept: results(kept)}
    cases = [c["case"] for c in runs[main]["results"]]
    rows: dict[str, dict[str, Any]] = {}
    for name, data in runs.items():
        for case in data["results"]:
            for r in case["rows"]:
                if r["kind"] == "serial coarse" or (r["kind"].startswith("sweeps")
                                                    and r["workers"] == 1):
                    continue
                row = rows.setdefault(r["variant"], dict(variant=r["variant"]))
                if name == main:
                    row[case["case"]] = ms(r["median_s"])
                row[f"{name} {case['case']}"] = times(r["vs_serial_backend"])
    columns = [("variant", "variant")]
    for case in cases:
        columns += [(case, f"{case}: median"), (f"{main} {case}", "vs serial backend"),
                    (f"{kept} {case}", "keep freed memory: vs serial backend")]
    intro = (
        "Fine solves on threads, processes and Dask workers ([Choosing a "
        "backend](guide.md#choosing-a-backend)) against the serial backend; \"sweeps only\": "
        "the fine solves on a plain executor, without Parareal; the second run keeps freed "
        "memory (`--keep-freed-memory`). "
        + _descriptions(runs[main]["results"]))
    return section("Concurrency", intro, sources(results, main, kept),
                   grid(list(rows.values()), columns))


def mpi(results: Results) -> str:
    """Parareal on the ``mpi`` backend at 1, 2 and 4 ranks."""
    name = "mpi-2cpu.json"
    data = results(name)
    rows = [dict(ranks=r["ranks"], median=ms(r["median_s"]),
                 fine=times(r["speedup_vs_serial_fine"]),
                 backend=times(r["speedup_vs_serial_backend"]), iters=r["iterations"],
                 model=times(r["model_speedup"]), eff=f"{r['efficiency']:.0%}",
                 same="yes" if r["bitwise_equal_serial_backend"] else "NO")
            for r in data["rows"]]
    intro = (f"The `mpi` backend (docs/mpi.md), one `mpiexec` per rank count: {data['problem']}. "
             "Model: `parareal.theory.speedup_model`; efficiency: measured / model.")
    return section("MPI", intro, sources(results, name), grid(rows, [
        ("ranks", "ranks"), ("median", "median"), ("fine", "vs serial fine"),
        ("backend", "vs serial backend"), ("iters", "K"), ("model", "model"),
        ("eff", "efficiency"), ("same", "bitwise = serial backend")]))


def payoff(results: Results) -> str:
    """Wall-clock against the serial fine solve on the machine's own workers
    (``benchmarks/payoff.py``): the quiet run that the README quotes, then the same case under
    load and with a tighter tolerance (where it does not pay)."""
    names = [name for name in PAYOFF_RUNS if (results.folder / name).exists()]
    rows = []
    for name in names:
        data = results(name)
        case = data["case"]
        busy = data.get("cores_busy", {}).get("parareal")
        rows.append(dict(
            {variant: f"{s['median']:.2f}" for variant, s in data["stats_s"].items()},
            load=f"{data['load_start'][0]:.1f} -> {data['load_end'][0]:.1f}",
            tol=f"{case['tol']:g}", iterations=data["iterations"],
            coarse=f"`{data['coarse_chosen']}`", bound=f"{data['speedup_bound']:.2f}",
            ratio=times(data["ratio"]), error=f"{data['error_vs_serial_fine']:.1e}",
            busy="-" if busy is None else f"{busy:.2f}"))
    first = results(names[0])
    variants = list(first["stats_s"])
    table = grid(rows, [("load", "load (start -> end)"), ("tol", "tol")]
                 + [(variant, f"{variant} s") for variant in variants]
                 + [("iterations", "K"), ("coarse", "coarse chosen"),
                    ("bound", "speed-up bound"), ("ratio", "serial / Parareal"),
                    ("busy", "Parareal CPU s / wall s"), ("error", "max error vs serial fine")])
    intro = (f"{first['case']['description']}, on `{first['case']['backend']}`. Serial: the "
             "faster of `solve_serial` and a plain loop of the fine steps.")
    return section("Where it pays on two cores", intro, sources(results, *names), table)
