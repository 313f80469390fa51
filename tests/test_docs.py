"""Every snippet of README.md and docs/*.md runs as written.

Python blocks run one by one, each in a fresh namespace in an empty folder, exactly as a reader
would paste one into a new interpreter. Command lines (``parareal ...`` in shell blocks) are
checked against the real argument parser, and the README's commands are run for real.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from parareal.problems import ReferenceUnavailable

from .conftest import EXTRAS

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
OPTIONAL = ("torch", "torchdiffeq", "scipy", "diffusers", "sklearn", "matplotlib", "mpi4py")
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", flags=re.S | re.M)


def blocks(path: Path) -> list[tuple[str, str]]:
    """``(language, code)`` of every fenced block of a Markdown file, in order."""
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer(path.read_text())]


def python_snippets() -> list[tuple[str, int, str]]:
    out = []
    for path in DOCS:
        python = [code for lang, code in blocks(path) if lang == "python"]
        out += [(path.name, i, code) for i, code in enumerate(python)]
    return out


def command_lines(path: Path) -> list[str]:
    """``parareal ...`` command lines of the shell blocks (synopses with ``[...]`` skipped)."""
    lines = []
    for lang, code in blocks(path):
        if lang not in ("", "bash", "sh", "console", "shell"):
            continue
        for line in code.splitlines():
            line = line.strip().removeprefix("$ ")
            if line.startswith("parareal ") and "[" not in line:
                lines.append(line.split(" #")[0].split(" |")[0].strip())
    return lines


def _requirements(code: str) -> list[str]:
    found = set(re.findall(r"^\s*(?:import|from)\s+(\w+)", code, flags=re.M))
    if "parareal.adapters.diffusion" in code:
        found |= {"torch", "diffusers"}
    return [name for name in OPTIONAL if name in found]


@pytest.mark.parametrize(
    "doc,index,code", python_snippets(), ids=[f"{d}[{i}]" for d, i, _ in python_snippets()]
)
def test_python_snippet_runs_on_its_own(doc, index, code, tmp_path, monkeypatch):
    for name in _requirements(code):
        pytest.importorskip(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    try:
        exec(compile(code, f"{doc}[python block {index}]", "exec"), {"__name__": "__main__"})
    except (ImportError, ReferenceUnavailable) as exc:
        missing = _missing_extra(str(exc))
        if missing is None:
            raise
        # a snippet that needs an extra without importing it (a ScipyIVP, a problem's
        # numerical reference): the library named the extra, which is not installed here
        pytest.skip(f"needs the {missing} extra, not installed: {exc}")


def _missing_extra(message: str) -> str | None:
    """The extra that ``message`` says to install (``pip install 'parareal[X]'``), if none of
    its modules can be imported here; else ``None``."""
    named = re.search(r"pip install 'parareal\[(\w+)\]'", message)
    if named is None:
        return None
    modules = [module for module, extra in EXTRAS.items() if extra == named.group(1)]
    if modules and all(importlib.util.find_spec(module) is None for module in modules):
        return named.group(1)
    return None


def test_every_doc_has_checked_snippets():
    assert python_snippets(), "no python blocks found"
    readme = [code for lang, code in blocks(ROOT / "README.md") if lang == "python"]
    assert readme, "README.md has no python example"


@pytest.mark.parametrize("path", DOCS, ids=[p.name for p in DOCS])
def test_documented_command_lines_parse(path):
    from parareal.cli import build_parser

    parser = build_parser()
    for line in command_lines(path):
        argv = shlex.split(line)[1:]
        try:
            parser.parse_args(argv)
        except SystemExit as exc:  # argparse's way of refusing
            pytest.fail(f"{path.name}: `{line}` does not parse (exit {exc.code})")


def test_readme_commands_run(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    lines = command_lines(ROOT / "README.md")
    assert lines, "README.md shows no parareal command"
    env = dict(os.environ, MPLBACKEND="Agg", OMP_NUM_THREADS="1")
    bindir = Path(sys.executable).parent
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    for line in lines:
        proc = subprocess.run([sys.executable, "-m", "parareal", *shlex.split(line)[1:]],
                              capture_output=True, text=True, cwd=tmp_path, env=env,
                              timeout=300)
        assert proc.returncode == 0, f"`{line}` failed:\n{proc.stdout}\n{proc.stderr}"
