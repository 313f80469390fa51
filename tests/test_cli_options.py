"""``parareal`` options checked before the work, output files, problem parameters, references."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import stat

import pytest

from parareal.cli import main
from parareal.cli.paths import atomic_path, check_extension, check_writable
from parareal.cli.threads import set_threads
from parareal.problems import PROBLEMS, parameters

from .conftest import needs

#: A solve that takes minutes: an option error must come before it starts.
SLOW = ["solve", "heat", "--param", "points=1000", "--progress"]


def run_json(capsys, *argv):
    code = main(["solve", *argv, "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == (1 if out["status"] == "diverged" else 0)  # exit 1 only on divergence
    return out


# -- output paths --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("plot", "message"),
    [
        # the formats are matplotlib's
        pytest.param("p.xyz", "unknown format 'xyz'", marks=needs("matplotlib")),
        pytest.param("noext", "has no file extension", marks=needs("matplotlib")),
        ("", "empty"),
        (".", "it is a folder"),
        ("/nonexistent/dir/x.png", "does not exist or is not writable"),
    ],
)
def test_bad_plot_path_fails_before_solving(tmp_path, capsys, monkeypatch, plot, message):
    monkeypatch.chdir(tmp_path)
    assert main([*SLOW, "--plot", plot]) == 2
    err = capsys.readouterr().err
    assert err.startswith("parareal: error:") and message in err
    assert len(err.splitlines()) == 1  # no progress line: the solve never started
    assert list(tmp_path.iterdir()) == []


def test_unknown_format_lists_the_formats(capsys):
    pytest.importorskip("matplotlib")
    assert main(["solve", "dahlquist", "--plot", "x.xyz"]) == 2
    err = capsys.readouterr().err
    assert "png" in err and "pdf" in err and "svg" in err


@pytest.mark.parametrize(
    ("name", "magic"),
    [("c.png", b"\x89PNG"), ("c.PDF", b"%PDF"), ("c.svg", b"<?xml"), ("c.jpg", b"\xff\xd8\xff")],
)
def test_plot_format_follows_the_extension(tmp_path, capsys, name, magic):
    pytest.importorskip("matplotlib")
    target = tmp_path / name
    # --coarse problem: the plot is checked here, not the coarse search (0.4 s per run)
    assert main(["solve", "dahlquist", "--coarse", "problem", "--plot", str(target)]) == 0
    assert f"plot written to {target}" in capsys.readouterr().out
    assert target.read_bytes()[: len(magic)] == magic
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left


def test_plot_replaces_an_existing_file(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    target = tmp_path / "c.png"
    target.write_bytes(b"old")
    assert main(["solve", "dahlquist", "--coarse", "problem", "--plot", str(target)]) == 0
    assert target.read_bytes()[:4] == b"\x89PNG"
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_check_writable(tmp_path):
    check_writable(str(tmp_path / "new.png"), "the plot")
    with pytest.raises(ValueError, match="empty"):
        check_writable("", "the plot")
    with pytest.raises(ValueError, match="empty"):
        check_writable("   ", "the plot")
    with pytest.raises(OSError, match="folder"):
        check_writable(str(tmp_path), "the plot")
    locked = tmp_path / "locked.png"
    locked.write_bytes(b"keep")
    locked.chmod(0o444)
    if os.access(locked, os.W_OK):  # root may write anything
        pytest.skip("running as a user who can write read-only files")
    with pytest.raises(OSError, match="read-only"):
        check_writable(str(locked), "the plot")


def test_check_extension():
    assert check_extension("a/b.PNG", {"png", "pdf"}, "--out") == "png"
    with pytest.raises(ValueError, match=r"no file extension.*pdf, png"):
        check_extension("a/b", {"png", "pdf"}, "--out")
    with pytest.raises(ValueError, match=r"unknown format 'jpg'; use one of pdf, png"):
        check_extension("b.jpg", {"png", "pdf"}, "--out")


def test_atomic_path_success(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with atomic_path(str(target)) as tmp:
        assert os.path.dirname(tmp) == str(tmp_path) and tmp.endswith(".txt")
        assert target.read_text() == "old"  # untouched while writing
        with open(tmp, "w") as fh:
            fh.write("new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_atomic_path_failure_leaves_nothing(tmp_path, error):
    fresh, old = tmp_path / "fresh.png", tmp_path / "old.png"
    old.write_text("old")
    for target in (fresh, old):
        with pytest.raises(error), atomic_path(str(target)) as tmp:
            with open(tmp, "w") as fh:
                fh.write("partial")
            raise error()
    assert not fresh.exists() and old.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["old.png"]


# -- problem parameters --------------------------------------------------------------------------


def test_unknown_parameter_lists_the_valid_ones(capsys):
    assert main(["solve", "lorenz", "--param", "mu=3"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        "parareal: error: unknown parameter 'mu' for problem 'lorenz'; "
        "valid: sigma, rho, beta, y0, t_end, slices, coarse, fine"
    )


def test_help_lists_every_problems_parameters(capsys):
    with pytest.raises(SystemExit) as info:
        main(["solve", "--help"])
    assert info.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    for name in PROBLEMS:
        line = next(x for x in lines if x.strip().startswith(f"{name}:"))
        for param in parameters(name):
            assert param in line


@pytest.mark.parametrize("value", ["'abc'", "{}", "1e400", "[[1]]"])
@pytest.mark.parametrize(
    ("problem", "param"),
    [(name, param) for name in sorted(PROBLEMS) for param in parameters(name)],
)
def test_bad_parameter_values_are_one_line_errors(capsys, problem, param, value):
    assert main(["solve", problem, "--param", f"{param}={value}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("parareal: error:") and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--param", "mu=1", "--param", "mu=2"], "--param mu is given twice"),
        (["--param", "t_end=1", "--t-end", "2"], "t_end is given twice"),
        (["--param", "slices=4", "--slices", "4"], "slices is given twice"),
    ],
)
def test_parameters_given_twice(capsys, argv, message):
    assert main(["solve", "vanderpol", *argv]) == 2
    assert message in capsys.readouterr().err


def test_heat_with_a_huge_span_is_a_clear_error(capsys):
    # It used to be an OverflowError traceback (math.ceil of inf steps).
    assert main(["solve", "heat", "--t-end", "1e308"]) == 2
    assert "too long for the default" in capsys.readouterr().err


# -- the reference -------------------------------------------------------------------------------


def test_unavailable_reference_keeps_the_table(capsys):
    # A start this far out overflows at once: no finite reference exists.
    argv = ["solve", "lorenz", "--param", "y0=(1e200, 1e200, 1e200)", "--max-iters", "1"]
    out = run_json(capsys, *argv[1:])
    assert out["errors"] == [None] * (out["iterations"] + 1) and out["error"] is None
    assert out["reference"].startswith("unavailable: lorenz:")
    assert main(argv) == (1 if out["status"] == "diverged" else 0)
    text = capsys.readouterr().out
    assert "n/a" in text and "reference unavailable: lorenz:" in text


@needs("scipy")
def test_available_reference_is_said(capsys):
    out = run_json(capsys, "brusselator")
    assert out["reference"] == "available" and 0 < out["error"] < 1e-5


# -- threads -------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["solve", "dahlquist"], ["sample"]])
@pytest.mark.parametrize("value", ["0", "-2", "x", "1.5"])
def test_bad_threads_is_an_argparse_error(capsys, command, value):
    with pytest.raises(SystemExit) as info:
        main([*command, "--threads", value])
    assert info.value.code == 2
    assert "--threads" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["solve", "sample"])
def test_every_command_has_threads(capsys, command):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert "--threads N" in capsys.readouterr().out


def test_set_threads_validates():
    with pytest.raises(ValueError, match="threads must be >= 1"):
        set_threads(0)
    with pytest.raises(TypeError, match="threads"):
        set_threads(2.0)


# -- errors name the flag, not the Python argument -----------------------------------------------

#: The sample checks that need the adapter (torch, diffusers): after it is imported.
DIFFUSION = needs("torch", "diffusers", "safetensors")


def _flag_case(argv, flag, keyword, *marks):
    return pytest.param(argv, flag, keyword, marks=marks, id=" ".join(argv))


#: (argv, the flag the error must name, the Python argument it must not name). ``{ck}``: a
#: checkpoint of ``solve dahlquist --slices 10 --tol 1e-12``, ``{other}``: another run's,
#: ``{garbage}``: a corrupt file, ``{tmp}``: a folder.
FLAG_ERRORS = [
    _flag_case(["solve", "dahlquist", "--slices", "0"], "--slices", "slices"),
    _flag_case(["solve", "dahlquist", "--slices", "2000000"], "--slices", "slices"),
    _flag_case(["solve", "dahlquist", "--t-end", "-1"], "--t-end", "t_end"),
    _flag_case(["solve", "dahlquist", "--t-end", "nan"], "--t-end", "t_end"),
    _flag_case(["solve", "dahlquist", "--tol", "-1"], "--tol", "tol"),
    _flag_case(["solve", "dahlquist", "--tol", "inf"], "--tol", "tol"),
    _flag_case(["solve", "dahlquist", "--rtol", "-1e-3"], "--rtol", "rtol"),
    _flag_case(["solve", "dahlquist", "--max-iters", "-1"], "--max-iters", "max_iters"),
    _flag_case(["solve", "dahlquist", "--lookahead", "-1"], "--lookahead", "lookahead"),
    _flag_case(["solve", "dahlquist", "--workers", "3"], "--workers", "workers"),
    _flag_case(["solve", "dahlquist", "--fine", "rk4:0"], "--fine", "fine"),
    _flag_case(["solve", "dahlquist", "--coarse", "nosuch:2"], "--coarse", "coarse"),
    _flag_case(["solve", "dahlquist", "--resume", "{tmp}/none.npz"], "--resume", "resume"),
    _flag_case(["solve", "dahlquist", "--resume", "{tmp}"], "--resume", "resume"),
    _flag_case(["solve", "dahlquist", "--resume", "{garbage}"], "--resume", "resume"),
    _flag_case(["solve", "dahlquist", "--resume", "{other}"], "--resume", "resume"),
    _flag_case(["solve", "dahlquist", "--slices", "10", "--tol", "1e-12", "--resume", "{ck}",
                "--max-iters", "1"], "--max-iters", "max_iters"),
    _flag_case(["solve", "dahlquist", "--checkpoint", "{tmp}"], "--checkpoint", "checkpoint="),
    _flag_case(["solve", "dahlquist", "--backend", "cuda-streams"], "--backend", "backend="),
    _flag_case(["sample", "--steps", "0"], "--steps", "num_inference_steps"),
    _flag_case(["sample", "--n", "0"], "--n", "x_T"),
    _flag_case(["sample", "--max-batch", "0"], "--max-batch", "max_batch"),
    _flag_case(["sample", "--blocks", "0"], "--blocks", "blocks"),
    _flag_case(["sample", "--window", "0"], "--window", "window"),
    _flag_case(["sample", "--anderson", "0"], "--anderson", "anderson"),
    _flag_case(["sample", "--max-iters", "0"], "--max-iters", "max_iters"),
    _flag_case(["sample", "--tol", "-1"], "--tol", "tol"),
    _flag_case(["sample", "--tol-mode", "pixels"], "--tol-mode", "tol_mode"),
    _flag_case(["sample", "--eta", "2"], "--eta", "eta"),
    _flag_case(["sample", "--seed", "-1"], "--seed", "seed"),
    _flag_case(["sample", "--scheduler", "euler", "--eta", "0.5"], "--eta", "eta"),
    _flag_case(["sample", "--scheduler", "heun", "--method", "picard"], "--method", "method"),
    _flag_case(["sample", "--scheduler", "flow", "--shift", "0"], "--shift", "shift"),
    _flag_case(["sample", "--scheduler", "flow", "--mu", "1e308"], "--mu", "mu"),
    _flag_case(["sample", "--karras"], "--karras", "use_karras_sigmas"),
    _flag_case(["sample", "--steps", "5000"], "--steps", "num_inference_steps", DIFFUSION),
    _flag_case(["sample", "--out", "grid.txt"], "--out", "out", DIFFUSION),
    _flag_case(["sample", "--method", "serial", "--blocks", "3"], "--blocks", "blocks",
               DIFFUSION),
    _flag_case(["sample", "--method", "srds", "--window", "3"], "--window", "window", DIFFUSION),
    _flag_case(["sample", "--method", "srds", "--anderson", "2"], "--anderson", "anderson",
               DIFFUSION),
    _flag_case(["sample", "--method", "auto", "--tol", "0.1"], "--tol", "tol", DIFFUSION),
    _flag_case(["sample", "--method", "serial", "--tol-mode", "noise"], "--tol-mode", "tol_mode",
               DIFFUSION),
    _flag_case(["sample", "--method", "serial", "--max-iters", "2"], "--max-iters", "max_iters",
               DIFFUSION),
    _flag_case(["sample", "--method", "picard", "--no-pipelined"], "--no-pipelined", "pipelined",
               DIFFUSION),
    _flag_case(["sample", "--method", "srds", "--no-exact"], "--no-exact", "exact", DIFFUSION),
    _flag_case(["sample", "--method", "srds", "--backend", "cuda-streams"], "--backend",
               "backend=", DIFFUSION),
]


def _status(argv) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's usage errors
        return exc.code


def _cuda() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """The files of FLAG_ERRORS' placeholders, in a folder named without any flag's words:
    written once for the module (every case only reads them; each case checks that it left
    the folder as it found it)."""
    folder = tmp_path_factory.mktemp("files")
    ck = folder / "ck.npz"
    assert main(["solve", "dahlquist", "--slices", "10", "--tol", "1e-12", "--checkpoint",
                 str(ck), "--json"]) == 0
    other = folder / "other.npz"
    assert main(["solve", "heat", "--param", "points=8", "--max-iters", "1", "--checkpoint",
                 str(other), "--json"]) == 0
    garbage = folder / "garbage.npz"
    garbage.write_bytes(b"PK\x03\x04" + bytes(300))
    return {"ck": ck, "other": other, "garbage": garbage, "tmp": folder}


@pytest.mark.parametrize(("argv", "flag", "keyword"), FLAG_ERRORS)
def test_errors_name_the_flag_not_the_python_argument(capsys, monkeypatch, checkpoints, argv,
                                                     flag, keyword):
    if "cuda-streams" in argv and _cuda():
        pytest.skip("this machine has CUDA: --backend cuda-streams is no error")
    monkeypatch.chdir(checkpoints["tmp"])
    capsys.readouterr()
    argv = [a.format(**checkpoints) for a in argv]
    before = _snapshot(checkpoints["tmp"])
    assert _status(argv) == 2
    assert _snapshot(checkpoints["tmp"]) == before  # the shared files are left as they were
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert flag in err, err
    # the argument's name alone, not as part of a flag (--max-iters) or of a quoted value
    unquoted = re.sub(r"'[^']*'", "''", err)
    assert not re.search(rf"(?<![-\w]){re.escape(keyword)}(?![\w])", unquoted), err
