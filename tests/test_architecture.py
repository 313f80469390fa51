"""The house rules of the redesign (issue 19), checked on the source: SPMD knowledge stays in
the backends, no import circles, small diffusion modules, a thin ``sample``, one run
description, and the backend hooks' meaning off SPMD."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PACKAGES = {"parareal": ROOT / "parareal", "parareal.adapters": ROOT / "adapters"}


def _sources(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def test_nothing_outside_the_backends_probes_spmd_or_calls_mpi_collectives():
    outside = [p for p in _sources("parareal", "adapters", "benchmarks", "examples")
               if "backends" not in p.relative_to(ROOT).parts[:2]]
    assert outside
    offences = []
    for path in outside:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\bspmd\b|\.comm\.", line):
                offences.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offences, "\n".join(offences)


def _module_name(path: Path) -> str:
    for package, folder in PACKAGES.items():
        if folder in path.parents or path.parent == folder:
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            return ".".join([package, *parts])
    raise AssertionError(path)


def _imports(path: Path, name: str) -> set[str]:
    """Every module of ours that ``path`` imports, at module level or inside functions."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")
                parent = parent[: len(parent) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m.replace("adapters.", "parareal.adapters.", 1) if m.startswith("adapters.") else m
            for m in found}


def test_no_import_circle_in_the_diffusion_adapter():
    paths = _sources("adapters")
    names = {_module_name(p): p for p in paths}
    graph = {name: {m for m in _imports(path, name) if m in names and m != name
                    and not name.startswith(m + ".") and not m.endswith("__init__")}
             for name, path in names.items()}
    # a package's __init__ re-exports its modules: edges into a package are edges to it only
    for name in graph:
        graph[name] = {m for m in graph[name] if not (m in PACKAGES or m == "parareal.adapters."
                                                       "diffusion") or name.startswith(m)}
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node: str, stack: list[str]) -> bool:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if nxt.startswith(node + "."):
                continue
            if state.get(nxt) == 1:
                cycle.extend(stack[stack.index(nxt):] + [node, nxt] if nxt in stack
                             else [node, nxt])
                return True
            if nxt not in state and visit(nxt, stack + [node]):
                return True
        state[node] = 2
        return False

    for node in sorted(graph):
        if node not in state and visit(node, []):
            break
    assert not cycle, " -> ".join(cycle)


def test_no_file_of_the_diffusion_adapter_is_over_450_lines():
    long = {str(p.relative_to(ROOT)): n for p in _sources("adapters/diffusion")
            if (n := len(p.read_text().splitlines())) > 450}
    assert not long, long


def test_sample_is_a_thin_front_door():
    pytest.importorskip("torch")
    from parareal.adapters.diffusion import sample

    lines, _ = inspect.getsourcelines(sample)
    assert len(lines) <= 120, len(lines)


def test_the_engine_takes_one_run_description():
    from parareal.engine import RunSpec, run_parareal
    from parareal.engine.parareal import _Run

    assert list(inspect.signature(run_parareal).parameters) == ["spec"]
    assert list(inspect.signature(_Run).parameters) == ["spec"]
    assert "run_on_boundaries" not in (ROOT / "parareal" / "solve.py").read_text()
    assert RunSpec.__dataclass_params__.frozen


def test_off_spmd_the_backend_hooks_are_the_plain_thing():
    from parareal.backends import Batched, Serial, Threads

    for backend in (Serial(), Batched(), Threads(2)):
        with backend:
            assert backend.drives() and not backend.spmd
            assert backend.enter(f=None) is None
            assert backend.broadcast(x := object()) is x
            assert backend.agree(lambda: 42) == 42
            with pytest.raises(KeyError):
                backend.agree(lambda: {}["missing"])
            assert backend.drive(lambda: "solution", None, None, None) == "solution"
            assert backend.barrier() is None
    assert Serial.serial_here and not Threads.serial_here
