"""The ``parareal`` command line."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys

import numpy as np
import pytest

import parareal
from parareal.cli import main
from parareal.problems import CORE, get

from .conftest import needs, problem_params

JSON_KEYS = {
    "problem", "backend", "slices", "iterations", "converged", "status", "residuals", "t_final",
    "y_final", "wall_time_s", "fine_calls", "coarse_calls", "f_evals", "critical_path",
    "errors", "error", "reference",
}


def run_json(capsys, *argv):
    code = main(["solve", *argv, "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == (1 if out["status"] == "diverged" else 0)  # exit 1 only on divergence
    return out


# the classic test set's references take long: two fast ones of it stand in for the rest
@pytest.mark.parametrize("name", problem_params(sorted({*CORE, "robertson", "kepler"}),
                                                "propagators", "reference"))
def test_every_problem_runs_and_reports_contract_keys(capsys, name):
    out = run_json(capsys, name, "--max-iters", "2", "--slices", "4")
    assert JSON_KEYS <= set(out)
    assert out["problem"] == name and out["slices"] == 4
    assert out["iterations"] <= 2 and len(out["residuals"]) == out["iterations"]
    assert out["status"] in {s.value for s in parareal.Status}
    assert out["t_final"] == pytest.approx(get(name).t_span[1])
    assert out["reference"] == "available" and len(out["errors"]) == out["iterations"] + 1


def test_json_matches_library_call(capsys):
    out = run_json(capsys, "brusselator", "--slices", "24", "--fine", "RK4:10", "--coarse",
                   "Heun:2", "--tol", "1e-9", "--backend", "batched", "--schedule", "pipelined")
    p = get("brusselator")
    sol = parareal.solve(p.f, p.y0, p.t_span, coarse=parareal.Heun(2),
                         fine=parareal.RK4(10), slices=24, tol=1e-9)
    assert sol.converged
    assert out["iterations"] == sol.iterations
    assert out["converged"] is sol.converged
    assert out["status"] == sol.status.value
    np.testing.assert_array_equal(out["y_final"], sol.y_final)
    assert out["residuals"] == list(sol.residuals)


def test_max_iters_and_tol_zero(capsys):
    # --coarse problem here and in the table and plot tests: what they check does not depend
    # on the coarse propagator, and the coarse search costs 0.4 s per run
    out = run_json(capsys, "dahlquist", "--tol", "0", "--max-iters", "3", "--coarse", "problem")
    assert out["iterations"] == 3 and out["status"] == "max_iters" and not out["converged"]


def test_complex_state_in_json(capsys):
    out = run_json(capsys, "dahlquist-complex", "--max-iters", "1")
    arr = np.asarray(out["y_final"])
    assert arr.shape[-1] == 2  # [real, imag] pairs


def test_table_output(capsys):
    assert main(["solve", "dahlquist", "--slices", "5", "--coarse", "problem"]) == 0
    text = capsys.readouterr().out
    assert "max update" in text and "error vs ref" in text and "critical path" in text
    assert "status: converged" in text


def test_plot_is_written(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    target = tmp_path / "conv.png"
    assert main(["solve", "dahlquist", "--coarse", "problem", "--plot", str(target)]) == 0
    assert target.stat().st_size > 1000
    assert target.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "argv,message",
    [
        (["solve", "dahlquist", "--fine", "RK9:2"], "unknown propagator"),
        (["solve", "dahlquist", "--slices", "0"], "--slices"),
        (["solve", "dahlquist", "--tol", "-1"], "--tol must be >= 0"),
        (["solve", "dahlquist", "--max-iters", "-1"], "--max-iters"),
        (["solve", "dahlquist", "--plot", "/nonexistent/dir/x.png"], "cannot write the plot"),
    ],
)
def test_bad_input_exit_code_2(capsys, argv, message):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv", [["solve", "nosuchproblem"], ["solve", "dahlquist", "--backend", "x"], ["frobnicate"]]
)
def test_argparse_errors(argv):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2


@pytest.mark.parametrize(("given", "key"), [
    pytest.param("ROBERTSON", "robertson", marks=needs("scipy")),  # its fine is Radau
    ("Dahlquist", "dahlquist"), ("HEAT", "heat"),
    pytest.param("Vanderpol-Stiff", "vanderpol-stiff", marks=needs("scipy"))])
def test_problem_names_in_any_case(capsys, given, key):
    out = run_json(capsys, given, "--max-iters", "1", "--slices", "2", "--t-end", "0.1")
    assert out["problem"] == key and out["slices"] == 2


def test_unknown_problem_is_a_usage_error_listing_the_names(capsys):
    with pytest.raises(SystemExit) as info:
        main(["solve", "Brusellator"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("parareal solve: error: argument PROBLEM: unknown problem 'Brusellator'")
    assert all(name in err for name in parareal.problems.PROBLEMS) and len(err.splitlines()) == 1


def test_help_lists_the_problem_names(capsys):
    with pytest.raises(SystemExit):
        main(["solve", "--help"])
    out = capsys.readouterr().out
    assert "one of (in any case): arenstorf, brusselator" in " ".join(out.split())


def test_console_script_runs():
    # --coarse problem: the entry point is what runs here, not the coarse search (scipy's
    # import and the probes: most of this process's CPU, and tested in-process elsewhere)
    proc = subprocess.run(
        [sys.executable, "-m", "parareal", "solve", "dahlquist", "--coarse", "problem", "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["converged"] is True


def test_problem_parameters_from_the_command_line(capsys):
    out = run_json(capsys, "dahlquist", "--param", "lam=-2.0", "--tol", "1e-12")
    assert out["y_final"][0] == pytest.approx(np.exp(-2.0 * out["t_final"]), rel=1e-6)
    out = run_json(capsys, "dahlquist-complex", "--param", "lam=1j", "--max-iters", "1")
    assert out["problem"] == "dahlquist-complex"


@pytest.mark.parametrize("param,message", [("lam", "NAME=VALUE"), ("nosuch=1", "nosuch")])
def test_bad_problem_parameters(capsys, param, message):
    assert main(["solve", "dahlquist", "--param", param]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("lookahead,expected", [("0", 0), ("3", 3), ("none", None)])
def test_lookahead_option(capsys, lookahead, expected):
    out = run_json(capsys, "brusselator", "--backend", "batched", "--schedule", "pipelined",
                   "--lookahead", lookahead, "--coarse", "problem")
    p = get("brusselator")
    sol = parareal.solve(p.f, p.y0, p.t_span, coarse=p.coarse, fine=p.fine, slices=p.slices,
                         backend="batched", vectorized=True, schedule="pipelined",
                         lookahead=expected)
    assert out["lookahead"] == expected
    assert out["critical_path"] == sol.stats.critical_path
    assert out["f_evals"] == sol.stats.f_evals


@pytest.mark.parametrize("bad", ["-1", "x", "1.5"])
def test_bad_lookahead_is_an_argparse_error(bad):
    with pytest.raises(SystemExit) as info:
        main(["solve", "brusselator", "--lookahead", bad])
    assert info.value.code == 2


def test_diverged_run_exits_1_and_still_reports(capsys):
    # Euler steps of 1e6 * 0.17 amplify by about 1.7e5 per slice: inf well before slice 60
    code = main(["solve", "dahlquist", "--param", "lam=-1e6", "--coarse", "euler:1",
                 "--fine", "rk4:2", "--slices", "60", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and out["status"] == "diverged" and not out["converged"]


@pytest.fixture(scope="module")
def vanderpol_serial():
    """``solve vanderpol --schedule pipelined --json`` on the serial backend, run once for
    both backends of the test below."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["solve", "vanderpol", "--schedule", "pipelined", "--json"])
    out = json.loads(printed.getvalue())
    assert code == (1 if out["status"] == "diverged" else 0)
    return out


@pytest.mark.parametrize("backend", ["threads", "processes"])
def test_concurrent_backend_gives_the_serial_numbers(capsys, backend, vanderpol_serial):
    serial = vanderpol_serial
    out = run_json(capsys, "vanderpol", "--schedule", "pipelined", "--backend", backend,
                   "--workers", "2")
    assert out["backend"] == backend and out["workers"] == 2 and serial["workers"] is None
    for key in ("iterations", "residuals", "status", "critical_path", "y_final"):
        assert out[key] == serial[key], key


def test_workers_option_is_checked(capsys):
    assert main(["solve", "dahlquist", "--workers", "2"]) == 2
    assert "--workers applies" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["solve", "dahlquist", "--backend", "threads", "--workers", "0"])


def test_table_names_the_workers(capsys):
    assert main(["solve", "dahlquist", "--backend", "threads", "--workers", "3", "--coarse",
                 "problem"]) == 0
    assert "backend threads (3 workers)" in capsys.readouterr().out


def test_cuda_streams_without_cuda_is_a_usage_error(capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    assert main(["solve", "dahlquist", "--backend", "cuda-streams"]) == 2
    assert "use --backend threads" in capsys.readouterr().err
