"""The diffusion adapter's modules import no module that imports them back (issue 19): the
graph of every import inside ``adapters/diffusion`` (module level, in functions, and for
typing alike) has no cycle, and ``auto`` depends on the methods, never on ``sample``."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest

from tests.inprocess import run_forked_here

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "adapters" / "diffusion"
PREFIX = "parareal.adapters.diffusion"


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join([PREFIX, *parts])] = path
    return out


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of the package that ``name`` imports anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            candidates = [target, *(f"{target}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        found |= {c for c in candidates if c in known and c != name}
    return found


def test_the_import_graph_has_no_cycle():
    mods = modules()
    graph = {name: imports(name, path, set(mods)) for name, path in mods.items()}
    assert f"{PREFIX}.sampler" not in graph[f"{PREFIX}.auto"]
    done: set[str] = set()

    def visit(name: str, stack: list[str]) -> None:
        for dep in sorted(graph[name]):
            if name.startswith(dep + "."):
                continue  # a submodule imports its own package's other modules through it
            assert dep not in stack, "import cycle: " + " -> ".join(stack[stack.index(dep):]
                                                                    + [dep])
            if dep not in done:
                visit(dep, [*stack, dep])
        done.add(name)

    for name in graph:
        visit(name, [name])


FIRST = ["auto", "methods.srds", "runner", "model_rhs", "digits"]


@pytest.fixture(scope="module")
def first_imports() -> dict[str, subprocess.CompletedProcess[str]]:
    """``import parareal.adapters.diffusion.FIRST`` for every module of ``FIRST``, each in
    its own process forked from this interpreter (``tests.inprocess.run_forked_here``), which
    has imported torch and diffusers' models (in a whole run of the suite, already for other
    tests), with every parareal module forgotten: the adapter's modules (and parareal's) are
    imported for the first time in each."""
    pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    from diffusers import DDIMScheduler, FlowMatchEulerDiscreteScheduler, UNet2DModel  # noqa: F401

    fresh = ("import sys\n"  # nothing of parareal is loaded before the import
             "assert not [m for m in sys.modules if m.split('.')[0] == 'parareal']\n")
    procs = run_forked_here([f"{fresh}import {PREFIX}.{first}" for first in FIRST],
                            fresh=["parareal"])
    return dict(zip(FIRST, procs))


@pytest.mark.parametrize("first", FIRST)
def test_a_module_imported_first_in_a_fresh_process_imports(first, first_imports):
    proc = first_imports[first]
    assert proc.returncode == 0, proc.stderr
