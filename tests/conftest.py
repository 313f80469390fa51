"""Shared fixtures and helpers for the test suite."""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest

_CACHE_HOME: list[str] = []

#: The extra (``pip install 'parareal[EXTRA]'``) that brings each optional module.
EXTRAS = {"torch": "torch", "torchdiffeq": "torch", "safetensors": "torch", "scipy": "scipy",
          "mpi4py": "mpi", "diffusers": "diffusion", "transformers": "diffusion",
          "sklearn": "diffusion", "threadpoolctl": "diffusion", "matplotlib": "plot",
          "dask": "dask", "distributed": "dask"}


def needs(*modules: str) -> pytest.MarkDecorator:
    """Skip the test (or parameter) unless every one of ``modules`` is installed, naming the
    missing ones and their extra; for the tests of a module that need an optional dependency
    when the module's other tests need none (``pytest.importorskip`` at module level would
    skip them all)."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    extras = {EXTRAS.get(name, name) for name in missing}
    if "diffusion" in extras:  # it brings torch too
        extras.discard("torch")
    extras = sorted(extras)
    return pytest.mark.skipif(
        bool(missing),
        reason=f"needs {', '.join(missing)} (pip install 'parareal[{','.join(extras)}]')",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """Run on every CPU with pytest-xdist when it is installed and ``-n`` was not given
    (``-n 0`` or ``-p no:xdist`` runs in one process)."""
    worker = hasattr(config, "workerinput") or "PYTEST_XDIST_WORKER" in os.environ
    if (config.pluginmanager.hasplugin("xdist") and not worker
            and getattr(config.option, "numprocesses", 0) is None
            and not getattr(config.option, "collectonly", False)):
        config.option.numprocesses = "auto"
    if worker or getattr(config.option, "numprocesses", None):
        # one thread per worker: xdist runs a worker per CPU, and torch's or BLAS's default of
        # a thread per core on top of it thrashes. Set here, in the controller, so that the
        # workers (and their child processes) start with it: a worker has imported numpy,
        # whose BLAS reads it once, before any hook of its own runs.
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(name, "1")


def pytest_configure(config: pytest.Config) -> None:
    """Point ``XDG_CACHE_HOME`` at a temporary folder for the whole run (child processes
    included): ``method="auto"``'s disk cache (``adapters/diffusion/auto_cache.py``) and any
    other cache must never write to the user's real one."""
    _CACHE_HOME.append(tempfile.mkdtemp(prefix="parareal-test-cache-"))
    os.environ["XDG_CACHE_HOME"] = _CACHE_HOME[0]
    os.environ.pop("PARAREAL_AUTO_CACHE", None)
    if not hasattr(config, "workerinput"):
        _compile_sources()


#: The folders whose modules the suite's processes import: compiled once per run.
SOURCES = ("parareal", "adapters", "tests", "benchmarks", "examples")


def _compile_sources() -> None:
    """Byte-compile the project's modules (into ``__pycache__``, which git ignores) before any
    worker starts, where they are missing or stale.

    The suite starts about 130 Python processes (xdist workers, CLI runs, ``mpiexec`` ranks,
    pools): without bytecode each compiles every module of the project it imports (up to
    1 s of CPU). Python writes that bytecode itself unless ``PYTHONDONTWRITEBYTECODE`` is
    set; then no process ever does, and each compiles again. ``compileall`` writes it
    regardless, once (about 1 s); it skips what is up to date. A read-only checkout is
    compiled in each process as before.
    """
    import compileall
    import re

    rewritten = re.compile(r"[/\\](test_[^/\\]*|conftest)\.py$")  # pytest compiles its own
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for folder in SOURCES:  # quiet=2: a folder or file it cannot list or write is skipped
        compileall.compile_dir(os.path.join(root, folder), quiet=2, rx=rewritten)


def pytest_unconfigure(config: pytest.Config) -> None:
    for folder in _CACHE_HOME:
        shutil.rmtree(folder, ignore_errors=True)


def diagonal_rhs(lam: np.ndarray, forcing: float = 0.0):
    """Elementwise linear f (bitwise equal batched and alone), optionally time-forced.

    Works for single states (t a float) and batches (t of shape (B,), y of shape (B, d)).
    """

    def f(t, y):
        t = np.asarray(t)
        return lam * y + forcing * np.cos(t)[..., None] if t.ndim else lam * y + forcing * np.cos(t)

    return f


@functools.cache
def _scipy_uses(name: str) -> frozenset[str]:
    """What of the bundled problem ``name`` needs scipy: ``"propagators"`` (its default fine
    or coarse is a ScipyIVP), ``"reference"`` (no closed form: ``reference(t)`` integrates),
    ``"final"`` (``reference_final()`` too: neither closed form nor published value)."""
    from parareal.problems import get
    from parareal.propagators import ScipyIVP

    p = get(name)  # made without scipy; only running its ScipyIVP needs it
    uses = set()
    if isinstance(p.fine, ScipyIVP) or isinstance(p.coarse, ScipyIVP):
        uses.add("propagators")
    if p.exact is None:
        uses.add("reference")
        if p.published_final is None:
            uses.add("final")
    return frozenset(uses)


def problem_params(names, *uses: str, slow=()):
    """``names`` as parameters: marked ``needs("scipy")`` where one of ``uses`` (see
    :func:`_scipy_uses`) needs scipy for that problem, and ``slow`` where in ``slow``."""
    params = []
    for name in names:
        marks = [needs("scipy")] if _scipy_uses(name) & set(uses) else []
        if name in slow:
            marks.append(pytest.mark.slow)
        params.append(pytest.param(name, marks=marks, id=name))
    return params


def run_without(module: str, code: str, folder) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter where importing ``module`` fails (a package of that
    name under ``folder`` raises ``ImportError``), as in an install without its extra."""
    blocked = folder / "blocked"
    (blocked / module).mkdir(parents=True, exist_ok=True)
    (blocked / module / "__init__.py").write_text("raise ImportError('blocked by the test')\n")
    path = os.pathsep.join([str(blocked), os.environ.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=path), timeout=120, check=False)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


def tiny_unet(seed: int = 0):
    """A small random ``UNet2DModel`` for 1x8x8 samples (seeded), in eval mode."""
    import torch
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    model = UNet2DModel(
        sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16),
        layers_per_block=1, norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
    )
    return model.eval()
