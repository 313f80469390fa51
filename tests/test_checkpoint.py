"""Checkpoint and restart: a resumed run is the uninterrupted run, bit for bit; bad files fail.

Every test here compares against a real uninterrupted run (never against stored numbers): the
checkpoint of iterate ``j`` is copied aside while a full run goes on (from its callback), then
resumed, on every backend and schedule, for numpy and torch states.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import multiprocessing
import os
import random
import shutil
import signal
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import parareal
from parareal import RK4, Propagator, Status
from parareal.backends import Processes, Threads
from parareal.checkpoint import load_checkpoint
from parareal.cli import main

from .inprocess import wait_or_kill
from .pool_functions import damped

SCHEDULES = ["synchronous", "pipelined"]
BACKENDS = ["serial", "batched", "threads", "processes"]
HANG_GUARD_S = 120


def vdp(t, y):
    """Van der Pol (mu = 0.5), elementwise over a leading batch axis: vectorised-safe."""
    return np.stack([y[..., 1], -y[..., 0] + 0.5 * (1.0 - y[..., 0] ** 2) * y[..., 1]], axis=-1)


def vdp_torch(t, y):
    import torch

    return torch.stack([y[..., 1], -y[..., 0] + 0.5 * (1.0 - y[..., 0] ** 2) * y[..., 1]], -1)


Y0 = np.array([2.0, 0.0])
SPAN = (0.0, 6.0)
KW = {"coarse": "rk4:1", "fine": "rk4:12", "slices": 8}


@pytest.fixture(scope="module")
def pools():
    with Threads(2) as threads, Processes(2) as processes:
        yield {"serial": "serial", "batched": "batched", "threads": threads,
               "processes": processes}
    assert not multiprocessing.active_children()


def same_solution(sol, ref):
    """The contract: y bit for bit (kind and dtype too), iterations, residuals, status."""
    assert sol.iterations == ref.iterations
    assert sol.residuals == ref.residuals
    assert sol.status is ref.status
    assert type(sol.y) is type(ref.y) and sol.y.dtype == ref.y.dtype
    if isinstance(ref.y, np.ndarray):
        assert np.array_equal(sol.y, ref.y)
    else:
        import torch

        assert torch.equal(sol.y, ref.y)
    assert np.array_equal(sol.t, ref.t)
    assert len(sol.stats.critical_path_per_iteration) == ref.iterations + 1
    assert sol.stats.critical_path_per_iteration[: 1] == ref.stats.critical_path_per_iteration[: 1]


def run_with_copies(tmp_path, f=vdp, y0=Y0, span=SPAN, **kw):
    """A full run with a checkpoint; the file as it was after each iterate, copied aside."""
    path = tmp_path / "run.ckpt"
    copies = {}

    def keep(info):
        copy = tmp_path / f"after-{info.iteration}.ckpt"
        shutil.copyfile(path, copy)
        copies[info.iteration] = copy

    sol = parareal.solve(f, y0, span, checkpoint=path, callback=keep, **{**KW, **kw})
    return sol, copies


# -- the same Solution, on every backend and schedule ------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("tol", [1e-9, 0.0])
def test_resume_from_every_iterate_gives_the_uninterrupted_run(tmp_path, pools, backend,
                                                               schedule, tol):
    opts = {"backend": pools[backend], "schedule": schedule, "tol": tol, "vectorized": True}
    ref, copies = run_with_copies(tmp_path, **opts)
    assert ref.iterations >= 4 and sorted(copies) == list(range(ref.iterations + 1))
    assert ref.status is Status.CONVERGED
    for j, copy in copies.items():
        seen = []
        sol = parareal.solve(vdp, Y0, SPAN, resume=copy, callback=seen.append,
                             **KW, **opts)
        same_solution(sol, ref)
        # the callback sees only the new iterates, with the values the full run had
        assert [info.iteration for info in seen] == list(range(j + 1, ref.iterations + 1))
        assert all(np.array_equal(info.y, ref_info) for info, ref_info in
                   zip(seen, [load_checkpoint(copies[i.iteration]).y for i in seen]))
        # the history before the checkpoint is the full run's; the clock goes on from it
        path = sol.stats.critical_path_per_iteration
        assert path[: j + 1] == ref.stats.critical_path_per_iteration[: j + 1]
        assert all(a < b for a, b in zip(path, path[1:]))


@pytest.mark.parametrize("written,resumed", [
    ({"backend": "processes", "schedule": "pipelined", "lookahead": None},
     {"backend": "serial", "schedule": "synchronous", "vectorized": False}),
    ({"backend": "serial", "schedule": "synchronous"},
     {"backend": "threads", "schedule": "pipelined", "lookahead": 0}),
    ({"backend": "batched", "schedule": "pipelined"},
     {"backend": "processes", "schedule": "synchronous"}),
])
def test_backend_schedule_lookahead_and_vectorized_may_change(tmp_path, pools, written,
                                                              resumed):
    def opts(d):
        return {"vectorized": True, **d, "backend": pools[d["backend"]]}

    ref, copies = run_with_copies(tmp_path, **opts(written))
    for copy in copies.values():
        same_solution(parareal.solve(vdp, Y0, SPAN, resume=copy, **KW, **opts(resumed)), ref)


def test_a_final_checkpoint_returns_at_once_without_calling_f(tmp_path):
    ref, copies = run_with_copies(tmp_path)
    calls = []

    def counted(t, y):
        calls.append(t)
        return vdp(t, y)

    final = copies[ref.iterations]
    assert load_checkpoint(final).status is Status.CONVERGED
    for schedule in SCHEDULES:
        seen = []
        sol = parareal.solve(counted, Y0, SPAN, resume=final, schedule=schedule,
                             callback=seen.append, **KW)
        same_solution(sol, ref)
        assert calls == [] and seen == [] and sol.stats.f_evals == 0
        assert sol.stats.critical_path_per_iteration == ref.stats.critical_path_per_iteration


@pytest.mark.parametrize("tol", [1e-9, 0.0])
@pytest.mark.parametrize("stop", [0, 3])
def test_a_larger_max_iters_continues_a_run_stopped_at_max_iters(tmp_path, tol, stop):
    full = parareal.solve(vdp, Y0, SPAN, tol=tol, **KW)
    path = tmp_path / "c.npz"
    short = parareal.solve(vdp, Y0, SPAN, tol=tol, max_iters=stop, checkpoint=path, **KW)
    assert short.status is Status.MAX_ITERS and load_checkpoint(path).status is Status.MAX_ITERS
    # the same cap: nothing to do, the same answer
    same_solution(parareal.solve(vdp, Y0, SPAN, tol=tol, max_iters=stop, resume=path, **KW),
                  short)
    # a larger cap: the run goes on as if it had had that cap from the start
    for cap in (5, None):
        longer = parareal.solve(vdp, Y0, SPAN, tol=tol, max_iters=cap, **KW)
        same_solution(parareal.solve(vdp, Y0, SPAN, tol=tol, max_iters=cap, resume=path, **KW),
                      longer)
    same_solution(longer, full)
    # a smaller cap than the checkpoint's iterate cannot be honoured
    if stop:
        with pytest.raises(ValueError, match=r"max_iters = 2 is below the iteration .*\(3\)"):
            parareal.solve(vdp, Y0, SPAN, tol=tol, max_iters=2, resume=path, **KW)


def test_a_running_checkpoint_resumed_with_max_iters_at_its_iterate_stops_there(tmp_path):
    ref, copies = run_with_copies(tmp_path)
    assert load_checkpoint(copies[2]).status is None
    capped = parareal.solve(vdp, Y0, SPAN, max_iters=2, **KW)
    out = tmp_path / "out.npz"
    sol = parareal.solve(vdp, Y0, SPAN, max_iters=2, resume=copies[2], checkpoint=out, **KW)
    same_solution(sol, capped)
    assert sol.status is Status.MAX_ITERS and load_checkpoint(out).status is Status.MAX_ITERS


def test_after_an_exception_in_f_the_last_complete_iterate_resumes(tmp_path):
    """A run that fails (f raises in iteration 4) leaves iterate 3 on disk; resumed with a
    working f it gives the uninterrupted result."""
    ref = parareal.solve(vdp, Y0, SPAN, **KW)
    path = tmp_path / "c.npz"
    done = []

    def flaky(t, y):
        if len(done) == 4:
            raise RuntimeError("node lost")
        return vdp(t, y)

    with pytest.raises(RuntimeError, match="node lost"):
        parareal.solve(flaky, Y0, SPAN, checkpoint=path, callback=done.append, **KW)
    assert load_checkpoint(path).iteration == 3
    same_solution(parareal.solve(vdp, Y0, SPAN, resume=path, **KW), ref)


def test_a_warm_started_run_resumes_with_the_same_initial(tmp_path):
    guess = np.repeat(Y0[None], KW["slices"] + 1, axis=0)
    ref, copies = run_with_copies(tmp_path, initial=guess)
    assert ref.stats.coarse_calls > 0
    for copy in copies.values():
        same_solution(parareal.solve(vdp, Y0, SPAN, resume=copy, initial=guess, **KW), ref)
    with pytest.raises(ValueError, match=r"initial differs \(checkpoint written with an "
                                         r"initial iterate, this run with no initial\)"):
        parareal.solve(vdp, Y0, SPAN, resume=copies[1], **KW)


def test_checkpoint_and_resume_may_be_the_same_path(tmp_path):
    ref, copies = run_with_copies(tmp_path, schedule="pipelined")
    path = tmp_path / "job.npz"
    shutil.copyfile(copies[2], path)
    sol = parareal.solve(vdp, Y0, SPAN, checkpoint=path, resume=path, schedule="pipelined", **KW)
    same_solution(sol, ref)
    final = load_checkpoint(path)
    assert (final.iteration, final.status, final.residuals) == (
        ref.iterations, ref.status, ref.residuals)
    assert np.array_equal(final.y, ref.y)
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["job.npz", "run.ckpt", *(c.name for c in copies.values())])  # no temporary file left


def test_the_file_holds_each_iterate_as_the_callback_sees_it(tmp_path):
    path = tmp_path / "c.npz"
    statuses = []

    def check(info):
        ck = load_checkpoint(path)
        assert ck.iteration == info.iteration and np.array_equal(ck.y, info.y)
        assert ck.critical_path[-1] == info.critical_path
        statuses.append(ck.status)

    sol = parareal.solve(vdp, Y0, SPAN, checkpoint=str(path), callback=check, **KW)
    # the stop decision is in the file the callback reads
    assert statuses == [None] * sol.iterations + [Status.CONVERGED]
    final = load_checkpoint(path)
    assert final.status is sol.status and final.iteration == sol.iterations
    assert final.residuals == sol.residuals
    assert final.critical_path == sol.stats.critical_path_per_iteration
    assert np.array_equal(final.t, sol.t) and np.array_equal(final.y, sol.y)


def test_a_stop_requested_by_the_callback_is_recorded(tmp_path):
    path = tmp_path / "c.npz"
    sol = parareal.solve(vdp, Y0, SPAN, checkpoint=path, tol=0.0,
                         callback=lambda info: info.iteration == 2, **KW)
    assert sol.iterations == 2 and sol.status is Status.CONVERGED
    ck = load_checkpoint(path)
    assert (ck.iteration, ck.status) == (2, Status.CONVERGED)
    calls = []
    resumed = parareal.solve(lambda t, y: calls.append(t) or vdp(t, y), Y0, SPAN, tol=0.0,
                             resume=path, **KW)
    same_solution(resumed, sol)
    assert calls == []


# -- divergence ---------------------------------------------------------------------------------
def blowup(t, y):
    return y * y


@pytest.mark.parametrize("y0,stopped_at", [(10.0, 0), (1e200, 0)])
def test_a_diverged_run_is_checkpointed_with_its_status(tmp_path, y0, stopped_at):
    """y' = y^2 from 10 blows up at t = 0.1: the fine solve overflows in iteration 1 (from
    1e200 the coarse sweep itself overflows): the last finite iterate, or iterate 0 as it is."""
    path = tmp_path / "c.npz"
    with np.errstate(over="ignore", invalid="ignore"):
        sol = parareal.solve(blowup, np.array([y0]), (0.0, 1.0), coarse="euler:1",
                             fine="rk4:50", slices=4, checkpoint=path)
        assert sol.status is Status.DIVERGED and sol.iterations == stopped_at
        ck = load_checkpoint(path)
        assert (ck.iteration, ck.status) == (stopped_at, Status.DIVERGED)
        assert np.array_equal(ck.y, sol.y, equal_nan=True)
        again = parareal.solve(blowup, np.array([y0]), (0.0, 1.0), coarse="euler:1",
                               fine="rk4:50", slices=4, resume=path)
    assert again.status is Status.DIVERGED and again.iterations == sol.iterations
    assert np.array_equal(again.y, sol.y, equal_nan=True) and again.stats.f_evals == 0


# -- recomputed coarse values arriving late --------------------------------------------------
class InputCost(Propagator):
    """An opaque explicit Euler whose number of steps depends on the state, like an adaptive
    solver's: after a resume, the recomputed ``C(n, k)`` can come back after ``C(n, k + 1)``."""

    def propagate(self, f, y, t0, t1):
        steps = 1 + int(abs(float(y[0])) * 1e7) % 60
        h = (t1 - t0) / steps
        for i in range(steps):
            y = y + h * f(t0 + i * h, y)
        return y

    def __repr__(self):
        return "InputCost()"


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_resume_when_the_recomputed_coarse_values_come_back_last(tmp_path, schedule):
    opts = {"coarse": InputCost(), "fine": RK4(2), "slices": 10, "tol": 0.0,
            "schedule": schedule}
    path = tmp_path / "c.npz"
    copies = {}

    def keep(info):
        copies[info.iteration] = tmp_path / f"{info.iteration}.npz"
        shutil.copyfile(path, copies[info.iteration])

    ref = parareal.solve(vdp, Y0, SPAN, checkpoint=path, callback=keep, **opts)
    for copy in copies.values():
        same_solution(parareal.solve(vdp, Y0, SPAN, resume=copy, **opts), ref)


