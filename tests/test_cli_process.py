"""The ``parareal`` command as a real process: Ctrl-C, closed pipes, missing extras, threads.

Timeouts here only guard against hangs; no test asserts on speed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

import pytest

from parareal.cli.threads import THREAD_VARIABLES

from .conftest import needs
from .inprocess import run_forked, run_forked_here

HANG_GUARD_S = 180
#: A thread count above this machine's CPUs (torch takes it from set_num_threads only).
THREADS_OVER_CORES = (os.cpu_count() or 1) + 1
#: Optional dependencies that the numpy-only tests make unimportable.
EXTRAS = ("torch", "torchdiffeq", "scipy", "matplotlib", "diffusers", "sklearn", "threadpoolctl")


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    env.update(extra)
    return env


#: The end of a forked case's stderr: the exit status of ``main`` and the optional modules the
#: command line imported.
_MARK = "\n@@CLI@@"

#: A case run by :func:`forked`: ``main(ARGV)``, then the marker line.
_CASE = """
import json, sys
from parareal.cli import main
try:
    rc = main({argv!r})
except SystemExit as exc:
    rc = exc.code
sys.stdout.flush()
loaded = [m for m in ("torch", "diffusers") if m in sys.modules]
sys.stderr.write({mark!r} + json.dumps([rc, loaded]))
"""


#: What the interpreter of :func:`forked` imports before it forks: ``parareal.cli``, and
#: scipy's ODE solvers where installed (imported by every ``solve`` with the default coarse
#: propagator or a scipy reference: about a second of CPU each child would pay again).
PRELOAD = ("import parareal.cli\ntry:\n    import scipy.integrate\n"
           "except ImportError:\n    pass\n")


def forked(argvs, env=None):
    """Run ``main(argv)`` for each of ``argvs`` in forked children of one interpreter that
    imported ``parareal.cli`` (and scipy.integrate, where it can) once
    (``tests.inprocess.run_forked``: fresh module state, its own stdout and stderr, as a
    process of its own would have them): a dict per command line with its ``rc``, ``out``,
    ``err`` and ``loaded`` (torch, diffusers if imported)."""
    runs = run_forked([_CASE.format(argv=list(argv), mark=_MARK) for argv in argvs],
                      preload=PRELOAD, env=env or _env())
    results = {}
    for argv, run in zip(argvs, runs):
        assert run.returncode == 0 and _MARK in run.stderr, run.stderr  # ran to the end
        err, report = run.stderr.rsplit(_MARK, 1)
        rc, loaded = json.loads(report)
        results[tuple(argv)] = {"argv": argv, "rc": rc, "out": run.stdout, "err": err,
                                "loaded": loaded}
    return results


# -- Ctrl-C --------------------------------------------------------------------------------------


@needs("matplotlib")  # the plot is the file that must not be left half-written
def test_ctrl_c_exits_130_with_one_line_and_no_file(tmp_path):
    plot = tmp_path / "conv.png"
    # The heat equation with 200 points: the process reaches the end of iteration 0 after
    # about 0.7 s of CPU, the whole run takes over 4 s (with 400 points: 1.1 s, most of a
    # minute); --progress says when the solve has started.
    proc = subprocess.Popen(
        [sys.executable, "-m", "parareal", "solve", "heat", "--param", "points=200",
         "--coarse", "problem", "--progress", "--plot", str(plot)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
    )
    guard = threading.Timer(HANG_GUARD_S, proc.kill)
    guard.start()
    try:
        first = proc.stderr.readline()
        assert first.startswith("parareal: iteration 0/"), first + proc.stderr.read()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate()
    finally:
        guard.cancel()
        proc.kill()
    assert proc.returncode == 130, err
    lines = [line for line in err.splitlines() if not line.startswith("parareal: iteration")]
    assert lines == ["parareal: interrupted"]
    assert out == ""
    assert list(tmp_path.iterdir()) == []  # no plot, no temporary file


# -- closed pipes --------------------------------------------------------------------------------


def test_stdout_closed_before_output_exits_quietly():
    # --coarse problem: a run that warns about nothing, with or without scipy (coarse="auto"
    # imports scipy, and without it warns that the run cannot be faster than serial);
    # dahlquist: its reference is closed-form, nothing but numpy is imported
    proc = subprocess.Popen([sys.executable, "-m", "parareal", "solve", "dahlquist",
                             "--coarse", "problem", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
    proc.stdout.close()  # the reader is gone before the JSON is written
    try:
        err = proc.stderr.read().decode()
        proc.wait(timeout=HANG_GUARD_S)
    finally:
        proc.kill()
    assert proc.returncode == 141, err
    assert err == ""


def test_head_closing_the_pipe_early_exits_quietly():
    # About 200 kB of JSON (10 000 heat points) cannot fit in a pipe: the writer is still
    # writing when `head -c 10` exits. (--coarse problem: no scipy import, no coarse search.)
    writer = subprocess.Popen(
        [sys.executable, "-m", "parareal", "solve", "heat", "--param", "points=10000",
         "--t-end", "1e-7", "--slices", "2", "--coarse", "problem", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(),
    )
    head = subprocess.Popen(["head", "-c", "10"], stdin=writer.stdout, stdout=subprocess.PIPE)
    writer.stdout.close()  # head holds the only read end
    try:
        got, _ = head.communicate(timeout=HANG_GUARD_S)
        err = writer.stderr.read().decode()
        writer.wait(timeout=HANG_GUARD_S)
    finally:
        writer.kill()
        head.kill()
    assert got == b'{"problem"'
    assert writer.returncode == 141, err
    # no traceback about the broken pipe (a NoSpeedupWarning about the run itself may show)
    assert "Traceback" not in err and "BrokenPipe" not in err


# -- a numpy-only install ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def numpy_only(tmp_path_factory) -> dict[str, str]:
    """An environment in which the optional dependencies cannot be imported."""
    blocked = tmp_path_factory.mktemp("numpy-only") / "blocked"
    for name in EXTRAS:
        (blocked / name).mkdir(parents=True)
        (blocked / name / "__init__.py").write_text(
            f"raise ImportError(\"No module named '{name}' (blocked by the test)\")\n"
        )
    return _env(PYTHONPATH=os.pathsep.join([str(blocked), os.environ.get("PYTHONPATH", "")]))


def test_the_blocking_works(numpy_only):
    code = "import torch"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=numpy_only, timeout=HANG_GUARD_S, check=False)
    assert proc.returncode != 0
    assert "ImportError: No module named 'torch' (blocked by the test)" in proc.stderr


NAMES_THE_EXTRA = [
    (["solve", "dahlquist", "--plot", "PLOT"], "parareal[plot]"),
    (["solve", "arenstorf"], "parareal[scipy]"),
    (["solve", "brusselator", "--fine", "scipy:Radau"], "parareal[scipy]"),
    (["solve", "dahlquist", "--fine", "torchdiffeq:dopri5"], "parareal[torch]"),
]


#: Brusselator on its first 4 time units in 4 slices (its default: 20 in 32, 1 s of CPU more
#: per run): without scipy it has no reference, and converges in 3 iterations.
BRUSSELATOR_SHORT = ["solve", "brusselator", "--slices", "4", "--t-end", "4"]


@pytest.fixture(scope="module")
def numpy_only_runs(numpy_only, tmp_path_factory):
    """The numpy-only command lines below, each run by :func:`forked` (one interpreter)."""
    plot = tmp_path_factory.mktemp("plot") / "plot.png"
    argvs = [[*BRUSSELATOR_SHORT, "--json", "--threads", "2"], BRUSSELATOR_SHORT,
             ["solve", "dahlquist", "--json"],
             *[[str(plot) if a == "PLOT" else a for a in argv] for argv, _ in NAMES_THE_EXTRA]]
    return forked(argvs, env=numpy_only), plot


def test_numpy_only_solve_runs_without_a_reference(numpy_only_runs):
    runs, _ = numpy_only_runs
    proc = runs[(*BRUSSELATOR_SHORT, "--json", "--threads", "2")]
    assert proc["rc"] == 0, proc["err"]
    out = json.loads(proc["out"])
    assert out["converged"] is True
    assert out["errors"] == [None] * (out["iterations"] + 1) and out["error"] is None
    assert out["reference"].startswith("unavailable")
    assert "pip install 'parareal[scipy]'" in out["reference"]
    table = runs[tuple(BRUSSELATOR_SHORT)]
    assert table["rc"] == 0, table["err"]
    assert " n/a " in table["out"] and "parareal[scipy]" in table["out"]


def test_numpy_only_closed_form_reference(numpy_only_runs):
    runs, _ = numpy_only_runs
    proc = runs["solve", "dahlquist", "--json"]
    assert proc["rc"] == 0, proc["err"]
    out = json.loads(proc["out"])
    assert out["reference"] == "available" and out["error"] < 1e-8


@pytest.mark.parametrize(("argv", "extra"), NAMES_THE_EXTRA)
def test_numpy_only_names_the_extra(numpy_only_runs, argv, extra):
    runs, plot = numpy_only_runs
    proc = runs[tuple(str(plot) if a == "PLOT" else a for a in argv)]
    assert proc["rc"] == 2
    assert proc["err"].startswith("parareal: error:") and len(proc["err"].splitlines()) == 1
    assert f"pip install '{extra}'" in proc["err"]
    assert not plot.exists()


# -- threads -------------------------------------------------------------------------------------


def _here_without_thread_settings(code: str) -> subprocess.CompletedProcess:
    """``code`` run as by ``python -c`` with none of the thread variables set, in a child
    forked from this interpreter with parareal forgotten (``tests.inprocess.run_forked_here``;
    torch, numpy and their thread pools are loaded already, as the code would load them)."""
    unset = f"import os\nfor _name in {THREAD_VARIABLES!r}:\n    os.environ.pop(_name, None)\n"
    return run_forked_here([unset + code], fresh=["parareal"])[0]


def test_threads_option_sets_torch_and_the_environment():
    pytest.importorskip("torch")
    code = (
        "import os, sys, torch\n"
        "from parareal.cli import main\n"
        "rc = main(['solve', 'dahlquist', '--threads', '3', '--json'])\n"
        "print(rc, torch.get_num_threads(), os.environ['OMP_NUM_THREADS'], file=sys.stderr)\n"
    )
    proc = _here_without_thread_settings(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.split() == ["0", "3", "3"]
    assert json.loads(proc.stdout)["converged"] is True


#: Cases of :func:`fresh_thread_runs`: BLAS loaded before ``--threads``; torch after.
BLAS_CASE = (
    "import sys, numpy\n"
    "from threadpoolctl import threadpool_info\n"
    "from parareal.cli import main\n"
    "rc = main(['solve', 'dahlquist', '--threads', '1', '--json'])\n"
    "print(rc, *sorted({p['num_threads'] for p in threadpool_info()}), file=sys.stderr)\n"
)
SAMPLE_CASE = (
    "import sys\n"
    "from parareal.cli import main\n"
    "rc = main(['sample', '--steps', '2', '--n', '1', '--method', 'serial', "
    f"'--threads', '{THREADS_OVER_CORES}', '--out', 'g.png'])\n"
    "import torch\n"
    "print(rc, torch.get_num_threads(), file=sys.stderr)\n"
)


@pytest.fixture(scope="module")
def fresh_thread_runs(tmp_path_factory):
    """BLAS_CASE and SAMPLE_CASE run as by ``python -c`` with none of the thread variables
    set, so that what ``--threads`` sets is the only setting: forked children of one fresh
    interpreter that has imported :data:`PRELOAD` (numpy's and scipy's BLAS, not torch)."""
    env = {k: v for k, v in _env().items() if k not in THREAD_VARIABLES}
    blas, sample = run_forked([BLAS_CASE, SAMPLE_CASE], preload=PRELOAD,
                              env=env, cwd=tmp_path_factory.mktemp("threads"))
    return {"blas": blas, "sample": sample}


def test_threads_option_limits_blas_already_loaded(fresh_thread_runs):
    pytest.importorskip("threadpoolctl")
    proc = fresh_thread_runs["blas"]
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.split() == ["0", "1"]


#: Command lines that need neither torch nor diffusers (not even with --threads).
NO_TORCH_ARGV = [
    ["solve", "brusselator", "--slices", "4", "--threads", "1", "--json"],
    ["solve", "dahlquist", "--backend", "threads", "--workers", "2", "--threads", "2",
     "--schedule", "pipelined", "--json"],
    ["solve", "nosuch", "--threads", "1"],
    ["sample", "--steps", "0", "--threads", "1"],
    ["--help"],
    ["solve", "--help"],
    ["sample", "--help"],
]


#: The stiff Van der Pol command lines (at the end of this file).
VANDERPOL = [["solve", "vanderpol", "--param", "mu=1e6", "--json"],
             ["solve", "vanderpol", "--param", "mu=1e6", "--fine", "scipy:Radau",
              "--coarse", "scipy:Radau", "--json"]]


@pytest.fixture(scope="module")
def no_torch_runs():
    """The command lines of NO_TORCH_ARGV and VANDERPOL, each run by :func:`forked` (one
    interpreter)."""
    return forked(NO_TORCH_ARGV + VANDERPOL)


@pytest.mark.parametrize("argv", NO_TORCH_ARGV, ids=" ".join)
def test_commands_that_need_no_torch_do_not_import_it(no_torch_runs, argv):
    # --threads used to import torch (2.5 s) only to set its thread count; each command line
    # runs in a forked child of an interpreter that has imported parareal.cli and no more
    run = no_torch_runs[tuple(argv)]
    assert run["rc"] in (0, 1, 2), run["err"]  # ran (1: it diverged), or refused
    assert run["loaded"] == [], f"{argv} imported {run['loaded']}"


def test_sample_sets_torch_threads_once_it_loads_torch(fresh_thread_runs):
    pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    pytest.importorskip("safetensors")
    # torch is loaded after main() applies --threads: sample applies it to torch itself
    # (from OMP_NUM_THREADS alone torch would cap the count at the machine's cores)
    proc = fresh_thread_runs["sample"]
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.split()[-2:] == ["0", str(THREADS_OVER_CORES)]


# -- the reference of a stiff problem ------------------------------------------------------------


@needs("scipy")
def test_stiff_vanderpol_reference_does_not_hang(no_torch_runs):
    # It used to spend minutes in DOP853 after the (diverged) solve.
    proc = no_torch_runs[tuple(VANDERPOL[0])]
    assert proc["rc"] == 1, proc["err"]  # the solve diverged (exit 1), the rest ran
    out = json.loads(proc["out"])
    assert out["reference"] == "available"
    assert out["status"] == "diverged"  # RK4 at h * mu = 1e4 blows up, and says so
    assert proc["err"] == ""  # no overflow warnings from the reference either


@needs("scipy")
def test_stiff_vanderpol_with_implicit_propagators_matches_the_reference(no_torch_runs):
    proc = no_torch_runs[tuple(VANDERPOL[1])]
    assert proc["rc"] == 0, proc["err"]
    out = json.loads(proc["out"])
    assert out["converged"] is True and out["reference"] == "available"
    assert out["error"] < 1e-6
