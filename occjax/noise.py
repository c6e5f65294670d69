"""The generator's per-layer noise maps as optimised variables (NVlabs `projector.py`'s noise
regularisation, `InvertConfig.noise_reg_weight`).

A StyleGAN2 generator adds a fixed noise map per synthesis layer (`buffers/.../noise`, [1,h,w,1],
scaled by the layer's learned `noise_strength`). With a nonzero noise weight, each problem gets its
own copy of every map, optimised by the same Adam step as its code; in the engine's state they are
one flat array [B, 1, T] (T = the maps' pixels, in the order of `layout`), so that the per-problem
hyper-parameters [B, 1, 1] broadcast over them as over the codes [B, L, D]. The synthesis sees them
as [B, h, w, 1] buffers in place of the shared [1, h, w, 1] ones (no change to the network).

The penalty is the projector's: for every map, at every scale down to 8x8 (2x2 average pooling),
the squared mean of the map times itself shifted by one pixel along x, and along y; after every
step each optimised map is renormalised to zero mean and unit variance.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
Layout = tuple[tuple[tuple[str, ...], int, int], ...]  # ((buffer path under "buffers", h, w), ...)


def layout(gen_variables) -> Layout:
    """Every noise map of a generator's variables: its path under "buffers", height and width
    (empty for a generator without noise, e.g. the DCGAN)."""
    bufs = gen_variables.get("buffers", {}) if hasattr(gen_variables, "get") else {}
    out = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(bufs)[0]:
        keys = tuple(str(getattr(k, "key", k)) for k in path)
        if keys and keys[-1] == "noise" and len(leaf.shape) == 4 and leaf.shape[0] == 1:
            out.append((keys, int(leaf.shape[1]), int(leaf.shape[2])))
    return tuple(out)


def unsupported(models) -> str | None:
    """Why the model's generator has no noise to optimise, or None."""
    g = models.net("generator")
    if getattr(g.module, "zero_noise", False):
        return f"the model {models.name}'s {models.family} generator runs with zero noise"
    if not layout(g.variables):
        return f"the {models.family} generator of {models.name} has no noise inputs"
    return None


def initial(gen_variables, b: int) -> np.ndarray:
    """The generator's own noise maps, one copy per problem, flat: [B, 1, T] float32."""
    lay = layout(gen_variables)
    flat = np.concatenate(
        [np.asarray(_get(gen_variables["buffers"], k)).reshape(-1) for k, _, _ in lay]
    )
    return np.ascontiguousarray(np.broadcast_to(flat.astype(np.float32), (b, 1, flat.size)))


def fixed(gen_variables, b: int) -> dict[str, np.ndarray]:
    """The generator's own maps for b problems, in `InvertResult.noise`'s form (`as_dict`)."""
    return as_dict(initial(gen_variables, b), layout(gen_variables))


def split(flat: Array, lay: Layout) -> list[Array]:
    """[B, 1, T] -> the maps [B, h, w] in layout order."""
    out, o = [], 0
    for _, h, w in lay:
        out.append(flat[:, 0, o : o + h * w].reshape(-1, h, w))
        o += h * w
    return out


def join(maps: list[Array]) -> Array:
    """The maps [B, h, w] -> [B, 1, T]."""
    return jnp.concatenate([m.reshape(m.shape[0], 1, -1) for m in maps], axis=2)


def substitute(gen_variables, flat: Array, lay: Layout):
    """The generator's variables with each noise buffer replaced by the problems' maps [B,h,w,1]."""
    bufs = gen_variables["buffers"]
    for (keys, _, _), m in zip(lay, split(flat, lay)):
        bufs = _set(bufs, keys, m[..., None])
    return {**gen_variables, "buffers": bufs}


def regularizer(maps: list[Array]) -> Array:
    """NVlabs projector's noise regularisation per problem [B]: sum over maps and scales (halved by
    2x2 average pooling while larger than 8 pixels) of mean(n * roll(n, 1, x))^2 +
    mean(n * roll(n, 1, y))^2."""
    total = 0.0
    for n in maps:
        while True:
            total = total + jnp.square(jnp.mean(n * jnp.roll(n, 1, axis=2), axis=(1, 2)))
            total = total + jnp.square(jnp.mean(n * jnp.roll(n, 1, axis=1), axis=(1, 2)))
            if n.shape[1] <= 8:
                break
            b, h, w = n.shape
            n = n.reshape(b, h // 2, 2, w // 2, 2).mean(axis=(2, 4))
    return total


def normalise(maps: list[Array]) -> list[Array]:
    """Each map [B, h, w] shifted to zero mean and scaled to unit variance, per problem."""
    out = []
    for n in maps:
        n = n - jnp.mean(n, axis=(1, 2), keepdims=True)
        out.append(n * jax.lax.rsqrt(jnp.mean(jnp.square(n), axis=(1, 2), keepdims=True)))
    return out


def as_dict(flat: np.ndarray, lay: Layout) -> dict[str, np.ndarray]:
    """{layer path ("synthesis/b8_conv0"): [B, h, w]} of a flat [B, 1, T] (the result's form)."""
    return {"/".join(k[:-1]): np.asarray(m) for (k, _, _), m in zip(lay, split(flat, lay))}


def _get(tree, keys):
    for k in keys:
        tree = tree[k]
    return tree


def _set(tree, keys, value):
    if not keys:
        return value
    return {**tree, keys[0]: _set(tree[keys[0]], keys[1:], value)}


__all__ = [
    "layout", "unsupported", "initial", "fixed", "split", "join", "substitute", "regularizer",
    "normalise", "as_dict",
]  # fmt: skip
