"""idinvert's domain-guided encoder (`StyleGANEncoderNet` of idinvert_pytorch, use_bn=True, use_wscale=False).

Block 0: 3x3 conv -> batch norm -> leaky ReLU at full resolution. Blocks 1..n-2: 2x2 average pool,
then a residual block (two 3x3 conv + bias + BN + leaky ReLU; shortcut 1x1 conv + BN + leaky ReLU
when the width changes, identity otherwise). Last block: flatten (C,H,W order), dense (gain 1),
batch norm over the features. Batch norm uses the running statistics (eval mode). Parameters use
the checkpoint's key names; conv kernels HWIO, the dense weight [in, out].
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import jax

from occjax import nn

Array = jax.Array
BN_KEYS = ("weight", "bias", "running_mean", "running_var")


@dataclass(frozen=True)
class EncoderSpec:
    resolution: int
    num_layers: int  # W+ layers of the code it predicts
    w_dim: int
    channels: tuple[int, ...]  # output width of blocks 0..n-2
    dense_out: int

    @property
    def num_blocks(self) -> int:
        return len(self.channels) + 1


def spec_from_shapes(shp: Mapping[str, tuple[int, ...]]) -> EncoderSpec:
    channels = [shp["block0.conv.weight"][3]]
    b = 1
    while f"block{b}.conv1.weight" in shp:
        channels.append(shp[f"block{b}.conv2.weight"][3])
        b += 1
    fc_in, out = shp[f"block{b}.fc.weight"]
    if fc_in != channels[-1] * 16:
        raise ValueError(f"block{b}.fc takes {fc_in} features, expected {channels[-1]}*4*4")
    layers = 2 * b  # idinvert: output size w_dim * 2 * block_idx
    if out % layers:
        raise ValueError(f"encoder output {out} is not a multiple of {layers} W+ layers")
    return EncoderSpec(4 * 2 ** (b - 1), layers, out // layers, tuple(channels), out)


def _bn(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.{k}": (c,) for k in BN_KEYS}


def param_shapes(spec: EncoderSpec) -> dict[str, tuple[int, ...]]:
    s = {"block0.conv.weight": (3, 3, 3, spec.channels[0]), **_bn("block0.bn.bn", spec.channels[0])}
    for b in range(1, len(spec.channels)):
        cin, cout = spec.channels[b - 1], spec.channels[b]
        hid = min(cin, cout)
        p = f"block{b}"
        if cin != cout:
            s[f"{p}.conv.weight"] = (1, 1, cin, cout)
            s.update(_bn(f"{p}.bn.bn", cout))
        s[f"{p}.conv1.weight"] = (3, 3, cin, hid)
        s[f"{p}.wscale1.bias"] = (hid,)
        s.update(_bn(f"{p}.bn1.bn", hid))
        s[f"{p}.conv2.weight"] = (3, 3, hid, cout)
        s[f"{p}.wscale2.bias"] = (cout,)
        s.update(_bn(f"{p}.bn2.bn", cout))
    last = f"block{len(spec.channels)}"
    s[f"{last}.fc.weight"] = (spec.channels[-1] * 16, spec.dense_out)
    s.update(_bn(f"{last}.bn.bn", spec.dense_out))
    return s


def encode(params: dict, x: Array, spec: EncoderSpec, return_taps: bool = False):
    """Image [N, H, W, 3] in [-1, 1] (NHWC) -> w+ code [N, L, w_dim]."""
    taps = {}
    p = params["block0"]
    x = nn.leaky_relu(
        nn.batch_norm_eval(nn.conv2d(x, p["conv"]["weight"], padding=1), p["bn"]["bn"])
    )
    taps["block0_out"] = x
    for b in range(1, len(spec.channels)):
        p = params[f"block{b}"]
        x = nn.avg_pool2x(x)
        if "conv" in p:
            short = nn.conv2d(x, p["conv"]["weight"])
            short = nn.leaky_relu(nn.batch_norm_eval(short, p["bn"]["bn"]))
        else:
            short = x
        y = nn.conv2d(x, p["conv1"]["weight"], padding=1) + p["wscale1"]["bias"]
        y = nn.leaky_relu(nn.batch_norm_eval(y, p["bn1"]["bn"]))
        y = nn.conv2d(y, p["conv2"]["weight"], padding=1) + p["wscale2"]["bias"]
        y = nn.leaky_relu(nn.batch_norm_eval(y, p["bn2"]["bn"]))
        x = y + short
        taps[f"block{b}_out"] = x
    p = params[f"block{len(spec.channels)}"]
    flat = nn.nhwc_to_nchw(x).reshape(x.shape[0], -1)  # [N, C*4*4] in the reference's C,H,W order
    w = p["fc"]["weight"]
    code = nn.batch_norm_eval(nn.dense(flat, w) * nn.wscale(w.shape[0], gain=1.0), p["bn"]["bn"])
    taps[f"block{len(spec.channels)}_out"] = code
    code = code.reshape(x.shape[0], spec.num_layers, spec.w_dim)  # [N, L, w_dim]
    return (code, taps) if return_taps else code


def flops_per_image(spec: EncoderSpec) -> int:
    total, res = 2 * spec.resolution**2 * 9 * 3 * spec.channels[0], spec.resolution
    for b in range(1, len(spec.channels)):
        res //= 2
        cin, cout = spec.channels[b - 1], spec.channels[b]
        hid = min(cin, cout)
        total += 2 * res * res * 9 * (cin * hid + hid * cout) + (
            2 * res * res * cin * cout if cin != cout else 0
        )
    return total + 2 * spec.channels[-1] * 16 * spec.dense_out


def prepare(params: dict, spec: EncoderSpec) -> dict:
    """Parameters for repeated differentiation (the inversion step): every conv kernel as an
    `nn.Kernel`, its input-gradient kernel computed once instead of in every step."""
    return nn.prepare_conv_weights(params)
