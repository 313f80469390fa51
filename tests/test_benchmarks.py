"""The benchmark scripts run (smoke settings) and print their tables."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.inprocess import run_main

ROOT = Path(__file__).resolve().parent.parent


def run(script: str, *args: str) -> str:
    """The script in a fresh interpreter (the numpy/scipy ones: they start process pools of
    their own, or set BLAS threads before numpy loads): exit status 0, its stdout."""
    env = dict(os.environ, MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def run_here(capsys, script: str, *args: str) -> str:
    """The script's ``main(args)`` in this interpreter (the torch ones: torch and diffusers
    are imported once per test process, not once per script run): exit status 0, its stdout."""
    capsys.readouterr()
    status = run_main(ROOT / "benchmarks" / script, *args)
    out = capsys.readouterr()
    assert status in (0, None), out.out + out.err
    return out.out


@pytest.fixture(scope="module")
def core_quick(tmp_path_factory):
    """One ``core.py --quick`` run (its stdout and JSON), shared by the tests that read it."""
    pytest.importorskip("scipy")
    path = tmp_path_factory.mktemp("core") / "c.json"
    out = run("core.py", "--quick", "--threads", "1", "--json", str(path))
    return out, json.loads(path.read_text())


def test_core_benchmark_quick(core_quick):
    out, data = core_quick
    assert "### brusselator" in out and "parareal batched/pipelined" in out
    assert "threads 1 (OPENBLAS_NUM_THREADS=1" in out
    assert data["threads"] == 1 and data["machine"]["blas_threads"] == "1"
    tols = {p["name"]: p["tol"] for p in data["problems"]}
    assert tols == {"brusselator": 1e-10, "heat": 1e-8, "oscillators": 1e-8}
    # the exactness section (--quick: the first 8 slices): tol=0 ends after N iterations,
    # every schedule and backend bitwise the serial fine solve
    (exact,) = data["exactness"]
    assert exact["slices"] == 8 and exact["t_span"] == [0.0, 3.0]
    assert "### brusselator: tol = 0 until every slice is exact (8 slices)" in out
    assert len(exact["rows"]) == 4 and all(
        row["iterations"] == 8 and row["bitwise_equal_serial"] for row in exact["rows"])


def test_core_benchmark_cost_per_tick(tmp_path):
    """--ticks: both schedules of the batched backend, us per tick and their ratio."""
    pytest.importorskip("scipy")
    out = run("core.py", "--ticks", "--only", "brusselator", "--tick-repeats", "1",
              "--tick-clock", "cpu", "--json", str(tmp_path / "c.json"))
    assert "cost per tick, batched backend (vectorized f), threads 1" in out
    assert "Pipelined / synchronous per tick:" in out and "| parareal" not in out
    (ticks,) = json.loads((tmp_path / "c.json").read_text())["ticks"]
    rows = ticks["rows"]
    assert rows["synchronous"]["ticks"] == 1648 and rows["pipelined"]["ticks"] == 736
    assert ticks["clock"] == "cpu" and ticks["ratio"] == pytest.approx(
        rows["pipelined"]["us_per_tick"] / rows["synchronous"]["us_per_tick"])


def test_core_benchmark_pymgrit_row(core_quick):
    """pymgrit's Parareal on its own Brusselator: a row when it is installed, a note if not."""
    (bru,) = [p for p in core_quick[1]["problems"] if p["name"] == "brusselator"]
    peer = [row for row in bru["rows"] if row["kind"] == "peer"]
    if not peer:
        assert any("no pymgrit row" in note for note in bru["notes"])
        assert importlib.util.find_spec("pymgrit") is None or importlib.util.find_spec(
            "mpi4py") is None
        return
    (row,) = peer
    # pymgrit stops when its residual (2-norm of the C-point defects) is below tol: 1e-10
    assert row["residuals"][-1] < bru["tol"] <= row["residuals"][-2]
    # it solves the same problem: its final state is within the tolerance of ours, and its
    # iterate has converged to the same fine solution (the same error against the reference)
    assert max(row["diff_vs_parareal"].values()) < bru["tol"]
    parareal_rows = [r for r in bru["rows"] if r["kind"] == "parareal"]
    assert abs(row["error_vs_reference"] - parareal_rows[0]["error_vs_reference"]) < 1e-9
    # at least as many calls of f as our synchronous Parareal: its F-relaxation, residual and
    # FAS right-hand side each take fine steps of their own
    assert row["f_evals"] >= parareal_rows[0]["f_evals"]


