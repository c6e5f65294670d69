"""genforce's StyleGAN discriminator (`models/stylegan_discriminator.py`), the architecture of
idinvert's TF-release D, as a Flax module. Equalised learning rate on every layer (gain sqrt(2), last
dense gain 1).

FromRGB 1x1 conv at full resolution; per block (res 4*2**B .. 8): conv 3x3 + bias + leaky ReLU, then
blur -> conv 3x3 -> 2x2 average pool -> bias -> leaky ReLU; 4x4 head: minibatch stddev, conv 3x3,
dense, dense -> one raw score. The conv + average pool pair is computed as one stride-2 4x4 conv
(the reference does this from 128 px on; it is the same linear map).

Variables: params/from_rgb/{kernel [1,1,3,C],bias}; params/block{i}_{conv0,conv1_down}/{kernel,
bias}; params/head_{conv,dense0,dense1}/{kernel,bias}. Only the full-resolution FromRGB is kept
(the others serve progressive growing and are unused at lod 0).
"""

from __future__ import annotations

from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from occjax import layers as L

Array = jax.Array
SQRT2 = 2**0.5


def conv_avgpool_kernel(k: Array) -> Array:
    """3x3 conv (padding 1) then 2x2 average pool == stride-2 conv (padding 1) with this 4x4 kernel."""
    kp = jnp.pad(k, ((1, 1), (1, 1), (0, 0), (0, 0)))
    return 0.25 * (kp[1:, 1:] + kp[:-1, 1:] + kp[1:, :-1] + kp[:-1, :-1])


class DownConv(nn.Module):
    """blur -> conv 3x3 (gain sqrt(2)) -> 2x2 average pool -> bias, as blur then one stride-2 4x4
    conv; prepared, the scaled 4x4 kernel is computed once."""

    features: int

    @nn.compact
    def __call__(self, x: Array) -> Array:
        w = self.param("kernel", nn.initializers.normal(1.0), (3, 3, x.shape[-1], self.features))
        scale = L.wscale(9 * x.shape[-1])
        down = L.prepared(self, "down", lambda: L.prepare_kernel(conv_avgpool_kernel(w * scale)))
        y = L.conv2d(L.blur(x), down, stride=2, padding=1)
        return y + self.param("bias", nn.initializers.zeros, (self.features,)).astype(y.dtype)


class StyleGANDiscriminator(nn.Module):
    """The discriminator family "stylegan_discriminator": image [N, H, W, 3] in [-1, 1] -> raw
    scores [N]. Minibatch-stddev groups of min(group_size, N) (default 4, as the reference);
    group_size=1 scores every image on its own. Taps: layer{j}_out (genforce's layer numbers)."""

    channels: tuple[int, ...]  # width at resolution, resolution/2, ..., 4
    head_width: int
    group_size: int = 4

    @property
    def resolution(self) -> int:
        return 4 * 2 ** (len(self.channels) - 1)

    @nn.compact
    def __call__(self, x: Array, group_size: int | None = None) -> Array:
        g = self.group_size if group_size is None else group_size
        x = L.leaky_relu(L.Conv(self.channels[0], 1, use_bias=True, gain=SQRT2, name="from_rgb")(x))
        self.sow("intermediates", "layer0_in", x)
        blocks = len(self.channels) - 1
        for i in range(blocks):
            c, c2 = self.channels[i], self.channels[i + 1]
            conv0 = L.Conv(c, 3, padding=1, use_bias=True, gain=SQRT2, name=f"block{i}_conv0")
            x = L.leaky_relu(conv0(x))
            self.sow("intermediates", f"layer{2 * i}_out", x)
            x = L.leaky_relu(DownConv(c2, name=f"block{i}_conv1_down")(x))
            self.sow("intermediates", f"layer{2 * i + 1}_out", x)
        x = L.minibatch_stddev(x, g)
        c = self.channels[-1]
        x = L.leaky_relu(L.Conv(c, 3, padding=1, use_bias=True, gain=SQRT2, name="head_conv")(x))
        self.sow("intermediates", f"layer{2 * blocks}_out", x)
        x = L.leaky_relu(L.Dense(self.head_width, gain=SQRT2, name="head_dense0")(L.flatten_chw(x)))
        self.sow("intermediates", f"layer{2 * blocks + 1}_out", x)
        x = L.Dense(1, gain=1.0, name="head_dense1")(x)
        self.sow("intermediates", f"layer{2 * blocks + 2}_out", x)
        return x[:, 0]

    def init_inputs(self) -> tuple:
        return (jnp.zeros((1, self.resolution, self.resolution, 3), jnp.float32),)


def from_shapes(shp: Mapping[str, tuple[int, ...]]) -> StyleGANDiscriminator:
    blocks = 0
    while f"params/block{blocks}_conv1_down/kernel" in shp:
        blocks += 1
    if blocks < 1:
        raise ValueError("no down-sampling blocks found")
    channels = [shp["params/from_rgb/kernel"][3]]
    channels += [shp[f"params/block{i}_conv1_down/kernel"][3] for i in range(blocks)]
    return StyleGANDiscriminator(tuple(channels), shp["params/head_dense0/kernel"][1])
