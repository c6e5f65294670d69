"""idinvert's StyleGAN generator (`StyleGANGeneratorNet` of idinvert_pytorch): mapping, truncation, synthesis.

Parameters use the checkpoint's key names (see `param_shapes`) in our layouts: dense weights
[in, out], conv weights [kh, kw, in, out], the constant and noise buffers NHWC. The fused up-sampling
weight keeps the reference's TF layout [3, 3, in, out]. The architecture (`GeneratorSpec`) is inferred
from the parameter shapes, never hard-coded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from occjax import nn

Array = jax.Array
MAPPING_LRMUL = 0.01


@dataclass(frozen=True)
class GeneratorSpec:
    resolution: int
    z_dim: int
    w_dim: int
    num_layers: int  # W+ layers, 2 per resolution 4..resolution
    mapping_layers: int
    mapping_width: int
    channels: tuple[int, ...]  # per synthesis layer
    fused: tuple[bool, ...]  # per block (resolution 4 * 2**b): transposed-conv up-sampling
    truncation_psi: float = 0.7
    truncation_layers: int = 8
    # "subpixel": nearest x2 + 3x3 conv computed as four 2x2 convs at the input resolution
    # (2.25x fewer FLOPs, same function); "naive": nearest x2 then the 3x3 conv, as the reference.
    upsample_impl: str = "subpixel"

    @property
    def num_blocks(self) -> int:
        return self.num_layers // 2


def spec_from_shapes(shp: Mapping[str, tuple[int, ...]]) -> GeneratorSpec:
    """Infer the architecture from converted parameter shapes (raises KeyError/ValueError)."""
    m = 0
    while f"mapping.dense{m}.fc.weight" in shp:
        m += 1
    if m == 0:
        raise KeyError("mapping.dense0.fc.weight")
    z_dim, width = shp["mapping.dense0.fc.weight"]
    w_dim = shp["truncation.w_avg"][0]
    out = shp[f"mapping.dense{m - 1}.fc.weight"][1]
    if out % w_dim:
        raise ValueError(f"mapping output {out} is not a multiple of w_dim {w_dim}")
    layers = out // w_dim
    if layers < 2 or layers % 2:
        raise ValueError(f"{layers} W+ layers: expected an even number >= 2")
    channels, fused = [], []
    for k in range(layers):
        p = f"synthesis.layer{k}"
        # several keys carry the width: use the first present so one missing key is reported, not fatal
        cands = [(f"{p}.const", 3), (f"{p}.weight", 3), (f"{p}.conv.weight", 3)]
        cands += [(f"{p}.epilogue.bias", 0), (f"{p}.epilogue.apply_noise.weight", 0)]
        found = [shp[key][i] for key, i in cands if key in shp and len(shp[key]) > i]
        if not found:
            raise KeyError(f"{p}.conv.weight")
        channels.append(found[0])
        if k % 2 == 0:
            fused.append(f"{p}.weight" in shp)
    res = 4 * 2 ** (layers // 2 - 1)
    return GeneratorSpec(res, z_dim, w_dim, layers, m, width, tuple(channels), tuple(fused))


def param_shapes(spec: GeneratorSpec) -> dict[str, tuple[int, ...]]:
    """Every converted parameter and its shape (checkpoint names, our layouts)."""
    s: dict[str, tuple[int, ...]] = {}
    fan = spec.z_dim
    for i in range(spec.mapping_layers):
        out = spec.w_dim * spec.num_layers if i == spec.mapping_layers - 1 else spec.mapping_width
        s[f"mapping.dense{i}.fc.weight"] = (fan, out)
        s[f"mapping.dense{i}.wscale.bias"] = (out,)
        fan = out
    s["truncation.w_avg"] = (spec.w_dim,)
    prev = spec.channels[0]
    for k, c in enumerate(spec.channels):
        res = 4 * 2 ** (k // 2)
        p = f"synthesis.layer{k}"
        if k == 0:
            s[f"{p}.const"] = (1, 4, 4, c)
        elif k % 2 == 0 and spec.fused[k // 2]:
            s[f"{p}.weight"] = (3, 3, prev, c)
        else:
            s[f"{p}.conv.weight"] = (3, 3, prev, c)
        s[f"{p}.epilogue.bias"] = (c,)
        s[f"{p}.epilogue.apply_noise.weight"] = (c,)
        s[f"{p}.epilogue.apply_noise.noise"] = (1, res, res, 1)
        s[f"{p}.epilogue.style_mod.dense.fc.weight"] = (spec.w_dim, 2 * c)
        s[f"{p}.epilogue.style_mod.dense.wscale.bias"] = (2 * c,)
        if k % 2 == 1:
            s[f"synthesis.output{k // 2}.conv.weight"] = (1, 1, c, 3)
            s[f"synthesis.output{k // 2}.bias"] = (3,)
        prev = c
    return s


# ---- mapping and truncation ---------------------------------------------------------------------


def mapping(params: dict, z: Array, spec: GeneratorSpec) -> Array:
    """z [N, z_dim] -> w+ [N, L, w_dim] (pixel norm, dense layers with lrmul 0.01, leaky ReLU)."""
    x = nn.pixel_norm(z)
    for i in range(spec.mapping_layers):
        p = params["mapping"][f"dense{i}"]
        w = p["fc"]["weight"]
        x = nn.dense(x, w) * nn.wscale(w.shape[0], lrmul=MAPPING_LRMUL)
        x = nn.leaky_relu(x + p["wscale"]["bias"] * MAPPING_LRMUL)
    return x.reshape(x.shape[0], spec.num_layers, spec.w_dim)  # [N, L, w_dim], row-major view


def truncation_coefs(spec: GeneratorSpec) -> Array:
    """psi on the first `truncation_layers` W+ layers, 1 elsewhere: [L]."""
    layers = jnp.arange(spec.num_layers)
    return jnp.where(layers < spec.truncation_layers, spec.truncation_psi, 1.0).astype(jnp.float32)


def truncation(params: dict, w: Array, spec: GeneratorSpec) -> Array:
    """w' = w_avg + (w - w_avg) * coef, w [N, L, w_dim]."""
    w_avg = params["truncation"]["w_avg"]
    return w_avg + (w - w_avg) * truncation_coefs(spec)[None, :, None]