def test_benchmarks_refuse_bad_threads(capsys):
    # core.py in a fresh interpreter: the real process's exit status
    env = dict(os.environ, MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "core.py"), "--threads",
                           "0"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert proc.returncode == 2 and "--threads must be >= 1" in proc.stderr
    # diffusion.py's parser here (argparse's exit is the same SystemExit(2))
    pytest.importorskip("diffusers")
    with pytest.raises(SystemExit) as exit_:
        run_main(ROOT / "benchmarks" / "diffusion.py", "--threads", "0")
    assert exit_.value.code == 2 and "--threads must be >= 1" in capsys.readouterr().err


def test_diffusion_benchmark_quick(tmp_path, capsys):
    pytest.importorskip("diffusers")
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    out = run_here(capsys, "diffusion.py", "--quick", "--threads", "1", "--json",
                   str(tmp_path / "r.json"), "--plots", str(tmp_path))
    assert "srds pipelined" in out and "picard" in out and "Frechet distance" in out
    assert "(1 threads)" in out
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["threads"] == 1 and data["args"]["threads"] == 1
    rows = {row["method"]: row for row in data["summaries"][0]}
    assert rows["serial"]["max_abs_diff"] == 0.0
    # one 8x8 image: a pixel at a rounding edge is 1.6 %; at most one may flip (one level)
    assert rows["srds pipelined"]["uint8_identical_min"] >= 63 / 64
    assert (tmp_path / "srds_error_per_iteration.png").stat().st_size > 0
    assert (tmp_path / "srds_speedup_vs_n.png").stat().st_size > 0


def test_diffusion_benchmark_exact_and_flow_quick(tmp_path, capsys):
    """--only-exact --only-flow: both tables, one JSON; SRDS with tol=0 is the serial sample
    on the flow model, exact Picard is exact there too; --tables rewrites a document's tables."""
    pytest.importorskip("diffusers")
    # N = 16 pinned (--quick's own N is smaller): the call counts below are N = 16's
    out = run_here(capsys, "diffusion.py", "--quick", "--only-exact", "--only-flow",
                   "--steps", "16", "--threads", "1", "--json", str(tmp_path / "r.json"))
    assert "## Methods at equal exactness" in out and "## Flow-matching digits model" in out
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["threads"] == 1 and "--only-flow" in data["command"]
    exact = {row["method"]: row for row in data["exact"]}
    assert set(exact) == {"srds", "picard-exact", "picard-exact anderson=3",
                          "picard window=N anderson=3 tol=1e-4 (data)"}
    flow = {row["method"]: row for row in data["flow"]}
    assert {"picard-exact", "picard"} <= set(flow)  # Picard runs the flow grid's Euler steps
    assert flow["picard-exact"]["calls"][0] < 16 and flow["picard"]["calls"][0] < 16
    assert flow["serial"]["calls"] == [16] and flow["serial"]["evals"] == [16]
    assert flow["srds tol=0"]["identical"] == flow["srds tol=0"]["worst"] == 1.0
    assert flow["srds"]["calls"][0] < 16 and flow["serial fine=heun"]["calls"] == [31]
    for row in data["exact"] + data["flow"]:
        assert (row["steps"], row["n"], row["seeds"]) == (16, 1, [0])
        if row["method"] != "picard":  # the exact methods (Picard's default rule is not)
            assert row["levels"] <= 1 and row["identical"] >= 63 / 64
    doc = tmp_path / "doc.md"
    doc.write_text("text\n<!-- benchmarks/diffusion.py flow-table begin -->\nold\n"
                   "<!-- benchmarks/diffusion.py flow-table end -->\nmore\n")
    out = run_here(capsys, "diffusion.py", "--tables", str(tmp_path / "r.json"), "--update-doc",
                   str(doc))
    assert "rewrote ['flow-table']" in out
    text = doc.read_text()
    assert text.startswith("text\n") and text.endswith("\nmore\n") and "old" not in text
    assert "| 16 | 1 | 0 | srds tol=0 | 16 / 16 / 16 |" in text and data["command"] in text


