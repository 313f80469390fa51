"""Every snippet, command line and printed output of README.md and docs/*.md is checked.

- Python blocks run one by one, each in a fresh namespace in an empty folder, as a reader
  would paste one into a new interpreter; a ``text`` block right after one is what it must
  print.
- Console blocks (``$ command`` lines, then their output) run for real and must print what
  they show, with the exit status they show (``[exit N]``; 0 when absent).
- Every other documented command line is parsed by the real parser: ``parareal``'s, or the
  example or benchmark script's own.

The conventions and the comparison rules are in ``tests/doccheck.py``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import re
import shlex
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from parareal.problems import ReferenceUnavailable
from tests.conftest import EXTRAS
from tests.doccheck import (
    DOCS,
    ROOT,
    console_commands,
    matches,
    orphan_text_blocks,
    python_snippets,
    shell_lines,
)
from tests.inprocess import parse_only, process_state_kept, run_main

OPTIONAL = ("torch", "torchdiffeq", "scipy", "diffusers", "sklearn", "matplotlib", "mpi4py",
            "dask")
SNIPPETS = python_snippets()
COMMANDS = [c for path in DOCS for c in console_commands(path)]


def _requirements(code: str) -> list[str]:
    found = set(re.findall(r"^\s*(?:import|from)\s+(\w+)", code, flags=re.M))
    if "parareal.adapters.diffusion" in code or re.search(r"\bparareal sample\b", code):
        found |= {"torch", "diffusers", "sklearn"}
    if "mpiexec" in code or "--backend mpi" in code:
        found.add("mpi4py")
    if "scipy" in code or "BDF" in code or "Radau" in code:
        found.add("scipy")
    if "--plot" in code:
        found.add("matplotlib")
    return [name for name in OPTIONAL if name in found]


@pytest.mark.parametrize(
    "doc,index,code,expected", SNIPPETS, ids=[f"{d}[{i}]" for d, i, _, _ in SNIPPETS]
)
def test_python_snippet_runs_and_prints_what_the_doc_shows(
    doc, index, code, expected, tmp_path, monkeypatch
):
    for name in _requirements(code):
        pytest.importorskip(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(code, f"{doc}[python block {index}]", "exec"), {"__name__": "__main__"})
    except (ImportError, ReferenceUnavailable) as exc:
        missing = _missing_extra(str(exc))
        if missing is None:
            raise
        # a snippet that needs an extra without importing it (a ScipyIVP, a problem's
        # numerical reference): the library named the extra, which is not installed here
        pytest.skip(f"needs the {missing} extra, not installed: {exc}")
    if expected is not None:
        assert matches(expected, out.getvalue()), (
            f"{doc}[python block {index}] printed:\n{out.getvalue()}\nthe doc shows:\n{expected}"
        )


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


def _environment(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ, MPLBACKEND="Agg", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1",
               COLUMNS="100")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    for name in ("examples", "benchmarks"):
        (tmp_path / name).symlink_to(ROOT / name)
    return env


def _in_process(line: str) -> bool:
    """Whether ``line`` runs in this process: ``parareal`` lines through
    ``parareal.cli.main``, ``python examples/NAME.py`` lines through the script's ``main``
    (:func:`tests.inprocess.run_main`), and ``&&`` chains of such lines, all without other
    shell syntax. A new interpreter spends seconds on imports (diffusers for ``sample``)
    before the command starts; the lines whose process is part of what they show (pipes,
    ``mpiexec``) run in bash, and tests/test_cli_process.py runs the command line's own
    process behaviour (imports, signals, pipes)."""
    return all(_plain(part) for part in line.split(" && "))


def _plain(part: str) -> bool:
    """Whether ``part`` is one plain ``parareal`` or ``python examples/NAME.py`` command."""
    if re.search(r"[|;&<>$`\\]", part):
        return False
    script = re.match(r"python examples/\w+\.py( |$)", part)
    return part.startswith("parareal ") or script is not None


def _run_in_process(line: str, tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """``line`` in this process, in ``tmp_path`` with ``env``: stdout and stderr together, as
    ``bash -c`` would print them, and warnings printed as a new interpreter would; the folder
    and what a command changes for its process (environment, threads, torch's settings) are
    restored afterwards (:func:`tests.inprocess.process_state_kept`). In an ``a && b`` chain,
    ``b`` runs only when ``a`` exited 0, and the chain's status is that of the last one run."""
    from parareal.cli import main

    saved_cwd, out, status = os.getcwd(), io.StringIO(), 0
    for part in line.split(" && "):
        argv = shlex.split(part)
        with process_state_kept(argv[0], argv[1:]):
            os.environ.clear()
            os.environ.update(env)
            os.chdir(tmp_path)
            try:
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out), \
                        warnings.catch_warnings():
                    warnings.resetwarnings()  # a new interpreter's filters ("default" for the rest)
                    warnings.simplefilter("default")
                    warnings.showwarning = _print_warning
                    try:
                        if argv[0] == "parareal":
                            status = main(argv[1:])
                        else:  # python examples/NAME.py ARGS: the script's main(ARGS)
                            status = run_main(ROOT / argv[1], *argv[2:])
                    except SystemExit as exit_:  # argparse's usage errors and --help
                        status = exit_.code if isinstance(exit_.code, int) else 1
                    status = status or 0
            finally:
                os.chdir(saved_cwd)
        if status != 0:
            break
    return subprocess.CompletedProcess(line, status, out.getvalue())


