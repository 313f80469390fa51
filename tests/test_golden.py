"""The diffusion golden set (benchmarks/golden_diffusion.py): its quick subset still matches."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tests.inprocess import run_main

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "golden_diffusion.py"
GOLDEN = ROOT / "benchmarks" / "results" / "golden-diffusion.json"


def _module():
    spec = importlib.util.spec_from_file_location("golden_diffusion", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_file_holds_every_run_and_the_quick_subset_is_part_of_it():
    golden = json.loads(GOLDEN.read_text())
    module = _module()
    names = [name for name, _ in module.cases()]
    quick = [name for name, _ in module.cases(quick=True)]
    assert len(names) == len(set(names)) and set(names) == set(golden)
    assert 0 < len(quick) < len(names) and set(quick) <= set(golden)
    for prefix in ("diffusion/", "auto/", "engine/"):
        assert any(name.startswith(prefix) for name in quick)


def test_compare_reports_differences_and_only_the_runs_that_ran():
    compare = _module().compare
    golden = {"a": {"sha256": "x", "stats": {"f_calls": 3, "critical_path": 4}, "chunks": []},
              "b": {"sha256": "y"}}
    same = json.loads(json.dumps(golden))
    assert compare(golden, same, subset=False) == ([], [])
    assert compare(golden, {"a": same["a"]}, subset=True) == ([], [])
    bad, _ = compare(golden, {"a": same["a"]}, subset=False)
    assert bad == ["b: missing"]
    bad, _ = compare(golden, {"c": {}}, subset=True)
    assert bad == ["c: not in the golden file"]
    changed = json.loads(json.dumps(same))
    changed["a"]["stats"]["critical_path"] = 5
    changed["a"]["stats"]["f_calls"] = 2
    bad, calls = compare(golden, changed, subset=True)
    assert bad == ["a: stats.critical_path 4 -> 5", "a: stats.f_calls 3 -> 2"] and calls == []
    bad, calls = compare(golden, changed, subset=True, allow_calls=True)
    assert bad == ["a: stats.critical_path 4 -> 5"] and calls == ["a: stats.f_calls 3 -> 2"]
    changed["a"]["chunks"] = [{"sha256": "z"}]
    bad, _ = compare(golden, changed, subset=True)
    assert "a: chunks.len <absent> -> 1" in bad and "a: chunks[0].sha256 <absent> -> z" in bad


def test_quick_golden_check(capsys):
    """The script's ``main`` in this process (torch and diffusers imported once per test
    process, not again in a fresh interpreter): exit status 0, no difference."""
    for name in ("torch", "diffusers", "safetensors", "scipy"):
        pytest.importorskip(name)
    status = run_main(SCRIPT, "--check", str(GOLDEN), "--quick")
    out = capsys.readouterr().out
    assert status == 0, out[-5000:]
    assert " 0 differences" in out