def test_diffusion_doc_tables_are_the_committed_json():
    """The generated tables of docs/diffusion.md are what the renderer makes of the JSON they
    name (benchmarks/results/, committed): regenerate both with the command they show."""
    spec = importlib.util.spec_from_file_location(
        "diffusion_tables", ROOT / "benchmarks" / "diffusion_tables.py")
    tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tables)
    found = tables.doc_tables((ROOT / "docs" / "diffusion.md").read_text())
    assert set(found) == set(tables.DOC_TABLES)
    for name, block in found.items():
        (path,) = set(re.findall(r"Generated from `([^`]+)`", block))
        data = json.loads((ROOT / path).read_text())
        assert path.startswith("benchmarks/results/") and data["json_path"] == path
        assert block == tables.render_doc_table(data, name), f"{name}: regenerate it"


def test_lookahead_benchmark_quick(tmp_path):
    # a fresh interpreter: the script collects garbage before each of its runs, which costs
    # seconds in a test process that holds torch and diffusers
    pytest.importorskip("scipy")  # the problems' references
    out = run("lookahead.py", "--quick", "--json", str(tmp_path / "r.json"))
    assert "#### brusselator" in out and "unbounded" in out
    data = json.loads((tmp_path / "r.json").read_text())
    for result in data["results"]:
        rows = result["rows"]
        assert all(row["same_iterates"] for row in rows)
        sync = rows[0]
        for row in rows[1:]:
            if row["lookahead"] != "unbounded":
                bound = sum(result["slices"] - k
                            for k in range(row["iterations"] + row["lookahead"] + 1))
                assert row["fine_calls"] <= bound
            assert row["critical_path"] <= sync["critical_path"]


def test_core_benchmark_says_when_pymgrit_is_missing(monkeypatch):
    pytest.importorskip("scipy")
    monkeypatch.setitem(sys.modules, "pymgrit", None)  # import pymgrit -> ImportError
    spec = importlib.util.spec_from_file_location("core_bench", ROOT / "benchmarks" / "core.py")
    core = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "core_bench", core)  # dataclasses look their module up
    spec.loader.exec_module(core)
    case = core.brusselator_case()
    assert case.peer is None
    assert any("no pymgrit row" in note and "pip install pymgrit" in note
               for note in case.notes)


def test_concurrency_benchmark_quick(tmp_path):
    """--quick with one worker count, 2 (the target's), and no warm-up runs: every kind of
    worker (threads, a persistent process pool, a Dask cluster, a new pool per run, the plain
    executors) still runs, at 8 child processes instead of the 15 of the default counts 1,2
    with a warm-up run each."""
    pytest.importorskip("scipy")
    pytest.importorskip("distributed")
    out = run("concurrency.py", "--quick", "--workers", "2", "--no-warm-up", "--json",
              str(tmp_path / "r.json"), "--markdown", str(tmp_path / "r.md"))
    assert "threads: BLAS 1 per process (OPENBLAS_NUM_THREADS=1" in out
    assert "repeats 1 (--quick), no warm-up run; workers [2];" in out
    assert "Dask: its profiler off, its event-loop tick and system monitor every 1 s" in out
    assert "Target (2 workers at least 1.8x faster than the serial backend)" in out
    assert (tmp_path / "r.md").read_text().startswith("# parareal concurrency benchmark")
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["threads"] == 1 and data["workers"] == [2]
    assert data["machine"]["distributed"] and data["machine"]["usable_cpus"] >= 1
    assert set(data["startup_s"]) == {"Dask LocalCluster(n_workers=2) + Client"}
    (result,) = data["results"]
    rows = {row["variant"]: row for row in result["rows"]}
    expected = {f"parareal {kind} W=2" for kind in ("threads", "processes", "dask")}
    expected |= {f"fine sweeps only: {pool}(2), no Parareal"
                 for pool in ("ThreadPoolExecutor", "ProcessPoolExecutor")}
    expected |= {"parareal serial backend", "parareal processes W=2, new pool per run"}
    assert expected <= set(rows)
    parareal_rows = [row for row in rows.values() if "iterations" in row]
    assert len(parareal_rows) == 5  # serial backend, 3 kinds x 1 worker count, a fresh pool
    for row in result["rows"]:  # no warm-up: the first run is the one timed run
        assert row["first_run_s"] == row["times_s"][0] == row["median_s"]
    for row in parareal_rows:
        assert row["same_as_serial"] is True
        assert row["iterations"] == result["iterations"] == 2
        assert row["status"] == "converged"
        assert 0 < row["model_speedup"] and row["efficiency"] > 0
    serial = rows["parareal serial backend"]
    assert serial["vs_serial_backend"] == 1.0
    assert rows["parareal threads W=2"]["wall_time"]["workers"] > 0
    assert rows["serial fine (solve_serial)"]["vs_serial_fine"] == 1.0


