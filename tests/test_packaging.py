"""Packaging: every package is installed, optional dependencies stay optional."""

from __future__ import annotations

import pathlib
import sys

import pytest

from tests.inprocess import run_forked_here

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_every_package_is_listed_in_pyproject():
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = set()
    for top, name in (("parareal", "parareal"), ("adapters", "parareal.adapters")):
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top).parts
            found.add(".".join((name, *rel)))
    assert found == listed


def test_core_imports_without_optional_dependencies():
    # The core (engine, propagators, backends, problems, CLI) must not import torch, scipy,
    # mpi4py, diffusers or matplotlib at module level.
    code = (
        "import sys, parareal, parareal.cli, parareal.theory, parareal.problems\n"
        "heavy = {'torch', 'scipy', 'mpi4py', 'diffusers', 'matplotlib', 'torchdiffeq'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    # In a child forked from this interpreter (no new interpreter to start), which forgets
    # every third-party module but numpy first: what parareal imports, directly or through
    # another package, is imported anew there, as in a fresh interpreter.
    loaded = {name.split(".")[0] for name in sys.modules if not name.startswith("__")}
    third_party = loaded - set(sys.stdlib_module_names) - {"numpy"}  # __main__ stays
    (proc,) = run_forked_here([code], fresh=sorted(third_party))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", proc.stdout


def test_adapters_are_importable_as_parareal_adapters():
    pytest.importorskip("torch")  # without them the import is an ImportError naming the extra
    pytest.importorskip("diffusers")
    import parareal.adapters.diffusion  # noqa: F401
