"""occjax's own encoder for generators without one (the built-in DCGAN): image -> code, trained
by `scripts/train_encoder.py` on the generator's own samples.

A stem conv, then per down-sampling stage a stride-2 4x4 conv and a residual 3x3 conv (each with
GroupNorm and leaky ReLU), down to 4x4; flatten, a hidden dense layer, and a dense layer to the
code [N, L, D] (for the DCGAN: z, L = 1).

Variables: params/stem, params/stage{i}/{down,conv}/{kernel,bias}, params/stage{i}/{norm_down,
norm_conv}/{scale,bias}, params/hidden, params/out ({kernel,bias}).
"""

from __future__ import annotations

from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from occjax import layers as L

Array = jax.Array
GROUPS = 8


class Stage(nn.Module):
    features: int

    @nn.compact
    def __call__(self, x: Array) -> Array:
        x = L.Conv(self.features, 4, stride=2, padding=1, use_bias=True, name="down")(x)
        x = L.leaky_relu(nn.GroupNorm(GROUPS, name="norm_down")(x))
        y = L.Conv(self.features, 3, padding=1, use_bias=True, name="conv")(x)
        return x + L.leaky_relu(nn.GroupNorm(GROUPS, name="norm_conv")(y))


class ConvEncoder(nn.Module):
    """The encoder family "conv_encoder": image [N, H, W, 3] in [-1, 1] -> code [N, L, D]."""

    widths: tuple[int, ...]  # stem, then one per stage (resolution / 2**stages = 4)
    hidden: int
    num_layers: int
    code_dim: int

    @property
    def resolution(self) -> int:
        return 4 * 2 ** (len(self.widths) - 1)

    @property
    def code_shape(self) -> tuple[int, int]:
        return (self.num_layers, self.code_dim)

    @nn.compact
    def __call__(self, x: Array) -> Array:
        x = L.leaky_relu(L.Conv(self.widths[0], 3, padding=1, use_bias=True, name="stem")(x))
        for i, w in enumerate(self.widths[1:]):
            x = Stage(w, name=f"stage{i}")(x)
        x = L.leaky_relu(L.Dense(self.hidden, name="hidden")(x.reshape(x.shape[0], -1)))
        code = L.Dense(self.num_layers * self.code_dim, name="out")(x)
        return code.reshape(x.shape[0], self.num_layers, self.code_dim)

    def init_inputs(self) -> tuple:
        return (jnp.zeros((1, self.resolution, self.resolution, 3), jnp.float32),)


def from_shapes(shp: Mapping[str, tuple[int, ...]]) -> ConvEncoder:
    widths = [shp["params/stem/kernel"][3]]
    while f"params/stage{len(widths) - 1}/down/kernel" in shp:
        widths.append(shp[f"params/stage{len(widths) - 1}/down/kernel"][3])
    hidden = shp["params/hidden/kernel"][1]
    # a code of one layer unless the bundle's config says otherwise (shapes cannot tell L from D)
    return ConvEncoder(tuple(widths), hidden, 1, shp["params/out/kernel"][1])
