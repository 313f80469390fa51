"""The window update of exact Picard (:class:`~.methods.picard_exact.ExactPicard`): Picard's
sweep with each step's Jacobian replaced by a secant slope instead of the identity.

Picard (ParaDiGMS) updates the window's points ``x_{b+1} .. x_e`` from the DDIM steps
``phi_j = step_j(x_j)`` of the current points as ``x'_{j+1} = x'_j + (phi_j - x_j)``: a
change of ``x_j`` is carried to ``x_{j+1}`` unchanged, as if each step's Jacobian were the
identity. On the digits model that is badly wrong in the last, low-noise steps, whose
Jacobians are far from it (measured: the error there is what the last iterations remove).
This update carries the change with a slope ``lambda_j`` per step and per sample::

    x'_{j+1} = phi_j + lambda_j (x'_j - x_j),        x'_b = x_b,

``lambda_j = <dx_j, dphi_j> / <dx_j, dx_j>``, the secant slope of step ``j`` between the
last two iterates that evaluated it (``dx_j``: the change of ``x_j``, ``dphi_j``: that of
``phi_j``), clipped to ``[0, LAMBDA_MAX]``; ``1`` (Picard's update) where a step has no
history or ``x_j`` did not change. It is Parareal with a linear coarse propagator that costs
no model call, or a Newton step with a scalar secant Jacobian per step.

Exactness: the window's first point gets ``phi_b`` itself (``x'_b - x_b = 0``), and at a
fixed point every ``x_{j+1}`` *is* ``phi_j`` bitwise (no ``x + (phi - x)`` rounding), so a
run to ``tol = 0`` ends on the serial sample up to the model's batch round-off.

Costs: no model calls; two states per grid point (the last ``phi`` and change) and a
sequential loop of elementwise operations over the window.
"""

from __future__ import annotations

import torch

__all__ = ["LAMBDA_MAX", "SecantSweep"]

#: Upper clip of the secant slopes (a safeguard against a slope from a tiny, noisy change).
LAMBDA_MAX = 2.0


class SecantSweep:
    """The secant-corrected window update of one run (it keeps the last ``phi`` and change of
    every grid point it has seen).

    Parameters
    ----------
    steps : int
        ``N``, the grid's steps.
    """

    def __init__(self, steps: int) -> None:
        self.steps = steps
        self.phi: torch.Tensor | None = None  # (N, batch, ...): the last phi_j of each step
        self.moved: torch.Tensor | None = None  # (N, batch, ...): x_j's last change
        self.seen = torch.zeros(steps, dtype=torch.bool)

    def slopes(self, begin: int, x: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
        """``lambda_j`` of steps ``begin .. begin + len(x) - 1``, shape ``(w, batch)``.

        Parameters
        ----------
        begin : int
            Grid index of the window's first step.
        x, phi : torch.Tensor
            The steps' current points and their DDIM steps, ``(w, batch, ...)``.
        """
        w, batch = x.shape[0], x.shape[1]
        end = begin + w
        acc = torch.promote_types(x.dtype, torch.float32)
        ones = torch.ones((w, batch), dtype=acc, device=x.device)
        if self.phi is None or self.moved is None:
            return ones
        seen = self.seen[begin:end].to(x.device)
        dx = self.moved[begin:end].reshape(w, batch, -1).to(acc)
        dphi = (phi - self.phi[begin:end]).reshape(w, batch, -1).to(acc)
        norm = (dx * dx).sum(-1)
        ok = seen[:, None] & (norm > 0)
        lam = (dx * dphi).sum(-1) / torch.where(ok, norm, torch.ones_like(norm))
        lam = torch.where(ok & torch.isfinite(lam), lam.clamp(0.0, LAMBDA_MAX), ones)
        return lam

    def update(self, begin: int, x: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
        """The new values of points ``begin + 1 .. begin + len(x)`` (it keeps ``phi``).

        Parameters
        ----------
        begin : int
            Grid index of the window's first step (its point ``x_b`` has converged).
        x : torch.Tensor
            The points ``x_b .. x_{e-1}`` the steps start from, ``(w, batch, ...)``.
        phi : torch.Tensor
            Their DDIM steps, same shape.

        Returns
        -------
        torch.Tensor
            ``(w, batch, ...)``; its first entry is ``phi[0]`` itself.
        """
        w, end = x.shape[0], begin + x.shape[0]
        lam = self.slopes(begin, x, phi).to(phi.dtype)
        lam = lam.reshape(lam.shape + (1,) * (x.ndim - 2))
        new = torch.empty_like(phi)
        new[0] = phi[0]
        for i in range(1, w):  # x'_{j+1} = phi_j + lambda_j (x'_j - x_j)
            new[i] = phi[i] + lam[i] * (new[i - 1] - x[i])
        if self.phi is None:
            self.phi = torch.zeros((self.steps, *phi.shape[1:]), dtype=phi.dtype,
                                   device=phi.device)
            self.moved = torch.zeros_like(self.phi)
        self.phi[begin:end] = phi
        self.seen[begin:end] = True
        return new

    def moves(self, begin: int, delta: torch.Tensor) -> None:
        """Record the changes ``delta`` (``(w, batch, ...)``) the run made to the points
        ``begin + 1 .. begin + w`` (after any further mixing, e.g. Anderson's)."""
        if self.moved is None:
            return
        stop = min(begin + 1 + delta.shape[0], self.steps)
        self.moved[begin] = 0.0
        self.moved[begin + 1:stop] = delta[: stop - begin - 1]