# ---- synthesis ----------------------------------------------------------------------------------


def upsample_phase_kernels(k: Array) -> tuple[Array, Array, Array, Array]:
    """The four 2x2 kernels [2,2,I,O] of the "subpixel" form of nearest x2 + 3x3 conv (HWIO k).

    Output pixel (2i+a, 2j+b) only sees input rows/cols {i-1+a, i+a} / {j-1+b, j+b}, so each of the
    four phases (a, b) is a 2x2 conv at the input resolution whose taps are sums of the 3x3 taps.
    """
    rows = (jnp.stack([k[0], k[1] + k[2]]), jnp.stack([k[0] + k[1], k[2]]))  # phase a -> [2,3,I,O]
    out = []
    for a in (0, 1):
        ka = rows[a]
        cols = (
            jnp.stack([ka[:, 0], ka[:, 1] + ka[:, 2]], axis=1),
            jnp.stack([ka[:, 0] + ka[:, 1], ka[:, 2]], axis=1),
        )
        out += [cols[0], cols[1]]
    return tuple(out)


def _upsample_phases(x: Array, phases) -> Array:
    """nearest x2 + 3x3 conv (padding 1) from its four phase kernels (plain arrays or nn.Kernel)."""
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    n, h, w, _ = x.shape
    ys = []
    for i, (a, b) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        window = xp[:, a : a + h + 1, b : b + w + 1]  # [N,h+1,w+1,I]
        ys.append(nn.conv2d(window, phases[i]))  # [N,h,w,O]
    o = ys[0].shape[-1]
    y = jnp.stack(ys, axis=3).reshape(n, h, w, 2, 2, o)  # [N,h,w,a,b,O]
    return y.transpose(0, 1, 3, 2, 4, 5).reshape(n, 2 * h, 2 * w, o)


def _upsample_conv(x: Array, k: Array, impl: str) -> Array:
    """nearest x2 up-sampling followed by a 3x3 conv (padding 1) with HWIO kernel k."""
    if impl == "naive":
        return nn.conv2d(nn.upsample_nearest2x(x), k, padding=1)
    return _upsample_phases(x, upsample_phase_kernels(k))


def fused_to_hwio(weight: Array) -> Array:
    """The fused layer's TF-layout [3,3,in,out] weight as the equivalent nearest+conv HWIO kernel.

    The reference's transposed conv with the 4x4 sum-of-shifts kernel equals nearest x2 up-sampling
    followed by a 3x3 conv whose kernel is the weight flipped in both spatial dims.
    """
    return weight[::-1, ::-1]


def _epilogue(p: dict, x: Array, w: Array, spec: GeneratorSpec, zero_noise: bool):
    """noise, bias, leaky ReLU, instance norm, style modulation. x [N,H,W,C], w [N,w_dim]."""
    if not zero_noise:
        x = x + p["apply_noise"]["noise"] * p["apply_noise"]["weight"]
    x = nn.leaky_relu(x + p["bias"])
    x = nn.instance_norm(x)
    sm = p["style_mod"]["dense"]
    style = nn.dense(w, sm["fc"]["weight"]) * nn.wscale(spec.w_dim, gain=1.0) + sm["wscale"]["bias"]
    c = x.shape[-1]
    x = x * (style[:, None, None, :c] + 1) + style[:, None, None, c:]
    return x, style


