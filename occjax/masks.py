"""Occlusion masks without a hand-made one: the mask comes from inversion itself.

`estimate_mask` inverts the photos with RGI's robust cost (`mask_mode="robust"`, see
`occjax.losses`): the generator can draw a face but not the hand on it, and the robust cost stops
the inversion from chasing what it cannot draw, so the code stays a face and the occluder is left as
the residual. With reference photos, the Gaussian prior (fixed weight) also holds the code near the
person's own codes. A pixel is occluded where its residual length |x - G(z)| over RGB exceeds
`threshold` (RGI's outlier support is |r| > delta); the map is then cleaned up: an opening removes
isolated pixels, a closing fills small gaps, and components smaller than `min_area` are dropped.
Everything but the component filter is jitted JAX over the whole batch; with `face_region`, the mask
is also limited to the face (dlib's 68 landmarks, where they are found).

The inversion runs in the same compiled, vectorised engine as every other inversion (one batch for
all photos). With `rounds=2` (the default) it inverts again with the first mask (the model's own
preset, visible-pixel mode) and takes the residual of that cleaner fit. The restoration leaves out
a margin around the mask, grown only into pixels of raised residual (`restore_masks`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Array = jax.Array


@dataclass(frozen=True)
class MaskConfig:
    # delta, threshold: chosen on the synthetic benchmark's validation split (faces64, real hands;
    # benchmarks/results/mask_validation*.json): the best mean IoU on medium and large hands with
    # at most 2 % of unoccluded pixels flagged
    delta: float = 0.15
    """RGI's outlier threshold of the robust cost (residual length over RGB, images in [-1, 1])."""
    threshold: float = 0.2
    """Residual length above which a pixel is occluded."""
    prior_weight: float = 1.0
    """Fixed weight of the Gaussian prior when references are given (0: no prior)."""
    sigma: float = 15.0
    """Width of that prior (the restoration's own is the model's; a tighter prior here pulls the
    fit off the photo and raises false positives: benchmarks/results/mask_validation*.json)."""
    steps: int | None = None
    """Adam steps of each round's inversion (None: three quarters of the model's steps, rounded,
    at least 1: 75 on faces64, whose model takes 100). Chosen on the validation split with two
    rounds (benchmarks/results/mask_validation_steps*.json, 8 people, references as codes): mean
    IoU on medium and large hands 0.748 at 75 steps against 0.757 at 100 (0.708 at 50, 0.599 at
    25), unoccluded pixels flagged 0.27 % (0.0 % at 100, 0.7 % at 50, 4.0 % at 25); one photo
    alone took 10.5 s against 15.1-15.5 s at 100 on the shared 2-core machine (load 4-6).
    Restoration with these masks not re-measured."""
    refit_steps: int | None = 40
    """Steps of each later round, started from the previous round's codes (None: a fresh start
    with the first round's steps). Chosen on the validation split after `steps`
    (benchmarks/results/mask_validation_refit.json, idle machine): 75 + 40 from round 1's codes
    gave IoU 0.762 on medium and large hands (0.733 small) and 0.06 % of clean pixels flagged,
    one photo in 3.8 s (references as codes); 75 + 25: 0.711; 75 + 75 from a fresh start: 0.748
    (mask_validation_steps75.json). Round 1 is pixels only; the refit adds the model's perceptual
    term, so its steps cost the most."""
    rounds: int = 2
    """2: invert again with the first mask left out and threshold the residual of that fit (the
    first fit is pulled towards the occluder; the refit is not, so its residual separates hand and
    face better). Chosen on the validation split: restoring with round 2's masks and margin, local
    LPIPS 1.10x the true-mask figure against 1.21x with round 1's (IoU of those masks on medium
    and large hands 0.78 against 0.67), at about twice the time
    (benchmarks/results/mask_validation_downstream_rounds.json); on the test split 1.04x against
    1.22x (benchmarks/results/mask_test16_rounds2.json)."""
    open_px: int = 1
    """Radius of the opening (removes specks)."""
    close_px: int = 2
    """Radius of the closing (fills gaps)."""
    grow_px: int = 0
    """Dilation after the clean-up (the occluder's soft rim leaves a small residual)."""
    margin_px: int = 5
    """Restoring with the estimate (`--mask auto`) leaves out up to this many more pixels around
    it (`MaskEstimate.restore`): the occluder's faint rim is not in the mask (its IoU is best
    without it), but the restoration would fit it."""
    margin_threshold: float = 0.08
    """The margin grows only into pixels whose residual is at least this (0: a plain dilation by
    margin_px): the rim's residual is raised, the face's next to it mostly is not (validation
    medians 0.19 and 0.07), so fewer face pixels are left out for the same share of the hand.
    margin_px and this were chosen with one round on the validation split by the restoration's
    local LPIPS against the true-mask figure, among plain 1 and 2 px margins and 3 px into 0.05 or
    0.1 (benchmarks/results/mask_validation_downstream_margins.json: 1.21x); on the test split
    1.22x against 1.31x for a plain 2 px (benchmarks/results/mask_test16_downstream.json). Not
    chosen again for two rounds."""
    min_area: float = 0.004
    """Components smaller than this fraction of the image are dropped."""
    face_region: bool = False
    """Keep the mask inside the face (dlib landmarks' hull, grown), where landmarks are found."""


