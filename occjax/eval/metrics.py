"""Per-image quality metrics for occlusion removal: PSNR, SSIM, LPIPS (global, local, visible), landmarks.

Conventions (every function here):
  images  float [N, H, W, 3] (NHWC, RGB) in [-1, 1] (the generator's and lpips' range);
          `from_uint8` converts uint8 photos; NCHW arrays: `jnp.moveaxis(x, 1, -1)` first.
  masks   [N, H, W], 1 (or True, or > 0.5) = occluded pixel, 0 = visible.
  output  one value per image, [N] float32; NaN where the metric is undefined (empty mask region).

Definitions:
  psnr(a, b)        10 log10(1 / MSE) on images mapped to [0, 1] and clipped there (= 8-bit PSNR with
                    peak 255 up to quantisation), MSE over all pixels and channels (dm-pix).
  ssim(a, b)        dm-pix SSIM on [0, 1] images: Gaussian window 11 px, sigma 1.5, K1 .01, K2 .03,
                    "valid" filtering, mean of the SSIM map over pixels and channels (= scikit-image
                    structural_similarity(gaussian_weights=True, use_sample_covariance=False,
                    data_range=1, channel_axis=-1)).
  masked_psnr       PSNR whose MSE is taken only over the pixels where mask > 0.5 (all channels).
  local_lpips       (headline, "local LPIPS") the LPIPS spatial map (lpips spatial=True, at input
                    resolution) averaged over the mask's pixels.
  local_lpips_crop  (variant) the mask's bounding box [y0, y1) x [x0, x1) is cut from both images and
                    resampled to crop_size x crop_size (default 64, the patch size LPIPS was trained
                    on; the trunks' minimum inputs are 16 px VGG, 31 px AlexNet) with an antialiased
                    bilinear filter (jax.image.scale_and_translate), then plain LPIPS.
  visible_psnr / visible_lpips   the same with the complement of the mask, between the result and
                    the occluded input: for data without ground truth (fidelity to what was visible).
  landmark_distance mean over the 68 points of the Euclidean distance between two landmark sets, in
                    pixels of a `ref_size` (256) image: distances are scaled by ref_size / W.
"""

from __future__ import annotations

import dm_pix
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

CROP_SIZE = 64


def from_uint8(x) -> Array:
    """uint8 [..., 3] in [0, 255] -> float32 in [-1, 1]."""
    return jnp.asarray(x, jnp.float32) / 127.5 - 1.0


def to_uint8(x) -> np.ndarray:
    """float in [-1, 1] -> uint8 in [0, 255] (rounded, clipped)."""
    return np.asarray(np.clip(np.round((np.asarray(x) + 1.0) * 127.5), 0, 255), np.uint8)


def from_nchw(x) -> Array:
    """Images at occjax's boundary, NCHW [N,3,H,W] in [-1, 1] (numpy), as the metrics take them:
    NHWC float32, clipped to [-1, 1]."""
    return jnp.moveaxis(jnp.asarray(np.clip(x, -1, 1), jnp.float32), 1, -1)


def _unit(x) -> Array:
    return jnp.clip((jnp.asarray(x, jnp.float32) + 1.0) / 2.0, 0.0, 1.0)


@jax.jit
def psnr(a: Array, b: Array) -> Array:
    """PSNR in dB, [N,H,W,3] x2 in [-1,1] -> [N] (inf for identical images)."""
    return dm_pix.psnr(_unit(a), _unit(b))


@jax.jit
def ssim(a: Array, b: Array) -> Array:
    """SSIM (Gaussian 11 px, sigma 1.5), [N,H,W,3] x2 in [-1,1] -> [N]."""
    return dm_pix.ssim(_unit(a), _unit(b), max_val=1.0, filter_size=11, filter_sigma=1.5)


def _weights(mask: Array) -> Array:
    return (jnp.asarray(mask, jnp.float32) > 0.5).astype(jnp.float32)


@jax.jit
def masked_mean(values: Array, mask: Array) -> Array:
    """Mean of values [N,H,W] over the pixels where mask [N,H,W] > 0.5 -> [N] (NaN if none)."""
    w = _weights(mask)
    n = jnp.sum(w, axis=(1, 2))
    return jnp.where(n > 0, jnp.sum(values * w, axis=(1, 2)) / jnp.maximum(n, 1.0), jnp.nan)


@jax.jit
def masked_psnr(a: Array, b: Array, mask: Array) -> Array:
    """PSNR over the pixels where mask > 0.5 (all channels), [N,H,W,3] x2, [N,H,W] -> [N]."""
    se = jnp.mean((_unit(a) - _unit(b)) ** 2, axis=-1)
    return -10.0 * jnp.log10(masked_mean(se, mask))


