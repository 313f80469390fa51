"""The example scripts run and say what they should (doc snippets: ``test_docs.py``)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.inprocess import run_main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def run_example(name: str, *args: str) -> str:
    """Run ``examples/name`` with ``args`` in a fresh interpreter; return its standard output."""
    env = dict(os.environ, MPLBACKEND="Agg", OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=120,
    )
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def run_example_here(capsys, monkeypatch, name: str, *args: str) -> str:
    """``main(args)`` of ``examples/name`` in this interpreter (what it prints is the point;
    torch or matplotlib are imported once per test process): exit status 0, its output."""
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.chdir(ROOT)
    capsys.readouterr()
    status = run_main(EXAMPLES / name, *args)
    out = capsys.readouterr()
    assert status in (0, None), f"{name} failed:\n{out.out}\n{out.err}"
    return out.out


def test_brusselator_example(tmp_path, capsys, monkeypatch):
    pytest.importorskip("scipy")  # the reference solution
    args = ["--slices", "8", "--fine-steps", "5", "--t-end", "3"]
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        plot = None
    else:
        plot = tmp_path / "brusselator.png"
        args += ["--plot", str(plot)]
    out = run_example_here(capsys, monkeypatch, "brusselator.py", *args)
    assert "status: converged" in out
    assert "all backend/schedule pairs gave bitwise identical results" in out
    # the measured critical path equals the tick model on every line of the comparison
    rows = [row for row in map(str.split, out.splitlines())
            if len(row) == 8 and row[1] in ("synchronous", "pipelined")]
    assert len(rows) == 4 and all(row[5] == row[6] for row in rows)
    if plot is not None:
        assert plot.stat().st_size > 0


def test_neural_ode_torch_example(capsys, monkeypatch):
    pytest.importorskip("torch")
    pytest.importorskip("torchdiffeq")
    out = run_example_here(capsys, monkeypatch, "neural_ode_torch.py", "--train-steps", "20",
                           "--trajectories", "8", "--slices", "4", "--fine-steps", "5",
                           "--coarse-steps", "1", "--double", "--tol", "0")
    assert "parareal: converged after 4 of 4 iterations" in out
    diff = re.search(r"max \|parareal - torchdiffeq.odeint\| = (\S+)", out)
    assert diff is not None and float(diff.group(1)) < 1e-10
    assert "critical path" in out


def test_heat_equation_example():
    # in a fresh interpreter, as a reader runs it (the other examples run in-process)
    out = run_example("heat_equation.py", "--points", "50", "--t-end", "0.01", "--slices", "4")
    assert "status: converged" in out
    assert "parareal, batched" in out and "serial fine solve" in out


def test_mpi_heat_example_under_mpiexec_and_alone(capsys, monkeypatch):
    import shutil

    pytest.importorskip("mpi4py")
    pytest.importorskip("scipy")
    mpiexec = shutil.which("mpiexec")
    if mpiexec is None:
        pytest.skip("no mpiexec")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    args = ["--points", "60", "--slices", "6"]
    proc = subprocess.run([mpiexec, "-n", "2", sys.executable, str(EXAMPLES / "mpi_heat.py"),
                           *args], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # alone: in this process (one rank: MPI() runs in-process, as under plain python; a
    # fresh interpreter would only import numpy, scipy and mpi4py again)
    alone = run_example_here(capsys, monkeypatch, "mpi_heat.py", *args)
    lines = []
    for printed in (proc.stdout, alone):
        out = printed.strip().splitlines()
        assert len(out) == 1 and "converged after" in out[0]  # the root prints, once
        lines.append(re.sub(r"wall [0-9.]+ s", "", out[0]))
    assert lines[0].replace("2 ranks", "1 ranks") == lines[1]


def test_slurm_script_is_valid_bash():
    script = EXAMPLES / "slurm_parareal.sh"
    subprocess.run(["bash", "-n", str(script)], check=True, timeout=30)
    text = script.read_text()
    assert "--backend mpi" in text and "--checkpoint" in text and "--resume" in text
