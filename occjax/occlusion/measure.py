"""Occluded percentage of a mask, as the paper measures it, and the size categories built on it.

The paper's code measures occlusion inside a fixed box of the 256 x 256 aligned face: rows and
columns 51 to 220 inclusive (the half-open range [51, 221), a 170 x 170 box, 44 % of the image),
which holds the eyes, nose and mouth of an FFHQ-aligned face. At other resolutions the box edges are
scaled, per axis: [round(51 H / 256), round(221 H / 256)) for rows, likewise for columns with W.
measure="image" gives the whole-image percentage instead.

Size categories (our definition, measured in the box; the paper names small / medium / large but
gives no bounds, only that its medium cases average about 13 %): small [1, 7) %, medium [7, 20) %,
large [20, 50] %. Medium is centred on 13 % (a target drawn uniformly in it averages 13.5 %); the
paper's public samples fall inside: its "small" hand covers 1.2 % of the box, its "medium" hands
8.5 % and 12.2 %. Large reaches 50 % so that a surgical mask over nose, mouth and chin (about
35-42 % of the box on our test faces) is a large occlusion.
"""

from __future__ import annotations

import numpy as np

BOX_256 = (51, 221)  # half-open [start, stop) of rows and of columns at 256 px
SIZE_BANDS: dict[str, tuple[float, float]] = {
    "small": (1.0, 7.0),
    "medium": (7.0, 20.0),
    "large": (20.0, 50.0),
}
SIZES = tuple(SIZE_BANDS)


def binarize(mask: np.ndarray) -> np.ndarray:
    """[H, W] (or [H, W, 1]) mask -> bool [H, W]: bool as is, floats > 0.5, integers > 127."""
    m = np.asarray(mask)
    if m.ndim == 3 and m.shape[2] == 1:
        m = m[..., 0]
    if m.ndim != 2:
        raise ValueError(f"expected an [H, W] mask, got shape {m.shape}")
    if m.dtype == np.bool_:
        return m
    if np.issubdtype(m.dtype, np.integer):
        return m > 127
    return m > 0.5


def box_slices(height: int, width: int) -> tuple[slice, slice]:
    """Row and column slices of the paper's box, scaled from 256 px to an H x W image."""
    r0, r1 = (round(v * height / 256) for v in BOX_256)
    c0, c1 = (round(v * width / 256) for v in BOX_256)
    return slice(r0, r1), slice(c0, c1)


def occluded_percentage(mask: np.ndarray, measure: str = "box") -> float:
    """Percentage (0-100) of occluded pixels of `mask` [H, W] inside the paper's box or the image."""
    m = binarize(mask)
    if measure == "box":
        m = m[box_slices(*m.shape)]
    elif measure != "image":
        raise ValueError(f"measure must be 'box' or 'image', got {measure!r}")
    return float(m.mean() * 100.0)


def size_category(percent_box: float) -> str | None:
    """The size band ("small" / "medium" / "large") holding a box percentage, or None (outside)."""
    for name, (lo, hi) in SIZE_BANDS.items():
        if lo <= percent_box < hi or (name == SIZES[-1] and percent_box == hi):
            return name
    return None
