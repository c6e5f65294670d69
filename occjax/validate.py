"""Checks at the API boundary: images NCHW in [-1, 1] at the model's resolution and finite, masks
of the right shape and finite. A bad input raises ValueError with one line saying how to fix it."""

from __future__ import annotations

import numpy as np

# images made by a network or read from 8-bit files sit in [-1, 1]; a little rounding is allowed
RANGE_SLACK = 1e-3


def as_images(x, what: str, res: int) -> np.ndarray:
    """[N, 3, res, res] float32 in [-1, 1] (a single [3, H, W] image gets a batch axis)."""
    x = np.asarray(x, np.float32)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(
            f"{what}: expected NCHW images [N, 3, H, W] in [-1, 1], got shape {x.shape}"
        )
    if x.shape[2:] != (res, res):
        raise ValueError(
            f"{what}: images are {x.shape[2]}x{x.shape[3]} but the generator makes {res}x{res}; "
            "resize them first (occjax.io.load_image does)"
        )
    if not np.isfinite(x).all():
        raise ValueError(f"{what}: {int((~np.isfinite(x)).sum())} values are NaN or infinite")
    if x.size == 0:
        return x
    lo, hi = float(x.min()), float(x.max())
    if lo < -1 - RANGE_SLACK or hi > 1 + RANGE_SLACK:
        hint = " (uint8 pixels? use x / 127.5 - 1)" if hi > 2 else ""
        raise ValueError(f"{what}: values span [{lo:.3g}, {hi:.3g}], expected [-1, 1]{hint}")
    return np.clip(x, -1.0, 1.0)


def as_masks(masks, b: int, res: int) -> np.ndarray:
    """[b, 1, res, res] float32 in {0, 1} (> 0.5 = occluded); None: nothing occluded."""
    if masks is None:
        return np.zeros((b, 1, res, res), np.float32)
    m = np.asarray(masks, np.float32)
    if m.ndim == 3:
        m = m[:, None]
    if m.shape != (b, 1, res, res):
        raise ValueError(f"masks: expected [{b}, 1, {res}, {res}] (1 = occluded), got {m.shape}")
    if not np.isfinite(m).all():
        raise ValueError("masks: some values are NaN or infinite")
    return (m > 0.5).astype(np.float32)
