"""Facial-region masks from 68-point landmarks, and which regions an occlusion covers.

Regions (image-side names: "left" is the left of the picture, the subject's right):
left_eye / right_eye (eye contours 36-41 / 42-47, grown by a third of the eye height),
left_brow / right_brow (brow points 17-21 / 22-26 thickened 40 % of the way towards the eye),
nose (convex hull of 27-35), mouth (outer lip 48-59), chin (jaw 4-12 up to the lower lip 54-59, 48),
face (convex hull of all 68 points). A region counts as covered when at least COVERED_FRACTION of
its pixels are occluded.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from occjax.occlusion.measure import binarize

REGIONS = ("left_eye", "right_eye", "left_brow", "right_brow", "nose", "mouth", "chin", "face")
COVERED_FRACTION = 0.25


def convex_hull(points: np.ndarray) -> np.ndarray:
    """[N, 2] points -> [M, 2] hull vertices, counter-clockwise (Andrew's monotone chain)."""
    pts = sorted(map(tuple, np.asarray(points, dtype=np.float64)))
    if len(pts) < 3:
        return np.array(pts)

    def half(seq):
        out: list[tuple[float, float]] = []
        for p in seq:
            while len(out) >= 2:
                (ax, ay), (bx, by) = out[-2], out[-1]
                if (bx - ax) * (p[1] - ay) - (by - ay) * (p[0] - ax) > 0:
                    break
                out.pop()
            out.append(p)
        return out

    lower, upper = half(pts), half(reversed(pts))
    return np.array(lower[:-1] + upper[:-1])


def _grow(poly: np.ndarray, amount: float) -> np.ndarray:
    """Push polygon vertices away from their centroid by `amount` px."""
    c = poly.mean(axis=0)
    d = poly - c
    n = np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-9)[:, None]
    return poly + d / n * amount


def region_polygons(landmarks: np.ndarray) -> dict[str, np.ndarray]:
    """Polygons ([K, 2] (x, y)) of every region in REGIONS from [68, 2] landmarks."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"expected [68, 2] landmarks, got {lm.shape}")
    polys: dict[str, np.ndarray] = {}
    for name, idx in (("left_eye", slice(36, 42)), ("right_eye", slice(42, 48))):
        eye = lm[idx]
        height = max(float(np.ptp(eye[:, 1])), 1.0)
        polys[name] = _grow(eye, height / 3)
    for name, idx, eye in (
        ("left_brow", slice(17, 22), slice(36, 42)),
        ("right_brow", slice(22, 27), slice(42, 48)),
    ):
        brow = lm[idx]
        lower = brow + (lm[eye].mean(axis=0) - brow) * 0.4
        polys[name] = np.concatenate([brow, lower[::-1]])
    polys["nose"] = convex_hull(lm[27:36])
    polys["mouth"] = lm[48:60]
    polys["chin"] = np.concatenate([lm[4:13], lm[[54, 55, 56, 57, 58, 59, 48]]])
    polys["face"] = convex_hull(lm)
    return polys


def polygon_mask(polygon: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """bool [H, W] mask of a filled polygon [K, 2] (pixel centres at integers)."""
    h, w = shape
    img = Image.new("L", (w, h), 0)
    ImageDraw.Draw(img).polygon([tuple(p) for p in np.asarray(polygon, float)], fill=255)
    return np.asarray(img) > 127


def region_masks(landmarks: np.ndarray, shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """bool [H, W] masks of every region in REGIONS for an image of `shape` (H, W)."""
    return {k: polygon_mask(p, shape) for k, p in region_polygons(landmarks).items()}


def region_coverage(mask: np.ndarray, landmarks: np.ndarray) -> dict[str, float]:
    """Fraction (0-1) of each region's pixels that `mask` [H, W] marks as occluded."""
    m = binarize(mask)
    out = {}
    for name, region in region_masks(landmarks, m.shape).items():
        n = int(region.sum())
        out[name] = float((m & region).sum() / n) if n else 0.0
    return out


def covered_regions(
    mask: np.ndarray, landmarks: np.ndarray, min_fraction: float = COVERED_FRACTION
) -> list[str]:
    """Names of the regions (REGIONS order, "face" left out) occluded by >= min_fraction."""
    cov = region_coverage(mask, landmarks)
    return [k for k in REGIONS if k != "face" and cov[k] >= min_fraction]
