"""The per-configuration summary of ``benchmarks/srds.py`` rows: a pure function of the rows
(no torch, no model), shared by ``srds.py``'s printed table and ``benchmarks/report.py``.
"""

from __future__ import annotations

import statistics
from typing import Any

#: SRDS's default tolerance (data units): a run ending farther from the serial sample is
#: counted as above it.
TOL = 1 / 255


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One summary per (model, N, n, configuration), in the rows' order.

    Parameters
    ----------
    rows : list of dict
        Rows of ``benchmarks/srds.py --json`` (one run each: ``model``, ``N``, ``n``, ``seed``,
        ``config``, ``iterations``, ``sequential``, ``max_abs_err``, ``identical``, ``pixels``,
        ``max_levels``).

    Returns
    -------
    list of dict
        ``model``, ``N``, ``n``, ``config``; ``seq`` and ``iters``, the per-seed sequential
        calls and iterations; ``max_err``, the worst max-abs error; ``above_tol``, how many
        seeds ended above :data:`TOL`; ``seeds``; ``pooled``, the share of identical 8-bit
        pixels over all seeds; ``worst``, the worst seed's share; ``levels``, the largest
        difference in 8-bit levels.
    """
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["model"], row["N"], row["n"], row["config"]), []).append(row)
    out = []
    for (model, steps, n, config), sel in groups.items():
        errs = [r["max_abs_err"] for r in sel]
        out.append(dict(
            model=model, N=steps, n=n, config=config,
            seq=[r["sequential"] for r in sel], iters=[r["iterations"] for r in sel],
            max_err=max(errs), above_tol=sum(e > TOL for e in errs), seeds=len(sel),
            pooled=sum(r["identical"] for r in sel) / sum(r["pixels"] for r in sel),
            worst=min(r["identical"] / r["pixels"] for r in sel),
            levels=max(r["max_levels"] for r in sel)))
    return out


def spread(values: list[float]) -> str:
    """``min / median / max`` of ``values`` as text (``g`` format)."""
    return f"{min(values):g} / {statistics.median(values):g} / {max(values):g}"