def synthesis(
    params: dict,
    wp: Array,
    spec: GeneratorSpec,
    zero_noise: bool = False,
    return_taps: bool = False,
):
    """w+ [N, L, w_dim] -> image [N, H, W, 3] in (-1, 1) (NHWC). No truncation.

    With `return_taps`, also returns {"layerKK_out", "styleKK", "pre_tanh"} for parity tests.
    """
    ps = params["synthesis"]
    n = wp.shape[0]
    taps = {}
    x = jnp.broadcast_to(ps["layer0"]["const"], (n, 4, 4, spec.channels[0])).astype(wp.dtype)
    for k in range(spec.num_layers):
        p = ps[f"layer{k}"]
        cin = x.shape[-1]
        if k > 0:
            if k % 2 == 0:  # up-sampling conv, then blur
                if "phases" in p:  # prepared (see `prepare`): scaled phase kernels
                    x = _upsample_phases(x, p["phases"])
                else:
                    x = _upsample_conv(x, _upsample_kernel(p, spec, k, cin), spec.upsample_impl)
                x = nn.blur(x)
            else:
                x = nn.conv2d(x, p["conv"]["weight"], padding=1) * nn.wscale(cin * 9)
        x, style = _epilogue(p["epilogue"], x, wp[:, k], spec, zero_noise)
        if return_taps:
            taps[f"layer{k:02d}_out"] = x
            taps[f"style{k:02d}"] = style
    out = ps[f"output{spec.num_blocks - 1}"]
    rgb = nn.conv2d(x, out["conv"]["weight"]) * nn.wscale(x.shape[-1], gain=1.0) + out["bias"]
    image = jnp.tanh(rgb)
    if return_taps:
        taps["pre_tanh"] = rgb
        return image, taps
    return image


def _upsample_kernel(p: dict, spec: GeneratorSpec, k: int, cin: int) -> Array:
    """Layer k's up-sampling conv as the HWIO kernel of nearest x2 + 3x3 conv, wscale applied."""
    kern = fused_to_hwio(p["weight"]) if spec.fused[k // 2] else p["conv"]["weight"]
    return kern * nn.wscale(cin * 9)


def prepare(params: dict, spec: GeneratorSpec) -> dict:
    """Parameters for repeated differentiation (the inversion step): the weight-only work done once.

    Every conv kernel becomes an `nn.Kernel` (its input-gradient kernel precomputed) and, with the
    "subpixel" form, each up-sampling layer gets its scaled phase kernels under "phases". `synthesis`
    gives the same function on either form."""
    ps = params["synthesis"]
    out = dict(ps)
    for k in range(1, spec.num_layers):
        p = dict(ps[f"layer{k}"])
        if k % 2 == 0 and spec.upsample_impl == "subpixel":
            kern = _upsample_kernel(p, spec, k, spec.channels[k - 1])
            p["phases"] = tuple(nn.prepare_kernel(q) for q in upsample_phase_kernels(kern))
            p.pop("weight", None)
            p.pop("conv", None)
        elif k % 2 == 1:
            p["conv"] = {**p["conv"], "weight": nn.prepare_kernel(p["conv"]["weight"])}
        out[f"layer{k}"] = p
    last = f"output{spec.num_blocks - 1}"
    out[last] = {**ps[last], "conv": {"weight": nn.prepare_kernel(ps[last]["conv"]["weight"])}}
    return {**params, "synthesis": out}


def generate(params: dict, z: Array, spec: GeneratorSpec) -> Array:
    """mapping -> truncation -> synthesis: z [N, z_dim] -> image [N, H, W, 3]."""
    return synthesis(params, truncation(params, mapping(params, z, spec), spec), spec)


def flops_per_image(spec: GeneratorSpec) -> int:
    """Multiply-adds x 2 of the convolutions and dense layers of one synthesis pass (forward)."""
    total = 0
    prev = spec.channels[0]
    for k, c in enumerate(spec.channels):
        res = 4 * 2 ** (k // 2)
        if k > 0:
            taps = 4 if (k % 2 == 0 and spec.upsample_impl == "subpixel") else 9
            total += 2 * res * res * taps * prev * c
        total += 2 * spec.w_dim * 2 * c
        prev = c
    return total + 2 * spec.resolution**2 * prev * 3


__all__ = [
    "GeneratorSpec",
    "spec_from_shapes",
    "param_shapes",
    "mapping",
    "truncation",
    "synthesis",
    "generate",
    "prepare",
]
