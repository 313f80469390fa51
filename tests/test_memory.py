"""Memory that follows what a run keeps: peak traced allocation per slice, and Batched(max_batch=).

A *state* is ``y0.nbytes``; the peak of ``tracemalloc`` during ``parareal.solve`` (numpy's
buffers are traced; ``y0`` itself was allocated before) divided by ``slices * y0.nbytes`` must
stay within the bounds that docs/guide.md states, the result included.
"""

from __future__ import annotations

import json
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest

import parareal
from tests.inprocess import run_main

SIZE = 50_000  # float64 entries: 0.4 MB a state; Python objects stay below 0.01 state per slice
SLICES = 8


def _f(t, y):
    return -y


def _peak_states(backend, schedule, **options):
    """Peak traced memory of one solve, in states per slice, and its solution."""
    y0 = np.ones(SIZE)
    tracemalloc.start()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # NoSpeedupWarning: not the point here
            sol = parareal.solve(
                _f, y0, (0.0, 2.0), coarse=parareal.RK4(steps=1), fine=parareal.RK4(steps=4),
                slices=SLICES, tol=0.0, max_iters=4, backend=backend, schedule=schedule,
                vectorized=backend != "serial", **options)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sol.iterations == 4 and sol.y.shape == (SLICES + 1, SIZE)
    return peak / (SLICES * y0.nbytes), sol


@pytest.mark.parametrize("backend, bound", [("serial", 4.0), ("batched", 8.0),
                                            (parareal.Batched(max_batch=3), 8.0)])
def test_synchronous_peak_is_within_the_bound(backend, bound):
    states, _ = _peak_states(backend, "synchronous")
    assert states <= bound, f"{backend}: {states:.2f} states per slice"


@pytest.mark.parametrize("backend, bound", [("serial", 4.0), ("batched", 8.0)])
def test_pipelined_without_lookahead_is_within_the_bound(backend, bound):
    states, _ = _peak_states(backend, "pipelined", lookahead=0)
    assert states <= bound, f"{backend}: {states:.2f} states per slice"


@pytest.mark.parametrize("backend, bound", [("serial", 5.5), ("batched", 11.0)])
def test_pipelined_default_lookahead_is_within_its_bound(backend, bound):
    # the partial iterates ahead of the newest complete one cost about one state per slice
    # per unit of lookahead (docs/guide.md, "Memory")
    states, _ = _peak_states(backend, "pipelined")
    assert states <= bound, f"{backend}: {states:.2f} states per slice"


# -- Batched(max_batch=) -----------------------------------------------------------------------


def _recording(record):
    def f(t, y):
        record.append(y.shape[0])
        return -y * np.cos(t)[:, None] + 0.1 * y * y
    return f


@pytest.mark.parametrize("schedule", ["synchronous", "pipelined"])
@pytest.mark.parametrize("max_batch", [1, 3, 5])
def test_max_batch_bounds_each_call_and_keeps_the_bits(schedule, max_batch):
    y0 = np.linspace(0.0, 1.0, 40)
    kwargs = dict(coarse=parareal.RK4(steps=1), fine=parareal.RK4(steps=4), slices=12, tol=0.0,
                  max_iters=5, schedule=schedule, vectorized=True)
    whole: list[int] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = parareal.solve(_recording(whole), y0, (0.0, 2.0), backend=parareal.Batched(),
                           **kwargs)
        parts: list[int] = []
        b = parareal.solve(_recording(parts), y0, (0.0, 2.0),
                           backend=parareal.Batched(max_batch=max_batch), **kwargs)
    assert max(whole) > max_batch  # the unbounded run stacks more: the bound is exercised
    assert max(parts) <= max_batch
    assert sum(parts) == sum(whole) == b.stats.f_evals == a.stats.f_evals
    assert b.y.tobytes() == a.y.tobytes()
    assert b.residuals == a.residuals
    assert b.stats.critical_path == a.stats.critical_path
    assert b.stats.f_calls == len(parts) > a.stats.f_calls


def test_max_batch_none_and_large_change_nothing():
    y0 = np.linspace(0.0, 1.0, 10)
    kwargs = dict(coarse=parareal.RK4(steps=1), fine=parareal.RK4(steps=3), slices=6,
                  tol=1e-12, vectorized=True)
    ref = parareal.solve(_f, y0, (0.0, 1.0), backend=parareal.Batched(), **kwargs)
    for backend in (parareal.Batched(max_batch=None), parareal.Batched(max_batch=1000)):
        sol = parareal.solve(_f, y0, (0.0, 1.0), backend=backend, **kwargs)
        assert sol.y.tobytes() == ref.y.tobytes()
        assert sol.stats.f_calls == ref.stats.f_calls
    assert repr(parareal.Batched(max_batch=4)) == "Batched(max_batch=4)"
    assert repr(parareal.Batched()) == "Batched()"


@pytest.mark.parametrize("bad, error", [(0, ValueError), (-3, ValueError), (2.5, TypeError),
                                        ("4", TypeError), (True, TypeError)])
def test_bad_max_batch_is_refused_naming_it(bad, error):
    with pytest.raises(error, match="max_batch"):
        parareal.Batched(max_batch=bad)


def test_max_batch_accepts_numpy_integers():
    assert parareal.Batched(max_batch=np.int64(3)).max_batch == 3


# -- benchmarks/memory.py --------------------------------------------------------------------

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "memory.py"


def test_memory_benchmark_runs_and_measures_within_the_bounds(tmp_path, capsys):
    """The script's main here (its table and JSON are tested); each case it measures still
    runs in a fresh subprocess of its own (its RSS peak)."""
    out = tmp_path / "m.json"
    capsys.readouterr()
    status = run_main(SCRIPT, "--sizes", "50000", "--slices", "8", "--backends", "serial",
                      "batched", "--json", str(out))
    printed = capsys.readouterr()
    assert status == 0, printed.err
    assert "| numpy | 5e+04 | serial | synchronous |" in printed.out
    data = json.loads(out.read_text())
    assert data["meta"]["threads"] == 1
    rows = {(r["backend"], r["schedule"]): r for r in data["rows"]}
    assert len(rows) == 4 and all(r["iterations"] == 4 for r in rows.values())
    assert rows[("serial", "synchronous")]["tracemalloc_states_per_slice"] <= 4.0
    assert rows[("batched", "synchronous")]["tracemalloc_states_per_slice"] <= 8.0
    assert all(r["rss_peak_bytes"] >= 0 for r in rows.values())


def test_memory_benchmark_refuses_bad_arguments(capsys):
    """argparse's exit (status 2, the message on stderr), here rather than in a fresh
    interpreter each."""
    for args in (["--threads", "0"], ["--sizes", "0"]):
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_:
            run_main(SCRIPT, *args)
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and "must be >= 1" in err, (args, err)
