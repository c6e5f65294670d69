"""StyleGAN2 residual discriminator (NVlabs `stylegan2-ada-pytorch` `training/networks.py`
Discriminator, architecture "resnet", c_dim 0; rosinality's `model.py` Discriminator is the same
function), as a Flax module.

Variables: params/b{res}_fromrgb/{kernel [1,1,3,C],bias} (the first block only);
params/b{res}_{conv0,conv1}/{kernel [3,3,I,O],bias}; params/b{res}_skip/kernel [1,1,I,O];
params/b4_conv/{kernel,bias}; params/b4_fc/{kernel [C*16,C],bias}; params/b4_out/{kernel [C,1],bias}.
"""

from __future__ import annotations

from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from occjax import layers as L
from occjax.networks.stylegan2 import SQRT2, upfirdn2d

Array = jax.Array


class Conv2dLayer(nn.Module):
    """Equalised conv (weight / sqrt(I k k)), optional [1,3,3,1]-filtered down x2, then the
    reference's bias_act: lrelu(x + b) * sqrt(2) * gain, or (x + b) * gain when linear."""

    features: int
    kernel_size: int
    down: bool = False
    act: bool = True
    use_bias: bool = True
    gain: float = 1.0
    conv_clamp: float | None = None  # NVlabs: |x| clamped to conv_clamp * gain after bias_act

    @nn.compact
    def __call__(self, x: Array) -> Array:
        k = self.kernel_size
        w = self.param("kernel", nn.initializers.normal(1.0), (k, k, x.shape[-1], self.features))
        w = w * (1.0 / np.sqrt(k * k * x.shape[-1]))
        if self.down and k == 1:  # filter and keep every second pixel, then the 1x1 conv
            x = L.conv2d(upfirdn2d(x, down=2, pad=(1, 1, 1, 1)), w.astype(x.dtype))
        elif self.down:  # filter with padding k//2 + 1, then a stride-2 valid conv
            p = k // 2 + 1
            x = L.conv2d(upfirdn2d(x, pad=(p, p, p, p)), w.astype(x.dtype), stride=2)
        else:
            x = L.conv2d(x, w.astype(x.dtype), padding=k // 2)
        if self.use_bias:
            x = x + self.param("bias", nn.initializers.zeros, (self.features,)).astype(x.dtype)
        x = (L.leaky_relu(x) * (SQRT2 * self.gain)) if self.act else x * self.gain
        return (
            x
            if self.conv_clamp is None
            else jnp.clip(x, -self.conv_clamp * self.gain, self.conv_clamp * self.gain)
        )


class StyleGAN2Discriminator(nn.Module):
    """The discriminator family "stylegan2_discriminator": image [N, H, W, 3] in [-1, 1] -> raw
    scores [N]. Minibatch-stddev groups of min(group_size, N) (default 4, as the reference).
    Taps: b{res}_out (each residual block) and b4_score."""

    channels: tuple[int, ...]  # width at resolution, resolution/2, ..., 4
    group_size: int = 4
    conv_clamp: float | None = None

    @property
    def resolution(self) -> int:
        return 4 * 2 ** (len(self.channels) - 1)

    @nn.compact
    def __call__(self, x: Array, group_size: int | None = None) -> Array:
        g = self.group_size if group_size is None else group_size
        res, cc = self.resolution, self.conv_clamp
        x = Conv2dLayer(self.channels[0], 1, conv_clamp=cc, name=f"b{res}_fromrgb")(x)
        for i in range(len(self.channels) - 1):
            tmp, out = self.channels[i], self.channels[i + 1]
            half = float(np.sqrt(0.5))
            y = Conv2dLayer(out, 1, True, False, False, half, cc, name=f"b{res}_skip")(x)
            x = Conv2dLayer(tmp, 3, conv_clamp=cc, name=f"b{res}_conv0")(x)
            x = Conv2dLayer(out, 3, True, gain=half, conv_clamp=cc, name=f"b{res}_conv1")(x)
            x = y + x
            self.sow("intermediates", f"b{res}_out", x)
            res //= 2
        c = self.channels[-1]
        x = L.minibatch_stddev(x, g)  # [N,4,4,C+1]
        x = Conv2dLayer(c, 3, conv_clamp=cc, name="b4_conv")(x)
        x = L.Dense(c, gain=1.0, name="b4_fc")(L.flatten_chw(x))  # the reference flattens NCHW
        x = L.leaky_relu(x) * SQRT2
        x = L.Dense(1, gain=1.0, name="b4_out")(x)
        self.sow("intermediates", "b4_score", x)
        return x[:, 0]

    def init_inputs(self) -> tuple:
        return (jnp.zeros((1, self.resolution, self.resolution, 3), jnp.float32),)


def from_shapes(shp: Mapping[str, tuple[int, ...]]) -> StyleGAN2Discriminator:
    rgb = [k for k in shp if k.endswith("_fromrgb/kernel")]
    if len(rgb) != 1:
        raise KeyError("params/b{resolution}_fromrgb/kernel")
    res = int(rgb[0].split("/")[1][1:].split("_")[0])
    channels = [shp[rgb[0]][3]]
    while res > 4:
        channels.append(shp[f"params/b{res}_conv1/kernel"][3])
        res //= 2
    return StyleGAN2Discriminator(tuple(channels))
