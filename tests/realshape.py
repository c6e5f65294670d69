"""Seeded random state dicts with exactly the keys and shapes of the real ffhq256 checkpoints.

Built in the test from ffhq256_state_dict_shapes.json (never stored): fixed buffers get their real
values (lod 0, [1,2,1] blur kernels, truncation coefficients), batch-norm variances are positive.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from conftest import IDINVERT

FILES = {
    "generator": "styleganinv_ffhq256_generator.pth",
    "encoder": "styleganinv_ffhq256_encoder.pth",
    "perceptual": "vgg16.pth",
    "discriminator": "StyleGANDiscriminator(256)",
}


def real_keys(role: str) -> dict[str, list[int]]:
    doc = json.loads((IDINVERT / "ffhq256_state_dict_shapes.json").read_text())
    (name,) = [k for k in doc if k.startswith(FILES[role]) or FILES[role] in k]
    return doc[name]["keys"]


def random_state_dict(keys: dict, seed: int = 0, he_init: bool = False) -> dict[str, np.ndarray]:
    """Normal weights (times sqrt(2/fan_in) with `he_init`, for networks without run-time wscale)."""
    rng = np.random.default_rng(seed)
    out = {}
    for k, shape in keys.items():
        shape = tuple(shape)
        if k.endswith("lod") or k.endswith("num_batches_tracked"):
            a = np.zeros(shape, np.float32)
        elif k.endswith("blur.kernel"):
            a = np.broadcast_to(np.outer([1, 2, 1], [1, 2, 1]) / 16.0, shape).astype(np.float32)
        elif k == "truncation.truncation":
            a = np.where(np.arange(shape[1]) < 8, 0.7, 1.0).reshape(shape).astype(np.float32)
        elif k.endswith("running_var"):
            a = np.exp(0.3 * rng.standard_normal(shape, np.float32))
        elif len(shape) >= 2:
            a = rng.standard_normal(shape, np.float32)
            if he_init:
                a *= np.float32(np.sqrt(2.0 / np.prod(shape[1:])))
        else:
            a = 0.1 * rng.standard_normal(shape, np.float32)
        out[k] = a
    return out


def save_torch(sd: dict[str, np.ndarray], path: Path) -> Path:
    import torch

    torch.save({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()}, str(path))
    return path
