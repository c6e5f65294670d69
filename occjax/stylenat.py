"""StyleNAT's wavelet discriminator with spectral norm (the D of "GAN Inversion for Occlusion Removal").

Ports `models/styleNAT_discriminator.py` of FaceOcclusionRemoval-GAN-Inversion (a copy of StyleNAT's
`models/discriminator.py`, itself StyleSwin's wavelet D) with `sn=True`, `blur_kernel=[1,3,3,1]`:
Haar DWT input, one FromRGB skip input per scale (IWT -> [1,3,3,1] Downsample -> DWT), ConvBlocks of
two convolutions, minibatch stddev, final conv and two dense layers, every conv/dense layer spectrally
normalised (`torch.nn.utils.spectral_norm`, one power iteration, eps 1e-12), fused leaky ReLU biases.

Converted layout (see `converters/stylenat.py`): parameters keep the checkpoint's key names;
`*.weight_orig` of a conv is HWIO [kh,kw,in,out], of a dense layer [in,out] (final_linear.0's inputs
in the reference's (C,H,W) flatten order); `*.weight_u` [out] as stored; `*.weight_v` [in*kh*kw] is
REORDERED from torch's (in,kh,kw) order to (kh,kw,in), so that with Wr = weight_orig.reshape(-1, out)
(= torch's W_mat^T with permuted columns) sigma = u . (v @ Wr) and the power iteration
v <- normalize(Wr u), u <- normalize(v Wr) are exactly torch's. Biases [C] as stored. The fixed
Haar and blur buffers are rebuilt here (`haar_filters`, `blur_kernel`), never loaded.

`discriminate` is eval mode (stored u, v). Torch's training mode, the paper's case, is
`discriminate(power_iteration(params, spec), x, spec)`, keeping the returned params for the next call.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from occjax import nn

Array = jax.Array
SN_EPS = 1e-12
BANDS = ("ll", "lh", "hl", "hh")


@dataclass(frozen=True)
class StyleNATSpec:
    resolution: int  # input image size (square); the wavelet image is half of it
    channels: tuple[int, ...]  # width of `out` after from_rgbs.k, k = 0..len-1 (4x4 for the last)
    final_channels: int  # final_conv output channels
    linear_channels: int  # final_linear.0 output features

    @property
    def num_convs(self) -> int:
        return len(self.channels) - 1


def spec_from_shapes(shp: Mapping[str, tuple[int, ...]]) -> StyleNATSpec:
    """Infer the architecture from converted parameter shapes (raises KeyError/ValueError)."""
    n = 0
    while f"from_rgbs.{n}.conv.0.weight_orig" in shp:
        n += 1
    if n == 0:
        raise KeyError("from_rgbs.0.conv.0.weight_orig")
    if n < 2:
        raise ValueError(f"{n} from_rgbs layer: expected at least 2 (resolution >= 16)")
    channels = tuple(int(shp[f"from_rgbs.{k}.conv.0.weight_orig"][-1]) for k in range(n))
    final = int(shp["final_conv.0.weight_orig"][-1])
    linear = int(shp["final_linear.0.weight_orig"][-1])
    return StyleNATSpec(2 ** (n + 2), channels, final, linear)


def sn_layers(spec: StyleNATSpec) -> list[str]:
    """Checkpoint prefixes of the spectrally normalised layers, in state_dict order."""
    names = [f"from_rgbs.{k}.conv.0" for k in range(len(spec.channels))]
    for k in range(spec.num_convs):
        names += [f"convs.{k}.conv1.0", f"convs.{k}.conv2.1"]
    return names + ["final_conv.0", "final_linear.0", "final_linear.2"]


def param_shapes(spec: StyleNATSpec) -> dict[str, tuple[int, ...]]:
    """Every converted parameter/buffer and its shape (checkpoint names, our layouts)."""
    s: dict[str, tuple[int, ...]] = {}

    def sn(prefix: str, shape: tuple[int, ...]) -> None:
        s[f"{prefix}.weight_orig"] = shape
        s[f"{prefix}.weight_u"] = (shape[-1],)
        s[f"{prefix}.weight_v"] = (math.prod(shape[:-1]),)

    for k, c in enumerate(spec.channels):
        sn(f"from_rgbs.{k}.conv.0", (1, 1, 12, c))
        s[f"from_rgbs.{k}.conv.1.bias"] = (c,)
    for k in range(spec.num_convs):
        cin, cout = spec.channels[k], spec.channels[k + 1]
        sn(f"convs.{k}.conv1.0", (3, 3, cin, cin))
        s[f"convs.{k}.conv1.1.bias"] = (cin,)
        sn(f"convs.{k}.conv2.1", (3, 3, cin, cout))
        s[f"convs.{k}.conv2.2.bias"] = (cout,)
    f, lin = spec.final_channels, spec.linear_channels
    sn("final_conv.0", (3, 3, spec.channels[-1] + 1, f))
    s["final_conv.1.bias"] = (f,)
    sn("final_linear.0", (f * 16, lin))
    s["final_linear.0.bias"] = (lin,)
    s["final_linear.1.bias"] = (lin,)
    sn("final_linear.2", (lin, 1))
    s["final_linear.2.bias"] = (1,)
    return s


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
    return nn.fir2d(x, kf, (y0, y1, x0, x1), down=down, up=up)


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
    return nn.leaky_relu(x + bias.astype(x.dtype), 0.2) * math.sqrt(2.0)


# ---- spectral norm ------------------------------------------------------------------------------


def _node(params: Mapping, prefix: str) -> Mapping:
    for part in prefix.split("."):
        params = params[part]
    return params


def _copy_dicts(tree):
    """The nested dicts copied (so layers can be edited in place), the arrays shared."""
    return {k: _copy_dicts(v) for k, v in tree.items()} if isinstance(tree, Mapping) else tree


def _normalize(z: Array) -> Array:
    return z / jnp.maximum(jnp.linalg.norm(z), SN_EPS)


def sn_sigma(p: Mapping) -> Array:
    """sigma = u . (W_mat v) with the layer's u, v (no gradient through u, v, as torch's buffers)."""
    w = p["weight_orig"]
    wr = w.reshape(-1, w.shape[-1])  # [in*kh*kw (our v order), out]
    u, v = lax.stop_gradient(p["weight_u"]), lax.stop_gradient(p["weight_v"])
    return jnp.dot(u, v.astype(w.dtype) @ wr)


def sn_weight(p: Mapping) -> Array:
    """The effective weight weight_orig / sigma, in our layout (precomputed under "weight_sn" by
    `prepare`)."""
    if "weight_sn" in p:
        return p["weight_sn"]
    return p["weight_orig"] / sn_sigma(p)


def effective_weights(params: Mapping, spec: StyleNATSpec) -> dict[str, Array]:
    """{layer prefix: weight_orig / sigma} for every spectrally normalised layer (our layout)."""
    return {name: sn_weight(_node(params, name)) for name in sn_layers(spec)}


def power_iteration(params: Mapping, spec: StyleNATSpec) -> dict:
    """One torch train-mode power iteration on every SN layer: v <- normalize(W_mat^T u),
    u <- normalize(W_mat v). Returns new params (the inputs are not modified); u, v carry no gradient."""

    out = _copy_dicts(params)
    for name in sn_layers(spec):
        p = _node(out, name)
        w = lax.stop_gradient(p["weight_orig"])
        wr = w.reshape(-1, w.shape[-1])
        v = _normalize(wr @ p["weight_u"].astype(w.dtype))
        u = _normalize(v @ wr)
        p["weight_u"], p["weight_v"] = lax.stop_gradient(u), lax.stop_gradient(v)
    return out


# ---- forward ------------------------------------------------------------------------------------


def discriminate(
    params: Mapping, x: Array, spec: StyleNATSpec, group_size: int = 4, return_taps: bool = False
):
    """Eval-mode D: x [N,H,W,3] RGB in [-1,1] (NHWC) -> raw scores [N] (high = real).

    The minibatch-stddev groups are the reference's: G = min(group_size, N), sample n in group n mod
    N/G; N must be divisible by G. With `return_taps`, also returns the intermediate activations
    (NHWC) named as the parity fixtures ("dwt_out", "from_rgb{k}/out", "conv{k}/blur_out", ...).
    """
    if x.shape[1:] != (spec.resolution, spec.resolution, 3):
        raise ValueError(f"expected [N,{spec.resolution},{spec.resolution},3], got {x.shape}")
    taps: dict[str, Array] = {}
    img = haar_dwt(x)
    taps["dwt_out"] = img
    out = None
    for k in range(len(spec.channels)):
        p = params["from_rgbs"][str(k)]
        t = f"from_rgb{k}/"
        if k > 0:
            y = haar_iwt(img)
            taps[t + "iwt_out"] = y
            y = downsample(y)
            taps[t + "downsample_out"] = y
            img = haar_dwt(y)
            taps[t + "dwt_out"] = img
        h = fused_lrelu(nn.conv2d(img, sn_weight(p["conv"]["0"])), p["conv"]["1"]["bias"])
        taps[t + "conv_out"] = h
        out = h if out is None else h + out
        taps[t + "out"] = out
        if k < spec.num_convs:
            c = params["convs"][str(k)]
            out = nn.conv2d(out, sn_weight(c["conv1"]["0"]), padding=1)
            out = fused_lrelu(out, c["conv1"]["1"]["bias"])
            taps[f"conv{k}/conv1_out"] = out
            out = blur(out)
            taps[f"conv{k}/blur_out"] = out
            out = nn.conv2d(out, sn_weight(c["conv2"]["1"]), stride=2)
            out = fused_lrelu(out, c["conv2"]["2"]["bias"])
            taps[f"conv{k}/out"] = out
    out = nn.minibatch_stddev(out, group_size)
    taps["stddev_concat"] = out
    fc = params["final_conv"]
    out = fused_lrelu(nn.conv2d(out, sn_weight(fc["0"]), padding=1), fc["1"]["bias"])
    taps["final_conv_out"] = out
    out = nn.nhwc_to_nchw(out).reshape(out.shape[0], -1)  # torch's (C,H,W) flatten order
    fl = params["final_linear"]
    out = nn.dense(out, sn_weight(fl["0"])) + fl["0"]["bias"]
    taps["final_linear0_out"] = out
    out = fused_lrelu(out, fl["1"]["bias"])
    taps["final_linear1_out"] = out
    score = (nn.dense(out, sn_weight(fl["2"])) + fl["2"]["bias"])[:, 0]
    return (score, taps) if return_taps else score


def prepare(params: Mapping, spec: StyleNATSpec) -> dict:
    """Parameters for repeated differentiation (the inversion step, eval mode): each spectrally
    normalised layer's effective weight under "weight_sn" (conv kernels as `nn.Kernel`, their
    input-gradient kernel precomputed), so neither sigma nor the kernel transposes are recomputed
    in every step. `discriminate` gives the same function on either form."""

    out = _copy_dicts(params)
    for name in sn_layers(spec):
        p = _node(out, name)
        w = sn_weight(p)
        p["weight_sn"] = nn.prepare_kernel(w) if w.ndim == 4 else w
        for k in ("weight_orig", "weight_u", "weight_v"):
            p.pop(k)
    return out


__all__ = [
    "StyleNATSpec",
    "spec_from_shapes",
    "param_shapes",
    "sn_layers",
    "haar_filters",
    "inverse_haar_filters",
    "blur_kernel",
    "upfirdn2d",
    "haar_dwt",
    "haar_iwt",
    "downsample",
    "blur",
    "sn_sigma",
    "sn_weight",
    "effective_weights",
    "power_iteration",
    "discriminate",
    "prepare",
]
