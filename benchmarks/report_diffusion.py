"""The diffusion sections of docs/benchmarks.md (SRDS and Picard, samplers, ``method="auto"``,
the SRDS studies, the exact methods), rendered from ``benchmarks/results/*.json`` by
``benchmarks/report.py``. Each section function takes the :class:`report_common.Results` and
returns the section's Markdown.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

import auto_choice
from report_common import Results, grid, pct, section, sources, times
from srds_tables import summarise

CALLS = "median sequential model calls (max over the seeds)"


def _window_label(method: str, steps: int) -> str:
    """``picard w=20`` at N = 100 -> ``picard w=2√N`` (the windows are multiples of
    ``round(sqrt(N))``)."""
    if not method.startswith("picard w="):
        return method
    window, root = int(method.split("=")[1]), max(1, round(math.sqrt(steps)))
    if window % root:
        return method
    k = window // root
    return f"picard w={'' if k == 1 else k}√N"


def pivot(cells: list[tuple[str, str, str]], corner: str) -> str:
    """A table from (row label, column label, cell) triples.

    Parameters
    ----------
    cells : list of (str, str, str)
        Row label, column label and cell text; rows and columns keep their first appearance's
        order.
    corner : str
        The title of the row labels' column.

    Returns
    -------
    str
        The table (``-`` where a row has no cell in a column).
    """
    rows: dict[str, dict[str, str]] = {}
    columns: list[str] = []
    for row, column, cell in cells:
        rows.setdefault(row, {corner: row})[column] = cell
        if column not in columns:
            columns.append(column)
    return grid(list(rows.values()), [(corner, corner)] + [(c, c) for c in columns])


def per_n(results: Results) -> str:
    """SRDS and Picard against serial DDIM per N and n (``benchmarks/diffusion.py``)."""
    name = "diffusion-2cpu.json"
    data = results(name)
    cells = []
    for grid_, summary in zip(data["grids"], data["summaries"]):
        column = f"N={grid_['steps']}, n={grid_['n']}"
        for r in summary[1:] if summary[0]["method"] == "serial" else summary:
            cells.append((_window_label(r["method"], grid_["steps"]), column,
                          f"{r['sequential_evals']:g}, {times(r['speedup_wall'])}, "
                          f"{pct(r['uint8_identical_min'])}"))
    cost = grid([dict(what="seconds per call",
                      **{str(r["batch"]): f"{r['seconds']:.4f}" for r in data["batch_cost"]}),
                 dict(what="x batch 1", **{str(r["batch"]): f"{r['relative_to_batch_1']:.2f}"
                                          for r in data["batch_cost"]})],
                [("what", "batch")] + [(str(r["batch"]), str(r["batch"]))
                                       for r in data["batch_cost"]])
    quality = grid([dict(method=r["method"], fd=f"{r['frechet_distance']:.3f}",
                         conf=f"{r['confidence']:.3f}", seq=r.get("sequential_evals"))
                    for r in data["quality"]],
                   [("method", "samples"), ("fd", "Fréchet distance"),
                    ("conf", "mean confidence"), ("seq", "sequential calls")])
    clip = grid([dict(clip=r["clip_sample"], steps=r["steps"], iters=r["iterations"],
                      seq=r["sequential_evals"], same=pct(r["uint8_identical"]),
                      serial=f"{r['serial_wall_s']:.2f}", srds=f"{r['srds_wall_s']:.2f}")
                 for r in data["clip_ablation"]],
                [("clip", "clip_sample"), ("steps", "N"), ("iters", "K"),
                 ("seq", "sequential calls"), ("same", "8-bit same"),
                 ("serial", "serial s"), ("srds", "SRDS s")])
    args = data["args"]
    intro = (
        "SRDS and ParaDiGMS' Picard against serial DDIM sampling, bundled digits model "
        "(docs/model_card.md), with the paper's `round(sqrt(N))` blocks (the default is now "
        f"`2·sqrt(N)`), seeds {', '.join(map(str, args['seeds']))}. Cells: median sequential "
        "calls (serial: N), wall-clock speed-up over serial, worst share of 8-bit pixels "
        "equal to serial's.")
    return "\n\n".join([
        section("Diffusion: SRDS and Picard", intro, sources(results, name),
                pivot(cells, "method")),
        section("Cost of one batched model call", "Seconds per call of the digits model "
                "against its batch size (median of repeated calls).", cost, level=3),
        section("Sample quality", f"{args['quality_n']} samples at N = {args['quality_steps']}:"
                " Fréchet distance in the digits classifier's feature space against the "
                "held-out digits, and mean classifier confidence.", quality, level=3),
        section("`clip_sample` ablation", "SRDS with the scheduler's `clip_sample` on and off "
                f"(one seed, {args['n'][-1]} samples).", clip, level=3),
        section("Plots", "Drawn from the same run (`--plots docs`).",
                "![error to the serial sample per iteration](srds_error_per_iteration.png)\n\n"
                "![speedup against N](srds_speedup_vs_n.png)", level=3)])


def samplers(results: Results) -> str:
    """diffusers' Euler and Heun schedulers, serial and SRDS."""
    name = "diffusion-samplers-2cpu.json"
    serial = {(r["sampler"], r["steps"], r["n"]): r["sequential_evals"]
              for r in results(name)["samplers"] if r["method"] == "serial"}
    cells = [(r["sampler"], f"N={r['steps']}, n={r['n']}",
              f"{r['sequential_evals']} of {serial[r['sampler'], r['steps'], r['n']]}, "
              f"{times(r['speedup_wall'])}, {pct(r['uint8_identical_min'])}")
             for r in results(name)["samplers"] if r["method"] != "serial"]
    return section(
        "Euler and Heun samplers",
        "diffusers' `EulerDiscreteScheduler` and `HeunDiscreteScheduler` (with and without "
        "Karras sigmas), SRDS with each scheduler's own step as fine and coarse. Cells: SRDS's "
        "median sequential calls of serial's, wall-clock speed-up, worst share of equal 8-bit "
        "pixels.",
        sources(results, name), pivot(cells, "sampler"), level=3)


