"""The generated tables of docs/diffusion.md: pure functions from a ``benchmarks/diffusion.py
--json`` file's contents to Markdown (no torch, no model, no clock), so that a test can check
the committed tables against the committed JSON quickly.

    python benchmarks/diffusion.py --tables benchmarks/results/diffusion-tables-2cpu.json
"""

from __future__ import annotations

import statistics
from typing import Any


def table(rows: list[dict[str, Any]], columns: list[tuple[str, str, str]]) -> str:
    head = "| " + " | ".join(title for _, title, _ in columns) + " |"
    sep = "|" + "|".join("---" if fmt == "s" else "---:" for _, _, fmt in columns) + "|"
    lines = [head, sep]
    for row in rows:
        cells = []
        for key, _, fmt in columns:
            value = row.get(key, "")
            cells.append(format(value, fmt) if value != "" else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)



def _seed_text(seeds: list[int]) -> str:
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}"
    return ",".join(str(s) for s in seeds)


def display_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The compare rows as the tables show them (calls min / median / max, median evals)."""
    return [dict(row, seeds=_seed_text(row["seeds"]),
                 calls=f"{min(row['calls'])} / {statistics.median(row['calls']):g} / "
                       f"{max(row['calls'])}",
                 evals=format(statistics.median(row["evals"]), "g"),
                 same=f"{row['identical']:.4f} / {row['worst']:.4f}") for row in rows]


EXACT_COLUMNS = [("steps", "N", "d"), ("n", "n", "d"), ("seeds", "seeds", "s"),
                 ("method", "method", "s"),
                 ("calls", "sequential calls (min / median / max)", "s"),
                 ("evals", "evaluations / sample (median)", "s"),
                 ("same", "8-bit same (pooled / worst)", "s"),
                 ("levels", "max levels", "d"), ("max_abs_diff", "max abs diff", ".1e")]

#: The tables of docs/diffusion.md made from a ``--json`` file: name -> (JSON key, title).
DOC_TABLES = {"exact-table": ("exact", "Methods at equal exactness, DDPM digits model"),
              "flow-table": ("flow", "Flow-matching digits model")}


def doc_marker(name: str, end: bool = False) -> str:
    return f"<!-- benchmarks/diffusion.py {name} {'end' if end else 'begin'} -->"


def render_doc_table(data: dict[str, Any], name: str) -> str:
    """The Markdown of one generated table of docs/diffusion.md from a ``--json`` file's
    contents (pure: no model, no clock), between its markers."""
    key, _ = DOC_TABLES[name]
    return "\n".join([
        doc_marker(name),
        f"Generated from `{data['json_path']}` ({data['machine']}, {data['date']}) by:",
        "",
        "```bash",
        data["command"],
        "```",
        "",
        table(display_rows(data[key]), EXACT_COLUMNS),
        doc_marker(name, end=True),
    ])


def doc_tables(text: str) -> dict[str, str]:
    """The generated blocks of a Markdown text (markers included), by table name."""
    found = {}
    for name in DOC_TABLES:
        begin, end = doc_marker(name), doc_marker(name, end=True)
        if begin in text:
            found[name] = text[text.index(begin): text.index(end) + len(end)]
    return found


def update_doc(path: str, data: dict[str, Any]) -> list[str]:
    """Replace the generated blocks of ``path`` whose data ``data`` has; their names."""
    with open(path) as fh:
        text = fh.read()
    done = []
    for name, old in doc_tables(text).items():
        if DOC_TABLES[name][0] in data:
            text = text.replace(old, render_doc_table(data, name))
            done.append(name)
    with open(path, "w") as fh:
        fh.write(text)
    return done
