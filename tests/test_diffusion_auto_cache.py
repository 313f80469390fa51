"""``method="auto"``'s disk cache (``auto_cache``), its timing rule (``auto_timing``) and
``choice_s``: what is kept, what invalidates it, and that a bad cache is never trusted."""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from diffusers import DDIMScheduler  # noqa: E402
from parareal.adapters.diffusion import auto, auto_cache, auto_timing, sample  # noqa: E402
from parareal.adapters.diffusion.auto_timing import (  # noqa: E402
    choice_is_clear,
    cost_bounds,
    time_anchors,
)

from tests.conftest import tiny_unet  # noqa: E402

STEPS = 12


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh cache folder (``XDG_CACHE_HOME`` in ``tmp_path``) and empty memory."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(auto_cache.ENV_VAR, raising=False)
    auto.clear_cache()
    yield tmp_path / "xdg" / "parareal" / "auto"
    auto.clear_cache()


@pytest.fixture
def serial_choice(monkeypatch):
    """``auto`` decides for serial (as predicted or not): no SRDS run whose iterations would
    change the next plan, so a repeated call needs no new timing."""
    decide = auto.decide
    monkeypatch.setattr(auto, "decide", lambda *a, **k: ("serial", decide(*a, **k)[1]))


class Calls:
    """Counts the forward calls of a module (a hook: the module stays the one sampled)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.n = 0
        module.register_forward_hook(self._hook)

    def _hook(self, *_):
        self.n += 1


def _run(model, **kwargs):
    scheduler = DDIMScheduler(num_train_timesteps=1000, clip_sample=False)
    x_T = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    return sample(model, scheduler, x_T, num_inference_steps=STEPS, **kwargs)


def _timing_calls(model, calls: Calls, **kwargs) -> int:
    """Model calls of an auto run that were not the run itself (the timing)."""
    before = calls.n
    result = _run(model, method="auto", **kwargs)
    evals = result.sequential_evals
    return calls.n - before - evals


def test_the_suite_never_uses_the_real_cache():
    """conftest points XDG_CACHE_HOME at a temporary folder for the whole run."""
    folder = auto_cache.cache_dir()
    assert folder is not None
    assert not str(folder).startswith(os.path.expanduser("~/.cache"))


def test_cache_dir_follows_xdg(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert auto_cache.cache_dir() == tmp_path / "parareal" / "auto"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for value in ("relative/dir", ""):  # the XDG rule: only absolute paths count
        monkeypatch.setenv("XDG_CACHE_HOME", value)
        assert auto_cache.cache_dir() == tmp_path / "home" / ".cache" / "parareal" / "auto"
    for off in ("off", "0", "OFF", "false", "no"):
        monkeypatch.setenv(auto_cache.ENV_VAR, off)
        assert auto_cache.cache_dir() is None


def test_fingerprint_follows_the_weights():
    a, b, c = tiny_unet(0), tiny_unet(0), tiny_unet(1)
    fa = auto_cache.model_fingerprint(a)
    assert fa is not None and fa == auto_cache.model_fingerprint(b)  # same class and weights
    assert fa != auto_cache.model_fingerprint(c)
    with torch.no_grad():
        next(a.parameters()).add_(1e-3)  # in place: the version counter moves
    assert auto_cache.model_fingerprint(a) != fa
    a.load_state_dict(b.state_dict())
    assert auto_cache.model_fingerprint(a) == fa
    a.train()
    assert auto_cache.model_fingerprint(a) != fa
    assert auto_cache.model_fingerprint(lambda x, t: x) is None  # no weights: memory only


def test_costs_and_patterns_survive_the_process(cache):
    model = tiny_unet(0)
    calls = Calls(model)
    first = _timing_calls(model, calls)
    assert first > 0
    names = sorted(p.name.split("-")[0] for p in cache.iterdir())
    assert names.count("costs") == 1 and names.count("pattern") >= 2
    auto.clear_cache(disk=False)  # a new process: memory empty, files kept
    ran = []
    original = auto._time_call
    try:
        auto._time_call = lambda *a: ran.append(a) or original(*a)
        assert _timing_calls(model, calls) == 0 and not ran  # nothing timed, no stub run
    finally:
        auto._time_call = original
    # the same weights in another object share the costs; changed weights do not
    twin = tiny_unet(0)
    assert _timing_calls(twin, Calls(twin)) == 0
    other = tiny_unet(0)
    with torch.no_grad():
        next(other.parameters()).mul_(1.5)
    assert _timing_calls(other, Calls(other)) > 0


def test_clear_cache_removes_the_files(cache):
    _run(tiny_unet(0), method="auto")
    assert any(cache.iterdir())
    auto.clear_cache()
    assert not any(cache.iterdir())


def test_off_writes_nothing(cache, serial_choice, monkeypatch):
    monkeypatch.setenv(auto_cache.ENV_VAR, "off")
    model = tiny_unet(0)
    calls = Calls(model)
    assert _timing_calls(model, calls) > 0
    assert not cache.exists()
    assert _timing_calls(model, calls) == 0  # memory still works


def _costs_file(cache: Path) -> Path:
    (path,) = cache.glob("costs-*.json")
    return path


def _resealed(doc: dict) -> str:
    """``doc`` with a checksum that matches its (changed) contents."""
    doc["checksum"] = auto_cache._checksum(doc["kind"], doc["key"], doc["created"], doc["data"])
    return json.dumps(doc)


def _edit_costs(value):
    def edit(doc):
        doc["data"]["costs"] = {k: value for k in doc["data"]["costs"]}
        return _resealed(doc)
    return edit


BAD = {
    "garbage bytes": lambda doc: b"\x00\xff\xfe garbage \x80",
    "not an object": lambda doc: "[1, 2, 3]",
    "truncated": lambda doc: json.dumps(doc)[:40],
    "cost as text": _edit_costs("0.01"),
    "cost as int": _edit_costs(1),
    "negative cost": _edit_costs(-0.01),
    "zero cost": _edit_costs(0.0),
    "NaN cost": lambda doc: json.dumps(doc).replace(
        str(next(iter(doc["data"]["costs"].values()))), "NaN", 1),
    "huge cost": _edit_costs(1e300),
    "rows not a number": lambda doc: _resealed({**doc, "data": {"costs": {"x": 0.1}}}),
    "rows zero": lambda doc: _resealed({**doc, "data": {"costs": {"0": 0.1}}}),
    "costs a list": lambda doc: _resealed({**doc, "data": {"costs": [0.1]}}),
    "wrong version": lambda doc: _resealed({**doc, "version": auto_cache.CACHE_VERSION + 1}),
    "version true": lambda doc: _resealed({**doc, "version": True}),
    "other key": lambda doc: _resealed({**doc, "key": {**doc["key"], "threads": 999}}),
    "stale": lambda doc: _resealed({**doc, "created": doc["created"] - 2 * auto_cache.MAX_AGE_S}),
    "from the future": lambda doc: _resealed({**doc, "created": doc["created"] + 86400.0}),
    "tampered (checksum kept)": lambda doc: json.dumps(
        {**doc, "data": {"costs": {k: v * 100 for k, v in doc["data"]["costs"].items()}}}),
    "missing field": lambda doc: json.dumps({k: v for k, v in doc.items() if k != "created"}),
}


@pytest.fixture(scope="module")
def good_cache(tmp_path_factory):
    """The cache folder's files after one auto run of ``tiny_unet(0)`` with an empty cache
    (made once; each case copies them into its own fresh folder)."""
    folder = tmp_path_factory.mktemp("xdg")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(folder))
        patch.delenv(auto_cache.ENV_VAR, raising=False)
        auto.clear_cache()
        _run(tiny_unet(0), method="auto")
        auto.clear_cache(disk=False)
        model = tiny_unet(0)  # another object, the same weights (as each case makes)
        assert _timing_calls(model, Calls(model)) == 0  # the files are trusted as they are
        auto.clear_cache(disk=False)
    files = {p.name: p.read_bytes() for p in (folder / "parareal" / "auto").iterdir()}
    assert sum(name.startswith("costs-") for name in files) == 1
    return files


@pytest.mark.parametrize("name", list(BAD))
def test_a_bad_costs_file_is_ignored_and_rewritten(cache, good_cache, name):
    model = tiny_unet(0)  # the weights of good_cache's run: its files are this model's
    calls = Calls(model)
    cache.mkdir(parents=True)
    for file, data in good_cache.items():
        (cache / file).write_bytes(data)
    path = _costs_file(cache)
    good = json.loads(path.read_text())
    bad = BAD[name](json.loads(path.read_text()))
    path.write_bytes(bad if isinstance(bad, bytes) else bad.encode())
    auto.clear_cache(disk=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a bad file is replaced quietly
        assert _timing_calls(model, calls) > 0  # not trusted: timed again
    fresh = json.loads(path.read_text())  # and replaced by a valid file
    assert fresh["version"] == auto_cache.CACHE_VERSION and fresh["key"] == good["key"]
    assert all(math.isfinite(v) and v > 0 for v in fresh["data"]["costs"].values())
    auto.clear_cache(disk=False)
    assert _timing_calls(model, calls) == 0


def test_a_bad_pattern_file_is_ignored(cache):
    scheduler = DDIMScheduler(num_train_timesteps=1000, clip_sample=False)
    rows, _ = auto._pattern(scheduler, STEPS, "serial", 0, 3)
    assert rows == (1,) * STEPS
    (path,) = cache.glob("pattern-*.json")
    for bad in ([0, -1], [1.0] * STEPS, "1" * STEPS, [True] * STEPS):
        doc = json.loads(path.read_text())
        doc["data"]["rows"] = bad
        path.write_text(_resealed(doc))
        auto.clear_cache(disk=False)
        assert auto._pattern(scheduler, STEPS, "serial", 0, 3)[0] == rows  # counted anew
        assert json.loads(path.read_text())["data"]["rows"] == list(rows)  # and rewritten


def test_a_folder_where_the_file_should_be(cache, serial_choice):
    model = tiny_unet(0)
    calls = Calls(model)
    _run(model, method="auto")
    path = _costs_file(cache)
    path.unlink()
    path.mkdir()
    auto.clear_cache(disk=False)
    with pytest.warns(RuntimeWarning, match="in memory only") as record:
        assert _timing_calls(model, calls) > 0
    assert len([w for w in record if "in memory only" in str(w.message)]) == 1
    assert path.is_dir()
    assert _timing_calls(model, calls) == 0  # memory still works


def test_an_unwritable_cache_works_and_warns_once(cache, tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where XDG_CACHE_HOME should be a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    model = tiny_unet(0)
    calls = Calls(model)
    with pytest.warns(RuntimeWarning, match="cannot be written") as record:
        first = _run(model, method="auto")
    assert len([w for w in record if "cannot be written" in str(w.message)]) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # once per process, not once per call
        auto.clear_cache(disk=False)
        again = _run(model, method="auto")
    assert first.converged and again.converged and calls.n > 0  # it works, just uncached


# -- choice_s and honest times -----------------------------------------------------------------


def test_choice_s(cache):
    model = tiny_unet(0)
    named = _run(model, method="serial")
    assert named.choice_s == 0.0
    chosen = _run(model, method="auto")
    assert 0 < chosen.choice_s < chosen.wall_time_s
    assert "predictions took" in chosen.reason


@pytest.mark.parametrize("forced", ["serial", None])
def test_cli_reports_choice_s_and_an_honest_serial_time(cache, tmp_path, capsys, monkeypatch,
                                                        forced):
    """``serial_wall_time_s`` leaves out auto's choosing, also when auto ran serial itself."""
    from parareal.cli import main

    if forced:
        decide = auto.decide
        monkeypatch.setattr(auto, "decide", lambda *a, **k: (forced, decide(*a, **k)[1]))
    argv = ["sample", "--steps", "9", "--n", "2", "--json", "--compare-serial", "--threads", "1"]
    assert main([*argv, "--out", str(tmp_path / "a.png")]) == 0
    got = json.loads(capsys.readouterr().out)
    assert 0 < got["choice_s"] < got["wall_time_s"]
    if got["method"] == "serial":  # the same run, without the choosing
        assert got["serial_wall_time_s"] == pytest.approx(got["wall_time_s"] - got["choice_s"])
    assert main([*argv, "--method", "srds", "--out", str(tmp_path / "b.png")]) == 0
    assert json.loads(capsys.readouterr().out)["choice_s"] == 0.0


