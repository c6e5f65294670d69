"""VGG16 perceptual network of idinvert (`models/perceptual_model.py`): conv part up to relu(conv4_3).

Keras "caffe" preprocessing inside: [-1, 1] -> [0, 255], RGB -> BGR, minus the BGR means; no std.
Parameters keep the checkpoint's names `layer{i}.weight` / `layer{i}.bias` (i = index in the torch
nn.Sequential: convs at 0,2,5,7,10,12,14,17,19,21,24,26,28), kernels HWIO.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from occjax import nn

Array = jax.Array
CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
POOL_INDICES = (4, 9, 16, 23, 30)
OUTPUT_LAYER = 23  # forward runs layers 0..22: the output is relu(conv4_3)
BGR_MEAN = (103.939, 116.779, 123.68)


@dataclass(frozen=True)
class VGGSpec:
    channels: tuple[int, ...]  # output width of each of the 13 convs
    output_layer: int = OUTPUT_LAYER

    @property
    def out_channels(self) -> int:
        used = [c for i, c in zip(CONV_INDICES, self.channels) if i < self.output_layer]
        return used[-1]


def spec_from_shapes(shp: Mapping[str, tuple[int, ...]]) -> VGGSpec:
    return VGGSpec(tuple(shp[f"layer{i}.weight"][3] for i in CONV_INDICES))


def param_shapes(spec: VGGSpec) -> dict[str, tuple[int, ...]]:
    s, cin = {}, 3
    for i, c in zip(CONV_INDICES, spec.channels):
        s[f"layer{i}.weight"] = (3, 3, cin, c)
        s[f"layer{i}.bias"] = (c,)
        cin = c
    return s


def preprocess(x: Array) -> Array:
    """[-1, 1] RGB NHWC -> caffe-style BGR in [0, 255] minus the mean (same op order as the reference)."""
    x = (x + 1) * 127.5
    x = x[..., ::-1]
    return x - jnp.asarray(BGR_MEAN, x.dtype)


def features(params: dict, x: Array, spec: VGGSpec, return_taps: bool = False):
    """Image [N, H, W, 3] in [-1, 1] -> relu(conv4_3) features [N, H/8, W/8, C] (NHWC)."""
    x = preprocess(x)
    taps = {"preprocessed_input": x}
    for i in range(spec.output_layer):
        if i in CONV_INDICES:
            p = params[f"layer{i}"]
            x = nn.conv2d(x, p["weight"], padding=1) + p["bias"]
        elif i in POOL_INDICES:
            x = nn.max_pool2x(x)
        else:  # ReLU
            x = jnp.maximum(x, 0)
    return (x, taps) if return_taps else x


def flops_per_image(spec: VGGSpec, resolution: int) -> int:
    total, res, cin = 0, resolution, 3
    for i, c in zip(CONV_INDICES, spec.channels):
        if i >= spec.output_layer:
            break
        if i - 1 in POOL_INDICES:
            res //= 2
        total += 2 * res * res * 9 * cin * c
        cin = c
    return total


def prepare(params: dict, spec: VGGSpec) -> dict:
    """Parameters for repeated differentiation (the inversion step): every conv kernel as an
    `nn.Kernel`, its input-gradient kernel computed once instead of in every step."""
    return nn.prepare_conv_weights(params)
