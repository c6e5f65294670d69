"""Small layers shared by the idinvert networks (StyleGAN generator, encoder, VGG16, discriminator).

Internal layout is NHWC with HWIO convolution kernels (the converter puts weights in that layout);
the public API in `occjax.models` converts from and to the reference's NCHW at its boundary.
Every function is pure and works under jit and vmap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Array = jax.Array


def leaky_relu(x: Array, slope: float = 0.2) -> Array:
    return jnp.where(x >= 0, x, x * slope)


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class Kernel:
    """A conv kernel w [kh,kw,I,O] with the kernel of its input gradient precomputed: wt [kh,kw,O,I]
    is w flipped in both spatial dims with in/out swapped. `conv2d` takes either a plain array or a
    Kernel; with a Kernel the backward pass convolves with wt instead of letting autodiff transpose
    w, which XLA:CPU does as a slow copy of the weights in every step (measured: 430 ms of 2.4 s of
    busy time in an ffhq256 baseline step). Built once per inversion by each network's `prepare`.
    """

    w: Array
    wt: Array

    @property
    def shape(self) -> tuple[int, ...]:
        return self.w.shape

    @property
    def dtype(self):
        return self.w.dtype


def prepare_kernel(w: Array) -> Kernel:
    """w [kh,kw,I,O] -> Kernel(w, w flipped with in/out swapped)."""
    return Kernel(w, jnp.transpose(w[::-1, ::-1], (0, 1, 3, 2)))


def prepare_conv_weights(tree):
    """Every 4-D leaf named "weight" of a nested dict as a `Kernel` (the other leaves as they are)."""
    if not isinstance(tree, dict):
        return tree
    return {
        k: prepare_kernel(v)
        if k == "weight" and getattr(v, "ndim", 0) == 4
        else prepare_conv_weights(v)
        for k, v in tree.items()
    }


def _pads(padding) -> tuple[tuple[int, int], tuple[int, int]]:
    if isinstance(padding, int):
        return ((padding, padding), (padding, padding))
    return tuple((int(a), int(b)) for a, b in padding)


def _conv(x: Array, w: Array, stride: int, pad) -> Array:
    return lax.conv_general_dilated(
        x,
        w.astype(x.dtype),
        window_strides=(stride, stride),
        padding=pad,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )


@partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _conv_kernel(x: Array, w: Array, wt: Array, stride: int, pad) -> Array:
    return _conv(x, w, stride, pad)


def _conv_kernel_fwd(x, w, wt, stride, pad):
    return _conv(x, w, stride, pad), (x, w, wt)


def _conv_kernel_bwd(stride, pad, res, g):
    x, w, wt = res
    # input gradient: the output gradient, dilated by the stride and padded, cross-correlated with
    # the flipped, in/out-swapped kernel (what autodiff computes, without transposing w here)
    tpad = []
    for d, k in ((1, w.shape[0]), (2, w.shape[1])):
        lo = k - 1 - pad[d - 1][0]
        hi = x.shape[d] + k - 2 - lo - (g.shape[d] - 1) * stride
        tpad.append((lo, hi))
    dx = lax.conv_general_dilated(
        g,
        wt.astype(g.dtype),
        window_strides=(1, 1),
        padding=tpad,
        lhs_dilation=(stride, stride),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    # the weight gradient as autodiff makes it (XLA drops it when only the input's is used)
    dw = jax.vjp(lambda ww: _conv(x, ww, stride, pad), w)[1](g)[0]
    return dx.astype(x.dtype), dw, jnp.zeros_like(wt)


_conv_kernel.defvjp(_conv_kernel_fwd, _conv_kernel_bwd)


def conv2d(
    x: Array, w: Array | Kernel, stride: int = 1, padding: int | tuple[tuple[int, int], ...] = 0
) -> Array:
    """Cross-correlation as torch.nn.functional.conv2d. x [N,H,W,I], w [kh,kw,I,O] (or a `Kernel`)
    -> [N,H',W',O]."""
    pad = _pads(padding)
    if isinstance(w, Kernel):
        return _conv_kernel(x, w.w, w.wt, stride, pad)
    return _conv(x, w, stride, pad)


def fir2d(x: Array, k, pad: tuple[int, int, int, int], down: int = 1, up: int = 1) -> Array:
    """Cross-correlation of every channel with a constant 2-D filter k [kh,kw] (numpy), as a sum of
    shifted slices. x [N,H,W,C]; pad (top, bottom, left, right) with zeros after inserting up-1 zeros
    after every sample (rows and columns); keeps every down-th output sample.

    Same function as a depthwise `conv_general_dilated` with `feature_group_count=C`, which XLA:CPU
    runs about 40x slower (109 ms vs 2.6 ms for [1,256,256,64]); zero taps are skipped.
    """
    k = np.asarray(k, np.float64)
    kh, kw = k.shape
    t, b, left, r = pad
    zero = jnp.zeros((), x.dtype)
    cfg = ((0, 0, 0), (t, b + up - 1, up - 1), (left, r + up - 1, up - 1), (0, 0, 0))
    xp = lax.pad(x, zero, cfg)
    ho = (xp.shape[1] - kh) // down + 1
    wo = (xp.shape[2] - kw) // down + 1
    out = None
    for i in range(kh):
        for j in range(kw):
            if k[i, j] == 0:
                continue
            s = lax.slice(
                xp,
                (0, i, j, 0),
                (xp.shape[0], i + down * (ho - 1) + 1, j + down * (wo - 1) + 1, xp.shape[3]),
                (1, down, down, 1),
            )
            s = s * jnp.asarray(k[i, j], x.dtype)
            out = s if out is None else out + s
    if out is None:
        return jnp.zeros((x.shape[0], ho, wo, x.shape[3]), x.dtype)
    return out


def dense(x: Array, w: Array) -> Array:
    """x [N,I] @ w [I,O]."""
    return jnp.matmul(x, w.astype(x.dtype))


def blur_kernel_121() -> np.ndarray:
    """The StyleGAN [1,2,1] x [1,2,1] / 16 blur kernel (symmetric, so flipping does not matter)."""
    k = np.array([1.0, 2.0, 1.0], np.float32)
    return np.outer(k, k) / 16.0


def blur(x: Array) -> Array:
    """StyleGAN blur: depthwise 3x3 [1,2,1]^T[1,2,1]/16, zero padding 1."""
    return fir2d(x, blur_kernel_121(), (1, 1, 1, 1))


def upsample_nearest2x(x: Array) -> Array:
    n, h, w, c = x.shape
    x = jnp.broadcast_to(x[:, :, None, :, None, :], (n, h, 2, w, 2, c))
    return x.reshape(n, 2 * h, 2 * w, c)


def avg_pool2x(x: Array) -> Array:
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def max_pool2x(x: Array) -> Array:
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def pixel_norm(x: Array, eps: float = 1e-8) -> Array:
    """x [N,D] / sqrt(mean(x^2) + eps) over D."""
    return x / jnp.sqrt(jnp.mean(jnp.square(x), axis=1, keepdims=True) + eps)


def instance_norm(x: Array, eps: float = 1e-8) -> Array:
    """Per-sample, per-channel spatial normalisation without affine; x [N,H,W,C]."""
    x = x - jnp.mean(x, axis=(1, 2), keepdims=True)
    return x / jnp.sqrt(jnp.mean(jnp.square(x), axis=(1, 2), keepdims=True) + eps)


def batch_norm_eval(x: Array, p: dict, eps: float = 1e-5) -> Array:
    """torch BatchNorm in eval mode over the last axis: (x - mean) / sqrt(var + eps) * weight + bias."""
    inv = p["weight"] / jnp.sqrt(p["running_var"] + eps)
    return (x - p["running_mean"]) * inv + p["bias"]


def minibatch_stddev(x: Array, group_size: int, eps: float = 1e-8) -> Array:
    """StyleGAN minibatch stddev with one feature channel, appended last. x [N,H,W,C] -> [N,H,W,C+1].

    The batch is viewed as [G, M, ...] (G = min(group_size, N)): sample n = g*M + m belongs to group m,
    so for N = 8 the groups are {0,2,4,6} and {1,3,5,7}, exactly as the reference reshapes it.
    """
    n, h, w, c = x.shape
    g = min(group_size, n)
    if n % g:
        raise ValueError(f"minibatch stddev: batch {n} is not divisible by group size {g}")
    y = x.reshape(g, n // g, h, w, c)  # [G,M,H,W,C]
    y = y - jnp.mean(y, axis=0)
    y = jnp.sqrt(jnp.mean(jnp.square(y), axis=0) + eps)  # [M,H,W,C]
    y = jnp.mean(y, axis=(1, 2, 3))  # [M]
    y = jnp.tile(y, g)  # [N]: sample n gets group n mod M
    y = jnp.broadcast_to(y[:, None, None, None], (n, h, w, 1)).astype(x.dtype)
    return jnp.concatenate([x, y], axis=-1)


def wscale(fan_in: int, gain: float = math.sqrt(2.0), lrmul: float = 1.0) -> float:
    """Equalised learning-rate multiplier gain / sqrt(fan_in) * lrmul."""
    return gain / math.sqrt(fan_in) * lrmul


def nchw_to_nhwc(x: Array) -> Array:
    return jnp.transpose(x, (0, 2, 3, 1))


def nhwc_to_nchw(x: Array) -> Array:
    return jnp.transpose(x, (0, 3, 1, 2))
