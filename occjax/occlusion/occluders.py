"""Occluder images: RGBA cut-outs to paste onto faces.

Sources: any folder of RGBA PNGs (`load_occluder_folder`); a procedural starter set drawn at run time
(`starter_occluders`: hand-like shapes and everyday objects, no files needed); real hand cut-outs
from an occluded photo and its mask (`hand_cutout`, `paper_dataset_cutouts` for the paper's
`<Person>/occluded_img` + `occlusion_mask` layout); surgical-mask textures without alpha
(`mask_texture`, `load_mask_textures`), which `synth` warps over the nose and mouth.

`kind` says how `synth` places an occluder: "hand" and "object" at a landmark with a free affine
transform, "mask" fitted to the lower face.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

KINDS = ("hand", "object", "mask")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@dataclass(frozen=True)
class Occluder:
    """name, rgba [H, W, 4] uint8 (alpha 255 = opaque), kind in KINDS."""

    name: str
    rgba: np.ndarray
    kind: str = "object"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.rgba.ndim != 3 or self.rgba.shape[2] != 4 or self.rgba.dtype != np.uint8:
            raise ValueError(
                f"rgba must be [H, W, 4] uint8, got {self.rgba.shape} {self.rgba.dtype}"
            )


def crop_to_alpha(rgba: np.ndarray, margin: int = 2) -> np.ndarray:
    """Crop [H, W, 4] to the bounding box of alpha > 0 plus `margin` px."""
    ys, xs = np.nonzero(rgba[..., 3] > 0)
    if len(ys) == 0:
        raise ValueError("the occluder is fully transparent")
    h, w = rgba.shape[:2]
    y0, y1 = max(ys.min() - margin, 0), min(ys.max() + 1 + margin, h)
    x0, x1 = max(xs.min() - margin, 0), min(xs.max() + 1 + margin, w)
    return np.ascontiguousarray(rgba[y0:y1, x0:x1])


def load_occluder(path: str | Path, kind: str | None = None) -> Occluder:
    """One RGBA image file; kind defaults to "hand" when the file name contains "hand"."""
    path = Path(path)
    with Image.open(path) as im:
        has_alpha = im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info
        if not has_alpha:
            raise ValueError(
                f"{path} has no alpha channel: occluders must be RGBA PNGs with a transparent "
                "background (surgical-mask textures go through load_mask_textures instead)"
            )
        rgba = np.asarray(im.convert("RGBA"))
    if kind is None:
        kind = "hand" if "hand" in path.stem.lower() else "object"
    return Occluder(name=path.stem, rgba=crop_to_alpha(rgba), kind=kind)


def load_occluder_folder(folder: str | Path, kind: str | None = None) -> list[Occluder]:
    """Every *.png of `folder` (sorted by name) as an Occluder; see `load_occluder`."""
    folder = Path(folder)
    files = sorted(p for p in folder.glob("*.png") if p.is_file())
    if not files:
        raise FileNotFoundError(f"no .png occluders in {folder}")
    return [load_occluder(p, kind) for p in files]


def hand_cutout(
    photo: np.ndarray, mask: np.ndarray, name: str = "hand", threshold: int = 255
) -> Occluder:
    """Cut the occluder out of `photo` [H, W, 3] uint8 where `mask` [H, W] uint8 >= threshold."""
    photo, mask = np.asarray(photo), np.asarray(mask)
    if mask.ndim == 3:
        mask = mask[..., 0]
    if photo.shape[:2] != mask.shape:
        raise ValueError(f"photo {photo.shape[:2]} and mask {mask.shape} differ in size")
    alpha = np.where(mask >= threshold, 255, 0).astype(np.uint8)
    rgba = np.concatenate([photo[..., :3].astype(np.uint8), alpha[..., None]], axis=-1)
    return Occluder(name=name, rgba=crop_to_alpha(rgba), kind="hand")


def paper_dataset_cutouts(root: str | Path, threshold: int = 255) -> list[Occluder]:
    """Hand cut-outs from every `<Person>/occluded_img/X.png` + `<Person>/occlusion_mask/X.png`."""
    out = []
    for img_path in sorted(Path(root).glob("*/occluded_img/*.png")):
        mask_path = img_path.parent.parent / "occlusion_mask" / img_path.name
        if not mask_path.is_file():
            continue
        with Image.open(img_path) as im, Image.open(mask_path) as m:
            photo, mask = np.asarray(im.convert("RGB")), np.asarray(m.convert("L"))
        out.append(hand_cutout(photo, mask, name=f"hand_{img_path.stem}", threshold=threshold))
    if not out:
        raise FileNotFoundError(f"no occluded_img/occlusion_mask pairs under {root}")
    return out


def mask_texture(texture: np.ndarray, name: str = "mask", corner: float = 0.18) -> Occluder:
    """A flat surgical-mask texture [H, W, 3] uint8 -> an Occluder with rounded-corner alpha."""
    h, w = texture.shape[:2]
    alpha = Image.new("L", (w * 2, h * 2), 0)
    r = int(corner * min(h, w) * 2)
    ImageDraw.Draw(alpha).rounded_rectangle((0, 0, w * 2 - 1, h * 2 - 1), radius=r, fill=255)
    a = np.asarray(alpha.resize((w, h), Image.Resampling.BOX))
    rgba = np.concatenate([np.asarray(texture)[..., :3].astype(np.uint8), a[..., None]], -1)
    return Occluder(name=name, rgba=rgba, kind="mask")


def load_mask_textures(folder: str | Path) -> list[Occluder]:
    """Every image of `folder` (e.g. mask_*.jpg, no alpha needed) as a kind="mask" Occluder."""
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no mask textures in {folder}")
    out = []
    for p in files:
        with Image.open(p) as im:
            out.append(mask_texture(np.asarray(im.convert("RGB")), name=p.stem))
    return out


# --- procedural starter set ---------------------------------------------------------------------

SKIN_TONES = ((236, 192, 160), (224, 172, 135), (198, 134, 96), (161, 102, 68), (110, 70, 45))


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int = 4) -> np.ndarray:
    """[h, w] float noise in [0, 1], smooth (bicubic up-sampling of a cells x cells grid)."""
    grid = Image.fromarray(np.uint8(rng.integers(0, 256, (cells, cells))))
    return np.asarray(grid.resize((w, h), Image.Resampling.BICUBIC), np.float32) / 255.0


def _finish(canvas: Image.Image, rng: np.random.Generator, shade: float = 0.25) -> np.ndarray:
    """Down-sample a 2x supersampled RGBA drawing, add soft shading, crop to the alpha."""
    w, h = canvas.size
    rgba = np.asarray(canvas.resize((w // 2, h // 2), Image.Resampling.LANCZOS)).copy()
    hh, ww = rgba.shape[:2]
    light = 1.0 - shade / 2 + shade * _smooth_noise(rng, hh, ww)
    light *= np.linspace(1.05, 0.9, hh, dtype=np.float32)[:, None]  # lit from above
    rgba[..., :3] = np.clip(rgba[..., :3] * light[..., None], 0, 255).astype(np.uint8)
    return crop_to_alpha(rgba)


def _capsule(draw: ImageDraw.ImageDraw, p0, p1, width: float, fill) -> None:
    r = width / 2
    draw.line([tuple(p0), tuple(p1)], fill=fill, width=int(round(width)))
    for x, y in (p0, p1):
        draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)


def procedural_hand(rng: np.random.Generator, size: int = 256) -> np.ndarray:
    """A hand-like RGBA shape [h, w, 4]: palm, four fingers and a thumb, in a random skin tone."""
    s = size * 2
    canvas = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    tone = np.array(SKIN_TONES[rng.integers(len(SKIN_TONES))]) * rng.uniform(0.92, 1.05)
    base = tuple(int(v) for v in np.clip(tone, 0, 255)) + (255,)
    edge = tuple(int(v * 0.78) for v in base[:3]) + (255,)
    cx, palm_top, palm_w = s * 0.5, s * 0.5, s * rng.uniform(0.34, 0.4)
    palm_h = s * rng.uniform(0.3, 0.36)
    box = (cx - palm_w / 2, palm_top, cx + palm_w / 2, palm_top + palm_h)
    draw.rounded_rectangle(box, radius=int(palm_w * 0.3), fill=base)
    finger_w = palm_w / 4.2
    spread = rng.uniform(0.0, 0.12)
    for i, length in enumerate(rng.uniform(0.75, 1.0, 4) * np.array([0.8, 0.95, 1.0, 0.88])):
        x = box[0] + finger_w * (i + 0.5) * 1.05
        angle = (i - 1.5) * spread
        tip = (x + np.sin(angle) * length * s * 0.3, palm_top - np.cos(angle) * length * s * 0.3)
        _capsule(draw, (x, palm_top + finger_w), tip, finger_w * 1.08, edge)
        _capsule(draw, (x, palm_top + finger_w), tip, finger_w * 0.92, base)
    side = rng.choice([-1.0, 1.0])
    root = (cx + side * palm_w * 0.42, palm_top + palm_h * 0.55)
    tip = (root[0] + side * s * 0.16, root[1] - s * rng.uniform(0.06, 0.14))
    _capsule(draw, root, tip, finger_w * 1.15, edge)
    _capsule(draw, root, tip, finger_w * 1.0, base)
    return _finish(canvas, rng)


def _object(rng: np.random.Generator, which: str, size: int = 256) -> np.ndarray:
    s = size * 2
    canvas = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    color = tuple(int(v) for v in rng.integers(30, 230, 3)) + (255,)
    dark = tuple(int(v * 0.6) for v in color[:3]) + (255,)
    if which == "phone":
        box = (s * 0.3, s * 0.1, s * 0.7, s * 0.9)
        draw.rounded_rectangle(box, radius=int(s * 0.05), fill=(25, 25, 30, 255))
        screen = (s * 0.33, s * 0.16, s * 0.67, s * 0.84)
        draw.rounded_rectangle(screen, radius=int(s * 0.02), fill=(60, 70, 90, 255))
    elif which == "cup":
        draw.ellipse((s * 0.58, s * 0.35, s * 0.85, s * 0.65), outline=color, width=int(s * 0.05))
        draw.rounded_rectangle(
            (s * 0.2, s * 0.25, s * 0.66, s * 0.8), radius=int(s * 0.05), fill=color
        )
        draw.ellipse((s * 0.2, s * 0.21, s * 0.66, s * 0.31), fill=dark)
    elif which == "ball":
        draw.ellipse((s * 0.15, s * 0.15, s * 0.85, s * 0.85), fill=color)
        draw.arc((s * 0.15, s * 0.3, s * 0.85, s * 0.7), 0, 180, fill=dark, width=int(s * 0.02))
    elif which == "book":
        draw.rectangle((s * 0.2, s * 0.12, s * 0.8, s * 0.88), fill=color)
        draw.rectangle((s * 0.2, s * 0.12, s * 0.28, s * 0.88), fill=dark)
        draw.rectangle((s * 0.3, s * 0.3, s * 0.74, s * 0.38), fill=(235, 230, 215, 255))
    elif which == "microphone":
        _capsule(draw, (s * 0.5, s * 0.35), (s * 0.5, s * 0.9), s * 0.12, (20, 20, 20, 255))
        draw.ellipse((s * 0.36, s * 0.1, s * 0.64, s * 0.38), fill=(150, 150, 155, 255))
    else:
        raise ValueError(f"unknown object {which!r}")
    return _finish(canvas, rng, shade=0.2)


STARTER_OBJECTS = ("phone", "cup", "ball", "book", "microphone")


def starter_occluders(seed: int = 0, hands: int = 6, size: int = 256) -> list[Occluder]:
    """A procedural starter set: `hands` hand-like shapes and one of each STARTER_OBJECTS."""
    rng = np.random.default_rng(seed)
    out = [
        Occluder(name=f"starter_hand_{i}", rgba=procedural_hand(rng, size), kind="hand")
        for i in range(hands)
    ]
    out += [
        Occluder(name=f"starter_{o}", rgba=_object(rng, o, size), kind="object")
        for o in STARTER_OBJECTS
    ]
    return out