def auto_accuracy(results: Results) -> str:
    """``method="auto"``'s predicted seconds against the measured ones."""
    name = "diffusion-auto-2cpu.json"
    cells = []
    for r in results(name)["auto_accuracy"]:
        row = f"N={r['steps']}, n={r['n']}"
        cells.append((row, f"{r['method']}: predicted / measured s",
                      f"{r['predicted_s']:.3f} / {r['measured_s']:.3f}"
                      + (" (ran)" if r["chosen"] == "yes" else "")))
    return section(
        "method='auto': predicted against measured seconds",
        "The seconds `sample(..., method=\"auto\")` predicts for each method (first seed) "
        "against the median measured by running it; \"(ran)\" marks the method `auto` chose.",
        sources(results, name), pivot(cells, "case"), level=3)


def auto_choice_time(results: Results) -> str:
    """The time ``method="auto"`` spends choosing (``benchmarks/auto_choice.py``)."""
    name = "auto-choice-2cpu-loaded.json"
    return section(
        "method='auto': time spent choosing",
        "`result.choice_s`, every measurement in a fresh process with an empty temporary cache: "
        "the first call (cold), the second call in that process, the first call of a new "
        "process with a warm disk cache, and a process that times every batch size; median "
        "(worst) of the repeats.",
        sources(results, name), auto_choice.table(results(name)["rows"]), level=3)


def _calls(s: dict[str, Any]) -> str:
    return f"{statistics.median(s['seq']):g} ({max(s['seq'])})"


def _cell(s: dict[str, Any]) -> str:
    return f"{_calls(s)}, {pct(s['pooled'])}"


def _blocks(summaries: list[dict[str, Any]]) -> tuple[list[tuple[str, str, str]], str]:
    """The blocks study as pivot cells: a row per (N, n), the block counts in ascending order
    as columns, each titled by what its counts have in common (``√N``, ``default``)."""
    by_case: dict[str, list[dict[str, Any]]] = {}
    for s in summaries:
        by_case.setdefault(f"N={s['N']}, n={s['n']}", []).append(s)
    width = max(len(sel) for sel in by_case.values())
    titles = []
    for i in range(width):
        notes = {s["config"].partition(" ")[2] for sel in by_case.values() if i < len(sel)
                 for s in [sorted(sel, key=_count)[i]]}
        titles.append(f"{i + 1}: {notes.pop().strip('()')}" if len(notes) == 1 and "" not in notes
                      else f"{i + 1}")
    cells = [(case, titles[i], f"B={_count(s)}: {_cell(s)}")
             for case, sel in by_case.items() for i, s in enumerate(sorted(sel, key=_count))]
    return cells, "case"


def _count(s: dict[str, Any]) -> int:
    return int(s["config"].split()[0].removeprefix("B="))


