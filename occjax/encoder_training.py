"""Training occjax's encoder (`occjax.networks.conv_encoder`) on a generator's own samples.

Each step draws fresh codes z ~ N(0, I) (no fixed data set, so nothing to over-fit), makes x = G(z)
with the frozen generator, occludes some of the images (see `occlude`) and fits E to
    |E(x_aug) - z|^2  +  image_weight * |G(E(x_aug)) - x|^2
(means over elements): the code term makes E predict the code, the image term weighs code errors by
what they do to the picture. Adam (optax, warm-up then cosine decay) on the encoder's parameters.

Why occlude: in occjax the encoder's code is where every inversion starts, and the photos it sees
are occluded (hands, objects). Trained on occluded copies whose target is still the clean z, it
learns to ignore the occluder instead of reproducing it. The occluders are random ellipses and
rectangles (one to three per image, 0-40 % of the face) of a flat random colour plus pixel noise.

Deterministic for a given config and seed (the same stream of z and occluders; XLA:CPU is
deterministic for a fixed machine and thread count).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from occjax.networks.conv_encoder import ConvEncoder

Array = jax.Array


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 4000
    """Optimiser steps."""
    batch: int = 32
    """Fresh samples per step."""
    lr: float = 1e-3
    """Peak learning rate (Adam)."""
    warmup: int = 200
    """Linear warm-up steps, then cosine decay to 1 % of the peak."""
    image_weight: float = 1.0
    """Weight of the image term |G(E(x)) - x|^2 (0: the code term only)."""
    occlusion_prob: float = 0.5
    """Fraction of training images that get occluders."""
    widths: tuple[int, ...] = (16, 32, 64, 128, 256)
    """Encoder widths: stem, then one per stride-2 stage down to 4x4."""
    hidden: int = 512
    """Width of the hidden dense layer."""
    seed: int = 0
    """Seed of the encoder's initialisation, the codes and the occluders."""
    eval_every: int = 500
    """Steps between held-out evaluations (logged)."""
    heldout: int = 256
    """Held-out samples (their own seed stream) for the reported PSNRs."""


def occlude(key: Array, x: Array, prob: float) -> tuple[Array, Array]:
    """Random occluders on images x [N,H,W,3] in [-1, 1]: each image, with probability `prob`, gets
    1-3 random ellipses or rectangles (centres in the middle 70 %, half-sizes 5-25 % of the side)
    of one random colour plus N(0, 0.1) pixel noise. Returns (images, masks [N,H,W,1])."""
    n, h, w, _ = x.shape
    k = jax.random.split(key, 7)
    shapes = 3
    yy, xx = jnp.meshgrid(jnp.linspace(0, 1, h), jnp.linspace(0, 1, w), indexing="ij")
    cy = jax.random.uniform(k[0], (n, shapes, 1, 1), minval=0.15, maxval=0.85)
    cx = jax.random.uniform(k[1], (n, shapes, 1, 1), minval=0.15, maxval=0.85)
    ry, rx = jax.random.uniform(k[2], (2, n, shapes, 1, 1), minval=0.05, maxval=0.25)
    dy, dx = (yy - cy) / ry, (xx - cx) / rx
    ellipse = dy**2 + dx**2 <= 1
    rect = (jnp.abs(dy) <= 1) & (jnp.abs(dx) <= 1)
    kind = jax.random.bernoulli(k[3], 0.5, (n, shapes, 1, 1))
    used = jnp.arange(shapes) < jax.random.randint(k[4], (n, 1), 1, shapes + 1)  # [N, S]
    m = jnp.any(jnp.where(kind, ellipse, rect) & used[:, :, None, None], axis=1)  # [N,H,W]
    m = m & jax.random.bernoulli(k[5], prob, (n, 1, 1))
    colour = jax.random.uniform(k[6], (n, 1, 1, 3), minval=-1, maxval=1)
    noise = 0.1 * jax.random.normal(jax.random.fold_in(key, 1), x.shape)
    fill = jnp.clip(colour + noise, -1, 1)
    m = m[..., None].astype(x.dtype)
    return x * (1 - m) + fill * m, m


def encoder_module(cfg: TrainConfig, code_shape: tuple[int, int]) -> ConvEncoder:
    return ConvEncoder(tuple(cfg.widths), cfg.hidden, code_shape[0], code_shape[1])


