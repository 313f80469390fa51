"""Run a script's ``main(argv)`` in the test's own interpreter, and run several snippets in
forked children of one interpreter: the imports (torch, diffusers: seconds each) are paid once
instead of once per fresh ``python`` process.

Used where the thing tested is a script's output or what a module does when first imported,
not the process itself (exit codes of argument errors are ``SystemExit`` codes here too).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def process_state_kept(argv0: str, argv: Sequence[str]) -> Iterator[None]:
    """Run a script's ``main`` as if from the command line (``sys.argv``), then put back what
    scripts change for their whole process: the environment, ``sys.argv``, ``sys.path``,
    torch's thread count, default dtype, grad mode and random state, numpy's global random
    state and the thread pools that threadpoolctl limits."""
    import numpy as np

    env, path, old_argv = dict(os.environ), list(sys.path), list(sys.argv)
    np_state = np.random.get_state()  # noqa: NPY002 (the legacy global state)
    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch is not None else None
    dtype = torch.get_default_dtype() if torch is not None else None
    grad = torch.is_grad_enabled() if torch is not None else None
    with contextlib.ExitStack() as stack:
        if torch is not None:
            stack.enter_context(torch.random.fork_rng(devices=[]))
        try:
            import threadpoolctl
        except ImportError:
            pass
        else:  # limits=None changes nothing now; on exit it restores every pool's count
            stack.enter_context(threadpoolctl.threadpool_limits(limits=None))
        sys.argv = [argv0, *argv]
        try:
            yield
        finally:
            sys.argv = old_argv
            sys.path[:] = path
            os.environ.clear()
            os.environ.update(env)
            np.random.set_state(np_state)  # noqa: NPY002
            if torch is not None:  # loaded before the script ran
                torch.set_num_threads(threads)
                torch.set_default_dtype(dtype)
                torch.set_grad_enabled(grad)
            elif sys.modules.get("torch") is not None:  # loaded by the script: as a fresh
                loaded = sys.modules["torch"]  # import would set it from the environment
                count = env.get("OMP_NUM_THREADS", "")
                if count.isdigit() and int(count) >= 1:
                    loaded.set_num_threads(int(count))
                loaded.set_default_dtype(loaded.float32)
                loaded.set_grad_enabled(True)


def load_script(path: Path, name: str) -> ModuleType:
    """Execute the script at ``path`` as module ``name`` (not ``__main__``), with its folder
    first on ``sys.path`` as ``python path`` would have it."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))
    sys.modules[name] = module  # dataclasses look their module up
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
        del sys.modules[name]
    return module


@contextlib.contextmanager
def siblings_dropped(folder: Path) -> Iterator[None]:
    """Forget the modules that a script imported from its own folder (``import core``) once it
    is done, so that no other test finds them."""
    before = set(sys.modules)
    try:
        yield
    finally:
        for name in set(sys.modules) - before:
            file = getattr(sys.modules[name], "__file__", None) or ""
            if Path(file).parent == folder:
                del sys.modules[name]


def run_main(path: Path, *argv: str) -> int:
    """``main(argv)`` of the script at ``path``, run here with the process state kept
    (:func:`process_state_kept`); its return value (a ``SystemExit`` propagates)."""
    with siblings_dropped(path.parent), process_state_kept(str(path), argv):
        sys.path.insert(0, str(path.parent))
        module = load_script(path, f"_script_{path.stem}")
        return module.main(list(argv))


class _Parsed(Exception):
    """Raised once a script's parser accepted its arguments."""


def parse_only(path: Path, argv: Sequence[str]) -> str | None:
    """Run the script at ``path`` as ``__main__`` with ``argv`` until its argument parser has
    parsed them, then stop it (nothing else runs); ``None`` if the parser accepted them, else
    why not (the parser's exit status, or that it never parsed)."""
    import argparse
    import runpy

    real = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        raise _Parsed(real(self, args, namespace))

    printed = io.StringIO()
    with siblings_dropped(path.parent), process_state_kept(str(path), argv), \
            contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
        argparse.ArgumentParser.parse_args = parse_then_stop  # type: ignore[method-assign]
        sys.path.insert(0, str(path.parent))  # as ``python path`` has it
        try:
            runpy.run_path(str(path), run_name="__main__")
        except _Parsed:
            return None
        except SystemExit as exc:
            return f"refused by its parser (exit {exc.code}): {printed.getvalue().strip()}"
        finally:
            argparse.ArgumentParser.parse_args = real  # type: ignore[method-assign]
    return "never parsed its arguments"