def study(results: Results, name: str, study_: str) -> list[dict[str, Any]]:
    """The summaries of one study of a ``benchmarks/srds.py --json`` file."""
    return summarise([r for r in results(name)["rows"] if r["study"] == study_])


def _tol_text(tol: float) -> str:
    """``1/255`` for the default tolerance, else the number."""
    inverse = round(1 / tol)
    return f"1/{inverse}" if abs(tol * inverse - 1) < 1e-12 else f"{tol:g}"


def srds_studies(results: Results) -> str:
    """Blocks, stopping rule, coarse step, Picard at equal exactness."""
    blocks = pivot(*_blocks(study(results, "srds-blocks-2cpu.json", "blocks")))
    stop = grid([dict(N=s["N"], n=s["n"], config=s["config"], calls=_calls(s),
                      above=f"{s['above_tol']} / {s['seeds']}", same=pct(s["pooled"]))
                 for s in study(results, "srds-stop-picard-2cpu.json", "stop")],
                [("N", "N"), ("n", "n"), ("config", "rule"), ("calls", "calls"),
                 ("above", "seeds above tol"), ("same", "8-bit same")])
    coarse = pivot([(f"{s['model']}, N={s['N']}, n={s['n']}", s["config"], _cell(s))
                    for s in study(results, "srds-coarse-2cpu.json", "coarse")], "case")
    picard = pivot([(s["config"], f"N={s['N']}, n={s['n']}", _cell(s))
                    for name in ("srds-stop-picard-2cpu.json", "srds-picard1000-2cpu.json")
                    for s in study(results, name, "picard")], "configuration")
    intro = (
        "Pipelined SRDS on the digits model (and a 64-dimensional Gaussian mixture), compared "
        f"with the serial sample of the same `x_T`. Calls: {CALLS}; 8-bit same: share of "
        "8-bit pixels equal to serial's, pooled over the seeds; tol = "
        f"{_tol_text(results('srds-blocks-2cpu.json')['tol'])}.")
    return section(
        "SRDS beyond the paper", intro,
        section("Blocks", "Block counts around the default `2·sqrt(N)`, in ascending order; "
                "each cell: B, calls, 8-bit same.",
                sources(results, "srds-blocks-2cpu.json"), blocks, level=3),
        section("Stopping rule", "`stop=\"update\"` (default) against `stop=\"estimate\"`.",
                sources(results, "srds-stop-picard-2cpu.json"), stop, level=3),
        section("Coarse step across a block", "The DDIM jump (default) against two Euler "
                "sub-steps and Heun on the probability-flow ODE (compared with that sampler's "
                "own serial sample).", sources(results, "srds-coarse-2cpu.json"), coarse,
                level=3),
        section("Picard at equal exactness", "ParaDiGMS' Picard with its own rule "
                "(noise-scaled `tol=0.1`), then data-unit tolerances, the whole grid as the "
                "window (`window=N`) and Anderson acceleration, beside SRDS's default.",
                sources(results, "srds-stop-picard-2cpu.json", "srds-picard1000-2cpu.json"),
                picard, level=3))


def exact_tables(results: Results) -> str:
    """The exact methods and the flow-matching model (``diffusion-tables-2cpu.json``)."""
    name = "diffusion-tables-2cpu.json"
    data = results(name)

    def cells(key: str) -> list[tuple[str, str, str]]:
        return [(f"N={r['steps']}, n={r['n']}", r["method"],
                 f"{statistics.median(r['calls']):g} ({max(r['calls'])}), "
                 f"{statistics.median(r['evals']):g}, {pct(r['identical'])}")
                for r in data[key] if r["method"] not in ("serial", "srds tol=0")]

    def seeds(key: str) -> str:
        counts = {r["steps"]: len(r["seeds"]) for r in data[key]}
        return ", ".join(f"{counts[steps]} at N={steps}" for steps in sorted(counts))
    return section(
        "Exact methods and flow matching",
        "Exact methods on the DDPM digits model and the flow-matching one (also in "
        f"docs/diffusion.md). Cells: {CALLS}, median evaluations per sample, pooled share of "
        "8-bit pixels equal to serial's.",
        sources(results, name),
        section("Methods at equal exactness", f"DDPM digits model; seeds: {seeds('exact')}.",
                pivot(cells("exact"), "case"), level=3),
        section("Flow-matching digits model", f"Seeds: {seeds('flow')}; serial sampling "
                "takes N calls (serial and `srds tol=0` rows are in the JSON).",
                pivot(cells("flow"), "case"), level=3))