def _print_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(warnings.formatwarning(message, category, filename, lineno, line), end="",
          file=sys.stderr)


@pytest.mark.parametrize("command", COMMANDS, ids=[f"{c.doc}:{c.line[:60]}" for c in COMMANDS])
def test_console_command_prints_what_the_doc_shows(command, tmp_path):
    for name in _requirements(command.line):
        pytest.importorskip(name)
    env = _environment(tmp_path)
    if _in_process(command.line):
        proc = _run_in_process(command.line, tmp_path, env)
    else:
        proc = subprocess.run(["bash", "-c", command.line], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, cwd=tmp_path, env=env,
                              timeout=600)
    missing = _missing_extra(proc.stdout) if proc.returncode != command.status else None
    if missing is not None:
        pytest.skip(f"needs the {missing} extra, not installed")
    assert proc.returncode == command.status, (
        f"`{command.line}` exited {proc.returncode}, the doc says {command.status}:\n"
        f"{proc.stdout}"
    )
    if command.output is not None:
        assert matches(command.output, proc.stdout), (
            f"`{command.line}` printed:\n{proc.stdout}\nthe doc shows:\n{command.output}"
        )


def _program(line: str) -> list[str]:
    """The argv of a documented command line, without environment settings and launchers."""
    line = line.split("|")[0].split("&&")[-1].split(";")[0]
    argv = shlex.split(line)
    while argv and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", argv[0]):
        argv = argv[1:]
    if argv[:1] == ["timeout"]:
        argv = argv[2:]
    if argv[:1] in (["mpiexec"], ["mpirun"], ["srun"]):
        argv = argv[1:]
        while argv and argv[0].startswith("-"):
            argv = argv[2:] if argv[0] in ("-n", "-np") else argv[1:]
    if argv[:3] == ["python", "-m", "parareal"]:
        argv = ["parareal", *argv[3:]]
    return argv


def _documented_programs() -> tuple[list[tuple[str, list[str]]], list[tuple[str, list[str]]]]:
    cli, scripts = [], []
    for path in DOCS:
        for line in shell_lines(path):
            argv = _program(line)
            if argv[:1] == ["parareal"]:
                cli.append((f"{path.name}: {line}", argv[1:]))
            elif argv[:1] == ["python"] and len(argv) > 1 and argv[1].endswith(".py"):
                scripts.append((f"{path.name}: {line}", argv[1:]))
    return cli, scripts


def test_documented_parareal_command_lines_parse():
    from parareal.cli import build_parser

    cli, _ = _documented_programs()
    assert len(cli) >= 10, "too few documented command lines found: is the reader broken?"
    parser = build_parser()
    refused = []
    for where, argv in cli:
        try:
            with contextlib.redirect_stderr(io.StringIO()):
                parser.parse_args(argv)
        except SystemExit as exc:  # argparse's way of refusing
            if exc.code != 0:
                refused.append(where)
    assert not refused, "command lines that do not parse:\n" + "\n".join(refused)


def test_documented_script_command_lines_parse():
    _, scripts = _documented_programs()
    assert scripts, "no documented example or benchmark command found"
    missing = [w for w, argv in scripts if not (ROOT / argv[0]).is_file()]
    assert not missing, "documented scripts that do not exist:\n" + "\n".join(missing)
    needs = set().union(*(_requirements(" ".join(a) + open(ROOT / a[0]).read())
                          for _, a in scripts))
    for name in sorted(needs):
        pytest.importorskip(name)
    refused, verdicts = [], {}
    for written, argv in scripts:  # each run here until its parser has parsed, state restored
        if tuple(argv) not in verdicts:  # a line shown twice is parsed once, reported twice
            verdicts[tuple(argv)] = parse_only(ROOT / argv[0], argv[1:])
        why = verdicts[tuple(argv)]
        if why is not None:
            refused.append(f"{written}: {why}")
    assert not refused, "\n".join(refused)


@pytest.mark.parametrize("path", DOCS, ids=[p.name for p in DOCS])
def test_every_shown_output_belongs_to_a_checked_block(path):
    assert orphan_text_blocks(path) == 0, (
        f"{path.name}: a ```text block that does not follow a python block (outputs of "
        "commands go in console blocks after their `$ ` line)"
    )


def test_readme_shows_checked_snippets_and_commands():
    readme = [c for c in SNIPPETS if c[0] == "README.md"]
    assert readme, "README.md has no python example"
    assert any(c.doc == "README.md" for c in COMMANDS), "README.md shows no checked command"


@pytest.mark.parametrize("expected,actual,same", [
    ("converged 7 2.976e-06", "converged 7 2.976e-06", True),
    ("converged 7 2.976e-06", "converged 8 2.976e-06", False),
    ("converged 7 2.976e-06", "converged 7 2.990e-06", True),
    ("converged 7 2.976e-06", "converged 7 3.1e-06", False),
    ("wall ~0.131 s", "wall 0.95 s", True),
    ("wall ~0.5 s", "wall 12.0 s", False),
    ("wall ~0.5 s", "wall word s", False),
    ("a ... z", "a b c d z", True),
    ("a ... z", "a b c d", False),
    ("... z", "z", True),
    ("x ... y ... z", "x 1 y 2 y 3 z", True),
    ('{"k": [1, 2],\n "w": 3}', '{"k": [1, 2], "w": 3}', True),
    ("status: converged", "status: diverged", False),
    ("line one", "line one\nline two", False),
])
def test_output_comparison_rules(expected, actual, same):
    assert matches(expected, actual) is same
