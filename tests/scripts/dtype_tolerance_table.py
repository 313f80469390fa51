"""Iterations and accuracy of float32 runs with the dtype's default tolerance (issue 17).

Prints the table in the docstring of parareal/tolerance.py:
``PYTHONPATH=. python tests/scripts/dtype_tolerance_table.py``.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

import parareal
from parareal import problems

torch.set_num_threads(1)
EPS32 = float(np.finfo(np.float32).eps)


def _torch_f(f):
    return lambda t, y: torch.from_numpy(np.asarray(f(t.numpy(), y.numpy())))


def main() -> None:
    print("| problem | N | K float64 (tol 1e-8) | K float32, tol=1e-8 | K float32 numpy / torch "
          "(default) | error float32 Parareal | error float32 serial |")
    print("|---|---|---|---|---|---|---|")
    for name in ["dahlquist", "dahlquist-complex", "brusselator", "lorenz", "vanderpol", "heat"]:
        p = problems.get(name)
        kw = dict(coarse=p.coarse, fine=p.fine, slices=p.slices, backend="batched",
                  vectorized=True)
        ref = parareal.solve_serial(p.f, p.y0, p.t_span, propagator=p.fine, slices=p.slices)
        unit = EPS32 * float(np.abs(ref).max())
        y32 = p.y0.astype(np.complex64 if p.y0.dtype.kind == "c" else np.float32)
        k64 = parareal.solve(p.f, p.y0, p.t_span, **kw).iterations
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", parareal.ToleranceWarning)
            stuck = parareal.solve(p.f, y32, p.t_span, tol=1e-8, **kw).iterations
        s_np = parareal.solve(p.f, y32, p.t_span, **kw)
        s_t = parareal.solve(_torch_f(p.f), torch.from_numpy(y32), p.t_span, **kw)
        err = max(np.abs(s_np.y - ref).max(), np.abs(s_t.y.numpy() - ref).max())
        serial = parareal.solve_serial(p.f, y32, p.t_span, propagator=p.fine, slices=p.slices)
        err_s = np.abs(serial - ref).max()
        print(f"| {name} | {p.slices} | {k64} | {stuck} | {s_np.iterations} / {s_t.iterations} "
              f"| {err:.1e} ({err / unit:.1f} eps max abs U) "
              f"| {err_s:.1e} ({err_s / unit:.1f} eps max abs U) |")


if __name__ == "__main__":
    main()
