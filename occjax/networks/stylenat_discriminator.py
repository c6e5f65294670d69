"""StyleNAT's wavelet discriminator with spectral norm (the D of "GAN Inversion for Occlusion Removal"),
as a Flax module.

Ports `models/styleNAT_discriminator.py` of FaceOcclusionRemoval-GAN-Inversion (a copy of StyleNAT's
`models/discriminator.py`, itself StyleSwin's wavelet D) with `sn=True`, `blur_kernel=[1,3,3,1]`:
Haar DWT input, one FromRGB skip input per scale (IWT -> [1,3,3,1] Downsample -> DWT), ConvBlocks of
two convolutions, minibatch stddev, final conv and two dense layers, every conv/dense layer spectrally
normalised (`torch.nn.utils.spectral_norm`, one power iteration, eps 1e-12), fused leaky ReLU biases.

Variables: params/<layer>/kernel (torch's weight_orig; conv HWIO, dense [in,out] with final_dense0's
inputs in the reference's (C,H,W) flatten order) and batch_stats/<layer>/{u [out], v [in*kh*kw in
(kh,kw,in) order]} for every spectrally normalised layer; the fused leaky ReLUs' biases as
params/<layer>_act_bias, the dense layers' own biases as params/<layer>/bias. With v in (kh,kw,in)
order and Wr = kernel.reshape(-1, out) (= torch's W_mat^T, columns permuted), sigma = u . (v @ Wr)
and the power iteration v <- normalize(Wr u), u <- normalize(v Wr) are exactly torch's. The fixed
Haar and blur filters are rebuilt here, never loaded.

Eval mode (the default) uses the stored u, v, as torch's eval mode; `update_stats=True` (with
batch_stats mutable) is torch's training mode, the paper's case: one power iteration before the
layer runs, the new u, v returned. flax's `nn.SpectralNorm` is not used because it re-runs the power
iteration on every call (even with update_stats=False) and keeps no v, so it can give neither torch's
eval mode nor its stored state.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from occjax import layers as L

Array = jax.Array
SN_EPS = 1e-12
BANDS = ("ll", "lh", "hl", "hh")


# ---- fixed filters (built exactly as the reference builds its buffers) --------------------------


def haar_filters() -> dict[str, np.ndarray]:
    """StyleSwin's Haar filters in float32: l = [1,1]/sqrt2, h = [-1,1]/sqrt2; entries +-0.49999997."""
    l = np.float32(1 / 2**0.5) * np.ones((1, 2), np.float32)
    h = l.copy()
    h[0, 0] = -h[0, 0]
    return {"ll": l.T * l, "lh": h.T * l, "hl": l.T * h, "hh": h.T * h}


def inverse_haar_filters() -> dict[str, np.ndarray]:
    """InverseHaarTransform's buffers: ll, -lh, -hl, hh."""
    f = haar_filters()
    return {"ll": f["ll"], "lh": -f["lh"], "hl": -f["hl"], "hh": f["hh"]}


def blur_kernel() -> np.ndarray:
    """make_kernel([1,3,3,1]): outer product normalised to sum 1 (Downsample and Blur, factor 1)."""
    k = np.array([1, 3, 3, 1], np.float32)
    k = np.outer(k, k)
    return (k / k.sum()).astype(np.float32)


# ---- upfirdn2d and the wavelet ops (NHWC) -------------------------------------------------------


def upfirdn2d(
    x: Array,
    k: np.ndarray,
    up: int = 1,
    down: int = 1,
    pad: tuple[int, int, int, int] = (0, 0, 0, 0),
) -> Array:
    """rosinality's upfirdn2d_native on NHWC: zero-insert (up-1 after each sample), zero-pad
    (x0, x1, y0, y1), true 2-D convolution with k on every channel, keep every down-th sample."""
    x0, x1, y0, y1 = pad
    kf = np.ascontiguousarray(np.asarray(k)[::-1, ::-1])  # convolution = flipped cross-correlation
    return L.fir2d(x, kf, (y0, y1, x0, x1), down=down, up=up)


def haar_dwt(x: Array) -> Array:
    """HaarTransform: [N,H,W,C] -> [N,H/2,W/2,4C], channels cat(ll, lh, hl, hh) (band*C + c)."""
    f = haar_filters()
    return jnp.concatenate([upfirdn2d(x, f[b], down=2) for b in BANDS], axis=-1)


def haar_iwt(x: Array) -> Array:
    """InverseHaarTransform: [N,h,w,4C] -> [N,2h,2w,C], the sum of the four up-sampled bands."""
    f = inverse_haar_filters()
    bands = jnp.split(x, 4, axis=-1)
    outs = [upfirdn2d(y, f[b], up=2, pad=(1, 0, 1, 0)) for y, b in zip(bands, BANDS)]
    return ((outs[0] + outs[1]) + outs[2]) + outs[3]


