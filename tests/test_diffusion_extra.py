"""Missing optional dependencies name the extra to install (item 15 of issue 7).

Each case runs in a process in which the package is absent: ``sys.modules[name] = None``
makes ``import name`` raise ``ModuleNotFoundError`` and ``importlib.util.find_spec(name)``
return ``None``, as for a package that is not installed (diffusers' own optional-dependency
checks use ``find_spec``, so they see it as absent too). Each case runs as ``python -c`` would
run it, in a forked child. Without torch: of one fresh interpreter that has imported numpy
only, torch made absent before anything else (``tests.inprocess.run_forked``). Without
diffusers, safetensors, scikit-learn or scipy: of the test's own interpreter, which has
imported torch and diffusers' models (in a whole run of the suite, for other tests already),
with parareal forgotten in the child and the package made absent with every submodule of it
already imported (``tests.inprocess.run_forked_here``), so that no import finds any of it
and parareal is imported for the first time.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.inprocess import run_forked, run_forked_here

HINT = "pip install 'parareal[diffusion]'"
CLI = "import sys; from parareal.cli import main; sys.exit(main(['sample', '--n', '1']))"


TORCH_PRELOAD = "import numpy"
#: The cases that run in children of this interpreter (``run_forked_here``).
HERE = "here"
#: Per interpreter (what it imports first): the packages absent before that, and the cases by
#: (absent package, name).
CASES = {
    TORCH_PRELOAD: (["torch"], {
        ("torch", "adapter"): "import parareal.adapters.diffusion",
        ("torch", "cli"): CLI,
        ("torch", "core"): "import numpy as np, parareal; print(parareal.solve("
                           "lambda t, y: -y, np.ones(1), (0, 1), coarse=parareal.RK4(1), "
                           "fine=parareal.RK4(4), slices=2).status.value)",
    }),
    HERE: ([], {
        ("diffusers", "digits"): "import parareal.adapters.diffusion.digits",
        ("diffusers", "cli"): CLI,
        ("safetensors", "digits"): "import parareal.adapters.diffusion.digits",
        ("safetensors", "cli"): CLI,
        ("sklearn", "data"): "from parareal.adapters.diffusion import digits\n"
                             "digits.load_digits_data()",
        ("scipy", "frechet"): "import numpy as np\nfrom parareal.adapters.diffusion import digits\n"
                              "digits.frechet_distance(np.eye(3), np.eye(3))",
    }),
}


@pytest.fixture(scope="module")
def without(tmp_path_factory):
    """``without(missing, case)``: the finished process of that case; the cases of one
    interpreter run together, in a folder of their own (``without(missing, "cwd")``)."""
    done: dict[tuple[str, str], subprocess.CompletedProcess[str] | Path] = {}

    def get(missing: str, case: str):
        if (missing, case) not in done:
            preload = next(p for p, (_, cases) in CASES.items()
                           if (missing, case if case != "cwd" else "cli") in cases)
            if preload == HERE:  # what a whole run of the suite has imported already
                pytest.importorskip("torch")
                pytest.importorskip("diffusers")
                from diffusers import DDIMScheduler, UNet2DModel  # noqa: F401
            blocked, cases = CASES[preload]
            cwd = tmp_path_factory.mktemp("without")
            if preload == HERE:
                procs = [run_forked_here([code], fresh=["parareal"], absent=[name], cwd=cwd)[0]
                         for (name, _), code in cases.items()]
            else:
                procs = run_forked(list(cases.values()), missing=blocked, preload=preload,
                                   cwd=cwd, env=dict(os.environ, OMP_NUM_THREADS="1"))
            done.update(zip(cases, procs))
            done.update({(name, "cwd"): cwd for name, _ in cases})
        return done[missing, case]

    return get


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


def test_digits_data_without_scikit_learn_names_the_extra(without):
    proc = without("sklearn", "data")
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 1
    assert last.startswith("ImportError: the digits data set needs scikit-learn")
    assert last.endswith(HINT)


def test_frechet_distance_without_scipy_names_the_extra(without):
    proc = without("scipy", "frechet")
    last = proc.stderr.strip().splitlines()[-1]
    # where diffusers itself needs scipy (seen with torch 2.11 and transformers installed),
    # the import of the adapter already fails, and says which extra brings it back
    assert proc.returncode == 1
    assert "frechet_distance needs scipy" in last or "needs diffusers" in last
    assert last.endswith(HINT)
