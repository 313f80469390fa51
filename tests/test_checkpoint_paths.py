"""Checkpoint and resume paths: anything but a regular file (or a link to one) is refused
before ``f`` is ever called, with an error naming ``checkpoint`` or ``resume``.

Every case runs a real ``parareal.solve`` with a counting ``f`` and asserts that it was never
called; numpy states (``.npz``) and torch states (safetensors) alike. Opening a FIFO with no
writer blocks forever, so every test runs under an alarm that turns a hang into a failure.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest

import parareal
from parareal.checkpoint import checkpoint_size_bound, load_checkpoint

KINDS = ["numpy", "torch"]
OPTS = {"coarse": "rk4:1", "fine": "rk4:6", "slices": 6, "tol": 0.0, "max_iters": 3}
SPAN = (0.0, 2.0)
HANG_GUARD_S = 60


@pytest.fixture(autouse=True)
def hang_guard():
    """A SIGALRM that fails the test instead of letting a blocking open() hang the suite."""

    def on_alarm(signum, frame):
        raise TimeoutError(f"the test blocked for more than {HANG_GUARD_S} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(HANG_GUARD_S)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


class Counted:
    """``f(t, y) = -y`` that counts its calls (numpy or torch alike)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, t, y):
        self.calls += 1
        return -y


def y0_of(kind: str):
    if kind == "torch":
        torch = pytest.importorskip("torch")
        pytest.importorskip("safetensors")
        return torch.tensor([1.0, 0.5], dtype=torch.float64)
    return np.array([1.0, 0.5])


def refused(kind: str, error: type[Exception], match: str, **kw) -> None:
    """``solve`` raises ``error`` matching ``match`` and never calls f."""
    f = Counted()
    with pytest.raises(error, match=match):
        parareal.solve(f, y0_of(kind), SPAN, **OPTS, **kw)
    assert f.calls == 0


