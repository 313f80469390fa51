"""The house rules of the redesign (issue 19), checked on the source: SPMD knowledge stays in
the backends, small diffusion modules, a thin ``sample``, one run description, and the backend
hooks' meaning off SPMD (no import circle: ``tests/test_diffusion_imports.py``)."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


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


def test_no_file_of_the_diffusion_adapter_is_over_450_lines():
    long = {str(p.relative_to(ROOT)): n for p in _sources("adapters/diffusion")
            if (n := len(p.read_text().splitlines())) > 450}
    assert not long, long


def test_sample_is_a_thin_front_door():
    pytest.importorskip("torch")
    from parareal.adapters.diffusion import sample

    # the code, not the docstring (its reference material belongs there): at most 80 lines
    source = inspect.getsource(sample)
    docstring = ast.get_docstring(ast.parse(source).body[0], clean=False)
    code = len(source.splitlines()) - len(docstring.splitlines())
    assert code <= 80, code


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