# -- the timing rule ----------------------------------------------------------------------------


def test_cost_bounds():
    costs = {16: 1.0, 32: 1.5}
    assert cost_bounds(costs, 16) == (1.0, 1.0)
    assert cost_bounds(costs, 20) == (1.0, 1.5)  # between: the neighbours' costs
    assert cost_bounds(costs, 8) == (0.0, 1.0)
    low, high = cost_bounds(costs, 64)  # beyond: half the last slope; cost per row kept
    assert low == pytest.approx(1.5 + 0.5 * (0.5 / 16) * 32) and high == pytest.approx(3.0)
    assert cost_bounds({16: 1.0}, 64) == (1.0, 4.0)


def _plans(per_row: float):
    rows = {"serial": (16,) * 400, "srds": (64, 128, 256, 512) * 25}
    overhead = {"serial": 0.0, "srds": 0.0}

    def cost(r):
        return 0.01 + per_row * r

    def predict(costs):
        return auto.predict({name: auto.CallPlan(name, r) for name, r in rows.items()}, costs)

    def clear(costs, predicted):
        return choice_is_clear(rows, overhead, predicted, {"serial", "srds"}, costs)

    return rows, cost, predict, clear


@pytest.mark.parametrize("per_row", [1e-3, 1e-6])
def test_time_anchors_stops_when_the_choice_is_clear(per_row):
    rows, cost, predict, clear = _plans(per_row)
    anchors = {r: 16 for r in (16, 64, 128, 256, 512)}
    measured = []
    got = time_anchors(anchors, {}, lambda m, r: measured.append(r) or cost(r), predict,
                       clear)
    assert measured[:2] == [16, 64]  # the smallest and one of >= 4 times its rows, always
    full = predict({r: cost(r) for r in anchors})
    winner = min(full, key=full.__getitem__)
    assert min(predict(got.costs), key=predict(got.costs).__getitem__) == winner
    if per_row == 1e-3:  # rows cost: serial wins by far, clear after two sizes
        assert got.stopped == "clear" and measured == [16, 64] and winner == "serial"
        assert set(got.untimed) == {128, 256, 512}
    else:  # flat costs: SRDS's extrapolated costs are no bounds yet, so timing goes on
        assert got.stopped == "clear" and measured == [16, 64, 128] and winner == "srds"


