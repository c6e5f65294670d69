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

import flax.linen as nn
import jax
import jax.numpy as jnp

from occjax import layers as L

Array = jax.Array


def conv_transpose(features: int, stride: int, padding: int, name: str) -> nn.ConvTranspose:
    """torch.nn.ConvTranspose2d(k=4, stride, padding, bias=False): flax's ConvTranspose with the
    kernel transposed as torch's, padded by k - 1 - padding on each side."""
    p = 4 - 1 - padding
    return nn.ConvTranspose(
        features,
        (4, 4),
        strides=(stride, stride),
        padding=((p, p), (p, p)),
        use_bias=False,
        transpose_kernel=True,
        name=name,
    )


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