def downsample(x: Array) -> Array:
    """Downsample([1,3,3,1]): upfirdn2d(x, K, down=2, pad=(1,1)), H -> H/2."""
    return upfirdn2d(x, blur_kernel(), down=2, pad=(1, 1, 1, 1))


def blur(x: Array) -> Array:
    """Blur([1,3,3,1], pad=(2,2)) before a stride-2 3x3 conv: H -> H+1."""
    return upfirdn2d(x, blur_kernel(), pad=(2, 2, 2, 2))


def fused_lrelu(x: Array, bias: Array) -> Array:
    """FusedLeakyReLU (CPU branch): leaky_relu(x + b, 0.2) * sqrt(2), bias on the last axis."""
    return L.leaky_relu(x + bias.astype(x.dtype), 0.2) * math.sqrt(2.0)


# ---- spectral norm ------------------------------------------------------------------------------


def _normalize(z: Array) -> Array:
    return z / jnp.maximum(jnp.linalg.norm(z), SN_EPS)


class SpectralLayer(nn.Module):
    """A conv (`kernel_size` > 0) or dense layer (`kernel_size` 0) whose weight is divided by its
    spectral norm sigma = u . (W_mat v), u and v in the "batch_stats" collection (no gradient)."""

    in_features: int
    features: int
    kernel_size: int = 0  # 0: dense
    stride: int = 1
    padding: int = 0
    use_bias: bool = False

    def setup(self):
        k = self.kernel_size
        shape = (k, k, self.in_features, self.features) if k else (self.in_features, self.features)
        self.kernel = self.param("kernel", nn.initializers.normal(0.05), shape)
        fan = shape[0] * shape[1] * shape[2] if k else shape[0]
        self.u = self.variable("batch_stats", "u", lambda: _normalize(jnp.ones((self.features,))))
        self.v = self.variable("batch_stats", "v", lambda: _normalize(jnp.ones((fan,))))
        if self.use_bias:
            self.bias = self.param("bias", nn.initializers.zeros, (self.features,))

    def _effective(self) -> Array:
        w = self.kernel
        wr = w.reshape(-1, w.shape[-1])  # [in*kh*kw (our v order), out]
        u, v = lax.stop_gradient(self.u.value), lax.stop_gradient(self.v.value)
        return w / jnp.dot(u, v.astype(w.dtype) @ wr)

    def power_iteration(self) -> None:
        """torch's training-mode update: v <- normalize(W_mat^T u), u <- normalize(W_mat v)."""
        wr = lax.stop_gradient(self.kernel.reshape(-1, self.kernel.shape[-1]))
        v = _normalize(wr @ self.u.value.astype(wr.dtype))
        self.u.value, self.v.value = lax.stop_gradient(_normalize(v @ wr)), lax.stop_gradient(v)

    def weight(self) -> Array:
        """The effective weight kernel / sigma in our layout."""
        return self._effective()

    def __call__(self, x: Array, update_stats: bool = False) -> Array:
        if update_stats and not self.is_initializing():
            self.power_iteration()
            w = self._effective()  # with the new u, v (torch: the pre-forward hook)
        else:  # eval mode: the stored u, v; prepared once per inversion
            w = L.prepared(self, "weight_sn", lambda: _prepare(self._effective()))
        if self.kernel_size:
            y = L.conv2d(x, w, self.stride, self.padding)
        else:
            y = jnp.matmul(x, w.astype(x.dtype))
        if self.use_bias:
            y = y + self.bias.astype(y.dtype)
        return y


def _prepare(w: Array):
    return L.prepare_kernel(w) if w.ndim == 4 else w


