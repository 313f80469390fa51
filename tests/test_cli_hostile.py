"""Hostile command lines (issue 18): one line on standard error, exit status 2, before any
model is loaded -- never a traceback or a NaN image."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from parareal.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--eta", "1.5"], "--eta must be in [0, 1]"),
        (["--eta", "nan"], "--eta must be in [0, 1]"),
        (["--eta", "-0.5"], "--eta must be in [0, 1]"),
        (["--seed", str(2**70)], "--seed must be in [0, 2**64 - 1]"),
        (["--seed", str(2**64)], "--seed must be in [0, 2**64 - 1]"),
        (["--seed", "-1"], "--seed must be in [0, 2**64 - 1]"),
        (["--steps", "0"], "--steps must be >= 1"),
        (["--steps", "-3"], "--steps must be >= 1"),
        (["--n", "0"], "--n must be in [1, 65536]"),
        (["--n", str(10**9)], "--n must be in [1, 65536]"),
        (["--tol", "nan", "--method", "srds"], "--tol must be a finite number >= 0"),
        (["--tol", "inf", "--method", "srds"], "--tol must be a finite number >= 0"),
        (["--method", "picard", "--window", "0"], "--window must be >= 1"),
        (["--method", "srds", "--max-iters", "0"], "--max-iters must be >= 1"),
        (["--method", "srds", "--blocks", "11", "--steps", "10"], "--blocks must be <= --steps"),
        (["--max-batch", "-2"], "--max-batch must be >= 1"),
    ],
)
def test_numbers_are_checked_before_the_weights_are_read(tmp_path, monkeypatch, capsys, argv,
                                                        message):
    # a weights file that does not exist: reading it would be the error otherwise
    monkeypatch.chdir(tmp_path)
    assert main(["sample", *argv, "--weights", str(tmp_path / "none.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("parareal: error: ") and message in err
    assert len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_steps_above_the_training_steps_before_the_weights_load(tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    bad = tmp_path / "weights.safetensors"
    bad.write_bytes(b"not weights")  # loading them would fail: the steps are refused first
    assert main(["sample", "--steps", str(10**9), "--weights", str(bad),
                 "--out", str(tmp_path / "g.png")]) == 2
    err = capsys.readouterr().err
    assert "--steps must be <= 1000 (the model's training steps)" in err
    assert len(err.strip().splitlines()) == 1


def test_largest_seed_samples(tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    pytest.importorskip("safetensors")
    out = tmp_path / "g.png"
    assert main(["sample", "--seed", str(2**64 - 1), "--eta", "1", "--method", "serial",
                 "--steps", "2", "--n", "1", "--out", str(out)]) == 0
    assert out.exists() and "status converged" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,prog",
    [
        (["sample", "--steps", "x"], "parareal sample"),
        (["sample", "--eta", "half"], "parareal sample"),
        (["sample", "--method", "ddpm"], "parareal sample"),
        (["sample", "--bogus"], "parareal sample"),
        (["solve"], "parareal solve"),
        (["solve", "nope"], "parareal solve"),
        (["solve", "dahlquist", "--slices", "x"], "parareal solve"),
        (["solve", "dahlquist", "--bogus", "1"], "parareal solve"),
        (["sample", "--threads", "100000"], "parareal sample"),  # was a segfault at exit
        (["solve", "dahlquist", "--workers", "0"], "parareal solve"),
        ([], "parareal"),
        (["frobnicate"], "parareal"),
    ],
)
def test_usage_errors_are_one_line_with_a_hint(capsys, argv, prog):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"{prog}: error: ")
    assert lines[0].endswith(f"(try '{prog} --help')")


def test_usage_error_from_the_installed_command():
    proc = subprocess.run(
        [sys.executable, "-m", "parareal", "sample", "--steps", "ten"], capture_output=True,
        text=True, timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT},
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == ("parareal sample: error: argument --steps: invalid int value: 'ten' "
                           "(try 'parareal sample --help')\n")