def test_concurrency_benchmark_refuses_bad_arguments(capsys):
    """Each refusal is argparse's exit (status 2, the message on stderr) before any pool or
    cluster starts: run here, not in a fresh interpreter each."""
    pytest.importorskip("scipy")
    for args, message in ((["--threads", "0"], "--threads must be >= 1"),
                          (["--workers", "0,2"], "--workers must be >= 1"),
                          (["--workers", "two"], "--workers must be comma-separated"),
                          (["--only", "nope"], "unknown case(s) ['nope']")):
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_:
            run_main(ROOT / "benchmarks" / "concurrency.py", *args)
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and message in err, (args, err)


def test_mpi_benchmark_quick(tmp_path, capsys):
    pytest.importorskip("scipy")
    pytest.importorskip("mpi4py")
    if shutil.which("mpiexec") is None:
        pytest.skip("no mpiexec")
    # the script here (its output is tested); the ranks are real mpiexec jobs
    out = run_here(capsys, "mpi.py", "--quick", "--ranks", "1,2", "--json",
                   str(tmp_path / "r.json"))
    assert "| ranks | median |" in out
    data = json.loads((tmp_path / "r.json").read_text())
    assert [row["ranks"] for row in data["rows"]] == [1, 2]
    assert all(row["bitwise_equal_serial_backend"] for row in data["rows"])
    assert all(row["iterations"] == data["serial_backend_iterations"] for row in data["rows"])


def test_streams_benchmark_says_when_there_is_no_gpu(capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is here: run benchmarks/streams.py for real")
    assert "no CUDA device here" in run_here(capsys, "streams.py", "--quick")


def test_gpu_benchmark_cpu_quick(tmp_path, capsys):
    """The GPU benchmark's smoke run on a CPU: every part runs and its numbers hang together."""
    pytest.importorskip("diffusers")
    out = run_here(capsys, "gpu.py", "--device", "cpu", "--quick", "--json",
                   str(tmp_path / "g.json"))
    assert "CPU smoke run" in out and "1.7x at 25 steps, 2.3x at 100" in out
    assert "A random network does not converge like a trained one" in out
    table = [line for line in out.splitlines() if line.startswith("| ")]
    assert all(line.count("|") == table[0].count("|") for line in table)  # one sound table
    data = json.loads((tmp_path / "g.json").read_text())
    assert data["paper_target"] == {"25": 1.7, "100": 2.3}
    runs = {r["method"]: r for r in data["digits_runs"]}
    assert set(runs) == {"serial", "srds", "picard", "picard exact"}
    for r in runs.values():
        # the recorded call pattern is the sampler's own count of sequential calls
        assert len(r["pattern"]) == r["sequential_evals"]
        assert sum(r["pattern"]) == r["total_evals"]
    assert runs["serial"]["pattern"] == [1] * 16 and runs["serial"]["uint8_identical"] == 1.0
    # one 8x8 image: at most one pixel (at a rounding edge) may differ
    assert runs["srds"]["status"] == "converged" and runs["srds"]["uint8_identical"] >= 63 / 64
    costs = [c for c in data["call_costs"] if c["seconds"] is not None]
    assert [c["rows"] for c in costs] == [1, 2, 4]
    assert all(c["unet_batch"] == 2 * c["rows"] for c in costs)  # guidance doubles the batch
    # the predictions are the interpolated costs of the digits patterns
    from parareal.adapters.diffusion.auto import interpolate_cost

    cost_map = {c["rows"]: c["seconds"] for c in costs}
    for method, seconds in data["predicted_s"]["16"].items():
        expected = sum(interpolate_cost(cost_map, k) for k in runs[method]["pattern"])
        assert seconds == pytest.approx(expected)
    serial, srds = data["check"]
    assert serial["method"] == "serial" and srds["method"] == "srds"
    assert srds["iterations"] == runs["srds"]["iterations"]  # the digits model's K
    assert srds["sequential"] == str(runs["srds"]["sequential_evals"])
    assert serial["wall_s"] > 0 and srds["predicted_s"] > 0


def test_gpu_benchmark_says_when_there_is_no_cuda(capsys):
    torch = pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    if torch.cuda.is_available():
        pytest.skip("a GPU is here: run benchmarks/gpu.py for real")
    assert "no CUDA device here" in run_here(capsys, "gpu.py")


def test_gpu_benchmark_refuses_bad_arguments(capsys):
    pytest.importorskip("diffusers")
    spec = importlib.util.spec_from_file_location("gpu_bench", ROOT / "benchmarks" / "gpu.py")
    gpu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu)
    for args, message in ((["--steps", "0"], "expected integers >= 1"),
                          (["--batch-sizes", "a,b"], "expected comma-separated integers"),
                          (["--repeats", "0"], "--repeats must be >= 1"),
                          (["--dtype", "int8"], "invalid choice")):
        with pytest.raises(SystemExit) as exit_:
            gpu.parse_args(args)
        assert exit_.value.code == 2 and message in capsys.readouterr().err, args


