"""``parareal sample`` on the bundled digits model."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")

from parareal.cli import main  # noqa: E402

KEYS = {"method", "steps", "n", "iterations", "converged", "sequential_evals", "total_evals",
        "wall_time_s", "image"}


def run_json(capsys, *argv):
    assert main(["sample", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("method", ["srds", "serial", "picard"])
def test_sample_end_to_end(tmp_path, capsys, method):
    out = tmp_path / "grid.png"
    got = run_json(capsys, "--steps", "9", "--n", "3", "--method", method, "--out", str(out),
                   "--compare-serial")
    assert KEYS <= set(got) and "max_abs_diff_vs_serial" in got
    assert got["method"] == method and got["steps"] == 9 and got["n"] == 3
    assert out.read_bytes()[:4] == b"\x89PNG" and got["image"] == str(out)
    if method == "serial":
        assert got["max_abs_diff_vs_serial"] == 0.0 and got["sequential_evals"] == 9
    else:
        assert got["converged"] and got["sequential_evals"] <= 9
        assert got["max_abs_diff_vs_serial"] < 0.05


def test_sample_tol_zero_reproduces_serial(tmp_path, capsys):
    got = run_json(capsys, "--steps", "16", "--n", "2", "--tol", "0", "--no-pipelined",
                   "--blocks", "4", "--out", str(tmp_path / "a.png"), "--compare-serial")
    assert got["iterations"] == 4
    assert got["max_abs_diff_vs_serial"] < 1e-4
    assert got["uint8_identical_fraction"] == 1.0


def test_sample_without_compare_has_no_diff_key(tmp_path, capsys):
    got = run_json(capsys, "--steps", "4", "--n", "1", "--out", str(tmp_path / "b.png"))
    assert "max_abs_diff_vs_serial" not in got


def test_stochastic_sampling(tmp_path, capsys):
    got = run_json(capsys, "--steps", "9", "--n", "2", "--eta", "1", "--tol", "0",
                   "--out", str(tmp_path / "c.png"), "--compare-serial")
    assert got["max_abs_diff_vs_serial"] < 1e-4


def test_summary_text(tmp_path, capsys):
    assert main(["sample", "--steps", "4", "--n", "2", "--out", str(tmp_path / "d.png"),
                 "--compare-serial"]) == 0
    text = capsys.readouterr().out
    assert "sequential model calls" in text and "vs serial" in text and "wrote" in text


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--steps", "0"], "num_inference_steps must be >= 1"),
        (["--steps", "5000"], "num_train_timesteps"),
        (["--n", "0"], "--n must be >= 1"),
        (["--blocks", "50", "--steps", "10"], "blocks must be <="),
        (["--out", "/nonexistent/folder/x.png"], "not writable"),
    ],
)
def test_bad_input(capsys, argv, message):
    assert main(["sample", *argv]) == 2
    assert message in capsys.readouterr().err


def test_unknown_method_is_an_argparse_error():
    with pytest.raises(SystemExit) as info:
        main(["sample", "--method", "ddpm"])
    assert info.value.code == 2


def test_corrupt_weights_file(tmp_path, capsys):
    bad = tmp_path / "weights.safetensors"
    bad.write_bytes(b"not a safetensors file at all")
    assert main(["sample", "--weights", str(bad), "--steps", "2",
                 "--out", str(tmp_path / "e.png")]) == 2
    assert "cannot load" in capsys.readouterr().err


def test_missing_weights_file(tmp_path, capsys):
    assert main(["sample", "--weights", str(tmp_path / "none.safetensors"),
                 "--out", str(tmp_path / "f.png")]) == 2
    assert "none.safetensors" in capsys.readouterr().err