def test_time_anchors_budget_and_every_anchor(monkeypatch):
    rows, cost, predict, clear = _plans(1e-6)
    anchors = {r: 16 for r in (16, 64, 128, 256, 512)}
    serial = predict({16: cost(16)})["serial"]
    stub_s = auto_timing.BUDGET_FRACTION * serial  # the stub runs took the whole budget
    got = time_anchors(anchors, {}, lambda m, r: cost(r), predict, lambda c, p: False, stub_s)
    assert got.stopped == "budget" and set(got.timed) == {16, 64}  # the first two, always
    assert got.untimed == (128, 256, 512)
    # a later call (or process) with these costs cached declines the same: nothing timed
    again = time_anchors(anchors, got.costs, lambda m, r: cost(r), predict, lambda c, p: False,
                         stub_s)
    assert again.timed == {} and again.stopped == "budget"
    monkeypatch.setattr(auto_timing, "TIME_EVERY_ANCHOR", True)
    every = time_anchors(anchors, {}, lambda m, r: cost(r), predict, clear, stub_s)
    assert set(every.timed) == set(anchors) and every.untimed == ()


def test_the_second_size_timed_is_far_from_the_first():
    """1 and 2 rows differ by the timing's noise: the second size timed has >= 4x the rows."""
    measured = []
    time_anchors({r: 1 for r in (1, 2, 3, 8, 20)}, {},
                 lambda m, r: measured.append(r) or 0.01 + 1e-3 * r,
                 lambda costs: {"serial": 1e9}, lambda c, p: False)
    assert measured == [1, 8, 2, 3, 20]
    measured.clear()  # no size far enough: from the smallest up
    time_anchors({r: 1 for r in (4, 5, 6)}, {}, lambda m, r: measured.append(r) or 0.01,
                 lambda costs: {"serial": 1e9}, lambda c, p: False)
    assert measured == [4, 5, 6]