def _srds_bench():
    spec = importlib.util.spec_from_file_location("srds_bench", ROOT / "benchmarks" / "srds.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_srds_benchmark_quick(tmp_path, capsys):
    """The SRDS studies: the rows hang together, and the default stays within tol."""
    pytest.importorskip("diffusers")
    srds_bench = _srds_bench()
    out = run_here(capsys, "srds.py", "--study", "stop", "--study", "picard", "--steps", "25",
                   "--n", "1", "--seeds", "1", "--json", str(tmp_path / "r.json"))
    assert "tol = 1/255" in out and "## stop" in out and "## picard" in out
    rows = json.loads((tmp_path / "r.json").read_text())["rows"]
    assert {r["config"] for r in rows if r["study"] == "stop"} == {"update", "estimate"}
    picard_configs = srds_bench._configs("picard", 25)
    assert len(rows) == 2 + len(picard_configs)  # one seed: a row per configuration
    assert {r["seed"] for r in rows} == {0}
    for r in rows:
        assert r["pixels"] == 64 and 0 <= r["identical"] <= 64
        assert r["sequential"] <= 25 if r["config"].startswith("picard") else r["N"] == 25
    update = [r for r in rows if r["config"] in ("update", "srds default")]
    assert all(r["max_abs_err"] <= 1 / 255 and r["status"] == "CONVERGED" for r in update)
    # Picard needs more sequential calls as its tolerance shrinks (PICARD_TOLS descend)
    picard = {r["config"]: r["sequential"] for r in rows if r["seed"] == 0
              and r["config"].startswith("picard")}
    calls = [picard[f"picard tol={t:g}"] for t in srds_bench.PICARD_TOLS]
    assert calls == sorted(calls)
    # the whole grid as the window needs fewer calls than the default window, Anderson fewer
    assert picard["picard 1e-4 N +anderson"] <= picard["picard tol=1e-4 window=N"]
    assert picard["picard tol=1e-4 window=N"] < picard["picard tol=0.0001"]


def test_srds_benchmark_blocks_and_coarse_configurations():
    pytest.importorskip("diffusers")
    from parareal.adapters.diffusion import default_blocks

    srds_bench = _srds_bench()
    labels = [label for label, _ in srds_bench._configs("blocks", 100)]
    assert labels == ["B=10 (sqrt N)", "B=15", "B=20 (default)", "B=25"]
    assert default_blocks(100) == 20
    coarse = dict(srds_bench._configs("coarse", 100))
    assert coarse["euler:2"] == {"coarse": "euler:2"} and coarse["ddim jump"] == {}


def test_testset_benchmark_refuses_an_unknown_problem_before_any_work(capsys):
    """argparse's exit (status 2, the message on stderr) before any work: run here, not in a
    fresh interpreter."""
    pytest.importorskip("scipy")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        run_main(ROOT / "benchmarks" / "testset.py", "--no-wall", "--only", "Robertson,nosuch")
    printed = capsys.readouterr()
    assert exit_.value.code == 2 and "unknown problem 'nosuch'" in printed.err
    assert printed.out == ""  # 'Robertson' was accepted (any case), and nothing ran


def test_testset_benchmark_counts(tmp_path, capsys):
    """The script's main here (it starts no pool; its thread settings are put back)."""
    pytest.importorskip("scipy")
    out = tmp_path / "testset.json"
    text = run_here(capsys, "testset.py", "--no-wall", "--only", "robertson", "--json",
                    str(out))
    assert "| robertson | work/pipelined |" in text
    rows = json.loads(out.read_text())["rows"]
    assert [r["problem"] for r in rows] == ["robertson"]
    for config in ("equal/synchronous", "equal/pipelined", "work/synchronous",
                   "work/pipelined"):
        row = rows[0][config]
        assert row["status"] == "converged"
        assert row["error_vs_serial_fine"] < 1e-7  # converged to the serial fine solution
        assert row["speedup_bound"] == pytest.approx(
            row["serial_fine_cost"] / row["critical_path"])
        assert row["coarse_chosen"]


def test_benchmarks_page_is_generated_from_the_json():
    """docs/benchmarks.md is exactly what benchmarks/report.py makes of benchmarks/results/
    (regenerate it with ``python benchmarks/report.py``), within the page's word budget."""
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "report.py"), "--check"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len((ROOT / "docs" / "benchmarks.md").read_text().split()) <= 5000


