"""Diffusion-model sampling as a Parareal problem (SRDS); see docs/diffusion.md."""
