"""Missing optional dependencies name the extra to install (item 15 of issue 7).

Each case runs in a process in which the package is absent: ``sys.modules[name] = None``
makes ``import name`` raise ``ModuleNotFoundError`` and ``importlib.util.find_spec(name)``
return ``None``, as for a package that is not installed (diffusers' own optional-dependency
checks use ``find_spec``, so they see it as absent too). The cases of one absent package run
in forked children of one fresh interpreter (``tests.inprocess.run_forked``), which has
imported the other third-party packages they need (never parareal), each case as
``python -c`` would run it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.inprocess import run_forked

HINT = "pip install 'parareal[diffusion]'"
CLI = "import sys; from parareal.cli import main; sys.exit(main(['sample', '--n', '1']))"
#: Per absent package: what its cases' interpreter imports first, and the cases by name.
CASES = {
    "torch": ("import numpy", {
        "adapter": "import parareal.adapters.diffusion",
        "cli": CLI,
        "core": "import numpy as np, parareal; print(parareal.solve("
                "lambda t, y: -y, np.ones(1), (0, 1), coarse=parareal.RK4(1), "
                "fine=parareal.RK4(4), slices=2).status.value)",
    }),
    "diffusers": ("import torch", {"digits": "import parareal.adapters.diffusion.digits",
                                   "cli": CLI}),
    # (diffusers' models import safetensors: only torch is imported first)
    "safetensors": ("import torch", {"digits": "import parareal.adapters.diffusion.digits",
                                     "cli": CLI}),
}


@pytest.fixture(scope="module")
def without(tmp_path_factory):
    """``without(missing, case)``: the finished process of ``CASES[missing][1][case]``; the
    cases of one absent package run together, in a folder of their own."""
    done: dict[str, dict[str, subprocess.CompletedProcess[str]]] = {}

    def get(missing: str, case: str) -> subprocess.CompletedProcess[str]:
        if missing not in done:
            preload, cases = CASES[missing]
            cwd = tmp_path_factory.mktemp(f"without-{missing}")
            procs = run_forked(list(cases.values()), missing=[missing], preload=preload,
                               cwd=cwd, env=dict(os.environ, OMP_NUM_THREADS="1"))
            done[missing] = dict(zip(cases, procs))
            done[missing]["cwd"] = cwd
        return done[missing][case]

    return get


def run(tmp_path: Path, missing: str, code: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -c code`` in ``tmp_path`` with package ``missing`` absent."""
    tmp_path.mkdir(exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    prelude = f"import sys; sys.modules[{missing!r}] = None\n"
    return subprocess.run([sys.executable, "-c", prelude + code], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=120)


def test_adapter_without_torch_names_the_extra(without):
    proc = without("torch", "adapter")
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: parareal.adapters.diffusion needs torch")
    assert last.endswith(HINT)


def test_sample_command_without_torch_exits_2_with_one_line(without):
    proc = without("torch", "cli")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("parareal: error: ") and HINT in lines[0]
    assert proc.stdout == "" and not (without("torch", "cwd") / "samples.png").exists()


def test_core_still_works_without_torch(without):
    proc = without("torch", "core")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "converged"


@pytest.mark.parametrize("missing", ["diffusers", "safetensors"])
def test_digits_without_diffusers_or_safetensors_names_the_extra(without, missing):
    pytest.importorskip("torch")
    proc = without(missing, "digits")
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 1 and missing in last and last.endswith(HINT)
    cli = without(missing, "cli")
    lines = cli.stderr.strip().splitlines()
    assert cli.returncode == 2 and len(lines) == 1 and HINT in lines[0]


def test_digits_data_without_scikit_learn_names_the_extra(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    proc = run(tmp_path, "sklearn", "from parareal.adapters.diffusion import digits\n"
                                    "digits.load_digits_data()")
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 1
    assert last.startswith("ImportError: the digits data set needs scikit-learn")
    assert last.endswith(HINT)


def test_frechet_distance_without_scipy_names_the_extra(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    proc = run(tmp_path, "scipy", "import numpy as np\n"
                                  "from parareal.adapters.diffusion import digits\n"
                                  "digits.frechet_distance(np.eye(3), np.eye(3))")
    last = proc.stderr.strip().splitlines()[-1]
    # where diffusers itself needs scipy (seen with torch 2.11 and transformers installed),
    # the import of the adapter already fails, and says which extra brings it back
    assert proc.returncode == 1
    assert "frechet_distance needs scipy" in last or "needs diffusers" in last
    assert last.endswith(HINT)