@dataclass
class MaskEstimate:
    masks: np.ndarray  # [B, 1, H, W] float32 {0, 1}, 1 = occluded
    residual: np.ndarray  # [B, H, W] residual length of the (last) fit
    images: np.ndarray  # [B, 3, H, W] that fit
    raw: np.ndarray  # [B, H, W] bool, residual > threshold before clean-up
    restore: np.ndarray  # [B, 1, H, W] float32: the masks with their margin, to restore with


def _pool(x: Array, r: int, op) -> Array:
    """Max (or min) over a (2r+1) square around each pixel; x [B,H,W]."""
    init = -jnp.inf if op is lax.max else jnp.inf
    return lax.reduce_window(x, init, op, (1, 2 * r + 1, 2 * r + 1), (1, 1, 1), "SAME")


def dilate(m: Array, r: int) -> Array:
    return _pool(m, r, lax.max) if r > 0 else m


def erode(m: Array, r: int) -> Array:
    return _pool(m, r, lax.min) if r > 0 else m


@partial(jax.jit, static_argnames=("open_px", "close_px", "grow_px"))
def clean_masks(raw: Array, open_px: int, close_px: int, grow_px: int = 0) -> Array:
    """Opening, closing, then a dilation by grow_px, of float masks [B,H,W] in {0, 1}."""
    m = dilate(erode(raw, open_px), open_px)
    return dilate(erode(dilate(m, close_px), close_px), grow_px)


@partial(jax.jit, static_argnames=("steps",))
def grow_into(masks: Array, allowed: Array, steps: int) -> Array:
    """Grow float masks [B,H,W] in {0, 1} by one pixel (8-connected) `steps` times, each time
    only into pixels where `allowed` [B,H,W] is true (hysteresis): the mask's margin."""

    def step(_, m):
        return jnp.maximum(m, dilate(m, 1) * allowed)

    return lax.fori_loop(0, steps, step, masks.astype(jnp.float32))


def restore_masks(masks: np.ndarray, residual: np.ndarray, cfg: MaskConfig) -> np.ndarray:
    """The masks to restore with [B,H,W] bool: masks [B,H,W] with their margin (cfg.margin_px
    grown into residual [B,H,W] >= cfg.margin_threshold)."""
    allowed = jnp.asarray(residual >= cfg.margin_threshold, jnp.float32)
    return np.asarray(grow_into(jnp.asarray(masks, jnp.float32), allowed, cfg.margin_px)) > 0.5


@jax.jit
def residual_length(x: Array, y: Array) -> Array:
    """|x - y| over the channel axis: NCHW [B,3,H,W] x2 -> [B,H,W]."""
    return jnp.sqrt(jnp.sum(jnp.square(x - y), axis=1))


def drop_small(masks: np.ndarray, min_pixels: int) -> np.ndarray:
    """Remove 4-connected components smaller than `min_pixels` from bool masks [B,H,W]."""
    out = masks.copy()
    for b, m in enumerate(masks):
        seen = np.zeros_like(m)
        for y, x in zip(*np.nonzero(m)):
            if seen[y, x]:
                continue
            stack, comp = [(y, x)], []
            seen[y, x] = True
            while stack:
                cy, cx = stack.pop()
                comp.append((cy, cx))
                for ny, nx in ((cy - 1, cx), (cy + 1, cx), (cy, cx - 1), (cy, cx + 1)):
                    if 0 <= ny < m.shape[0] and 0 <= nx < m.shape[1] and m[ny, nx] and not seen[ny, nx]:  # fmt: skip
                        seen[ny, nx] = True
                        stack.append((ny, nx))
            if len(comp) < min_pixels:
                ys, xs = zip(*comp)
                out[b, list(ys), list(xs)] = False
    return out


def face_regions(targets: np.ndarray) -> np.ndarray:
    """[B,H,W] bool: each photo's face (hull of the 68 landmarks, grown by 15 % and upward to the
    forehead), all True where no face is found. Without dlib it raises MissingDependency (one line
    with the fix): a face region asked for is never silently the whole photo."""
    from occjax.deps import MissingDependency
    from occjax.eval.landmarks import detect_largest, missing_dependency
    from occjax.io import to_uint8
    from occjax.occlusion.regions import convex_hull, polygon_mask

    b, _, h, w = targets.shape
    out = np.ones((b, h, w), bool)
    if (why := missing_dependency("dlib")) is not None:
        raise MissingDependency(f"MaskConfig.face_region: {why}")
    from PIL import Image

    for i, t in enumerate(targets):
        up = np.asarray(Image.fromarray(to_uint8(t)).resize((256, 256), Image.LANCZOS))
        lm = detect_largest(up, "dlib")
        if lm is None:
            continue
        lm = lm * np.array([w / 256, h / 256])
        brows = lm[17:27]
        forehead = brows - np.array([0, 0.35 * (lm[8, 1] - brows[:, 1].mean())])
        pts = np.concatenate([lm[:27], forehead])
        c = pts.mean(0)
        out[i] = polygon_mask(convex_hull(c + 1.15 * (pts - c)), (h, w)) > 0
    return out


