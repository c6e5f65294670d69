"""StyleGAN2 generator (NVlabs `stylegan2-ada-pytorch` `training/networks.py`: MappingNetwork,
SynthesisNetwork with the "skip" architecture; rosinality's `model.py` Generator is the same
function), as one Flax module.

Variables (occjax paths; `converters/stylegan2_*.py` map both checkpoint formats onto them):
  params/mapping/fc{i}/{kernel [in,out], bias}               lr_mul 0.01, lrelu * sqrt(2)
  buffers/w_avg [w_dim]
  params/synthesis/const [1,4,4,C4]
  params/synthesis/b{res}_conv{0,1}/{kernel [3,3,I,O], bias [O], noise_strength [1],
                                     affine/{kernel [w_dim,I], bias [I]}}   conv0: up x2 (res > 4)
  buffers/synthesis/b{res}_conv{0,1}/noise [1,res,res,1]     the fixed noise ("const" mode)
  params/synthesis/b{res}_torgb/{kernel [1,1,I,3], bias [3], affine/{kernel, bias}}
W+ layer use, as the reference: block res uses ws[i], ws[i+1] for conv0/conv1 and ws[i+2] for
its ToRGB, i advancing by 2 per block (b4: ws[0] conv1, ws[1] torgb); num_ws = 2 log2(res) - 2.
The output is the raw (un-squashed) image, as the reference's.
"""

from __future__ import annotations

from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from occjax import layers as L

Array = jax.Array
SQRT2 = float(np.sqrt(2.0))
RESAMPLE = np.outer([1.0, 3.0, 3.0, 1.0], [1.0, 3.0, 3.0, 1.0]) / 64.0  # setup_filter([1,3,3,1])


def upfirdn2d(x: Array, up: int = 1, down: int = 1, pad=(0, 0, 0, 0), gain: float = 1.0) -> Array:
    """upfirdn2d's reference op with the [1,3,3,1] filter, NHWC: zero-insert up-sampling, pad
    (x0, x1, y0, y1; negative crops), depthwise FIR (the filter is symmetric, so flips do not
    matter), keep every `down`-th pixel. x [N,H,W,C] -> [N,H',W',C]."""
    n, h, w, c = x.shape
    if up > 1:  # [N,H,1,W,1,C] padded to [N,H,up,W,up,C]: each pixel followed by up-1 zeros
        x = jnp.pad(
            x[:, :, None, :, None], ((0, 0), (0, 0), (0, up - 1), (0, 0), (0, up - 1), (0, 0))
        )
        x = x.reshape(n, h * up, w * up, c)
    x0, x1, y0, y1 = pad
    x = jnp.pad(x, ((0, 0), (max(y0, 0), max(y1, 0)), (max(x0, 0), max(x1, 0)), (0, 0)))
    x = x[:, max(-y0, 0) : x.shape[1] - max(-y1, 0), max(-x0, 0) : x.shape[2] - max(-x1, 0)]
    f = jnp.asarray(RESAMPLE * gain, x.dtype)
    kernel = jnp.broadcast_to(f[:, :, None, None], (4, 4, 1, c))  # [kh,kw,1,C] depthwise
    x = lax.conv_general_dilated(
        x, kernel, (down, down), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=c,
    )  # fmt: skip
    return x


def conv_up2(x: Array, w: Array) -> Array:
    """conv2d_resample(up=2) of a 3x3 kernel w [3,3,I,O]: stride-2 transposed conv (the weight
    unflipped, as torch's conv_transpose2d) then the [1,3,3,1] filter with gain 4. [N,H,W,I] ->
    [N,2H,2W,O]."""
    k = w.shape[0]
    y = lax.conv_general_dilated(
        x, w[::-1, ::-1].astype(x.dtype), (1, 1), ((k - 1, k - 1), (k - 1, k - 1)),
        lhs_dilation=(2, 2), dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )  # fmt: skip  # [N,2H+1,2W+1,O]
    return upfirdn2d(y, pad=(1, 1, 1, 1), gain=4.0)