# A driver run in one fresh interpreter: it makes ``missing`` unimportable, runs ``preload``
# (imports of third-party modules the cases would import anyway), then runs every case in a
# forked child, as ``python -c CODE`` would run it (its exit status, stdout and stderr).
_DRIVER = r"""
import json, os, sys, tempfile, traceback
spec = json.loads(sys.argv[1])
for name in spec["missing"]:
    sys.modules[name] = None
exec(spec["preload"], {})
results = []
for code in spec["cases"]:
    out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
    sys.stdout.flush(); sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        os.dup2(out.fileno(), 1); os.dup2(err.fileno(), 2)
        status = 0
        try:
            exec(compile(code, "<string>", "exec"), {"__name__": "__main__"})
        except SystemExit as exc:
            code_ = exc.code
            if code_ is None:
                status = 0
            elif isinstance(code_, int):
                status = code_
            else:
                print(code_, file=sys.stderr); status = 1
        except BaseException:
            traceback.print_exc(); status = 1
        sys.stdout.flush(); sys.stderr.flush()
        os._exit(status)
    _, wait = os.waitpid(pid, 0)
    texts = []
    for f in (out, err):
        f.seek(0); texts.append(f.read().decode()); f.close()
    results.append({"returncode": os.waitstatus_to_exitcode(wait), "stdout": texts[0],
                    "stderr": texts[1]})
print("\n@@RESULTS@@" + json.dumps(results))
"""


def run_forked(cases: Sequence[str], *, missing: Sequence[str] = (), preload: str = "",
               cwd: Path | None = None, env: dict[str, str] | None = None
               ) -> list[subprocess.CompletedProcess[str]]:
    """Each of ``cases`` run as by ``python -c CASE`` (returncode, stdout, stderr), in forked
    children of one fresh interpreter where ``missing`` cannot be imported and the code
    ``preload`` ran first (imports only; of parareal's modules only where the cases are not
    about what importing them does). A child starts from that interpreter's state, never
    from another case's."""
    spec = json.dumps({"missing": list(missing), "preload": preload, "cases": list(cases)})
    proc = subprocess.run([sys.executable, "-c", _DRIVER, spec], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300, check=False)
    marker = "\n@@RESULTS@@"
    assert proc.returncode == 0 and marker in proc.stdout, proc.stdout + proc.stderr
    found = json.loads(proc.stdout.rsplit(marker, 1)[1])
    return [subprocess.CompletedProcess(["python", "-c", code], r["returncode"], r["stdout"],
                                        r["stderr"]) for code, r in zip(cases, found)]


def run_forked_here(cases: Sequence[str], *, fresh: Sequence[str] = ("parareal",),
                    absent: Sequence[str] = (), cwd: Path | None = None,
                    timeout: float = 120.0) -> list[subprocess.CompletedProcess[str]]:
    """Each of ``cases`` run as by ``python -c CASE`` (returncode, stdout, stderr), in a
    child forked from this (the test's) interpreter, which has imported torch and diffusers
    already in a whole run of the suite: nothing is imported again but what the case is about.

    In the child, before the case runs, the modules of the packages ``fresh`` (and their
    submodules) are forgotten, so that the case imports them for the first time, and the
    packages ``absent`` (and every submodule already imported) are made unimportable
    (``sys.modules[name] = None``, as :func:`run_forked`'s ``missing``); the child works in
    ``cwd`` and leaves by ``os._exit`` (none of pytest's clean-up runs there). A child starts
    from this interpreter's state, never from another case's. A child still running after
    ``timeout`` seconds is killed (returncode -9, "timed out" in its stderr): nothing hangs."""
    import tempfile
    import traceback

    results = []
    for code in cases:
        out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            status = 1
            try:
                os.dup2(out.fileno(), 1)
                os.dup2(err.fileno(), 2)
                sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", closefd=False),
                                              write_through=True)
                sys.stderr = io.TextIOWrapper(os.fdopen(2, "wb", closefd=False),
                                              write_through=True)
                if cwd is not None:
                    os.chdir(cwd)
                for name in list(sys.modules):
                    if any(name == p or name.startswith(p + ".") for p in fresh):
                        del sys.modules[name]
                    elif any(name == p or name.startswith(p + ".") for p in absent):
                        sys.modules[name] = None
                for name in absent:
                    sys.modules[name] = None
                status = 0
                try:
                    exec(compile(code, "<string>", "exec"), {"__name__": "__main__"})
                except SystemExit as exc:
                    if exc.code is None:
                        status = 0
                    elif isinstance(exc.code, int):
                        status = exc.code
                    else:
                        print(exc.code, file=sys.stderr)
                        status = 1
                except BaseException:  # noqa: BLE001 (reported as python -c would)
                    traceback.print_exc()
                    status = 1
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(status)
        returncode, timed_out = wait_or_kill(pid, timeout)
        if timed_out:
            err.write(f"\ntimed out after {timeout} s\n".encode())
        texts = []
        for f in (out, err):
            f.seek(0)
            texts.append(f.read().decode())
            f.close()
        results.append(subprocess.CompletedProcess(["python", "-c", code], returncode, *texts))
    return results


def wait_or_kill(pid: int, timeout: float) -> tuple[int, bool]:
    """Wait for the child process ``pid``, killing it (``SIGKILL``) if it still runs after
    ``timeout`` seconds, so that a hung child fails a test instead of blocking the suite.

    Returns
    -------
    tuple of (int, bool)
        Its exit code (``-N`` if signal ``N`` ended it, as ``subprocess``), and whether this
        killed it.
    """
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status), False
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            return os.waitstatus_to_exitcode(status), True
        time.sleep(0.005)
