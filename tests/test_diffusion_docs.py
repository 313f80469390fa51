"""Every ```python block of docs/diffusion.md runs as written and prints what the text says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "diffusion.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_there_are_blocks():
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_block_runs(index, capsys):
    for name in ("torch", "diffusers", "safetensors"):  # the examples sample the adapter
        pytest.importorskip(name)
    exec(compile(BLOCKS[index], f"{DOC.name} block {index}", "exec"), {"__name__": "docs"})
    out = capsys.readouterr().out
    if index == 0:  # the figures quoted under the first example
        assert out.startswith("converged 3 32 533 ")
        assert float(out.split()[4]) < 5e-4
    text = BLOCKS[index]
    if "max_iters=1" in text:
        assert out.splitlines()[0] == "max_iters False"
        assert out.splitlines()[1] == "True 1"
    if "max_batch=4" in text:
        chunks, size, calls, diff = out.split()
        assert (chunks, size, calls) == ("2", "3", "40") and float(diff) < 1e-5
