"""Image files <-> arrays at the API boundary (NCHW float32 RGB in [-1, 1]; masks {0, 1}).

x = load_image("photo.png", 256)   # [3, 256, 256] in [-1, 1], antialiased (Lanczos) resize
m = load_mask("mask.png", 256)     # [1, 256, 256] in {0, 1}, 1 = occluded (pixel > 127)
save_image("out.png", x)           # atomic write (temporary name, then rename)
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from occjax.params import atomic_write_bytes


class ImageError(ValueError):
    """An input image is missing, unreadable or of the wrong shape (one-line message)."""


def open_image(path: str | Path) -> Image.Image:
    """The decoded PIL image at `path`, or ImageError saying what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such file")
    try:
        with Image.open(path) as im:
            im.load()
            return im.copy()
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ImageError(f"{path}: unreadable image ({e.__class__.__name__})") from None


def to_rgb(im: Image.Image) -> Image.Image:
    """RGB, grey, palette or RGBA (alpha composited on black) -> RGB."""
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (0, 0, 0, 255))
        return Image.alpha_composite(bg, im).convert("RGB")
    return im.convert("RGB")


def check_square(im: Image.Image, path: str | Path) -> None:
    w, h = im.size
    if w != h:
        raise ImageError(
            f"{path}: photo is {w}x{h}, not square; align the face first "
            "(--align uses occjax.faces.align_face, FFHQ alignment)"
        )


def resize_rgb(im: Image.Image, size: int) -> np.ndarray:
    """PIL image -> [3, size, size] float32 in [-1, 1] (Lanczos, antialiased)."""
    im = to_rgb(im)
    if im.size != (size, size):
        im = im.resize((size, size), Image.LANCZOS)
    a = np.asarray(im, np.float32) / 127.5 - 1.0
    return np.ascontiguousarray(a.transpose(2, 0, 1))


def load_image(path: str | Path, size: int) -> np.ndarray:
    """A square RGB/RGBA/grey photo -> [3, size, size] float32 in [-1, 1]."""
    im = open_image(path)
    check_square(im, path)
    return resize_rgb(im, size)


def mask_array(im: Image.Image, size: int) -> np.ndarray:
    """Any mask image -> [1, size, size] float32 {0, 1} (grey > 127 = occluded; bilinear resize)."""
    g = im.convert("L")
    if g.size != (size, size):
        g = g.resize((size, size), Image.BILINEAR)
    return (np.asarray(g) > 127).astype(np.float32)[None]


def load_mask(path: str | Path, size: int) -> np.ndarray:
    """A square mask image -> [1, size, size] float32 in {0, 1}, 1 = occluded."""
    im = open_image(path)
    w, h = im.size
    if w != h:
        raise ImageError(f"{path}: mask is {w}x{h}, not square like the photos")
    return mask_array(im, size)


def to_uint8(x: np.ndarray) -> np.ndarray:
    """[3, H, W] in [-1, 1] (or [1, H, W] / [H, W] in [0, 1] masks) -> [H, W, 3|] uint8."""
    x = np.asarray(x, np.float32)
    if x.ndim == 3 and x.shape[0] == 3:
        return np.clip(np.rint((x.transpose(1, 2, 0) + 1.0) * 127.5), 0, 255).astype(np.uint8)
    if x.ndim == 3 and x.shape[0] == 1:
        x = x[0]
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def png_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def save_image(path: str | Path, x: np.ndarray) -> None:
    """Write an image atomically as PNG: [3, H, W] float in [-1, 1], [1, H, W] mask, or uint8
    [H, W, 3] / [H, W]."""
    a = np.asarray(x)
    if a.dtype != np.uint8:
        a = to_uint8(a)
    atomic_write_bytes(path, png_bytes(a))
