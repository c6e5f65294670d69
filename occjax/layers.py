"""Layers shared by the networks: Flax modules (`Conv`, `Dense`) and the pure ops they are built from.

Internal layout is NHWC with HWIO kernels (the converters put weights in that layout); the public
API in `occjax.models` converts from and to the reference's NCHW at its boundary.

Two things here are ours rather than flax's own `nn.Conv` / `nn.Dense`, and why:
- equalised learning rate: a layer owns its gain, `gain / sqrt(fan_in) * lr_mul` computed from its
  own weight's shape, and applies it after the matmul as the PyTorch reference does (same rounding);
- prepared kernels: weight-only work (here, the kernel of a conv's input gradient) is computed once
  per inversion into the "prepared" collection (`prepared`), instead of in every step of it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Array = jax.Array
PREPARED = "prepared"  # variable collection of weight-only work done once per inversion


def leaky_relu(x: Array, slope: float = 0.2) -> Array:
    return jnp.where(x >= 0, x, x * slope)


def prepared(module: nn.Module, name: str, make: Callable[[], Any]) -> Any:
    """`make()` (work that reads weights only), kept in the "prepared" collection when there is one.

    `Network.prepare` runs a network once with the collection mutable, which stores every layer's
    value; later calls (the inversion step) read it instead of recomputing it. Without the
    collection the value is computed in place, so both forms are the same function."""
    if module.has_variable(PREPARED, name):
        return module.get_variable(PREPARED, name)
    value = make()
    if module.is_mutable_collection(PREPARED) and not module.is_initializing():
        module.put_variable(PREPARED, name, value)
    return value


# ---- convolution with a precomputed input-gradient kernel ---------------------------------------


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class Kernel:
    """A conv kernel w [kh,kw,I,O] with the kernel of its input gradient precomputed: wt [kh,kw,O,I]
    is w flipped in both spatial dims with in/out swapped. With a Kernel, `conv2d`'s backward pass
    convolves with wt instead of letting autodiff transpose w, which XLA:CPU does as a slow copy of
    the weights in every step (benchmarks/NOTES.md)."""

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


def wscale(fan_in: int, gain: float = math.sqrt(2.0), lr_mul: float = 1.0) -> float:
    """Equalised learning-rate multiplier gain / sqrt(fan_in) * lr_mul."""
    return gain / math.sqrt(fan_in) * lr_mul


# ---- Flax layers --------------------------------------------------------------------------------


class Conv(nn.Module):
    """2-D convolution (torch's cross-correlation), kernel [k,k,I,O], optional bias [O].

    `gain` set: equalised learning rate, the output times gain / sqrt(I*k*k) (after the conv, as the
    reference computes it). The kernel is prepared (`Kernel`, its input-gradient kernel precomputed)
    when the "prepared" collection is in use."""

    features: int
    kernel_size: int
    stride: int = 1
    padding: int | tuple = 0
    use_bias: bool = False
    gain: float | None = None

    @nn.compact
    def __call__(self, x: Array) -> Array:
        k = self.kernel_size
        init = nn.initializers.normal(1.0) if self.gain else nn.initializers.he_normal()
        w = self.param("kernel", init, (k, k, x.shape[-1], self.features))
        y = conv2d(
            x, prepared(self, "kernel", lambda: prepare_kernel(w)), self.stride, self.padding
        )
        if self.gain is not None:
            y = y * wscale(w.shape[0] * w.shape[1] * w.shape[2], self.gain)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,)).astype(y.dtype)
        return y


class Dense(nn.Module):
    """x [N,I] @ kernel [I,O] times gain / sqrt(I) * lr_mul (equalised learning rate), plus
    bias * lr_mul; `gain=None`: a plain dense layer."""

    features: int
    gain: float | None = None
    lr_mul: float = 1.0
    use_bias: bool = True

    @nn.compact
    def __call__(self, x: Array) -> Array:
        if self.gain is None:
            init = nn.initializers.he_normal()
        else:  # the stored weight is the trained one / lr_mul (StyleGAN's initialisation)
            init = nn.initializers.normal(1.0 / self.lr_mul)
        w = self.param("kernel", init, (x.shape[-1], self.features))
        y = jnp.matmul(x, w.astype(x.dtype))
        if self.gain is not None:
            y = y * wscale(w.shape[0], self.gain, self.lr_mul)
        if self.use_bias:
            b = self.param("bias", nn.initializers.zeros, (self.features,)).astype(y.dtype)
            y = y + (b * self.lr_mul if self.lr_mul != 1.0 else b)
        return y


def batch_norm(name: str | None = None, eps: float = 1e-5) -> nn.BatchNorm:
    """torch BatchNorm in eval mode (running statistics): flax's BatchNorm, statistics in the
    "batch_stats" collection, weight/bias as its "scale"/"bias"."""
    return nn.BatchNorm(use_running_average=True, epsilon=eps, name=name)


# ---- pure ops -----------------------------------------------------------------------------------


def fir2d(x: Array, k, pad: tuple[int, int, int, int], down: int = 1, up: int = 1) -> Array:
    """Cross-correlation of every channel with a constant 2-D filter k [kh,kw] (numpy), as a sum of
    shifted slices. x [N,H,W,C]; pad (top, bottom, left, right) with zeros after inserting up-1 zeros
    after every sample (rows and columns); keeps every down-th output sample.

    Same function as a depthwise `conv_general_dilated` with `feature_group_count=C`, which XLA:CPU
    runs about 40x slower; zero taps are skipped.
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


def flatten_chw(x: Array) -> Array:
    """[N,H,W,C] -> [N, C*H*W] in the reference's (C,H,W) flatten order."""
    return jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)


def nchw_to_nhwc(x: Array) -> Array:
    return jnp.transpose(x, (0, 2, 3, 1))


def nhwc_to_nchw(x: Array) -> Array:
    return jnp.transpose(x, (0, 3, 1, 2))
