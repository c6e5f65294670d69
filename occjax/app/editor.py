"""The brush editor's value <-> a mask: the photo, enlarged for painting, under one mask layer.

The editor shows the model's input enlarged by an integer factor (small models are 64 px: too
small to paint on), and the mask as a translucent red layer of the same size. A painted pixel is
any with alpha > 0; the layer is reduced to the model's size by area, and a model pixel is occluded
where more than half of it is painted (as `occjax.io.mask_array` reads mask files: grey > 127).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from occjax.app.errors import UserError
from occjax.io import to_uint8

PAINT_SIZE = 512  # the editor's side is the smallest multiple of the model's size >= this
MASK_RGBA = (255, 40, 40, 150)  # the mask layer's colour: translucent red


def display_size(size: int) -> int:
    """The editor's side for a model of `size` px (an integer multiple, so pixels map exactly)."""
    return size * max(1, math.ceil(PAINT_SIZE / size))


def enlarge(image: np.ndarray, side: int, smooth: bool = True) -> np.ndarray:
    """[H, W, C] uint8 -> [side, side, C] (Lanczos, or nearest for masks)."""
    mode = Image.Resampling.LANCZOS if smooth else Image.Resampling.NEAREST
    return np.asarray(Image.fromarray(image).resize((side, side), mode))


def mask_layer(mask: np.ndarray | None, side: int) -> np.ndarray:
    """[1, S, S] {0, 1} (or None: empty) -> [side, side, 4] uint8 RGBA layer."""
    layer = np.zeros((side, side, 4), np.uint8)
    if mask is not None:
        on = enlarge((np.asarray(mask)[0] > 0.5).astype(np.uint8) * 255, side, smooth=False) > 127
        layer[on] = MASK_RGBA
    return layer


def editor_value(image: np.ndarray, mask: np.ndarray | None = None) -> dict:
    """The editor's value for the model input [3, S, S] in [-1, 1] and an optional mask."""
    side = display_size(image.shape[-1])
    background = enlarge(to_uint8(image), side)
    return {"background": background, "layers": [mask_layer(mask, side)], "composite": None}


def _alpha(layer) -> np.ndarray:
    a = np.asarray(layer)
    if a.ndim == 3 and a.shape[2] == 4:
        return a[..., 3]
    if a.ndim == 3:  # no alpha channel: painted where not black
        return a.max(axis=2)
    return a


def mask_from_editor(value: dict | None, size: int) -> np.ndarray:
    """The painted mask [1, size, size] float32 {0, 1} (1 = occluded) of the editor's value.

    Raises UserError when there is no photo in the editor or a layer is not the photo's size."""
    if not value or value.get("background") is None:
        raise UserError("no photo in the mask editor: upload a photo first")
    side = display_size(size)
    bg = np.asarray(value["background"])
    if bg.shape[:2] != (side, side):
        raise UserError(
            f"the mask editor holds a {bg.shape[1]}x{bg.shape[0]} image, not the {side}x{side} "
            "photo: upload the photo again"
        )
    painted = np.zeros((side, side), bool)
    for layer in value.get("layers") or []:
        if layer is None:
            continue
        a = _alpha(layer)
        if a.shape[:2] != (side, side):
            raise UserError(
                f"the mask is {a.shape[1]}x{a.shape[0]} but the photo is {side}x{side} in the "
                "editor: clear the mask and paint it again"
            )
        painted |= a > 0
    small = Image.fromarray(painted.astype(np.uint8) * 255).resize(
        (size, size), Image.Resampling.BOX
    )
    return (np.asarray(small) > 127).astype(np.float32)[None]