def estimate_mask(
    models,
    targets,
    references=None,
    config: MaskConfig | None = None,
    *,
    return_details: bool = False,
    reference_cache=None,
    devices=None,
    chunk_size: int | None = None,
    progress: bool = False,
    **options,
):
    """Occlusion masks [B, 1, H, W] float32 in {0, 1} (1 = occluded) of photos [B, 3, H, W].

    `references`: as for `occjax.invert` (a list of B entries: photos, codes or None); with them,
    the robust inversion is held near the person by the Gaussian prior. `config` (a MaskConfig) or
    its fields as keyword options (`threshold=0.35`, ...). `return_details`: a MaskEstimate
    (masks, residual, the fit, the raw thresholded map, the masks to restore with) instead of the
    masks."""
    from occjax import api
    from occjax.options import Options
    from occjax.references import as_codes
    from occjax.validate import as_images

    cfg = dataclasses.replace(config or MaskConfig(), **options)
    targets = as_images(targets, "targets", models.resolution)
    b = targets.shape[0]
    opts = Options(devices, chunk_size, False, bool(progress), reference_cache)
    # round 1's steps (None: 3/4 of the model's; any int, 0 included, that many); the refit's are
    # `refit_steps` from round 1's codes, or these again from a fresh start
    steps = {"steps": mask_steps(models, cfg)}
    warm = cfg.refit_steps is not None
    refit = {"steps": cfg.refit_steps} if warm else steps
    robust = {"mask_mode": "robust", "robust_delta": cfg.delta, "perceptual_weight": 0.0}
    use_prior = cfg.prior_weight > 0 and references is not None
    codes = None
    if use_prior:  # the references' codes once, for both rounds
        ref_steps = models.preset("prior", **steps).reference_steps
        codes = as_codes(models, references, b, ref_steps, opts)
        use_prior = any(len(c) for c in codes)
        codes = codes if use_prior else None
    if use_prior:
        inv = models.preset("prior", prior_weight=cfg.prior_weight, sigma=cfg.sigma, **robust, **steps)  # fmt: skip
    else:
        inv = models.preset("baseline", **robust, **steps)
    kw = dict(devices=devices, chunk_size=chunk_size, progress=progress)
    fit = api.invert(models, targets, None, codes, inv, **kw)
    images = fit.images
    residual = np.asarray(residual_length(jnp.asarray(targets), jnp.asarray(images)))
    raw = residual > cfg.threshold
    # dlib's face region of each photo, found once for every clean-up and the margin
    region = face_regions(targets) if cfg.face_region else None
    masks = _clean(raw, cfg, region)
    again = models.preset("prior" if use_prior else "baseline", **refit)
    for _ in range(cfg.rounds - 1):
        z0 = fit.codes if warm else None
        fit = api.invert(models, targets, masks[:, None], codes, again, init_codes=z0, **kw)
        images = fit.images
        residual = np.asarray(residual_length(jnp.asarray(targets), jnp.asarray(images)))
        raw = residual > cfg.threshold
        masks = _clean(raw, cfg, region)
    out = masks[:, None].astype(np.float32)
    if return_details:
        restore = restore_masks(masks, residual, cfg)
        if region is not None:
            restore &= region
        restore = restore[:, None].astype(np.float32)
        return MaskEstimate(out, residual, images, raw, restore)
    assert out.shape == (b, 1, *targets.shape[2:])
    return out


STEPS_FRACTION = 0.75
"""MaskConfig.steps=None: this share of the model's steps per round (see MaskConfig.steps)."""


def mask_steps(models, cfg: MaskConfig) -> int:
    """Adam steps of each round: cfg.steps, or for None STEPS_FRACTION of the model's (rounded,
    at least 1)."""
    if cfg.steps is not None:
        return cfg.steps
    return max(1, round(STEPS_FRACTION * models.preset("baseline").steps))


def _clean(raw: np.ndarray, cfg: MaskConfig, region: np.ndarray | None) -> np.ndarray:
    """Clean-up of raw masks [B,H,W] bool (morphology, small components dropped), limited to
    `region` [B,H,W] bool (the face, `face_regions`) when given."""
    m = clean_masks(jnp.asarray(raw, jnp.float32), cfg.open_px, cfg.close_px, cfg.grow_px)
    m = np.asarray(m) > 0.5
    m = drop_small(m, max(1, int(round(cfg.min_area * m.shape[1] * m.shape[2]))))
    if region is not None:
        m &= region
    return m


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union per mask pair [B, ...] (1 where both are empty)."""
    a, b = a.reshape(len(a), -1) > 0.5, b.reshape(len(b), -1) > 0.5
    inter, union = (a & b).sum(1), (a | b).sum(1)
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)
