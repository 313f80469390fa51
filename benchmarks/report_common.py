"""Helpers of ``benchmarks/report.py``: reading the result files, the command and machine of
each, and cell formats. Pure (no numpy, no torch, no clock).
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from diffusion_tables import table

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

#: The command of a result file that stores none (nor its argv), as documented on the page
#: before it was generated.
DOCUMENTED_COMMANDS = {
    "lookahead-2cpu.json":
        "python benchmarks/lookahead.py --json benchmarks/results/lookahead-2cpu.json",
    "concurrency-2cpu.json":
        "python benchmarks/concurrency.py --json benchmarks/results/concurrency-2cpu.json "
        "--markdown benchmarks/results/concurrency-2cpu.md",
    "concurrency-2cpu-keep-freed-memory.json":
        "python benchmarks/concurrency.py --keep-freed-memory --json "
        "benchmarks/results/concurrency-2cpu-keep-freed-memory.json --markdown "
        "benchmarks/results/concurrency-2cpu-keep-freed-memory.md",
    "diffusion-2cpu.json":
        "python benchmarks/diffusion.py --json benchmarks/results/diffusion-2cpu.json "
        "--plots docs",
    "diffusion-samplers-2cpu.json":
        "OMP_NUM_THREADS=1 python benchmarks/diffusion.py --only-samplers --steps 25,100 "
        "--n 1,8 --seeds 0,1,2 --threads 1 --json "
        "benchmarks/results/diffusion-samplers-2cpu.json",
    "diffusion-auto-2cpu.json":
        "OMP_NUM_THREADS=1 python benchmarks/diffusion.py --only-auto --steps 25,100,1000 "
        "--n 1,8 --seeds 0,1,2 --threads 1 --json benchmarks/results/diffusion-auto-2cpu.json",
    "auto-choice-2cpu-loaded.json":
        "OMP_NUM_THREADS=1 python benchmarks/auto_choice.py --cases 100x16,1000x1,100x1 "
        "--repeats 2 --json benchmarks/results/auto-choice-2cpu-loaded.json",
    "srds-blocks-2cpu.json":
        "OMP_NUM_THREADS=1 python benchmarks/srds.py --study blocks --json "
        "benchmarks/results/srds-blocks-2cpu.json",
    "srds-stop-picard-2cpu.json":
        "OMP_NUM_THREADS=1 python benchmarks/srds.py --study stop --study picard --steps 25,100 "
        "--json benchmarks/results/srds-stop-picard-2cpu.json",
    "srds-coarse-2cpu.json":
        "OMP_NUM_THREADS=1 python benchmarks/srds.py --study coarse --steps 25,100 --json "
        "benchmarks/results/srds-coarse-2cpu.json",
    "srds-picard1000-2cpu.json":
        "OMP_NUM_THREADS=1 python benchmarks/srds.py --study picard --steps 1000 --n 1 --seeds 3 "
        "--json benchmarks/results/srds-picard1000-2cpu.json",
}


class Results:
    """The result files, read once each; remembers which ones the page used.

    Parameters
    ----------
    folder : Path
        The folder of the ``*.json`` result files.
    """

    def __init__(self, folder: Path = RESULTS) -> None:
        self.folder = folder
        self.used: list[str] = []
        self._cache: dict[str, dict[str, Any]] = {}

    def __call__(self, name: str) -> dict[str, Any]:
        """The contents of ``folder / name``; ``name`` is recorded as used."""
        if name not in self._cache:
            self._cache[name] = json.loads((self.folder / name).read_text())
            self.used.append(name)
        return self._cache[name]

    def unused(self) -> list[str]:
        """The ``*.json`` files of the folder that no section read."""
        return sorted(p.name for p in self.folder.glob("*.json") if p.name not in self.used)


def command(name: str, data: dict[str, Any]) -> str:
    """The command that wrote a result file.

    Parameters
    ----------
    name : str
        The file's name under ``benchmarks/results/``.
    data : dict
        Its contents.

    Returns
    -------
    str
        Its own ``command`` (or ``meta.command``), else ``benchmarks/core.py`` with its stored
        ``argv``, else the one in :data:`DOCUMENTED_COMMANDS`.
    """
    stored = data.get("command") or data.get("meta", {}).get("command")
    if stored:
        return stored
    if "argv" in data:
        return "python benchmarks/core.py " + shlex.join(data["argv"])
    return DOCUMENTED_COMMANDS[name]


def _threads(data: dict[str, Any]) -> Any:
    for where in (data, data.get("meta", {}), data.get("machine", {})
                  if isinstance(data.get("machine"), dict) else {}):
        for key in ("threads", "threads_per_rank"):
            value = where.get(key)
            if isinstance(value, dict):  # {"per_process": 1, "environment": {...}}
                value = value.get("per_process")
            if value is not None:
                return value
    return data.get("machine", {}).get("blas_threads") if isinstance(
        data.get("machine"), dict) else None


def machine(data: dict[str, Any]) -> str:
    """What a result file says of its machine.

    Parameters
    ----------
    data : dict
        The file's contents.

    Returns
    -------
    str
        CPUs (and model), threads, date and load average where recorded; ``""`` if none is.
    """
    info = data.get("machine")
    if isinstance(info, str):
        return info
    info = dict(info or {}, **data.get("meta", {}))
    parts = []
    cpus = info.get("CPU(s)") or info.get("cpus")
    if cpus:
        model = info.get("Model name")
        parts.append(f"{cpus} CPUs" + (f" ({model})" if model else ""))
    threads = _threads(data)
    if threads is not None:
        parts.append(f"{threads} thread{'s' if str(threads) != '1' else ''}"
                     + (" per rank" if "threads_per_rank" in data else ""))
    for key, name in (("date", ""), ("load_average", "load average ")):
        value = info.get(key, data.get(key))
        if value is not None:
            parts.append(f"{name}{value:.1f}" if isinstance(value, float) else f"{name}{value}")
    return ", ".join(parts)


def sources(results: Results, *names: str) -> str:
    """A shell block: per result file, its machine (a comment, where the file records it) and
    the command that wrote it.

    Parameters
    ----------
    results : Results
        The result files.
    *names : str
        The files of the section, in order.

    Returns
    -------
    str
        The fenced ``bash`` block.
    """
    lines = ["```bash"]
    for name in names:
        data = results(name)
        about, line = machine(data), command(name, data)
        if about:
            lines.append(f"# {about}")
        lines.append(line if name in line else f"{line}  # writes benchmarks/results/{name}")
    return "\n".join(lines + ["```"])


def grid(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    """A Markdown table of text cells, through ``diffusion_tables.table``.

    Parameters
    ----------
    rows : list of dict
        The cells of each row by key; ``None`` or a missing key shows as ``-``.
    columns : list of (str, str)
        (key, title) of each column; the first is left-aligned, the others right-aligned.

    Returns
    -------
    str
        The table.
    """
    specs = [(key, title, "s" if i == 0 else ">") for i, (key, title) in enumerate(columns)]
    return table([{k: ("" if v is None else str(v)) for k, v in r.items()} for r in rows], specs)


def ms(seconds: float) -> str:
    """``47.7 ms`` below a second, ``1.07 s`` above."""
    return f"{seconds * 1e3:.1f} ms" if seconds < 1.0 else f"{seconds:.2f} s"


def times(value: float) -> str:
    """A ratio: ``1.55x``."""
    return f"{value:.2f}x"


def pct(share: float) -> str:
    """A share as a percentage: ``99.69%``, ``100%``."""
    return "100%" if share == 1 else f"{share:.2%}"


def section(title: str, intro: str, *parts: str, level: int = 2) -> str:
    """A heading, its introduction and its parts, separated by blank lines.

    Parameters
    ----------
    title : str
        The heading's text.
    intro : str
        What is measured.
    *parts : str
        Commands, tables, subsections; empty ones are left out.
    level : int
        The heading's level (2: ``##``).

    Returns
    -------
    str
        The Markdown of the section.
    """
    return "\n\n".join([f"{'#' * level} {title}", intro, *[p for p in parts if p]])