def visible_psnr(result: Array, target: Array, mask: Array) -> Array:
    """PSNR between result and the occluded input over visible pixels (mask <= 0.5) -> [N]."""
    return masked_psnr(result, target, 1.0 - _weights(mask))


def local_lpips(lpips, a: Array, b: Array, mask: Array) -> Array:
    """LPIPS spatial map averaged over the occluded pixels. lpips: an `LPIPS`; -> [N]."""
    return masked_mean(lpips.spatial(a, b), mask)


def visible_lpips(lpips, result: Array, target: Array, mask: Array) -> Array:
    """LPIPS spatial map (result vs occluded input) averaged over visible pixels -> [N]."""
    return masked_mean(lpips.spatial(result, target), 1.0 - _weights(mask))


def mask_bbox(mask) -> tuple[int, int, int, int] | None:
    """Bounding box (y0, y1, x0, x1), end-exclusive, of mask [H,W] > 0.5; None if empty."""
    m = np.asarray(mask) > 0.5
    if not m.any():
        return None
    ys, xs = np.nonzero(m.any(axis=1))[0], np.nonzero(m.any(axis=0))[0]
    return int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1


@jax.jit
def _crop_resize_one(x: Array, box: Array, out: Array) -> Array:
    y0, y1, x0, x1 = box[0], box[1], box[2], box[3]
    size = out.shape[0]
    scale = jnp.stack([size / (y1 - y0), size / (x1 - x0)])
    trans = jnp.stack([-y0, -x0]) * scale
    return jax.image.scale_and_translate(
        x, (size, size, x.shape[-1]), (0, 1), scale, trans, "linear", antialias=True
    )


def crop_resize(x: Array, boxes, size: int = CROP_SIZE) -> Array:
    """Crop box i (y0, y1, x0, x1) of image i and resample it to size x size (antialiased).

    x [N,H,W,C], boxes [N,4] -> [N,size,size,C]. The filter may read up to a pixel (times the
    downscale factor) beyond the box, never outside the image.
    """
    boxes = jnp.asarray(np.asarray(boxes, np.float32))
    dummy = jnp.zeros((size,))
    return jax.vmap(_crop_resize_one, in_axes=(0, 0, None))(jnp.asarray(x), boxes, dummy)


def local_lpips_crop(lpips, a: Array, b: Array, mask: Array, size: int = CROP_SIZE) -> Array:
    """LPIPS of the mask's bounding box resized to size x size in both images -> [N] (NaN if empty)."""
    boxes = [mask_bbox(m) for m in np.asarray(mask)]
    ok = np.array([bx is not None for bx in boxes])
    out = np.full(len(boxes), np.nan, np.float32)
    if ok.any():
        sel = np.nonzero(ok)[0]
        bx = np.array([boxes[i] for i in sel], np.float32)
        ca, cb = (
            crop_resize(jnp.asarray(a)[sel], bx, size),
            crop_resize(jnp.asarray(b)[sel], bx, size),
        )
        out[sel] = np.asarray(lpips(ca, cb))
    return jnp.asarray(out)


def landmark_distance(lm_a, lm_b, scale: float = 1.0) -> np.ndarray | float:
    """Mean Euclidean distance between corresponding landmarks, times `scale`.

    lm_a, lm_b: [68, 2] (-> float) or [N, 68, 2] (-> [N]), (x, y) pixel coordinates.
    """
    a, b = np.asarray(lm_a, np.float64), np.asarray(lm_b, np.float64)
    if a.shape != b.shape or a.shape[-1] != 2:
        raise ValueError(f"landmark sets must both be [..., K, 2], got {a.shape} and {b.shape}")
    d = np.linalg.norm(a - b, axis=-1).mean(axis=-1) * scale
    return float(d) if d.ndim == 0 else d


def landmark_distance_images(a_uint8, b_uint8, backend: str = "dlib", ref_size: int = 256) -> float:
    """Landmark distance between the largest faces of two uint8 [H,W,3] images, in px at ref_size.

    NaN when either image has no detected face. Raises if the backend itself is unavailable.
    """
    from occjax.eval.landmarks import detect_largest

    a, b = np.asarray(a_uint8), np.asarray(b_uint8)
    if a.shape != b.shape:
        raise ValueError(f"images must have the same shape, got {a.shape} and {b.shape}")
    la, lb = detect_largest(a, backend), detect_largest(b, backend)
    if la is None or lb is None:
        return float("nan")
    return landmark_distance(la, lb, scale=ref_size / a.shape[1])
