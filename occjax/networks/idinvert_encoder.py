"""idinvert's domain-guided encoder (`StyleGANEncoderNet` of idinvert_pytorch, use_bn=True,
use_wscale=False), as a Flax module.

Block 0: 3x3 conv -> batch norm -> leaky ReLU at full resolution. Blocks 1..n-2: 2x2 average pool,
then a residual block (two 3x3 conv + bias + BN + leaky ReLU; shortcut 1x1 conv + BN + leaky ReLU
when the width changes, identity otherwise). Last block: flatten (C,H,W order), dense (gain 1),
batch norm over the features. Batch norm uses the running statistics (eval mode).

Variables: params/block0/{conv/kernel, bn/{scale,bias}}, batch_stats/block0/bn/{mean,var};
block{b}/{conv1,conv2}/{kernel,bias}, block{b}/{bn1,bn2}, optional block{b}/{shortcut/kernel,
shortcut_bn}; params/head/dense/kernel [C*16, L*w_dim], head/bn.
"""

from __future__ import annotations

from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from occjax import layers as L

Array = jax.Array


class InputBlock(nn.Module):
    features: int

    @nn.compact
    def __call__(self, x: Array) -> Array:
        x = L.Conv(self.features, 3, padding=1, name="conv")(x)
        return L.leaky_relu(L.batch_norm("bn")(x))


class Head(nn.Module):
    """Flatten (C,H,W order), dense with gain 1 and no bias, batch norm over the features."""

    features: int

    @nn.compact
    def __call__(self, x: Array) -> Array:
        y = L.Dense(self.features, gain=1.0, use_bias=False, name="dense")(L.flatten_chw(x))
        return L.batch_norm("bn")(y)


class ResidualBlock(nn.Module):
    features: int

    @nn.compact
    def __call__(self, x: Array) -> Array:
        cin, cout = x.shape[-1], self.features
        x = L.avg_pool2x(x)
        short = x
        if cin != cout:
            short = L.Conv(cout, 1, name="shortcut")(x)
            short = L.leaky_relu(L.batch_norm("shortcut_bn")(short))
        hid = min(cin, cout)
        y = L.Conv(hid, 3, padding=1, use_bias=True, name="conv1")(x)
        y = L.leaky_relu(L.batch_norm("bn1")(y))
        y = L.Conv(cout, 3, padding=1, use_bias=True, name="conv2")(y)
        y = L.leaky_relu(L.batch_norm("bn2")(y))
        return y + short


class IdinvertEncoder(nn.Module):
    """The encoder family "idinvert_encoder": image [N, H, W, 3] in [-1, 1] -> w+ [N, L, w_dim].
    Taps (sown to "intermediates"): block{i}_out."""

    channels: tuple[int, ...]  # output width of blocks 0..n-2
    num_layers: int  # W+ layers of the code it predicts
    w_dim: int

    @property
    def resolution(self) -> int:
        return 4 * 2 ** (len(self.channels) - 1)

    @property
    def code_shape(self) -> tuple[int, int]:
        return (self.num_layers, self.w_dim)

    @nn.compact
    def __call__(self, x: Array) -> Array:
        n = x.shape[0]
        x = InputBlock(self.channels[0], name="block0")(x)
        self.sow("intermediates", "block0_out", x)
        for b in range(1, len(self.channels)):
            x = ResidualBlock(self.channels[b], name=f"block{b}")(x)
            self.sow("intermediates", f"block{b}_out", x)
        code = Head(self.num_layers * self.w_dim, name="head")(x)
        self.sow("intermediates", f"block{len(self.channels)}_out", code)
        return code.reshape(n, self.num_layers, self.w_dim)  # [N, L, w_dim]

    def init_inputs(self) -> tuple:
        return (jnp.zeros((1, self.resolution, self.resolution, 3), jnp.float32),)


def from_shapes(shp: Mapping[str, tuple[int, ...]]) -> IdinvertEncoder:
    channels = [shp["params/block0/conv/kernel"][3]]
    b = 1
    while f"params/block{b}/conv2/kernel" in shp:
        channels.append(shp[f"params/block{b}/conv2/kernel"][3])
        b += 1
    fc_in, out = shp["params/head/dense/kernel"]
    if fc_in != channels[-1] * 16:
        raise ValueError(f"head takes {fc_in} features, expected {channels[-1]}*4*4")
    layers = 2 * b  # idinvert: output size w_dim * 2 * block_idx
    if out % layers:
        raise ValueError(f"encoder output {out} is not a multiple of {layers} W+ layers")
    return IdinvertEncoder(tuple(channels), layers, out // layers)