def modulated_conv2d(x: Array, w: Array, styles: Array, demodulate: bool, up: bool) -> Array:
    """The reference's non-fused form: scale inputs by styles [N,I], conv with the shared kernel
    w [k,k,I,O], then scale outputs by the demodulation coefficients [N,O] (the same function as
    the per-sample fused kernel, without building N kernels)."""
    x = x * styles[:, None, None, :].astype(x.dtype)
    if up:
        x = conv_up2(x, w)
    else:
        x = L.conv2d(x, w.astype(x.dtype), padding=w.shape[0] // 2)
    if demodulate:  # rsqrt(sum_{i,kh,kw} (w * s_i)^2 + 1e-8)
        dcoefs = lax.rsqrt(jnp.square(styles) @ jnp.sum(jnp.square(w), axis=(0, 1)) + 1e-8)
        x = x * dcoefs[:, None, None, :].astype(x.dtype)
    return x


def clamp(x: Array, c: float | None) -> Array:
    return x if c is None else jnp.clip(x, -c, c)


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (optionally up x2), fixed noise, bias, lrelu * sqrt(2)."""

    features: int
    resolution: int
    up: bool = False
    conv_clamp: float | None = None

    @nn.compact
    def __call__(self, x: Array, w: Array) -> Array:
        i = x.shape[-1]
        styles = L.Dense(i, gain=1.0, name="affine")(w)  # bias initialised 1 in the reference
        kernel = self.param("kernel", nn.initializers.normal(1.0), (3, 3, i, self.features))
        x = modulated_conv2d(x, kernel, styles, True, self.up)
        shape = (1, self.resolution, self.resolution, 1)
        noise = self.variable(
            "buffers", "noise", lambda: jax.random.normal(self.make_rng("params"), shape)
        ).value
        strength = self.param("noise_strength", nn.initializers.zeros, (1,))
        x = x + (noise * strength).astype(x.dtype)
        b = self.param("bias", nn.initializers.zeros, (self.features,))
        return clamp(L.leaky_relu(x + b.astype(x.dtype)) * SQRT2, self.conv_clamp)


class ToRGB(nn.Module):
    """Modulated 1x1 conv to 3 channels, no demodulation, styles times 1/sqrt(I), plus bias."""

    conv_clamp: float | None = None

    @nn.compact
    def __call__(self, x: Array, w: Array) -> Array:
        i = x.shape[-1]
        styles = L.Dense(i, gain=1.0, name="affine")(w) * (1.0 / np.sqrt(i))
        kernel = self.param("kernel", nn.initializers.normal(1.0), (1, 1, i, 3))
        y = modulated_conv2d(x, kernel, styles, False, False)
        y = y + self.param("bias", nn.initializers.zeros, (3,)).astype(y.dtype)
        return clamp(y, self.conv_clamp)


class Synthesis(nn.Module):
    """ws [N, num_ws, w_dim] -> image [N, H, W, 3]. Taps (sown to "intermediates"): b{res}_x
    (features after the block's last conv) and b{res}_img (the skip image after the block)."""

    channels: tuple[int, ...]  # per resolution 4, 8, ..., resolution
    conv_clamp: float | None = None

    @nn.compact
    def __call__(self, ws: Array) -> Array:
        n = ws.shape[0]
        c4 = self.channels[0]
        const = self.param("const", nn.initializers.normal(1.0), (1, 4, 4, c4))
        x = jnp.broadcast_to(const, (n, 4, 4, c4)).astype(ws.dtype)
        img = None
        for b, c in enumerate(self.channels):
            res = 4 * 2**b
            i = max(2 * b - 1, 0)  # this block's first W+ layer
            if b > 0:
                x = SynthesisLayer(c, res, True, self.conv_clamp, name=f"b{res}_conv0")(x, ws[:, i])
                i += 1
            x = SynthesisLayer(c, res, False, self.conv_clamp, name=f"b{res}_conv1")(x, ws[:, i])
            y = ToRGB(self.conv_clamp, name=f"b{res}_torgb")(x, ws[:, i + 1])
            img = y if img is None else upfirdn2d(img, up=2, pad=(2, 1, 2, 1), gain=4.0) + y
            self.sow("intermediates", f"b{res}_x", x)
            self.sow("intermediates", f"b{res}_img", img)
        return img


class MappingNet(nn.Module):
    """z [N, z_dim] -> w [N, w_dim]: normalize_2nd_moment, dense layers (lr_mul 0.01) with lrelu
    * sqrt(2) after the bias (the reference's bias_act)."""

    w_dim: int
    depth: int
    width: int
    lr_mul: float = 0.01

    @nn.compact
    def __call__(self, z: Array) -> Array:
        x = L.pixel_norm(z)
        for i in range(self.depth):
            out = self.w_dim if i == self.depth - 1 else self.width
            x = L.Dense(out, gain=1.0, lr_mul=self.lr_mul, name=f"fc{i}")(x)
            x = L.leaky_relu(x) * SQRT2
        return x


class StyleGAN2Generator(nn.Module):
    """The generator family "stylegan2_generator". Code: W+ [N, num_ws, w_dim];
    `codes(z)` = truncation(mapping(z)) broadcast over W+."""

    z_dim: int
    w_dim: int
    channels: tuple[int, ...]  # per resolution 4..resolution
    mapping_depth: int = 8
    mapping_width: int = 512
    truncation_psi: float = 0.7
    conv_clamp: float | None = None

    def setup(self):
        self.mapping_net = MappingNet(
            self.w_dim, self.mapping_depth, self.mapping_width, name="mapping"
        )
        self.synthesis_net = Synthesis(self.channels, self.conv_clamp, name="synthesis")
        self.w_avg = self.variable("buffers", "w_avg", jnp.zeros, (self.w_dim,))

    @property
    def num_ws(self) -> int:
        return 2 * len(self.channels)

    @property
    def resolution(self) -> int:
        return 4 * 2 ** (len(self.channels) - 1)

    @property
    def code_shape(self) -> tuple[int, int]:
        return (self.num_ws, self.w_dim)

    def mapping(self, z: Array) -> Array:
        """z [N, z_dim] -> W+ [N, num_ws, w_dim] (w broadcast, no truncation)."""
        w = self.mapping_net(z)
        return jnp.broadcast_to(w[:, None], (w.shape[0], self.num_ws, self.w_dim))

    def truncation(self, w: Array) -> Array:
        """w_avg + psi (w - w_avg) on every layer (the reference's cutoff None)."""
        w_avg = self.w_avg.value
        return w_avg + (w - w_avg) * self.truncation_psi

    def mean_code(self) -> Array:
        """w_avg repeated over W+: [1, num_ws, w_dim] (NVlabs projector's starting point)."""
        return jnp.broadcast_to(self.w_avg.value, (1, self.num_ws, self.w_dim))

    def codes(self, z: Array) -> Array:
        return self.truncation(self.mapping(z))

    def synthesis(self, ws: Array) -> Array:
        return self.synthesis_net(ws)

    def __call__(self, z: Array) -> Array:
        """generate: z [N, z_dim] -> image [N, H, W, 3]."""
        return self.synthesis(self.codes(z))

    def init_inputs(self) -> tuple:
        return (jnp.zeros((1, self.z_dim), jnp.float32),)


def from_shapes(shp: Mapping[str, tuple[int, ...]]) -> StyleGAN2Generator:
    """The architecture read from converted variable shapes (raises KeyError/ValueError)."""
    depth = 0
    while f"params/mapping/fc{depth}/kernel" in shp:
        depth += 1
    if depth == 0:
        raise KeyError("params/mapping/fc0/kernel")
    z_dim, width = shp["params/mapping/fc0/kernel"]
    w_dim = shp["buffers/w_avg"][0]
    channels = [shp["params/synthesis/const"][3]]
    while f"params/synthesis/b{4 * 2 ** len(channels)}_conv1/bias" in shp:
        channels.append(shp[f"params/synthesis/b{4 * 2 ** len(channels)}_conv1/bias"][0])
    return StyleGAN2Generator(z_dim, w_dim, tuple(channels), depth, width if depth > 1 else w_dim)