def test_costs_that_contradict_batching_are_capped_by_larger_batches():
    # measured under load: one row 31 ms, two rows 12 ms; a larger batch never costs less
    costs = {1: 0.031, 2: 0.012, 8: 0.015}
    assert auto_timing.monotone(costs) == {1: 0.012, 2: 0.012, 8: 0.015}
    assert auto.interpolate_cost({1: 0.031, 2: 0.012}, 20) == pytest.approx(0.012)  # was 0
    assert auto_timing.cost_bounds({1: 0.031, 2: 0.012}, 1) == (0.012, 0.012)
    for rows in (1, 2, 5, 8, 40):
        low, high = auto_timing.cost_bounds(costs, rows)
        assert 0 < low <= auto.interpolate_cost(costs, rows) <= high or rows > 8


@pytest.mark.slow
def test_the_choice_benchmark_runs(cache, tmp_path, capsys):
    """benchmarks/auto_choice.py (smoke settings): its table, the goal line, its JSON.

    The script's ``main`` in this process (torch and diffusers are already imported here, not
    again in a fresh interpreter); each measurement still runs in a process of its own, forked
    by the script. ``cache`` empties auto's memory first (another test of this process may
    have filled it), so that the forked children start as empty as a new process."""
    from tests.inprocess import run_main

    root = Path(__file__).resolve().parents[1]
    capsys.readouterr()
    status = run_main(root / "benchmarks" / "auto_choice.py", "--cases", "8x1", "--repeats",
                      "1", "--json", str(tmp_path / "r.json"))
    out = capsys.readouterr()
    assert status == 0, out.err
    assert "| N | n | serial predicted s | cold s |" in out.out and "goals (" in out.out
    rows = json.loads((tmp_path / "r.json").read_text())["rows"]
    assert rows[0]["steps"] == 8 and rows[0]["second_s"] >= 0
