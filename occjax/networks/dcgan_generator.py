"""A DCGAN generator (Radford et al. 2016; PyTorch's DCGAN tutorial layout), as a Flax module.

z [N, z_dim] viewed as a 1x1 image -> ConvTranspose 4x4 (stride 1, padding 0) -> 4x4, then
ConvTranspose 4x4 (stride 2, padding 1) up to the output size; BatchNorm (eval mode: running
statistics) and ReLU after every layer but the last, tanh at the end. The code of this family is z
itself, as one "layer": [N, 1, z_dim]. No mapping network and no truncation.

Variables: params/block{i}/convt/kernel [4,4,out,in] (flax's ConvTranspose with transpose_kernel,
i.e. torch's [in,out,kh,kw] weight as [kh,kw,out,in]), params/block{i}/bn/{scale,bias},
batch_stats/block{i}/bn/{mean,var}, params/to_rgb/kernel [4,4,3,in].
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from occjax import layers as L

Array = jax.Array


@partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _convt(x: Array, wf: Array, w: Array, stride: int, pad: int) -> Array:
    return _convt_fwd_only(x, wf, stride, pad)


def _convt_fwd_only(x: Array, wf: Array, stride: int, pad: int) -> Array:
    # the transposed conv as lax.conv_transpose computes it: x dilated by the stride, padded,
    # cross-correlated with wf [k,k,in,out] (the stored kernel flipped, in/out swapped)
    return lax.conv_general_dilated(
        x,
        wf.astype(x.dtype),
        window_strides=(1, 1),
        padding=((pad, pad), (pad, pad)),
        lhs_dilation=(stride, stride),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )


def _convt_fwd(x, wf, w, stride, pad):
    return _convt_fwd_only(x, wf, stride, pad), (x, wf, w)


def _convt_bwd(stride, pad, res, g):
    x, wf, w = res
    # input gradient: g cross-correlated with the flipped, in/out-swapped wf (the stored kernel w
    # itself, [k,k,out,in]) at the stride, so that no kernel is transposed in the step
    k = w.shape[0]
    lo = k - 1 - pad
    pads = tuple((lo, (x.shape[d] - 1) * stride + k - g.shape[d] - lo) for d in (1, 2))
    dx = lax.conv_general_dilated(
        g,
        w.astype(g.dtype),
        window_strides=(stride, stride),
        padding=pads,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    # the kernel's gradient as autodiff makes it (XLA drops it when only the input's is used)
    dwf = jax.vjp(lambda v: _convt_fwd_only(x, v, stride, pad), wf)[1](g)[0]
    return dx.astype(x.dtype), dwf, jnp.zeros_like(w)


_convt.defvjp(_convt_fwd, _convt_bwd)


class ConvT(nn.Module):
    """torch.nn.ConvTranspose2d(k=4, stride, padding, bias=False), as flax's ConvTranspose with
    transpose_kernel=True: kernel [4,4,out,in] (torch's [in,out,kh,kw] weight), padded by
    k - 1 - padding on each side. The flipped, in/out-swapped kernel the forward pass needs is
    prepared once per inversion (layers.prepared), and the input gradient convolves with the stored
    kernel, so the step transposes no weights (benchmarks/NOTES.md)."""

    features: int
    stride: int
    padding: int

    @nn.compact
    def __call__(self, x: Array) -> Array:
        shape = (4, 4, self.features, x.shape[-1])
        w = self.param("kernel", nn.initializers.lecun_normal(), shape)  # [k,k,out,in]
        wf = L.prepared(self, "kernel_f", lambda: jnp.swapaxes(w[::-1, ::-1], 2, 3))
        return _convt(x, wf, w, self.stride, 4 - 1 - self.padding)


def conv_transpose(features: int, stride: int, padding: int, name: str) -> ConvT:
    """torch.nn.ConvTranspose2d(k=4, stride, padding, bias=False)."""
    return ConvT(features, stride, padding, name=name)


class Block(nn.Module):
    features: int
    stride: int
    padding: int

    @nn.compact
    def __call__(self, x: Array) -> Array:
        x = conv_transpose(self.features, self.stride, self.padding, "convt")(x)
        return jax.nn.relu(L.batch_norm("bn")(x))


class DCGANGenerator(nn.Module):
    """The generator family "dcgan_generator". Code: z as [N, 1, z_dim]."""

    z_dim: int
    channels: tuple[int, ...]  # width after each hidden layer (4x4, 8x8, ...)
    out_channels: int = 3

    @property
    def resolution(self) -> int:
        return 4 * 2 ** len(self.channels)

    @property
    def code_shape(self) -> tuple[int, int]:
        return (1, self.z_dim)

    def codes(self, z: Array) -> Array:
        """The code of z [N, z_dim]: z itself, [N, 1, z_dim]."""
        return z[:, None, :]

    @nn.compact
    def synthesis(self, code: Array) -> Array:
        """code [N, 1, z_dim] -> image [N, H, W, 3] in (-1, 1)."""
        x = code[:, 0, None, None, :]  # [N, 1, 1, z_dim]
        for i, c in enumerate(self.channels):
            x = Block(c, 1 if i == 0 else 2, 0 if i == 0 else 1, name=f"block{i}")(x)
            self.sow("intermediates", f"block{i}_out", x)
        return jnp.tanh(conv_transpose(self.out_channels, 2, 1, "to_rgb")(x))

    def __call__(self, z: Array) -> Array:
        """generate: z [N, z_dim] -> image [N, H, W, 3]."""
        return self.synthesis(self.codes(z))

    def init_inputs(self) -> tuple:
        return (jnp.zeros((1, self.z_dim), jnp.float32),)


def from_shapes(shp: Mapping[str, tuple[int, ...]]) -> DCGANGenerator:
    """The architecture read from converted variable shapes (raises KeyError/ValueError)."""
    channels = []
    while f"params/block{len(channels)}/convt/kernel" in shp:
        channels.append(shp[f"params/block{len(channels)}/convt/kernel"][2])
    if not channels:
        raise KeyError("params/block0/convt/kernel")
    z_dim = shp["params/block0/convt/kernel"][3]
    return DCGANGenerator(z_dim, tuple(channels), shp["params/to_rgb/kernel"][2])
