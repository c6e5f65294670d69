"""Synthetic people for the demo, the benchmark and the tests: ground truth by construction.

A person is a code of the generator, `codes(z)` of a random z (W+ after mapping and truncation for
idinvert; z itself for the DCGAN). Their photos are the generator's images of that code moved by
Gaussian noise of std `spread` times the per-dimension spread of the model's codes: small enough
that they stay the same person, large enough that pose, expression and lighting vary. The spread of
a built-in model is part of its bundle ("identity_spread", chosen so that dlib's identity distance
between two photos of one person stays under its 0.6 same-person threshold; see the bundle's README).
"""

from __future__ import annotations

import numpy as np

DEFAULT_SPREAD = 0.15


def identity_spread(models) -> float:
    """The model's perturbation scale for photos of one person (its bundle's, else 0.15)."""
    return float(models.info.get("identity_spread", DEFAULT_SPREAD))


def code_std(models, rng: np.random.Generator, n: int = 256) -> float:
    """Mean per-dimension std of the model's codes (1 for z codes)."""
    z = rng.standard_normal((n, models.z_dim)).astype(np.float32)
    return max(float(np.asarray(models.codes(z)).std(0).mean()), 1e-3)


def sample_people(models, n: int, rng: np.random.Generator) -> np.ndarray:
    """Codes [n, L, D] of n random people."""
    z = rng.standard_normal((n, models.z_dim)).astype(np.float32)
    return np.asarray(models.codes(z), np.float32)


def photos_of(
    models, people: np.ndarray, k: int, rng: np.random.Generator, spread: float | None = None
) -> np.ndarray:
    """Codes [N, k, L, D]: k photos of each person of `people` [N, L, D]."""
    s = identity_spread(models) if spread is None else spread
    scale = s * code_std(models, np.random.default_rng(0))
    noise = rng.standard_normal((people.shape[0], k, *people.shape[1:])).astype(np.float32)
    return people[:, None] + scale * noise