def psnr(a: Array, b: Array) -> Array:
    """Per-image PSNR in dB of images in [-1, 1] (peak 2, i.e. [0, 1] images)."""
    mse = jnp.mean(jnp.square((a - b) / 2), axis=(1, 2, 3))
    return -10 * jnp.log10(mse)


def train(generator, cfg: TrainConfig, log=print) -> tuple[ConvEncoder, dict, dict]:
    """Train an encoder for `generator` (an occjax `Network`); returns (module, variables, record)."""
    gmod, gvars = generator.module, generator.variables
    code_shape = tuple(gmod.code_shape)
    emod = encoder_module(cfg, code_shape)
    key = jax.random.key(cfg.seed)
    k_init, k_train, k_eval = jax.random.split(key, 3)
    variables = emod.init(k_init, *emod.init_inputs())
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, cfg.lr, cfg.warmup, max(cfg.steps, cfg.warmup + 1), cfg.lr * 0.01
    )
    tx = optax.adam(schedule)
    opt = tx.init(variables["params"])

    def synth(code):
        return gmod.apply(gvars, code, method="synthesis")

    def sample(k, n):
        kz, ka = jax.random.split(k)
        z = jax.random.normal(kz, (n, *code_shape))
        x = synth(z)
        return z, x, ka

    @jax.jit
    def step(params, opt, k):
        z, x, ka = sample(k, cfg.batch)
        x_in, _ = occlude(ka, x, cfg.occlusion_prob)

        def loss_fn(p):
            zp = emod.apply({"params": p}, x_in)
            lz = jnp.mean(jnp.square(zp - z))
            limg = jnp.mean(jnp.square(synth(zp) - x)) if cfg.image_weight else 0.0
            return lz + cfg.image_weight * limg, (lz, limg)

        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt = tx.update(grads, opt, params)
        return optax.apply_updates(params, updates), opt, loss, aux

    heldout = [sample(jax.random.fold_in(k_eval, i), 64) for i in range(-(-cfg.heldout // 64))]

    @jax.jit
    def evaluate_batch(params, z, x, ka):
        zp = emod.apply({"params": params}, x)
        x_occ, m = occlude(ka, x, 1.0)
        zo = emod.apply({"params": params}, x_occ)
        return jnp.mean(jnp.square(zp - z), axis=(1, 2)), psnr(synth(zp), x), psnr(synth(zo), x)

    def evaluate(params) -> dict:
        outs = [evaluate_batch(params, *b) for b in heldout]
        zerr, p, po = (
            np.concatenate([np.asarray(o[i]) for o in outs])[: cfg.heldout] for i in range(3)
        )
        return {"code_mse": float(zerr.mean()), "psnr": float(p.mean()), "psnr_occluded": float(po.mean())}  # fmt: skip

    params, history = variables["params"], []
    t0 = time.perf_counter()
    for i in range(cfg.steps):
        params, opt, loss, (lz, limg) = step(params, opt, jax.random.fold_in(k_train, i))
        if (i + 1) % cfg.eval_every == 0 or i + 1 == cfg.steps:
            ev = evaluate(params)
            ev |= {"step": i + 1, "loss": float(loss), "time_s": round(time.perf_counter() - t0, 1)}
            history.append(ev)
            log(
                f"step {i + 1}/{cfg.steps}  loss {float(loss):.4f} (code {float(lz):.4f}, image "
                f"{float(limg):.4f})  held-out: code mse {ev['code_mse']:.4f}, PSNR {ev['psnr']:.2f} "
                f"dB (occluded input {ev['psnr_occluded']:.2f} dB)  {ev['time_s']:.0f}s"
            )
    record = {
        "training": dataclasses.asdict(cfg),
        "wall_s": round(time.perf_counter() - t0, 1),
        "final": history[-1] if history else {},
        "history": history,
        "jax": jax.__version__,
        "devices": [str(d) for d in jax.devices()],
    }
    return emod, {"params": params}, record


def save(folder: str | Path, module: ConvEncoder, variables: dict, record: dict) -> None:
    """encoder.safetensors (flat float32 variables), encoder.json (config and training record)."""
    from occjax.params import atomic_write_bytes, config_to_json, flatten, save_flat

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    flat = {k: np.asarray(v) for k, v in flatten(variables).items()}
    save_flat(folder / "encoder.safetensors", flat)
    doc = {"family": "conv_encoder", "config": config_to_json(module), **record}
    atomic_write_bytes(folder / "encoder.json", json.dumps(doc, indent=1).encode())
