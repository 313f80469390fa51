"""``parareal sample`` on the bundled digits model."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("safetensors")

from parareal.adapters.diffusion import digits  # noqa: E402

from parareal.cli import build_parser, main  # noqa: E402

KEYS = {"method", "steps", "n", "status", "iterations", "converged", "sequential_evals",
        "total_evals", "wall_time_s", "image", "seed", "eta", "max_batch", "chunks"}


def run_json(capsys, *argv):
    assert main(["sample", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("method", ["srds", "serial", "picard", "picard-exact"])
def test_sample_end_to_end(tmp_path, capsys, method):
    out = tmp_path / "grid.png"
    got = run_json(capsys, "--steps", "9", "--n", "3", "--method", method, "--out", str(out),
                   "--compare-serial")
    assert KEYS <= set(got) and "max_abs_diff_vs_serial" in got
    assert got["method"] == method and got["steps"] == 9 and got["n"] == 3
    assert got["status"] == "converged" and got["chunks"] == 1 and got["max_batch"] == 3
    assert out.read_bytes()[:4] == b"\x89PNG" and got["image"] == str(out)
    if method == "serial":
        assert got["max_abs_diff_vs_serial"] == 0.0 and got["sequential_evals"] == 9
    else:
        assert got["converged"] and got["sequential_evals"] <= 9
        assert got["max_abs_diff_vs_serial"] < 0.05
    if method in ("srds", "picard-exact"):  # exact methods: the serial sample's pixels
        assert got["uint8_identical_fraction"] >= 0.99


def test_sample_tol_zero_reproduces_serial(tmp_path, capsys):
    got = run_json(capsys, "--steps", "16", "--n", "2", "--method", "srds", "--tol", "0",
                   "--no-pipelined",
                   "--blocks", "4", "--out", str(tmp_path / "a.png"), "--compare-serial")
    assert got["iterations"] == 4 and got["blocks"] == 4
    assert got["max_abs_diff_vs_serial"] < 1e-4
    assert got["uint8_identical_fraction"] == 1.0


def test_sample_json_reports_the_default_blocks(tmp_path, capsys):
    from parareal.adapters.diffusion import default_blocks

    got = run_json(capsys, "--steps", "16", "--n", "1", "--method", "srds",
                   "--out", str(tmp_path / "a.png"))
    assert got["blocks"] == default_blocks(16) == 8
    serial = run_json(capsys, "--steps", "4", "--n", "1", "--method", "serial",
                      "--out", str(tmp_path / "b.png"))
    assert "blocks" not in serial


def test_sample_without_compare_has_no_diff_key(tmp_path, capsys):
    got = run_json(capsys, "--steps", "4", "--n", "1", "--out", str(tmp_path / "b.png"))
    assert "max_abs_diff_vs_serial" not in got


def test_stochastic_sampling(tmp_path, capsys):
    got = run_json(capsys, "--steps", "9", "--n", "2", "--eta", "1", "--method", "srds",
                   "--tol", "0",
                   "--out", str(tmp_path / "c.png"), "--compare-serial")
    assert got["max_abs_diff_vs_serial"] < 1e-4


def test_summary_text(tmp_path, capsys):
    assert main(["sample", "--steps", "4", "--n", "2", "--out", str(tmp_path / "d.png"),
                 "--compare-serial"]) == 0
    text = capsys.readouterr().out
    assert "sequential model calls" in text and "vs serial" in text and "wrote" in text
    assert "status converged" in text


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--steps", "0"], "--steps must be >= 1"),
        (["--steps", "5000"], "--steps must be <= 1000 (the model's training steps)"),
        (["--n", "0"], "--n must be in [1, 65536]"),
        (["--method", "srds", "--blocks", "50", "--steps", "10"],
         "--blocks must be <= --steps = 10"),
        (["--out", "/nonexistent/folder/x.png"], "not writable"),
        (["--max-batch", "0"], "--max-batch must be >= 1"),
        (["--method", "srds", "--tol", "-1"], "--tol must be a finite number >= 0"),
        # options that do not apply to the method (item 10 of issue 7)
        (["--method", "serial", "--blocks", "3"], "--blocks applies to --method srds, not serial"),
        (["--method", "picard", "--blocks", "3"], "--blocks applies to --method srds, not picard"),
        (["--method", "serial", "--window", "3"],
         "--window applies to --method picard or picard-exact, not serial"),
        (["--method", "srds", "--window", "3"],
         "--window applies to --method picard or picard-exact, not srds"),
        (["--method", "srds", "--anderson", "2"],
         "--anderson applies to --method picard or picard-exact, not srds"),
        (["--method", "picard", "--anderson", "0", "--steps", "4"], "--anderson must be >= 1"),
        (["--method", "serial", "--tol", "1e-3"],
         "--tol applies to --method srds, picard or picard-exact, not serial"),
        (["--method", "serial", "--tol-mode", "noise"],
         "--tol-mode applies to --method srds or picard, not serial"),
        (["--method", "serial", "--max-iters", "2"], "--max-iters applies to --method srds,"),
        (["--method", "serial", "--no-pipelined"],
         "--no-pipelined applies to --method srds, not serial"),
        (["--method", "picard", "--pipelined"], "--pipelined applies to --method srds, not picard"),
        # output paths (item 9): checked before the model is loaded -- the missing weights
        # file below would be reported otherwise
        (["--out", "", "--weights", "/nonexistent.safetensors"], "non-empty file name"),
        (["--out", "grid.xyz", "--weights", "/nonexistent.safetensors"],
         "extension '.xyz'; supported: .png, .jpg, .jpeg, .bmp, .gif, .tif, .tiff, .webp"),
        (["--out", "grid", "--weights", "/nonexistent.safetensors"], "no extension; supported"),
        (["--method", "serial", "--blocks", "3", "--weights", "/nonexistent.safetensors"],
         "--blocks applies"),
    ],
)
def test_bad_input(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(["sample", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_help_shows_max_batch(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sample", "--help"])
    text = capsys.readouterr().out
    assert "--max-batch M" in text and "memory budget" in text


def test_max_batch_splits_and_keeps_the_samples(tmp_path, capsys):
    whole = run_json(capsys, "--method", "serial", "--steps", "6", "--n", "5",
                     "--out", str(tmp_path / "whole.png"))
    split = run_json(capsys, "--method", "serial", "--steps", "6", "--n", "5",
                     "--max-batch", "2", "--out", str(tmp_path / "split.png"))
    assert whole["chunks"] == 1 and whole["max_batch"] == 5
    assert split["chunks"] == 3 and split["max_batch"] == 2
    assert split["sequential_evals"] == 3 * 6 and split["total_evals"] == 6
    from PIL import Image

    with Image.open(tmp_path / "whole.png") as a, Image.open(tmp_path / "split.png") as b:
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_max_batch_text_summary(tmp_path, capsys):
    assert main(["sample", "--steps", "4", "--n", "3", "--max-batch", "2",
                 "--out", str(tmp_path / "g.png")]) == 0
    assert "3 samples in 2 chunks of at most 2" in capsys.readouterr().out


@pytest.mark.parametrize("ext,magic", [(".jpg", b"\xff\xd8\xff"), (".JPEG", b"\xff\xd8\xff"),
                                       (".bmp", b"BM"), (".tiff", b"II*\x00"),
                                       (".gif", b"GIF8"), (".png", b"\x89PNG")])
def test_out_extension_picks_the_format(tmp_path, capsys, ext, magic):
    out = tmp_path / f"grid{ext}"
    got = run_json(capsys, "--steps", "3", "--n", "2", "--out", str(out))
    assert out.read_bytes()[:len(magic)] == magic and got["image"] == str(out)


def test_diverging_model_exits_1_and_writes_no_image(tmp_path, capsys):
    # the bundled weights with one NaN: every model output is NaN
    from safetensors.torch import load_file, save_file

    state = load_file(str(digits.UNET_WEIGHTS))
    name = next(k for k in state if k.endswith("conv_out.bias"))
    state[name] = torch.full_like(state[name], float("nan"))
    weights = tmp_path / "nan.safetensors"
    save_file(state, str(weights))
    out = tmp_path / "grid.png"
    for method in ("serial", "srds", "picard"):
        assert main(["sample", "--weights", str(weights), "--steps", "4", "--n", "2",
                     "--method", method, "--out", str(out), "--json",
                     "--compare-serial"]) == 1
        got = json.loads(capsys.readouterr().out)  # valid JSON: no NaN
        assert got["status"] == "diverged" and got["converged"] is False
        assert got["max_abs_diff_vs_serial"] is None
        assert got["image"] is None and not out.exists()
    assert main(["sample", "--weights", str(weights), "--steps", "4", "--n", "2",
                 "--method", "serial", "--out", str(out)]) == 1
    text = capsys.readouterr().out
    assert "status diverged" in text and "no image written" in text and not out.exists()


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