# -- torch states: safetensors ------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_torch_states_resume_bit_for_bit(tmp_path, pools, dtype, schedule):
    torch = pytest.importorskip("torch")
    safetensors = pytest.importorskip("safetensors")
    y0 = torch.tensor([2.0, 0.0], dtype=getattr(torch, dtype))
    for backend in ("serial", "threads"):
        # rk4:4 (not 12) per slice: torch's per-call overhead; still 5 and 7 iterations
        opts = {"schedule": schedule, "backend": pools[backend], "vectorized": True,
                "tol": 1e-5 if dtype == "float32" else 1e-9, "fine": "rk4:4"}
        ref, copies = run_with_copies(tmp_path, f=vdp_torch, y0=y0, **opts)
        assert ref.iterations >= 3
        for copy in copies.values():
            with safetensors.safe_open(str(copy), framework="pt") as fh:
                assert set(fh.keys()) == {"values"} and "parareal" in fh.metadata()
            sol = parareal.solve(vdp_torch, y0, SPAN, resume=copy, **{**KW, **opts})
            same_solution(sol, ref)


def test_complex_states_numpy_and_torch(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("safetensors")
    lam = np.array([-0.3 + 2j, -0.1 - 1j])
    for y0, f in (
        (np.array([1.0 + 0.5j, -1j]), lambda t, y: lam * y),
        (torch.tensor([1.0 + 0.5j, -1j], dtype=torch.complex128),
         lambda t, y: torch.as_tensor(lam) * y),
        (torch.tensor([1.0 + 0.5j, -1j], dtype=torch.complex64),
         lambda t, y: torch.as_tensor(lam, dtype=torch.complex64) * y),
    ):
        ref, copies = run_with_copies(tmp_path, f=f, y0=y0, tol=1e-5)
        for copy in copies.values():
            same_solution(parareal.solve(f, y0, SPAN, resume=copy, tol=1e-5, **KW), ref)
        assert load_checkpoint(copies[0]).y.dtype == y0.dtype


# -- the documented format ----------------------------------------------------------------------
def _digest(meta: bytes, values: bytes) -> str:
    return hashlib.sha256(meta + values).hexdigest()


def test_numpy_checkpoint_is_an_npz_with_json_metadata_and_a_digest(tmp_path):
    path = tmp_path / "c.npz"
    sol = parareal.solve(vdp, Y0, SPAN, checkpoint=path, **KW)
    with np.load(path, allow_pickle=False) as archive:
        assert set(archive.files) == {"values", "meta", "sha256"}
        values, meta_bytes = archive["values"], archive["meta"].tobytes()
        digest = archive["sha256"].tobytes().decode()
    assert np.array_equal(values, sol.y) and values.dtype == np.dtype("<f8")
    assert _digest(meta_bytes, values.tobytes()) == digest
    meta = json.loads(meta_bytes)
    assert meta["format"] == "parareal-checkpoint" and meta["version"] == 1
    assert meta["iteration"] == sol.iterations and meta["status"] == "converged"
    assert meta["residuals"] == list(sol.residuals)
    assert meta["critical_path"] == list(sol.stats.critical_path_per_iteration)
    run = meta["run"]
    assert run["boundaries"] == sol.t.tolist() and run["fine"] == "RK4(steps=12)"
    assert run["kind"] == "numpy" and run["dtype"] == "float64" and run["shape"] == [2]
    assert run["y0_sha256"] == hashlib.sha256(Y0.tobytes()).hexdigest()


def test_torch_checkpoint_is_safetensors_with_json_metadata_and_a_digest(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors import safe_open

    path = tmp_path / "c.safetensors"
    y0 = torch.tensor([2.0, 0.0], dtype=torch.float32)
    sol = parareal.solve(vdp_torch, y0, SPAN, checkpoint=path, tol=1e-5, **KW)
    with safe_open(str(path), framework="pt") as fh:
        values, metadata = fh.get_tensor("values"), fh.metadata()
    assert torch.equal(values, sol.y) and values.dtype == torch.float32
    meta_bytes = metadata["parareal"].encode()
    assert _digest(meta_bytes, values.numpy().tobytes()) == metadata["sha256"]
    meta = json.loads(meta_bytes)
    assert meta["run"]["kind"] == "torch" and meta["run"]["dtype"] == "float32"
    assert meta["iteration"] == sol.iterations


# -- corrupt, truncated, foreign files ----------------------------------------------------------
def _same_checkpoint(a, b):
    if isinstance(a.y, np.ndarray):
        assert np.array_equal(a.y, b.y) and a.y.dtype == b.y.dtype
    else:
        import torch

        assert torch.equal(a.y, b.y)
    assert (a.iteration, a.status, a.residuals, a.critical_path, a.wall_time, a.run) == (
        b.iteration, b.status, b.residuals, b.critical_path, b.wall_time, b.run)


def _small_checkpoints(tmp_path):
    out = {}
    path = tmp_path / "c.npz"
    parareal.solve(lambda t, y: -y, np.array([1.0]), (0.0, 1.0), coarse="rk4:1",
                   fine="rk4:4", slices=3, max_iters=1, checkpoint=path)
    out["npz"] = path
    try:
        import safetensors  # noqa: F401
        import torch
    except ImportError:
        return out
    path = tmp_path / "c.safetensors"
    parareal.solve(lambda t, y: -y, torch.tensor([1.0]), (0.0, 1.0), coarse="rk4:1",
                   fine="rk4:4", slices=3, max_iters=1, checkpoint=path)
    out["safetensors"] = path
    return out


def test_every_damaged_byte_is_refused_or_harmless(tmp_path):
    """Flip each byte in turn: the file is refused with a ValueError, or (a byte nothing reads,
    such as a zip timestamp) it loads to exactly the same checkpoint: never another one."""
    for kind, path in _small_checkpoints(tmp_path).items():
        good = path.read_bytes()
        original = load_checkpoint(path)
        damaged = tmp_path / f"damaged.{kind}"
        refused = 0
        for i in range(len(good)):
            for mask in (0x01, 0xFF):
                data = bytearray(good)
                data[i] ^= mask
                damaged.unlink(missing_ok=True)  # a new file: rewriting one in place is slow
                damaged.write_bytes(bytes(data))
                try:
                    loaded = load_checkpoint(damaged)
                except ValueError:
                    refused += 1
                    continue
                _same_checkpoint(loaded, original)
        assert refused > len(good)  # most bytes matter


def test_every_truncation_is_refused(tmp_path):
    for kind, path in _small_checkpoints(tmp_path).items():
        good = path.read_bytes()
        cut = tmp_path / f"cut.{kind}"
        for size in range(len(good)):
            cut.unlink(missing_ok=True)  # a new file: truncating one in place is slow
            cut.write_bytes(good[:size])
            with pytest.raises(ValueError, match="corrupt or truncated|not a parareal"):
                load_checkpoint(cut)


def test_damaged_files_are_refused_by_solve_before_any_work(tmp_path):
    ref, copies = run_with_copies(tmp_path)
    good = copies[2].read_bytes()
    calls = []

    def counted(t, y):
        calls.append(t)
        return vdp(t, y)

    foreign = io.BytesIO()
    np.savez(foreign, values=np.zeros((9, 2)))
    pickled = io.BytesIO()
    np.savez(pickled, values=np.array([{"a": 1}], dtype=object), meta=np.zeros(3, np.uint8),
             sha256=np.zeros(3, np.uint8))
    middle = len(good) // 2
    cases = {
        "truncated": good[: len(good) - 100],
        "flipped": good[:middle] + bytes([good[middle] ^ 0x10]) + good[middle + 1:],
        "empty": b"",
        "garbage": os.urandom(2000),
        "text": b"not a checkpoint\n" * 10,
        "another npz": foreign.getvalue(),
        "a pickle inside": pickled.getvalue(),
    }
    for name, data in cases.items():
        bad = tmp_path / "bad.npz"
        bad.write_bytes(data)
        with pytest.raises(ValueError, match=f"{bad}") as info:
            parareal.solve(counted, Y0, SPAN, resume=bad, **KW)
        assert "checkpoint" in str(info.value), name
    assert calls == []


def test_a_hand_edited_file_with_a_recomputed_digest_is_still_checked(tmp_path):
    """Edit the JSON (lie about the iteration) and recompute the digest: the structure check
    refuses it (the residual history no longer has k entries)."""
    path = tmp_path / "c.npz"
    parareal.solve(vdp, Y0, SPAN, checkpoint=path, max_iters=2, **KW)
    with np.load(path, allow_pickle=False) as archive:
        values, meta = archive["values"], json.loads(archive["meta"].tobytes())

    def forge(**edits):
        meta_bytes = json.dumps({**meta, **edits}).encode()
        np.savez(path, values=values, meta=np.frombuffer(meta_bytes, np.uint8),
                 sha256=np.frombuffer(_digest(meta_bytes, values.tobytes()).encode(), np.uint8))

    forge(iteration=3)
    with pytest.raises(ValueError, match="inconsistent metadata"):
        parareal.solve(vdp, Y0, SPAN, resume=path, **KW)
    forge(run={**meta["run"], "dtype": "float32"})
    with pytest.raises(ValueError, match="values of dtype float64 for a run of dtype float32"):
        load_checkpoint(path)
    forge()
    assert load_checkpoint(path).iteration == 2


# -- another run's checkpoint -------------------------------------------------------------------
def linear(t, y):
    return -0.5 * y


def _mismatch_cases():
    y0 = np.array([1.0, 2.0])
    base = {"y0": y0, "t_span": (0.0, 2.0), "coarse": "rk4:1", "fine": "rk4:8", "slices": 4,
            "tol": 1e-9, "rtol": 0.0}
    cases = [
        ("y0", {"y0": np.array([1.0, 2.0 + 1e-12])}, r"y0 differs \(its values"),
        ("y0 shape", {"y0": np.array([1.0, 2.0, 3.0])}, r"y0 shape differs \(checkpoint \(2,\)"),
        ("dtype", {"y0": y0.astype(np.float32)}, r"dtype differs \(checkpoint float64, this "
                                                 r"run float32\)"),
        ("span", {"t_span": (0.0, 3.0)}, r"span or slices differ .*\(0\.0, 3\.0\) with 4"),
        ("slices", {"slices": 5}, r"span or slices differ .*with 5 slices"),
        ("boundaries", {"boundaries": [0.0, 0.25, 1.0, 1.5, 2.0]}, "boundaries differ"),
        ("coarse", {"coarse": "euler:1"}, r"coarse differs \(checkpoint 'RK4\(steps=1\)', "
                                          r"this run 'Euler\(steps=1\)'\)"),
        ("fine", {"fine": "rk4:9"}, r"fine differs .*RK4\(steps=9\)"),
        ("tol", {"tol": 1e-8}, r"tol differs \(checkpoint 1e-09, this run 1e-08\)"),
        ("rtol", {"rtol": 1e-6}, "rtol differs"),
        ("initial", {"initial": np.ones((5, 2))}, "initial differs"),
        ("two at once", {"fine": "rk4:9", "tol": 0.0}, "fine differs.*; tol differs"),
    ]
    return base, cases


@pytest.mark.parametrize("field", [c[0] for c in _mismatch_cases()[1]])
def test_a_checkpoint_of_another_run_is_refused_naming_what_differs(tmp_path, field):
    base, cases = _mismatch_cases()
    change, message = next((c[1], c[2]) for c in cases if c[0] == field)
    path = tmp_path / "c.npz"
    parareal.solve(linear, **base, checkpoint=path)
    same = parareal.solve(linear, **base, resume=path)  # the run itself resumes fine
    assert same.status is Status.CONVERGED
    calls = []

    def counted(t, y):
        calls.append(t)
        return linear(t, y)

    with pytest.raises(ValueError, match=message) as info:
        parareal.solve(counted, **{**base, **change}, resume=path)
    assert "was written by another run" in str(info.value)
    assert calls == []


def test_numpy_and_torch_checkpoints_do_not_mix(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("safetensors")
    opts = {"coarse": "rk4:1", "fine": "rk4:8", "slices": 4}
    numpy_path, torch_path = tmp_path / "n.npz", tmp_path / "t.safetensors"
    parareal.solve(linear, np.array([1.0]), (0.0, 1.0), checkpoint=numpy_path, **opts)
    parareal.solve(linear, torch.tensor([1.0], dtype=torch.float64), (0.0, 1.0),
                   checkpoint=torch_path, **opts)
    with pytest.raises(ValueError, match=r"kind differs \(checkpoint numpy, this run torch\)"):
        parareal.solve(linear, torch.tensor([1.0], dtype=torch.float64), (0.0, 1.0),
                       resume=numpy_path, **opts)
    with pytest.raises(ValueError, match=r"kind differs \(checkpoint torch, this run numpy\)"):
        parareal.solve(linear, np.array([1.0]), (0.0, 1.0), resume=torch_path, **opts)


class NoRepr(Propagator):
    """A propagator without a repr of its own: compared by class (its default repr has an
    address that changes from run to run)."""

    def __init__(self, steps):
        self.steps = steps

    def propagate(self, f, y, t0, t1):
        return RK4(self.steps).propagate(f, y, t0, t1)


def test_propagators_without_a_repr_are_compared_by_class(tmp_path):
    path = tmp_path / "c.npz"
    opts = {"slices": 4, "coarse": "rk4:1"}
    ref = parareal.solve(linear, Y0, (0.0, 2.0), fine=NoRepr(8), checkpoint=path, max_iters=1,
                         **opts)
    assert ref.status is Status.MAX_ITERS
    full = parareal.solve(linear, Y0, (0.0, 2.0), fine=NoRepr(8), **opts)
    same_solution(parareal.solve(linear, Y0, (0.0, 2.0), fine=NoRepr(8), resume=path, **opts),
                  full)
    with pytest.raises(ValueError, match="fine differs"):
        parareal.solve(linear, Y0, (0.0, 2.0), fine=RK4(8), resume=path, **opts)


# -- argument checks, before any work -----------------------------------------------------------
def test_bad_checkpoint_and_resume_arguments_fail_before_any_work(tmp_path):
    calls = []

    def counted(t, y):
        calls.append(t)
        return vdp(t, y)

    def solve(**kw):
        return parareal.solve(counted, Y0, SPAN, **KW, **kw)

    with pytest.raises(TypeError, match="checkpoint must be a path"):
        solve(checkpoint=3)
    with pytest.raises(TypeError, match="resume must be a path"):
        solve(resume=1.5)
    with pytest.raises(ValueError, match="checkpoint is an empty path"):
        solve(checkpoint="  ")
    with pytest.raises(ValueError, match="does not exist"):
        solve(checkpoint=tmp_path / "missing" / "c.npz")
    with pytest.raises(ValueError, match="is a folder"):
        solve(checkpoint=tmp_path)
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        solve(resume=tmp_path / "never-written.npz")
    with pytest.raises(ValueError, match="resume .* is a folder"):
        solve(resume=tmp_path)
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        try:
            with pytest.raises(ValueError, match="not writable"):
                solve(checkpoint=locked / "c.npz")
        finally:
            locked.chmod(0o700)
    assert calls == []
    assert not (tmp_path / "never-written.npz").exists()


# -- a killed process ---------------------------------------------------------------------------
# The job and the reader run in forked children of this process (it has imported numpy and
# parareal: a fresh interpreter would spend most of its time importing them); what is tested
# is a process killed by SIGKILL and a reader in another process, which a fork is.
JOB_Y0 = np.linspace(0.5, 1.5, 20000)
JOB_OPTS = {"coarse": "rk4:1", "fine": "rk4:6", "slices": 8, "tol": 0.0}


def job(path: Path, emit) -> None:
    """The restart-a-job pattern: resume from ``path`` if it exists; ``emit`` gets a line per
    iterate and a last one with the result."""
    resume = path if path.exists() else None
    sol = parareal.solve(damped, JOB_Y0, (0.0, 3.0), checkpoint=path, resume=resume,
                         callback=lambda info: emit(str(info.iteration)), **JOB_OPTS)
    emit(f"done {sol.iterations} {sol.status.value} {sol.residuals!r} "
         f"{hashlib.sha256(sol.y.tobytes()).hexdigest()}")


def _forked(target, *args, linger: bool = False) -> tuple[int, io.TextIOWrapper]:
    """``target(*args, emit)`` in a forked child whose ``emit`` writes a line to a pipe: its pid
    and the pipe's reading end. The child never returns into pytest (``os._exit``: 0 if
    ``target`` returned, 1 with the traceback on the pipe if it raised). With ``linger`` it
    waits to be killed once ``target`` returned (as an interpreter's exit takes a while, the
    kill may come after the job's end but never finds the process gone)."""
    read, write = os.pipe()
    with warnings.catch_warnings():  # Python 3.12 warns of fork with threads running (the
        warnings.simplefilter("ignore", DeprecationWarning)  # pools'): the child uses none
        pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(read)

            def emit(line: str) -> None:
                os.write(write, (line + "\n").encode())

            try:
                target(*args, emit)
                status = 0
                if linger:
                    time.sleep(HANG_GUARD_S)
            except BaseException:
                import traceback

                emit(traceback.format_exc())
        finally:
            os._exit(status)
    os.close(write)
    return pid, os.fdopen(read)


def _exit_status(pid: int) -> int:
    """The exit status of the forked child ``pid`` (``-signal`` if a signal ended it), waiting
    at most ``HANG_GUARD_S`` for it (then it is killed)."""
    status, killed = wait_or_kill(pid, HANG_GUARD_S)
    assert not killed, f"child {pid} still running after {HANG_GUARD_S} s"
    return status


@functools.cache
def _job_reference():
    """The uninterrupted job, in this process (the same for every kill_after)."""
    return parareal.solve(damped, JOB_Y0, (0.0, 3.0), **JOB_OPTS)


@pytest.mark.parametrize("kill_after", [0, 3, 6])
def test_a_process_killed_mid_run_resumes_to_the_uninterrupted_result(tmp_path, kill_after):
    """SIGKILL after iteration j, at a random moment (often in the middle of writing a
    ~1.7 MB checkpoint): the file on disk is always a complete iterate >= j, and rerunning
    the same job resumes from it to the uninterrupted run's result."""
    ref = _job_reference()
    expected = (f"done {ref.iterations} {ref.status.value} {ref.residuals!r} "
                f"{hashlib.sha256(ref.y.tobytes()).hexdigest()}")
    rng = random.Random(kill_after)
    for attempt in range(2):  # two random moments for each iterate (six kills in all)
        path = tmp_path / f"job{attempt}.npz"
        pid, out = _forked(job, path, linger=True)
        try:
            lines = []
            while True:
                line = out.readline()
                lines.append(line)
                assert line, "".join(lines)  # the job ended before iterate kill_after
                if line.strip() == str(kill_after):
                    break
            time.sleep(rng.uniform(0.0, 0.05))
            os.kill(pid, signal.SIGKILL)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            status = _exit_status(pid)
            out.close()
        assert status == -signal.SIGKILL
        ck = load_checkpoint(path)  # complete, never half-written
        assert kill_after <= ck.iteration <= ref.iterations
        assert np.array_equal(ck.y[: ck.iteration + 1], ref.y[: ck.iteration + 1])
        lines = []
        job(path, lines.append)  # the rerun, here: it only has the file to go on
        assert lines[-1] == expected
        assert lines[:-1] == [str(k) for k in range(ck.iteration + 1, ref.iterations + 1)]


def reader(path: Path, stop: Path, emit) -> None:
    """Load ``path`` in a loop until ``stop`` exists; emit each refusal, then the counts of
    good reads, refused reads and distinct iterates seen."""
    good, bad, seen = 0, 0, set()
    while not stop.exists():
        try:
            seen.add(load_checkpoint(path).iteration)
            good += 1
        except FileNotFoundError:
            pass
        except ValueError as exc:
            bad += 1
            emit(f"refused: {exc}")
    emit(f"{good} {bad} {len(seen)}")


def test_a_reader_never_sees_a_partial_file(tmp_path):
    """Another process reads the checkpoint in a loop while a run rewrites it (1.7 MB, each
    iterate): every read is a complete checkpoint (the rename is atomic)."""
    stop, path = tmp_path / "stop", tmp_path / "c.npz"
    pid, out = _forked(reader, path, stop)
    try:
        y0 = np.linspace(0.5, 1.5, 20000)
        for _ in range(3):
            sol = parareal.solve(lambda t, y: -y, y0, (0.0, 1.0), coarse="euler:1",
                                 fine="rk4:2", slices=10, tol=0.0, checkpoint=path)
            path.unlink()
    finally:
        stop.touch()
        status = _exit_status(pid)
        lines = out.read().splitlines()
        out.close()
    assert status == 0, lines
    good, bad, seen = map(int, lines[-1].split())
    assert bad == 0, lines
    assert good >= 3 and seen >= 2, (good, seen, sol.iterations)


# -- the command line ---------------------------------------------------------------------------
def _cli_json(capsys, *argv):
    code = main(["solve", "dahlquist", "--slices", "8", *argv, "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    return out


def test_cli_checkpoint_and_resume(capsys, tmp_path):
    path = tmp_path / "run.npz"
    full = _cli_json(capsys, "--tol", "1e-12")
    assert full["resumed_from"] is None and full["iterations"] >= 3
    short = _cli_json(capsys, "--tol", "1e-12", "--max-iters", "2", "--checkpoint", str(path))
    assert short["status"] == "max_iters" and load_checkpoint(path).iteration == 2
    resumed = _cli_json(capsys, "--tol", "1e-12", "--resume", str(path), "--checkpoint",
                        str(path), "--backend", "batched", "--schedule", "pipelined")
    for key in ("iterations", "status", "residuals", "y_final"):
        assert resumed[key] == full[key], key
    assert resumed["resumed_from"] == 2
    assert resumed["errors"][:3] == [None] * 3 and resumed["errors"][3:] == full["errors"][3:]
    assert load_checkpoint(path).status is Status.CONVERGED
    # the table says where the run was resumed, errors before it are n/a
    assert main(["solve", "dahlquist", "--slices", "8", "--tol", "1e-12", "--resume",
                 str(path)]) == 0
    table = capsys.readouterr().out
    assert f"resumed from iteration {full['iterations']}" in table
    assert table.count("n/a") == full["iterations"]


@pytest.mark.parametrize("argv,message", [
    (["--checkpoint", "{tmp}/missing/c.npz"], "cannot write the checkpoint"),
    (["--checkpoint", "{tmp}"], "it is a folder"),
    (["--resume", "{tmp}/nothing.npz"], "no checkpoint at"),
    (["--resume", "{tmp}/other.npz"], "was written by another run: span or slices differ"),
    (["--resume", "{tmp}/garbage.npz"], "corrupt or truncated"),
])
def test_cli_bad_checkpoint_paths_exit_2_with_one_line(capsys, tmp_path, argv, message):
    parareal.solve(linear, np.array([1.0]), (0.0, 1.0), coarse="rk4:1", fine="rk4:8",
                   slices=4, checkpoint=tmp_path / "other.npz")
    (tmp_path / "garbage.npz").write_bytes(b"PK\x03\x04" + os.urandom(300))
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert main(["solve", "dahlquist", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("parareal: error: ") and message in lines[0]