def same_y(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and np.array_equal(a, b)
    import torch

    return torch.equal(a, b)


# -- resume: only a regular file, and no larger than a checkpoint of this run ----------------
@pytest.mark.parametrize("kind", KINDS)
def test_resume_from_a_device_is_refused_without_reading(kind):
    refused(kind, ValueError, r"resume '/dev/zero' is a character device", resume="/dev/zero")


@pytest.mark.parametrize("kind", KINDS)
def test_resume_from_a_fifo_without_a_writer_is_refused_without_blocking(kind, tmp_path):
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    refused(kind, ValueError, r"resume .*pipe\.npz' is a FIFO", resume=fifo)
    link = tmp_path / "to-pipe.npz"
    link.symlink_to(fifo)
    refused(kind, ValueError, r"resume .*to-pipe\.npz' is a FIFO", resume=link)


@pytest.mark.parametrize("kind", KINDS)
def test_resume_from_a_folder_or_a_dangling_link_is_refused(kind, tmp_path):
    refused(kind, ValueError, r"resume .* is a folder", resume=tmp_path)
    dangling = tmp_path / "dangling.npz"
    dangling.symlink_to(tmp_path / "gone.npz")
    refused(kind, ValueError, r"resume .*dangling\.npz' is a symbolic link to .*gone\.npz.*"
                              "which does not exist", resume=dangling)
    refused(kind, FileNotFoundError, r"resume: no checkpoint at", resume=tmp_path / "no.npz")


@pytest.mark.parametrize("kind", KINDS)
def test_resume_with_a_bad_name_or_under_proc_is_refused(kind, tmp_path):
    refused(kind, ValueError, r"resume .* contains a NUL byte", resume=f"{tmp_path}/a\0b.npz")
    refused(kind, ValueError, r"resume: the name .* is 300 bytes long; .* allows 255",
            resume=tmp_path / ("r" * 296 + ".npz"))
    # a regular file by stat (size 0) whose contents are no checkpoint
    refused(kind, ValueError, r"^resume: .*corrupt or truncated", resume="/proc/self/status")


@pytest.mark.parametrize("kind", KINDS)
def test_an_oversize_resume_file_is_refused_from_its_size(kind, tmp_path):
    path = tmp_path / "big.npz"
    parareal.solve(Counted(), y0_of(kind), SPAN, **OPTS, checkpoint=path)
    real_size = path.stat().st_size
    bound = checkpoint_size_bound(load_checkpoint(path).run, y0_of(kind).dtype.itemsize)
    assert real_size < bound < 256 << 20  # far above the real checkpoint, far below this
    with open(path, "r+b") as fh:  # the real checkpoint, then a sparse tail of 256 MiB
        fh.truncate(256 << 20)
    refused(kind, ValueError, rf"resume .*big\.npz' has {256 << 20} bytes, more than a "
                              rf"checkpoint of this run can have \({bound} bytes at most\)",
            resume=path)


# -- checkpoint: a regular file, a link to one, or nothing yet, in a writable folder ---------
@pytest.mark.parametrize("kind", KINDS)
def test_checkpoint_to_special_files_is_refused(kind, tmp_path):
    refused(kind, ValueError, r"checkpoint '/dev/null' is a character device",
            checkpoint="/dev/null")
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    refused(kind, ValueError, r"checkpoint .*pipe\.npz' is a FIFO", checkpoint=fifo)
    refused(kind, ValueError, r"checkpoint .* is a folder", checkpoint=tmp_path)
    dangling = tmp_path / "dangling.npz"
    dangling.symlink_to(tmp_path / "gone" / "c.npz")
    refused(kind, ValueError, r"checkpoint .*dangling\.npz' is a symbolic link to .* which "
                              "does not exist", checkpoint=dangling)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling.npz", "pipe.npz"]


@pytest.mark.parametrize("kind", KINDS)
def test_checkpoint_with_a_bad_name_fails_before_the_first_write(kind, tmp_path):
    refused(kind, ValueError, r"checkpoint .* contains a NUL byte",
            checkpoint=f"{tmp_path}/a\0b.npz")
    refused(kind, ValueError, r"checkpoint: the name .* is 300 bytes long; .* allows 255",
            checkpoint=tmp_path / ("c" * 296 + ".npz"))
    refused(kind, ValueError, r"checkpoint: the name .* is 300 bytes long",
            checkpoint=tmp_path / ("d" * 300) / "c.npz")
    refused(kind, ValueError, r"checkpoint .* cannot be encoded as a file name",
            checkpoint=f"{tmp_path}/\ud800.npz")
    for place in ("/proc/self/c.npz", "/proc/c.npz", "/proc/self/status"):
        refused(kind, ValueError, rf"checkpoint '{place}': .*(not writable|cannot create)",
                checkpoint=place)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", KINDS)
def test_a_name_at_the_length_limit_is_written_without_leftovers(kind, tmp_path):
    """The temporary ``.part`` file is named within the limit too (its base shortened)."""
    path = tmp_path / ("e" * 251 + ".npz")
    sol = parareal.solve(Counted(), y0_of(kind), SPAN, **OPTS, checkpoint=path)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    assert same_y(load_checkpoint(path).y, sol.y)


@pytest.mark.parametrize("kind", KINDS)
def test_a_symlinked_checkpoint_updates_its_target_and_keeps_the_link(kind, tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    target = store / "run.ckpt"
    target.write_bytes(b"stale")
    link = tmp_path / "latest.ckpt"
    link.symlink_to(target)
    ref = parareal.solve(Counted(), y0_of(kind), SPAN, **{**OPTS, "max_iters": 6})
    first = parareal.solve(Counted(), y0_of(kind), SPAN, **OPTS, checkpoint=link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert load_checkpoint(target).iteration == first.iterations == 3
    assert sorted(p.name for p in store.iterdir()) == ["run.ckpt"]  # no .part left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.ckpt", "store"]
    # resume through the link, writing through it again: the uninterrupted run's result
    f = Counted()
    sol = parareal.solve(f, y0_of(kind), SPAN, **{**OPTS, "max_iters": 6}, checkpoint=link,
                         resume=link)
    assert f.calls > 0 and sol.iterations == ref.iterations == 6
    assert same_y(sol.y, ref.y) and sol.residuals[3:] == ref.residuals[3:]
    assert link.is_symlink() and load_checkpoint(target).iteration == 6


def test_a_chain_of_links_is_followed_to_the_file(tmp_path):
    target = tmp_path / "real.npz"
    (tmp_path / "a.npz").symlink_to(target)
    (tmp_path / "b.npz").symlink_to(tmp_path / "a.npz")
    target.write_bytes(b"")
    parareal.solve(Counted(), np.array([1.0, 0.5]), SPAN, **OPTS, checkpoint=tmp_path / "b.npz")
    assert (tmp_path / "b.npz").is_symlink() and (tmp_path / "a.npz").is_symlink()
    assert load_checkpoint(target).iteration == 3
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == ["a.npz", "b.npz", "real.npz"]


@pytest.mark.parametrize("argv,message", [
    (["--resume", "/dev/zero"], "--resume '/dev/zero' is a character device"),
    (["--resume", "{tmp}/pipe"], "is a FIFO"),
    (["--checkpoint", "/dev/null"], "--checkpoint '/dev/null' is a character device"),
    (["--checkpoint", "/proc/self/c.npz"], "the checkpoint to '/proc/self/c.npz'"),
])
def test_cli_special_paths_exit_2_with_one_line(capsys, tmp_path, argv, message):
    from parareal.cli import main

    os.mkfifo(tmp_path / "pipe")
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert main(["solve", "dahlquist", *argv]) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert captured.out == "" and len(lines) == 1 and message in lines[0], captured.err
