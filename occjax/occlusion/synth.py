"""Paste an occluder onto an aligned face: landmark-guided position, scale, rotation, shear, edge blur.

After Voo et al., "Delving into high-quality synthetic face occlusion segmentation datasets"
(CVPRW 2022), without their GPU colour transfer: a hand or object cut-out is centred (by its alpha
centroid) on a random landmark plus jitter, stretched, sheared, rotated, possibly mirrored, its alpha
edge blurred, then alpha-composited. Its scale is solved so that the occluded percentage in the
paper's box hits a target drawn inside the requested size band (`measure.SIZE_BANDS`). A surgical
mask ("mask" kind) is instead warped piecewise-affinely over the nose and mouth: its top edge runs
from the cheek (landmark 1) over the nose bridge to the other cheek (15), its bottom edge follows the
jaw (3-13) below the chin; its random height and drop are retried until the band is met.

The binary mask marks every pixel where the occluder's final alpha exceeds `mask_threshold`, so the
pixels left outside it are at least 90 % (default) the clean face.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageFilter

from occjax.occlusion.measure import (
    SIZE_BANDS,
    SIZES,
    box_slices,
    occluded_percentage,
    size_category,
)
from occjax.occlusion.occluders import Occluder


class OcclusionError(RuntimeError):
    """The requested occlusion (e.g. its size band) could not be produced."""


@dataclass(frozen=True)
class SynthConfig:
    """Random ranges of the occlusion synthesis; lengths are in pixels at 256 px (scaled)."""

    rotation_deg: float = 35.0  # uniform in +-
    shear: float = 0.2  # x-shear factor, uniform in +-
    stretch: float = 0.15  # aspect jitter: x by e^u, y by e^-u, u uniform in +-
    blur_sigma: tuple[float, float] = (0.6, 1.8)  # edge blur, uniform
    anchors: tuple[int, ...] = tuple(range(17, 68))  # brows, nose, eyes, mouth
    anchor_jitter: float = 0.04  # position noise (std) as a fraction of the image size
    mask_threshold: float = 0.1  # final alpha above this is "occluded"
    band_margin: float = 0.08  # target drawn in [lo + m (hi - lo), hi - m (hi - lo)]
    max_tries: int = 30
    mask_tries: int = 6  # a surgical mask's size varies little: give up sooner
    scale_iters: int = 10


@dataclass(frozen=True)
class OcclusionMeta:
    """What was pasted where. position: (x, y) px of the occluder centre; scale: its height / H."""

    occluder: str
    kind: str
    size: str | None
    target_percent: float | None  # None for a fitted surgical mask
    percent_box: float
    percent_image: float
    position: tuple[float, float]
    anchor: int  # landmark index, -1 for a fitted surgical mask
    scale: float
    rotation_deg: float
    shear: float
    flip: bool
    blur_sigma: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Occlusion:
    """image [H, W, 3] uint8 occluded photo, mask [H, W] uint8 (255 = occluded), meta."""

    image: np.ndarray
    mask: np.ndarray
    meta: OcclusionMeta


def _blur(alpha: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a float [H, W] alpha in [0, 1]."""
    img = Image.fromarray(np.uint8(np.clip(np.rint(alpha * 255), 0, 255)))
    return np.asarray(img.filter(ImageFilter.GaussianBlur(sigma)), np.float32) / 255.0


