"""The terms of the inversion objective (the paper's equations 2 to 7, and idinvert's), per sample.

Every function takes a batch and returns one value per sample [B], so that the gradient of their sum
with respect to the codes is each problem's own gradient. Images are NHWC; masks [B, H, W, 1] with
1 = occluded.

Mask modes for the reconstruction and perceptual terms:
- "none": the whole image (the paper's equations 3/4 as written; what the paper's code effectively
  does, since its mask has no effect);
- "visible": occluded pixels excluded: squared error averaged over the visible pixels, perceptual
  features of images whose occluded pixels are set to 0 (as idinvert's diffuse does);
- "visible_all": idinvert `diffuse` exactly: occluded pixels zeroed, but averaged over ALL pixels;
- "robust": no mask needed (the occluder is what the model cannot explain): robust GAN inversion
  (RGI, Yang et al., ICLR 2023) with its sparse outlier map solved per pixel in closed form. For a
  pixel's residual vector r (over the colour channels) and an outlier o penalised by 2 delta |o|,
  min_o |r - o|^2 + 2 delta |o| is |r|^2 for |r| <= delta and 2 delta |r| - delta^2 beyond (Huber
  on |r|), with o = 0 exactly where |r| <= delta: the occluded pixels are where |r| > delta. With a
  mask, its occluded pixels are excluded as in "visible" and the robust cost covers the rest (an
  estimated mask's missed occluder pixels then cost little).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array
MASK_MODES = ("none", "visible", "visible_all", "robust")
PRIOR_NORMS = ("whole", "per_layer")
DISC_LOSSES = ("neg_score", "softplus_neg", "paper_code")


def residual_norm(x: Array, x_rec: Array) -> Array:
    """Per-pixel residual length over the channels: [B,H,W,3] x2 -> [B,H,W,1]."""
    sq = jnp.sum(jnp.square(x - x_rec), axis=-1, keepdims=True)
    return jnp.sqrt(jnp.where(sq > 0, sq, 1.0)) * (sq > 0)  # a safe gradient at 0


def robust(r: Array, delta: Array) -> Array:
    """RGI's per-pixel cost with the outlier solved: r^2 up to delta, 2 delta r - delta^2 beyond.
    r [B,H,W,1] (>= 0), delta [B]."""
    d = delta[:, None, None, None]
    return jnp.where(r <= d, jnp.square(r), 2 * d * r - jnp.square(d))


def reconstruction(
    x: Array, x_rec: Array, visible: Array, mode: str, delta: Array | None = None
) -> Array:
    """Mean squared error per sample (or RGI's robust cost, "robust", needing `delta` [B]).
    x, x_rec [B,H,W,3]; visible [B,H,W,1] (1 = visible)."""
    if mode not in MASK_MODES:
        raise ValueError(f"mask_mode must be one of {MASK_MODES}, got {mode!r}")
    if mode == "none":
        return jnp.mean(jnp.square(x - x_rec), axis=(1, 2, 3))
    if mode == "visible_all":
        return jnp.mean(jnp.square((x - x_rec) * visible), axis=(1, 2, 3))
    if mode == "robust":  # per channel, as the MSE: the cost of a pixel over its 3 values
        num = jnp.sum(robust(residual_norm(x, x_rec), delta) * visible, axis=(1, 2, 3))
    else:
        num = jnp.sum(jnp.square(x - x_rec) * visible, axis=(1, 2, 3))
    den = jnp.maximum(jnp.sum(visible, axis=(1, 2, 3)) * x.shape[-1], 1.0)
    return num / den


def perceptual_input(x: Array, visible: Array, mode: str) -> Array:
    """The image that enters VGG: occluded pixels set to 0 (mid-grey) unless mode is "none"."""
    return x if mode == "none" else x * visible


def encoder_reg(z: Array, z_enc: Array) -> Array:
    """idinvert's domain regulariser mean((z - E(G(z)))^2), differentiated through both. [B,L,D]."""
    return jnp.mean(jnp.square(z - z_enc), axis=(1, 2))


def gaussian_prior(z: Array, refs: Array, valid: Array, sigma: Array, norm: str) -> Array:
    """-sum_i exp(-||z_ref_i - z|| / (2 sigma^2)) over the valid references (norm not squared).

    z [B,L,D]; refs [B,R,L,D] (padded); valid [B,R] (1 = real reference); sigma [B].
    "whole": one norm over the whole W+ code (equation 5); "per_layer": one norm per W+ layer,
    summed over layers and references (the paper's code). No valid reference: the term is 0.
    """
    if norm not in PRIOR_NORMS:
        raise ValueError(f"prior_norm must be one of {PRIOR_NORMS}, got {norm!r}")
    diff = refs - z[:, None]  # [B,R,L,D]
    s = (2.0 * jnp.square(sigma))[:, None]  # [B,1]
    if norm == "whole":
        # sqrt with a safe gradient at 0 (a code equal to a reference)
        sq = jnp.sum(jnp.square(diff), axis=(2, 3))
        d = jnp.sqrt(jnp.where(sq > 0, sq, 1.0)) * (sq > 0)
        k = jnp.exp(-d / s)  # [B,R]
    elif norm == "per_layer":
        sq = jnp.sum(jnp.square(diff), axis=3)  # [B,R,L]
        d = jnp.sqrt(jnp.where(sq > 0, sq, 1.0)) * (sq > 0)
        k = jnp.sum(jnp.exp(-d / s[..., None]), axis=2)  # [B,R]
    return -jnp.sum(k * valid, axis=1)


def adaptive_weight(occluded_pct: Array, scale: Array, shift: Array) -> Array:
    """lambda3 = 2 * sigmoid(k * (p - x0)), p in percent (0..100). [B]."""
    return 2.0 * jax.nn.sigmoid(scale * (occluded_pct - shift))


def adversarial(score: Array, kind: str) -> Array:
    """Discriminator term from raw scores [B]: -D (equation 6), softplus(-D) (non-saturating), or
    softplus(D) (the sign the paper's code uses, which pushes toward "fake")."""
    if kind == "neg_score":
        return -score
    if kind == "softplus_neg":
        return jax.nn.softplus(-score)
    if kind == "paper_code":
        return jax.nn.softplus(score)
    raise ValueError(f"disc_loss must be one of {DISC_LOSSES}, got {kind!r}")
