"""Anderson acceleration of Picard's fixed-point map over the sliding window (``anderson=``).

Picard (ParaDiGMS) iterates ``X <- G(X)`` on the window's points ``x_{b+1} .. x_{b+w}``, with
``G(X)_j = x_b + sum_{i=b}^{j-1} (step_i(x_i) - x_i)``. Anderson acceleration with memory
``m`` replaces ``G(X)`` by ``X + R - (dX + dR) gamma``, where ``R = G(X) - X`` and ``dX``,
``dR`` are the last ``m`` differences of iterates and residuals, and ``gamma`` minimises
``|R - dR gamma|``. As in ParaTAA (Tang et al., ICLR 2024: "triangular" Anderson
acceleration), the least squares for point ``j`` uses the rows of points ``b+1 .. j`` only:
the map is lower triangular (a point depends only on the points before it), so later points
must not steer earlier ones. Each sample of the batch gets its own ``gamma`` (the samples are
independent ODEs, and a chunked batch must give the same result as the whole one). The
window's first point is always ``G``'s (its only input, ``x_b``, has converged), so Picard's
exactness argument carries over: with ``tol = 0`` the run ends on the serial sample.

Costs: no model calls; ``m`` stored differences per window point, and ``m x m`` solves.
"""

from __future__ import annotations

import torch

from parareal.validation import check_int

__all__ = ["PrefixAnderson"]


class PrefixAnderson:
    """Anderson mixing of Picard updates with causal (prefix) least squares per sample.

    Parameters
    ----------
    memory : int
        ``m >= 1``: how many past differences enter the mixing.
    """

    def __init__(self, memory: int) -> None:
        self.memory = check_int(memory, "memory", 1)
        # each entry: (first point index, dX, dR), rows aligned to consecutive points
        self.history: list[tuple[int, torch.Tensor, torch.Tensor]] = []
        self.previous: tuple[int, torch.Tensor, torch.Tensor] | None = None

    def update(self, start: int, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """The accelerated new values of points ``start .. start + len(x) - 1``.

        Parameters
        ----------
        start : int
            Grid index of the window's first point (``b + 1``).
        x, g : torch.Tensor
            The window's current values and their Picard update ``G(X)``, shape
            ``(w, batch, ...)``.

        Returns
        -------
        torch.Tensor
            Shape and dtype of ``g``; ``g`` itself where mixing is not possible (no history
            yet, a singular or non-finite solve).
        """
        r = g - x
        if self.previous is not None:
            p_start, p_x, p_r = self.previous
            dx, dr = torch.zeros_like(x), torch.zeros_like(r)
            lo, hi = max(start, p_start), min(start + len(x), p_start + len(p_x))
            if hi > lo:
                now, before = slice(lo - start, hi - start), slice(lo - p_start, hi - p_start)
                dx[now] = x[now] - p_x[before]
                dr[now] = r[now] - p_r[before]
                self.history = (self.history + [(start, dx, dr)])[-self.memory:]
        self.previous = (start, x, r)
        if not self.history or len(x) < 2:
            return g
        w, batch = x.shape[0], x.shape[1]
        DX = torch.zeros((w, batch, x[0, 0].numel(), len(self.history)), dtype=torch.float64,
                         device=x.device)
        DR = torch.zeros_like(DX)
        for h, (h_start, hx, hr) in enumerate(self.history):
            lo, hi = max(start, h_start), min(start + w, h_start + len(hx))
            if hi > lo:
                DX[lo - start:hi - start, :, :, h] = hx[lo - h_start:hi - h_start].reshape(
                    hi - lo, batch, -1).double()
                DR[lo - start:hi - start, :, :, h] = hr[lo - h_start:hi - h_start].reshape(
                    hi - lo, batch, -1).double()
        R = r.reshape(w, batch, -1).double()
        # causal normal equations: point j uses the rows of points start .. j
        A = torch.cumsum(torch.einsum("wbdh,wbdk->wbhk", DR, DR), dim=0)
        b = torch.cumsum(torch.einsum("wbdh,wbd->wbh", DR, R), dim=0)
        scale = A.diagonal(dim1=-2, dim2=-1).amax(dim=-1).clamp_min(1e-300)[..., None, None]
        eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
        gamma = torch.linalg.solve(A + 1e-10 * scale * eye, b.unsqueeze(-1)).squeeze(-1)
        mixed = R - torch.einsum("wbdh,wbh->wbd", DX + DR, gamma)
        out = (x.reshape(w, batch, -1).double() + mixed).reshape(x.shape).to(g.dtype)
        if not bool(torch.isfinite(out).all()):
            return g
        out[0] = g[0]  # the first point's only input has converged: G is exact there
        return out