def affine_warp_rgba(
    rgba: np.ndarray, matrix: np.ndarray, out_hw: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Warp [h, w, 4] uint8 by `matrix` [3, 3] (source -> output pixel coordinates, centres at
    integers) into out_hw. Returns colour [H, W, 3] float 0-255 and alpha [H, W] float 0-1."""
    matrix = np.asarray(matrix, np.float64)
    src = rgba
    scale = math.sqrt(abs(np.linalg.det(matrix[:2, :2])))
    if scale < 0.5:  # pre-shrink so the bilinear warp does not alias
        f = scale * 2
        h, w = rgba.shape[:2]
        size = (max(2, round(w * f)), max(2, round(h * f)))
        src = np.asarray(Image.fromarray(rgba).resize(size, Image.Resampling.LANCZOS))
        sx, sy = size[0] / w, size[1] / h  # continuous coordinates scale exactly
        pre = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]])
        matrix = matrix @ np.linalg.inv(pre)
    inv = np.linalg.inv(matrix)  # output -> source; to continuous coordinates (+0.5)
    a, t = inv[:2, :2], inv[:2, 2]
    tc = t + 0.5 - a @ [0.5, 0.5]
    data = (a[0, 0], a[0, 1], tc[0], a[1, 0], a[1, 1], tc[1])
    alpha = src[..., 3:4].astype(np.float32) / 255.0
    prem = np.uint8(np.rint(src[..., :3] * alpha))
    size = (out_hw[1], out_hw[0])
    bil = Image.Resampling.BILINEAR
    wp = Image.fromarray(prem).transform(size, Image.Transform.AFFINE, data, bil)
    wa = Image.fromarray(src[..., 3]).transform(size, Image.Transform.AFFINE, data, bil)
    wa = np.asarray(wa, np.float32) / 255.0
    color = np.asarray(wp, np.float32) / np.maximum(wa, 1e-3)[..., None]
    return np.clip(color, 0, 255), wa


def warp_piecewise_affine(
    src: np.ndarray, src_pts: np.ndarray, dst_pts: np.ndarray, tris: np.ndarray, out_hw
) -> np.ndarray:
    """Map src [h, w, C] float through triangles `tris` [T, 3] of matching point sets [N, 2]
    (source / output (x, y), centres at integers). Returns [H, W, C] float, 0 outside."""
    h_out, w_out = out_hw
    out = np.zeros((h_out, w_out, src.shape[2]), np.float32)
    h, w = src.shape[:2]
    for tri in tris:
        d, s = dst_pts[tri], src_pts[tri]
        x0, y0 = np.maximum(np.floor(d.min(axis=0)).astype(int), 0)
        x1, y1 = np.minimum(np.ceil(d.max(axis=0)).astype(int) + 1, [w_out, h_out])
        if x1 <= x0 or y1 <= y0:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        m = np.linalg.inv(
            np.array([[d[0, 0], d[1, 0], d[2, 0]], [d[0, 1], d[1, 1], d[2, 1]], [1, 1, 1]])
        )
        bary = np.einsum("ij,jhw->ihw", m, np.stack([xx, yy, np.ones_like(xx)]).astype(np.float64))
        inside = np.all(bary >= -1e-6, axis=0)
        if not inside.any():
            continue
        sx = np.clip(np.einsum("i,ihw->hw", s[:, 0], bary)[inside], 0, w - 1)
        sy = np.clip(np.einsum("i,ihw->hw", s[:, 1], bary)[inside], 0, h - 1)
        ix, iy = np.minimum(sx.astype(int), w - 2), np.minimum(sy.astype(int), h - 2)
        fx, fy = (sx - ix)[:, None], (sy - iy)[:, None]
        val = (src[iy, ix] * (1 - fx) + src[iy, ix + 1] * fx) * (1 - fy)
        val += (src[iy + 1, ix] * (1 - fx) + src[iy + 1, ix + 1] * fx) * fy
        out[yy[inside], xx[inside]] = val
    return out


def _band_target(size: str, rng: np.random.Generator, margin: float) -> float:
    lo, hi = SIZE_BANDS[size]
    return float(rng.uniform(lo + margin * (hi - lo), hi - margin * (hi - lo)))


def _free_placement(face, lm, occ: Occluder, target: float, rng, cfg: SynthConfig):
    """One try for a hand/object: random pose, then solve the scale for the target percentage."""
    h, w = face.shape[:2]
    k = h / 256.0
    anchor = int(rng.choice(cfg.anchors))
    pos = lm[anchor] + rng.normal(0.0, cfg.anchor_jitter * h, 2)
    theta = math.radians(rng.uniform(-cfg.rotation_deg, cfg.rotation_deg))
    shear = float(rng.uniform(-cfg.shear, cfg.shear))
    u = float(rng.uniform(-cfg.stretch, cfg.stretch))
    flip = bool(rng.random() < 0.5)
    sigma = float(rng.uniform(*cfg.blur_sigma)) * k
    a = occ.rgba[..., 3].astype(np.float64)
    ys, xs = np.nonzero(a > 0)
    wts = a[ys, xs]
    centre = np.array([(xs * wts).sum(), (ys * wts).sum()]) / wts.sum()
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    lin = rot @ np.array([[1.0, shear], [0.0, 1.0]]) @ np.diag([math.exp(u), math.exp(-u)])
    lin = lin @ np.diag([-1.0 if flip else 1.0, 1.0])
    rows, cols = box_slices(h, w)
    box_px = (rows.stop - rows.start) * (cols.stop - cols.start)
    s = math.sqrt(target / 100.0 * box_px / (a.sum() / 255.0))

    def render(scale):
        m = np.eye(3)
        m[:2, :2] = lin * scale
        m[:2, 2] = pos - m[:2, :2] @ centre
        color, alpha = affine_warp_rgba(occ.rgba, m, (h, w))
        alpha = _blur(alpha, sigma)
        return color, alpha, occluded_percentage(alpha > cfg.mask_threshold, "box")

    for _ in range(cfg.scale_iters):
        color, alpha, pct = render(s)
        if abs(pct - target) <= 0.05 * target:
            break
        s *= float(np.clip(math.sqrt(target / max(pct, 0.05)), 0.5, 2.0))
    extra = dict(anchor=anchor, position=(float(pos[0]), float(pos[1])), flip=flip, shear=shear)
    extra.update(rotation_deg=math.degrees(theta), blur_sigma=sigma)
    extra["scale"] = s * occ.rgba.shape[0] / h
    return color, alpha, pct, extra


def surgical_mask_grid(lm: np.ndarray, height: float, drop: float, n: int = 9) -> np.ndarray:
    """[3, n, 2] output points (top, middle, bottom rows) of a surgical mask on [68, 2] landmarks.

    height in [0, 1]: top edge at the nose tip (30) .. bridge top (27); drop: bottom edge pushed
    below the jaw by this fraction of the nose-bridge-to-chin distance.
    """
    face_h = float(np.hypot(*(lm[8] - lm[27])))
    nose = lm[30] + height * (lm[27] - lm[30])
    p0, p2 = lm[1], lm[15]
    ctrl = 2 * nose - 0.5 * (p0 + p2)
    t = np.linspace(0, 1, n)[:, None]
    top = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * ctrl + t**2 * p2
    jaw = lm[3:14]
    seg = np.hypot(*np.diff(jaw, axis=0).T)
    arc = np.concatenate([[0], np.cumsum(seg)])
    pos = np.linspace(0, arc[-1], n)
    bottom = np.stack([np.interp(pos, arc, jaw[:, 0]), np.interp(pos, arc, jaw[:, 1])], axis=1)
    centre = lm[27:36].mean(axis=0)
    out = bottom - centre
    bottom = bottom + out / np.maximum(np.hypot(*out.T), 1e-9)[:, None] * drop * face_h
    mid = (top + bottom) / 2 + np.array([0.0, 0.04 * face_h])
    return np.stack([top, mid, bottom])


def _grid_triangles(rows: int, cols: int) -> np.ndarray:
    tris = []
    for r in range(rows - 1):
        for c in range(cols - 1):
            a, b = r * cols + c, r * cols + c + 1
            d, e = (r + 1) * cols + c, (r + 1) * cols + c + 1
            tris += [(a, b, e), (a, e, d)]
    return np.array(tris)


def _mask_placement(face, lm, occ: Occluder, rng, cfg: SynthConfig):
    h, w = face.shape[:2]
    height, drop = float(rng.uniform(0.35, 0.85)), float(rng.uniform(0.0, 0.12))
    grid = surgical_mask_grid(lm, height, drop)
    rows, cols = grid.shape[:2]
    th, tw = occ.rgba.shape[:2]
    sx, sy = np.meshgrid(np.linspace(0, tw - 1, cols), np.linspace(0, th - 1, rows))
    src_pts = np.stack([sx.ravel(), sy.ravel()], axis=1)
    rgba = occ.rgba.astype(np.float32)
    rgba[..., :3] *= rgba[..., 3:] / 255.0
    out = warp_piecewise_affine(
        rgba, src_pts, grid.reshape(-1, 2), _grid_triangles(rows, cols), (h, w)
    )
    sigma = float(rng.uniform(*cfg.blur_sigma)) * h / 256.0
    alpha = _blur(out[..., 3] / 255.0, sigma)
    color = np.clip(out[..., :3] / np.maximum(out[..., 3:] / 255.0, 1e-3), 0, 255)
    pct = occluded_percentage(alpha > cfg.mask_threshold, "box")
    c = grid.reshape(-1, 2).mean(axis=0)
    extra = dict(anchor=-1, position=(float(c[0]), float(c[1])), flip=False, shear=0.0)
    extra.update(rotation_deg=0.0, blur_sigma=sigma, scale=float(np.ptp(grid[..., 1])) / h)
    return color, alpha, pct, extra


def occlude(
    face: np.ndarray,
    landmarks: np.ndarray,
    occluder: Occluder,
    rng: np.random.Generator,
    size: str | None = None,
    config: SynthConfig = SynthConfig(),
) -> Occlusion:
    """Occlude an aligned face [H, W, 3] uint8 (landmarks [68, 2] in its pixels) with `occluder`.

    size: "small" / "medium" / "large" (the box percentage must land in that band), or None for a
    band drawn at random. Raises OcclusionError after config.max_tries failed tries
    (config.mask_tries for a surgical mask).
    """
    face = np.asarray(face)
    lm = np.asarray(landmarks, np.float64)
    if size is None:
        size = SIZES[int(rng.integers(len(SIZES)))]
    if size not in SIZE_BANDS:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    tries = config.mask_tries if occluder.kind == "mask" else config.max_tries
    for _ in range(tries):
        if occluder.kind == "mask":
            target = None
            color, alpha, pct, extra = _mask_placement(face, lm, occluder, rng, config)
        else:
            target = _band_target(size, rng, config.band_margin)
            color, alpha, pct, extra = _free_placement(face, lm, occluder, target, rng, config)
        if size_category(pct) == size:
            break
    else:
        raise OcclusionError(
            f"could not occlude {size} ({SIZE_BANDS[size]} % of the box) with {occluder.name!r} "
            f"({occluder.kind}) in {tries} tries; try another occluder"
        )
    out = face.astype(np.float32) * (1 - alpha[..., None]) + color * alpha[..., None]
    mask = np.where(alpha > config.mask_threshold, 255, 0).astype(np.uint8)
    meta = OcclusionMeta(
        occluder=occluder.name,
        kind=occluder.kind,
        size=size,
        target_percent=target,
        percent_box=occluded_percentage(mask, "box"),
        percent_image=occluded_percentage(mask, "image"),
        **extra,
    )
    return Occlusion(image=np.uint8(np.clip(np.rint(out), 0, 255)), mask=mask, meta=meta)


def occlude_from_pool(
    face: np.ndarray,
    landmarks: np.ndarray,
    pool: list[Occluder],
    rng: np.random.Generator,
    size: str,
    tries: int,
) -> Occlusion | None:
    """`occlude` with an occluder drawn from `pool`, drawn again (up to `tries` times) when one
    cannot reach the size band; None if none did."""
    for _ in range(tries):
        occluder = pool[int(rng.integers(len(pool)))]
        try:
            return occlude(face, landmarks, occluder, rng, size)
        except OcclusionError:
            continue
    return None
