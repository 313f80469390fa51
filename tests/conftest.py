"""Shared fixtures and helpers for the test suite."""

from __future__ import annotations

import numpy as np
import pytest


def diagonal_rhs(lam: np.ndarray, forcing: float = 0.0):
    """Elementwise linear f (bitwise equal batched and alone), optionally time-forced.

    Works for single states (t a float) and batches (t of shape (B,), y of shape (B, d)).
    """

    def f(t, y):
        t = np.asarray(t)
        return lam * y + forcing * np.cos(t)[..., None] if t.ndim else lam * y + forcing * np.cos(t)

    return f


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)
