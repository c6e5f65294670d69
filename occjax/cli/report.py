"""Run summaries and paste-back: the in-mask error table and compositing into the original photo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from occjax.io import to_uint8


def paste_square(restored: np.ndarray, photo: Path, mask: np.ndarray, feather: float = 3.0):
    """Restored [3, R, R] composited into the square original photo inside a feathered mask."""
    from occjax.io import open_image, to_rgb

    orig = to_rgb(open_image(photo))
    size = orig.size
    big = Image.fromarray(to_uint8(restored)).resize(size, Image.LANCZOS)
    scale = size[0] / restored.shape[-1]
    # grown at the model's resolution: a max filter at the photo's size costs O(scale^2) per pixel
    grow = int(round(feather)) * 2 + 1
    m = Image.fromarray(to_uint8(mask)).filter(ImageFilter.MaxFilter(max(3, grow)))
    m = m.resize(size, Image.BILINEAR).filter(ImageFilter.GaussianBlur(feather * scale))
    a = np.asarray(m, np.float32)[..., None] / 255.0
    return np.rint(np.asarray(big) * a + np.asarray(orig) * (1 - a)).astype(np.uint8)


def masked_error(img: np.ndarray, clean: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """(MSE, PSNR dB) inside the mask, images in [-1, 1] mapped to [0, 1]."""
    sel = np.broadcast_to(mask > 0.5, img.shape)
    if not sel.any():
        return float("nan"), float("nan")
    mse = float(np.mean(((img[sel] - clean[sel]) / 2.0) ** 2))
    return mse, float(10 * np.log10(1.0 / max(mse, 1e-12)))


def print_table(table: dict[str, list[tuple[float, float]]]) -> None:
    if not table:
        return
    print("\nerror inside the occluded region vs the ground truth (mean over cases):")
    print(f"  {'approach':<12}{'MSE':>10}{'PSNR dB':>10}")
    for a, vals in table.items():
        mse, psnr = np.nanmean(np.asarray(vals), axis=0)
        print(f"  {a:<12}{mse:>10.5f}{psnr:>10.2f}")
