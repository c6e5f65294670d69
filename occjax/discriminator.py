"""genforce's StyleGAN discriminator (`models/stylegan_discriminator.py`), the architecture of idinvert's
TF-release D. Equalised learning rate on every layer (gain sqrt(2), last dense gain 1).

FromRGB 1x1 conv at full resolution; per block (res 4*2**B .. 8): conv 3x3 + bias + leaky ReLU, then
blur -> conv 3x3 -> 2x2 average pool -> bias -> leaky ReLU; 4x4 head: minibatch stddev, conv 3x3,
dense, dense -> one raw score. The conv + average pool pair is computed as one stride-2 4x4 conv
(the reference does this from 128 px on; it is the same linear map). Kernels HWIO, dense [in, out].
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from occjax import nn

Array = jax.Array


@dataclass(frozen=True)
class DiscriminatorSpec:
    resolution: int
    channels: tuple[
        int, ...
    ]  # width at resolution, resolution/2, ..., 4 (after input0: channels[0])
    head_width: int  # output width of the first dense layer
    group_size: int = 4
    stddev_channels: int = 1

    @property
    def num_blocks(self) -> int:
        return len(self.channels) - 1


def spec_from_shapes(shp: Mapping[str, tuple[int, ...]]) -> DiscriminatorSpec:
    blocks = 0
    while f"layer{2 * blocks + 1}.weight" in shp and len(shp[f"layer{2 * blocks + 1}.weight"]) == 4:
        blocks += 1  # layer{2B+1} of the head is the first dense (2-d) layer
    if blocks < 1:
        raise ValueError("no down-sampling blocks found")
    channels = [shp["input0.weight"][3]]
    for i in range(blocks):
        channels.append(shp[f"layer{2 * i + 1}.weight"][3])
    head = shp[f"layer{2 * blocks + 1}.weight"][1]
    return DiscriminatorSpec(4 * 2**blocks, tuple(channels), head)


def param_shapes(spec: DiscriminatorSpec) -> dict[str, tuple[int, ...]]:
    s: dict[str, tuple[int, ...]] = {}
    b = spec.num_blocks
    # FromRGB for every resolution (progressive growing); only input0 runs at lod 0
    for i in range(b + 1):
        s[f"input{i}.weight"] = (1, 1, 3, spec.channels[i])
        s[f"input{i}.bias"] = (spec.channels[i],)
    for i in range(b):
        c, c2 = spec.channels[i], spec.channels[i + 1]
        s[f"layer{2 * i}.weight"] = (3, 3, c, c)
        s[f"layer{2 * i}.bias"] = (c,)
        s[f"layer{2 * i + 1}.weight"] = (3, 3, c, c2)
        s[f"layer{2 * i + 1}.bias"] = (c2,)
    c = spec.channels[-1]
    s[f"layer{2 * b}.weight"] = (3, 3, c + spec.stddev_channels, c)
    s[f"layer{2 * b}.bias"] = (c,)
    s[f"layer{2 * b + 1}.weight"] = (c * 16, spec.head_width)
    s[f"layer{2 * b + 1}.bias"] = (spec.head_width,)
    s[f"layer{2 * b + 2}.weight"] = (spec.head_width, 1)
    s[f"layer{2 * b + 2}.bias"] = (1,)
    return s


def conv_avgpool_kernel(k: Array) -> Array:
    """3x3 conv (padding 1) then 2x2 average pool == stride-2 conv (padding 1) with this 4x4 kernel."""
    kp = jnp.pad(k, ((1, 1), (1, 1), (0, 0), (0, 0)))
    return 0.25 * (kp[1:, 1:] + kp[:-1, 1:] + kp[1:, :-1] + kp[:-1, :-1])


def discriminate(
    params: dict,
    x: Array,
    spec: DiscriminatorSpec,
    group_size: int | None = None,
    return_taps=False,
):
    """Image [N, H, W, 3] in [-1, 1] -> raw scores [N]. Minibatch-stddev groups of min(group_size, N)
    (default: the spec's 4, as the reference); group_size=1 scores every sample on its own."""
    g = spec.group_size if group_size is None else group_size
    taps = {}
    p = params["input0"]
    x = nn.leaky_relu(nn.conv2d(x, p["weight"]) * nn.wscale(3) + p["bias"])
    taps["layer0_in"] = x
    for i in range(spec.num_blocks):
        p = params[f"layer{2 * i}"]
        c = x.shape[-1]
        x = nn.leaky_relu(nn.conv2d(x, p["weight"], padding=1) * nn.wscale(c * 9) + p["bias"])
        taps[f"layer{2 * i}_out"] = x
        p = params[f"layer{2 * i + 1}"]
        k = p["down"] if "down" in p else conv_avgpool_kernel(p["weight"] * nn.wscale(c * 9))
        x = nn.conv2d(nn.blur(x), k, stride=2, padding=1)
        x = nn.leaky_relu(x + p["bias"])
        taps[f"layer{2 * i + 1}_out"] = x
    b = spec.num_blocks
    x = nn.minibatch_stddev(x, g)
    p = params[f"layer{2 * b}"]
    x = nn.leaky_relu(nn.conv2d(x, p["weight"], padding=1) * nn.wscale(x.shape[-1] * 9) + p["bias"])
    taps[f"layer{2 * b}_out"] = x
    x = nn.nhwc_to_nchw(x).reshape(x.shape[0], -1)  # flatten in the reference's C,H,W order
    p = params[f"layer{2 * b + 1}"]
    x = nn.leaky_relu(nn.dense(x, p["weight"]) * nn.wscale(x.shape[-1]) + p["bias"])
    taps[f"layer{2 * b + 1}_out"] = x
    p = params[f"layer{2 * b + 2}"]
    x = nn.dense(x, p["weight"]) * nn.wscale(x.shape[-1], gain=1.0) + p["bias"]
    taps[f"layer{2 * b + 2}_out"] = x
    return (x[:, 0], taps) if return_taps else x[:, 0]


def prepare(params: dict, spec: DiscriminatorSpec) -> dict:
    """Parameters for repeated differentiation (the inversion step): each down-sampling layer's
    scaled stride-2 4x4 kernel under "down", every conv kernel as an `nn.Kernel` (input-gradient
    kernel precomputed). `discriminate` gives the same function on either form."""
    out = nn.prepare_conv_weights(params)
    for i in range(spec.num_blocks):
        p = params[f"layer{2 * i + 1}"]
        down = conv_avgpool_kernel(p["weight"] * nn.wscale(spec.channels[i] * 9))
        out[f"layer{2 * i + 1}"] = {"bias": p["bias"], "down": nn.prepare_kernel(down)}
    return out