def test_benchmarks_page_check_reports_a_stale_page(tmp_path):
    """--check exits 1 with a diff summary on a stale page; without it the page is rewritten."""
    expected = (ROOT / "docs" / "benchmarks.md").read_text()
    page = tmp_path / "benchmarks.md"
    page.write_text(expected.replace("## How to run", "## How to run\n\nedited by hand", 1))
    script = str(ROOT / "benchmarks" / "report.py")
    proc = subprocess.run([sys.executable, script, "--check", "--out", str(page)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 1
    assert "out of date" in proc.stderr and "2 lines differ from the page" in proc.stderr
    assert "-edited by hand" in proc.stderr
    proc = subprocess.run([sys.executable, script, "--out", str(page)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0 and page.read_text() == expected


def test_payoff_benchmark_quick(tmp_path):
    """--quick: the JSON holds every figure, and Parareal's answer is the serial fine one to
    within the stated tolerance (the timing is not checked)."""
    pytest.importorskip("scipy")
    out = run("payoff.py", "--quick", "--json", str(tmp_path / "p.json"), "--machine", "test")
    assert "threads: BLAS/OpenMP 1 per process (OMP_NUM_THREADS=1" in out
    assert "| parareal |" in out and "ratio (" in out
    data = json.loads((tmp_path / "p.json").read_text())
    assert {"command", "machine", "threads", "load_start", "load_end", "case", "repeats",
            "times_s", "stats_s", "serial_baseline", "serial_median_s", "parareal_median_s",
            "ratio", "ratio_per_repeat", "iterations", "status", "residuals",
            "speedup_bound", "coarse_chosen", "error_vs_serial_fine", "within_tol",
            "plain_vs_serial_fine"} <= set(data)
    assert "--quick" in data["command"] and data["machine"]["description"] == "test"
    assert data["machine"]["python"] and data["machine"]["numpy"]
    assert data["threads"]["environment"]["OMP_NUM_THREADS"] == "1"
    case = data["case"]
    assert case["backend"] == "threads(2)" and case["tol"] == 1e-3 and data["repeats"] == 1
    assert set(data["times_s"]) == {"serial fine", "plain fine", "parareal"}
    assert all(len(ts) == 1 for ts in data["times_s"].values())
    assert data["ratio"] == pytest.approx(
        data["serial_median_s"] / data["parareal_median_s"])
    assert data["status"] == "converged" and 1 <= data["iterations"] == len(data["residuals"])
    assert data["residuals"][-1] <= case["tol"]
    assert data["coarse_chosen"] and data["speedup_bound"] > 0
    # the answer: within the stated tolerance of the serial fine solution, at every boundary
    assert data["within_tol"] is True and data["error_vs_serial_fine"] <= case["tol"]
    assert data["plain_vs_serial_fine"] < 1e-12  # the plain solve is the same computation


def test_readme_states_the_payoff_figures_of_the_json():
    """The README's measured ODE result is the one in benchmarks/results/payoff-2cpu.json."""
    data = json.loads((ROOT / "benchmarks" / "results" / "payoff-2cpu.json").read_text())
    readme = " ".join((ROOT / "README.md").read_text().split())
    stats = data["stats_s"]
    plain = min(stats["serial fine"]["median"], stats["plain fine"]["median"])
    assert f"**{data['parareal_median_s']:.2f} s against {plain:.2f} s**" in readme
    assert f"(**{data['ratio']:.2f}x**, medians of {data['repeats']} runs" in readme
    assert f"chose `{data['coarse_chosen']}`" in readme
    assert f"after {data['iterations']} iteration at `tol={data['case']['tol']:g}`" in readme
    assert f"speed-up bound of {data['speedup_bound']:.2f}" in readme
    assert f"solution {data['error_vs_serial_fine']:.1e})" in readme