class StyleNATDiscriminator(nn.Module):
    """The discriminator family "stylenat_discriminator": x [N,H,W,3] RGB in [-1,1] -> raw scores
    [N] (high = real). Minibatch-stddev groups G = min(group_size, N), sample n in group n mod N/G;
    N must be divisible by G. Taps (sown to "intermediates") are named as the parity fixtures
    ("dwt_out", "from_rgb{k}/out", "conv{k}/blur_out", ...)."""

    channels: tuple[int, ...]  # width of `out` after from_rgb k, k = 0..len-1 (4x4 for the last)
    final_channels: int
    linear_channels: int
    group_size: int = 4

    @property
    def resolution(self) -> int:
        return 2 ** (len(self.channels) + 2)

    def setup(self):
        ch, fc, lin = self.channels, self.final_channels, self.linear_channels
        sn = SpectralLayer
        self.from_rgb = [sn(12, c, 1, name=f"from_rgb{k}") for k, c in enumerate(ch)]
        self.conv1 = [sn(c, c, 3, padding=1, name=f"conv{k}_1") for k, c in enumerate(ch[:-1])]
        self.conv2 = [
            sn(ch[k], ch[k + 1], 3, stride=2, name=f"conv{k}_2") for k in range(len(ch) - 1)
        ]
        self.final_conv = sn(ch[-1] + 1, fc, 3, padding=1, name="final_conv")
        self.final_dense0 = sn(fc * 16, lin, use_bias=True, name="final_dense0")
        self.final_dense1 = sn(lin, 1, use_bias=True, name="final_dense1")
        widths = {f"from_rgb{k}": c for k, c in enumerate(ch)}
        widths |= {f"conv{k}_1": c for k, c in enumerate(ch[:-1])}
        widths |= {f"conv{k}_2": c for k, c in enumerate(ch[1:])}
        widths |= {"final_conv": self.final_channels, "final_dense0": self.linear_channels}
        # the fused leaky ReLUs' biases (torch: a module of their own after each layer)
        self.bias = {
            name: self.param(f"{name}_act_bias", nn.initializers.zeros, (c,))
            for name, c in widths.items()
        }

    def __call__(self, x: Array, group_size: int | None = None, update_stats: bool = False):
        g = self.group_size if group_size is None else group_size
        if x.shape[1:] != (self.resolution, self.resolution, 3):
            raise ValueError(f"expected [N,{self.resolution},{self.resolution},3], got {x.shape}")
        tap = self.sow
        img = haar_dwt(x)
        tap("intermediates", "dwt_out", img)
        out = None
        nconv = len(self.channels) - 1
        for k in range(len(self.channels)):
            t = f"from_rgb{k}/"
            if k > 0:
                y = haar_iwt(img)
                tap("intermediates", t + "iwt_out", y)
                y = downsample(y)
                tap("intermediates", t + "downsample_out", y)
                img = haar_dwt(y)
                tap("intermediates", t + "dwt_out", img)
            h = fused_lrelu(self.from_rgb[k](img, update_stats), self.bias[f"from_rgb{k}"])
            tap("intermediates", t + "conv_out", h)
            out = h if out is None else h + out
            tap("intermediates", t + "out", out)
            if k < nconv:
                out = fused_lrelu(self.conv1[k](out, update_stats), self.bias[f"conv{k}_1"])
                tap("intermediates", f"conv{k}/conv1_out", out)
                out = blur(out)
                tap("intermediates", f"conv{k}/blur_out", out)
                out = fused_lrelu(self.conv2[k](out, update_stats), self.bias[f"conv{k}_2"])
                tap("intermediates", f"conv{k}/out", out)
        out = L.minibatch_stddev(out, g)
        tap("intermediates", "stddev_concat", out)
        out = fused_lrelu(self.final_conv(out, update_stats), self.bias["final_conv"])
        tap("intermediates", "final_conv_out", out)
        out = self.final_dense0(L.flatten_chw(out), update_stats)
        tap("intermediates", "final_linear0_out", out)
        out = fused_lrelu(out, self.bias["final_dense0"])
        tap("intermediates", "final_linear1_out", out)
        return self.final_dense1(out, update_stats)[:, 0]

    def effective_weights(self) -> dict[str, Array]:
        """{layer name: kernel / sigma} for every spectrally normalised layer (our layout)."""
        layers = [*self.from_rgb, *self.conv1, *self.conv2]
        layers += [self.final_conv, self.final_dense0, self.final_dense1]
        return {layer.name: layer.weight() for layer in layers}

    def init_inputs(self) -> tuple:
        return (jnp.zeros((1, self.resolution, self.resolution, 3), jnp.float32),)


def sn_layer_names(d: StyleNATDiscriminator) -> list[str]:
    """Our names of the spectrally normalised layers, in the reference's state_dict order."""
    names = [f"from_rgb{k}" for k in range(len(d.channels))]
    for k in range(len(d.channels) - 1):
        names += [f"conv{k}_1", f"conv{k}_2"]
    return names + ["final_conv", "final_dense0", "final_dense1"]


def from_shapes(shp: Mapping[str, tuple[int, ...]]) -> StyleNATDiscriminator:
    """The architecture read from converted variable shapes (raises KeyError/ValueError)."""
    n = 0
    while f"params/from_rgb{n}/kernel" in shp:
        n += 1
    if n == 0:
        raise KeyError("params/from_rgb0/kernel")
    if n < 2:
        raise ValueError(f"{n} from_rgb layer: expected at least 2 (resolution >= 16)")
    channels = tuple(int(shp[f"params/from_rgb{k}/kernel"][-1]) for k in range(n))
    final = int(shp["params/final_conv/kernel"][-1])
    linear = int(shp["params/final_dense0/kernel"][-1])
    return StyleNATDiscriminator(channels, final, linear)
