"""A Gaussian mixture with its exact noise prediction: a cheap, real model for tests."""

from __future__ import annotations

import math

import torch

from parareal.validation import check_int

from .checks import check_seed
from .schedule import NoiseSchedule

__all__ = ["GaussianMixture"]


class GaussianMixture:
    """Data distribution ``sum_k w_k N(mu_k, s_k^2 I)`` in ``D`` dimensions.

    Under the variance-preserving process ``x_t = sqrt(ab_t) x_0 + sqrt(1 - ab_t) eps`` the
    marginal is again a mixture, ``N(sqrt(ab_t) mu_k, (ab_t s_k^2 + 1 - ab_t) I)``, so its
    score and the optimal noise prediction ``eps = -sqrt(1 - ab_t) * score`` are exact:
    a trained-to-perfection diffusion model whose samples have a known distribution.

    Parameters
    ----------
    means : torch.Tensor
        ``(K, D)`` component means.
    stds : torch.Tensor
        ``(K,)`` component standard deviations.
    weights : torch.Tensor
        ``(K,)`` mixture weights (normalised here).
    """

    def __init__(self, means: torch.Tensor, stds: torch.Tensor, weights: torch.Tensor) -> None:
        if means.ndim != 2:
            raise ValueError(f"means must have shape (K, D), got {tuple(means.shape)}")
        k = means.shape[0]
        if stds.shape != (k,) or weights.shape != (k,):
            raise ValueError("stds and weights must have shape (K,) matching means")
        if torch.any(stds <= 0) or torch.any(weights <= 0):
            raise ValueError("stds and weights must be positive")
        self.means = means.to(torch.float64)
        self.stds = stds.to(torch.float64)
        self.weights = (weights / weights.sum()).to(torch.float64)

    @classmethod
    def random(cls, dim: int, components: int, *, seed: int = 0) -> GaussianMixture:
        """A mixture with random means in ``[-1, 1]^D`` and standard deviations in [0.05, 0.2].

        Raises
        ------
        TypeError, ValueError
            Unless ``dim`` and ``components`` are ints >= 1 and ``seed`` an int in
            ``[0, 2**64 - 1]`` (:func:`~.checks.check_seed`).
        """
        dim, components = check_int(dim, "dim"), check_int(components, "components")
        g = torch.Generator().manual_seed(check_seed(seed))
        means = torch.rand(components, dim, generator=g, dtype=torch.float64) * 2 - 1
        stds = 0.05 + 0.15 * torch.rand(components, generator=g, dtype=torch.float64)
        weights = 0.5 + torch.rand(components, generator=g, dtype=torch.float64)
        return cls(means, stds, weights)

    @property
    def dim(self) -> int:
        """Data dimension ``D``."""
        return int(self.means.shape[1])

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` exact samples of the data distribution, shape ``(n, D)``, float64."""
        comp = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        noise = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return self.means[comp] + self.stds[comp, None] * noise

    def model(self, schedule: NoiseSchedule) -> _MixturePrediction:
        """The exact model ``model(x, t)`` for ``schedule`` (its prediction type)."""
        return _MixturePrediction(self, schedule)


class _MixturePrediction:
    """``model(x, t)``: x of shape ``(M, D)`` (or ``(M, *shape)`` with ``prod(shape) = D``)."""

    def __init__(self, mixture: GaussianMixture, schedule: NoiseSchedule) -> None:
        self.mixture = mixture
        self.schedule = schedule

    def _alpha(self, t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """``alpha_bar`` at timesteps ``t``; between integers (Euler and Heun schedulers' float
        timesteps), ``log sigma`` is interpolated linearly, as diffusers' ``_sigma_to_t``
        inverts it, so the prediction stays exact at the noise level the sampler means."""
        alphas = self.schedule.alphas_cumprod.to(dtype)
        whole = t.long()
        alpha = alphas[whole]
        fraction = t.to(torch.float64) - whole.to(torch.float64)
        if not bool(torch.any(fraction != 0)):
            return alpha
        ab = self.schedule.alphas_cumprod.to(torch.float64)
        log_sigma = 0.5 * torch.log((1 - ab) / ab)
        upper = torch.clamp(whole + 1, max=len(ab) - 1)
        mixed = torch.exp((1 - fraction) * log_sigma[whole] + fraction * log_sigma[upper])
        between = (1 / (1 + mixed**2)).to(dtype)
        return torch.where(fraction != 0, between, alpha)

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        mix = self.mixture
        dtype = x.dtype
        flat = x.reshape(x.shape[0], -1)
        if flat.shape[1] != mix.dim:
            raise ValueError(f"x has {flat.shape[1]} features per sample, the mixture {mix.dim}")
        alpha = self._alpha(t.cpu(), dtype).to(x.device)[:, None]
        means = mix.means.to(dtype=dtype, device=x.device)
        stds = mix.stds.to(dtype=dtype, device=x.device)
        weights = mix.weights.to(dtype=dtype, device=x.device)
        var = alpha * stds[None, :] ** 2 + (1 - alpha)  # (M, K)
        diff = flat[:, None, :] - alpha.sqrt()[:, :, None] * means[None, :, :]  # (M, K, D)
        sq = (diff**2).sum(-1)
        logits = weights.log()[None] - 0.5 * mix.dim * torch.log(2 * math.pi * var) - sq / (2 * var)
        resp = torch.softmax(logits, dim=1)
        score = -(resp[:, :, None] * diff / var[:, :, None]).sum(1)
        eps = -(1 - alpha).sqrt() * score
        kind = self.schedule.prediction_type
        if kind == "epsilon":
            out = eps
        else:
            x0 = (flat - (1 - alpha).sqrt() * eps) / alpha.sqrt()
            out = x0 if kind == "sample" else alpha.sqrt() * eps - (1 - alpha).sqrt() * x0
        return out.reshape(x.shape)
