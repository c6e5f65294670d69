"""VGG16's convolutional trunk as the perceptual network, in two families:

- "idinvert_vgg16": idinvert's `models/perceptual_model.py`: Keras "caffe" preprocessing ([-1, 1] ->
  [0, 255], RGB -> BGR, minus the BGR means, no std), output relu(conv4_3); distance = mean squared
  feature difference (idinvert's loss_feat).
- "lpips_vgg16": LPIPS v0.1 over torchvision's ImageNet VGG16 (Zhang et al. 2018): input scaled
  by LPIPS' shift/scale, the five taps relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 unit-normalised
  along channels; distance = sum_l mean_hw sum_c lin_l[c] (a_l - b_l)^2 (lpips' `LPIPS.forward`).
- kind "imagenet" (no family of its own; for comparisons): the same torchvision trunk and input
  scaling, output relu(conv4_3), idinvert's mean squared difference.

Variables: params/conv{b}_{i}/{kernel [3,3,in,out], bias} for the convs the output needs (VGG's
block b, conv i), params/lin{l}/kernel [C_l] for the LPIPS heads.
"""

from __future__ import annotations

from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from occjax import layers as L

Array = jax.Array
BLOCKS = ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3))  # (block, convs in it)
CONV_NAMES = tuple(f"conv{b}_{i}" for b, n in BLOCKS for i in range(1, n + 1))
BGR_MEAN = (103.939, 116.779, 123.68)
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
UNIT_EPS = 1e-10


def caffe_preprocess(x: Array) -> Array:
    """[-1, 1] RGB NHWC -> caffe-style BGR in [0, 255] minus the mean (the reference's op order)."""
    x = (x + 1) * 127.5
    x = x[..., ::-1]
    return x - jnp.asarray(BGR_MEAN, x.dtype)


def lpips_preprocess(x: Array) -> Array:
    """[-1, 1] RGB -> lpips' ScalingLayer (x - shift) / scale (ImageNet normalisation in [-1, 1])."""
    return (x - jnp.asarray(LPIPS_SHIFT, x.dtype)) / jnp.asarray(LPIPS_SCALE, x.dtype)


def unit_normalise(f: Array) -> Array:
    return f / (jnp.sqrt(jnp.sum(f**2, axis=-1, keepdims=True)) + UNIT_EPS)


class VGG16(nn.Module):
    """image [N, H, W, 3] in [-1, 1] -> `features` (relu4_3 [N, H/8, W/8, C], or the five unit-
    normalised LPIPS taps); `distance(fa, fb)` -> [N]. Taps: preprocessed_input."""

    channels: tuple[int, ...]  # output width of each conv used (10 for relu4_3, 13 for lpips)
    kind: str = "idinvert"  # "idinvert" (caffe, relu4_3, MSE), "lpips", "imagenet" (relu4_3, MSE)

    @property
    def out_channels(self) -> int:
        return self.channels[9]

    def setup(self):
        n = 13 if self.kind == "lpips" else 10
        self.convs = [
            L.Conv(c, 3, padding=1, use_bias=True, name=name)
            for c, name in zip(self.channels[:n], CONV_NAMES[:n])
        ]
        if self.kind == "lpips":
            taps = (self.channels[1], self.channels[3], self.channels[6], self.channels[9])
            taps += (self.channels[12],)
            self.heads = [
                self.param(f"lin{i}", nn.initializers.ones, (c,)) for i, c in enumerate(taps)
            ]

    def features(self, x: Array):
        x = caffe_preprocess(x) if self.kind == "idinvert" else lpips_preprocess(x)
        self.sow("intermediates", "preprocessed_input", x)
        taps, k = [], 0
        for b, n in BLOCKS:
            if b > 1:
                x = L.max_pool2x(x)
            for _ in range(n):
                x = jnp.maximum(self.convs[k](x), 0)
                k += 1
            if k == len(self.convs) and self.kind != "lpips":
                return x  # relu(conv4_3)
            taps.append(unit_normalise(x))
        return taps

    def distance(self, fa, fb) -> Array:
        """Per-sample distance [N] between two `features` outputs."""
        if self.kind != "lpips":
            return jnp.mean(jnp.square(fa - fb), axis=(1, 2, 3))
        return sum(
            jnp.mean(jnp.einsum("nhwc,c->nhw", jnp.square(a - b), w), axis=(1, 2))
            for a, b, w in zip(fa, fb, self.heads)
        )

    def __call__(self, x: Array):
        return self.features(x)

    def init_inputs(self) -> tuple:
        return (jnp.zeros((1, 32, 32, 3), jnp.float32),)


def idinvert_from_shapes(shp: Mapping[str, tuple[int, ...]]) -> VGG16:
    return VGG16(tuple(shp[f"params/{n}/kernel"][3] for n in CONV_NAMES[:10]), "idinvert")


def lpips_from_shapes(shp: Mapping[str, tuple[int, ...]]) -> VGG16:
    return VGG16(tuple(shp[f"params/{n}/kernel"][3] for n in CONV_NAMES), "lpips")
