"""idinvert's StyleGAN generator (`StyleGANGeneratorNet` of idinvert_pytorch): mapping, truncation,
synthesis, as one Flax module.

Variables (paths are occjax's own; `converters/` maps the checkpoints' names onto them):
  params/mapping/dense{i}/{kernel [in,out], bias}          8 dense layers, lr_mul 0.01
  params/synthesis/const [1,4,4,C]
  params/synthesis/layer{k}/conv/kernel [3,3,in,out]      k >= 1; even k: nearest x2 + this conv
  params/synthesis/layer{k}/epilogue/{bias, noise_weight, style/{kernel,bias}}
  params/synthesis/to_rgb/{kernel [1,1,C,3], bias}        the last resolution's ToRGB
  buffers/w_avg [w_dim], buffers/synthesis/layer{k}/noise [1,res,res,1]
A fused (transposed-conv) up-sampling layer of the reference is stored as the equivalent nearest x2 +
3x3 conv kernel (its TF-layout weight flipped in both spatial dims), so the network has one form.
"""

from __future__ import annotations

from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from occjax import layers as L

Array = jax.Array
MAPPING_LR_MUL = 0.01


def nf(res: int, base: int, fmax: int) -> int:
    return min(base // res, fmax)


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


def upsample_phases(x: Array, phases) -> Array:
    """nearest x2 + 3x3 conv (padding 1) from its four phase kernels (arrays or `layers.Kernel`)."""
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    n, h, w, _ = x.shape
    ys = []
    for i, (a, b) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        window = xp[:, a : a + h + 1, b : b + w + 1]  # [N,h+1,w+1,I]
        ys.append(L.conv2d(window, phases[i]))  # [N,h,w,O]
    o = ys[0].shape[-1]
    y = jnp.stack(ys, axis=3).reshape(n, h, w, 2, 2, o)  # [N,h,w,a,b,O]
    return y.transpose(0, 1, 3, 2, 4, 5).reshape(n, 2 * h, 2 * w, o)


class UpConv(nn.Module):
    """Nearest x2 up-sampling then a 3x3 conv (padding 1), gain sqrt(2). "subpixel" computes it as
    four 2x2 convs at the input resolution (2.25x fewer FLOPs, same function); prepared, the four
    scaled phase kernels are computed once; "naive" is the reference's order of operations."""

    features: int
    impl: str = "subpixel"

    @nn.compact
    def __call__(self, x: Array) -> Array:
        w = self.param("kernel", nn.initializers.normal(1.0), (3, 3, x.shape[-1], self.features))
        scale = L.wscale(9 * x.shape[-1])
        if self.impl == "naive":
            return L.conv2d(L.upsample_nearest2x(x), w, padding=1) * scale

        def phases():
            return tuple(L.prepare_kernel(p) for p in upsample_phase_kernels(w * scale))

        return upsample_phases(x, L.prepared(self, "phases", phases))


class Epilogue(nn.Module):
    """noise, bias, leaky ReLU, instance norm, style modulation. x [N,H,W,C], w [N,w_dim]."""

    zero_noise: bool = False

    @nn.compact
    def __call__(self, x: Array, w: Array, noise: Array) -> tuple[Array, Array]:
        c = x.shape[-1]
        if not self.zero_noise:
            x = x + noise * self.param("noise_weight", nn.initializers.zeros, (c,))
        x = L.leaky_relu(x + self.param("bias", nn.initializers.zeros, (c,)))
        x = L.instance_norm(x)
        style = L.Dense(2 * c, gain=1.0, name="style")(w)
        x = x * (style[:, None, None, :c] + 1) + style[:, None, None, c:]
        return x, style


class SynthesisLayer(nn.Module):
    """Layer k of the synthesis: its conv (none for k = 0; nearest x2 + conv, then blur, for even k),
    then the epilogue with its fixed noise buffer [1,res,res,1] and W+ layer k."""

    k: int
    features: int
    upsample_impl: str = "subpixel"
    zero_noise: bool = False

    @nn.compact
    def __call__(self, x: Array, w: Array) -> tuple[Array, Array]:
        if self.k > 0 and self.k % 2 == 0:
            x = L.blur(UpConv(self.features, self.upsample_impl, name="conv")(x))
        elif self.k > 0:
            x = L.Conv(self.features, 3, padding=1, gain=2**0.5, name="conv")(x)
        shape = (1, x.shape[1], x.shape[2], 1)
        noise = self.variable(
            "buffers", "noise", lambda: jax.random.normal(self.make_rng("params"), shape)
        ).value
        return Epilogue(self.zero_noise, name="epilogue")(x, w, noise.astype(x.dtype))


class Synthesis(nn.Module):
    """w+ [N, L, w_dim] -> image [N, H, W, 3] in (-1, 1). Taps (sown to "intermediates"):
    layerKK_out, styleKK, pre_tanh."""

    channels: tuple[int, ...]
    upsample_impl: str = "subpixel"
    zero_noise: bool = False

    @nn.compact
    def __call__(self, wp: Array) -> Array:
        n = wp.shape[0]
        c0 = self.channels[0]
        const = self.param("const", nn.initializers.normal(1.0), (1, 4, 4, c0))
        x = jnp.broadcast_to(const, (n, 4, 4, c0)).astype(wp.dtype)
        for k, c in enumerate(self.channels):
            layer = SynthesisLayer(k, c, self.upsample_impl, self.zero_noise, name=f"layer{k}")
            x, style = layer(x, wp[:, k])
            self.sow("intermediates", f"layer{k:02d}_out", x)
            self.sow("intermediates", f"style{k:02d}", style)
        rgb = L.Conv(3, 1, use_bias=True, gain=1.0, name="to_rgb")(x)
        self.sow("intermediates", "pre_tanh", rgb)
        return jnp.tanh(rgb)


class MappingNet(nn.Module):
    """z [N, z_dim] -> w+ [N, L, w_dim]: pixel norm, dense layers with lr_mul 0.01, leaky ReLU."""

    num_layers: int
    w_dim: int
    depth: int
    width: int

    @nn.compact
    def __call__(self, z: Array) -> Array:
        x = L.pixel_norm(z)
        for i in range(self.depth):
            out = self.w_dim * self.num_layers if i == self.depth - 1 else self.width
            x = L.leaky_relu(L.Dense(out, gain=2**0.5, lr_mul=MAPPING_LR_MUL, name=f"dense{i}")(x))
        return x.reshape(x.shape[0], self.num_layers, self.w_dim)  # [N, L, w_dim], row-major view


class IdinvertGenerator(nn.Module):
    """The generator family "idinvert_generator". Code: w+ [N, L, w_dim] (no truncation in
    `synthesis`); `generate(z)` = synthesis(truncation(mapping(z)))."""

    z_dim: int
    w_dim: int
    channels: tuple[int, ...]  # per synthesis layer (2 per resolution 4..resolution)
    mapping_depth: int = 8
    mapping_width: int = 512
    truncation_psi: float = 0.7
    truncation_layers: int = 8
    upsample_impl: str = "subpixel"  # or "naive" (the reference's op order, for parity tests)
    zero_noise: bool = False

    def setup(self):
        self.mapping_net = MappingNet(
            self.num_layers, self.w_dim, self.mapping_depth, self.mapping_width, name="mapping"
        )
        self.synthesis_net = Synthesis(
            self.channels, self.upsample_impl, self.zero_noise, name="synthesis"
        )
        self.w_avg = self.variable("buffers", "w_avg", jnp.zeros, (self.w_dim,))

    @property
    def num_layers(self) -> int:
        return len(self.channels)

    @property
    def resolution(self) -> int:
        return 4 * 2 ** (self.num_layers // 2 - 1)

    @property
    def code_shape(self) -> tuple[int, int]:
        return (self.num_layers, self.w_dim)

    def mapping(self, z: Array) -> Array:
        return self.mapping_net(z)

    def truncation_coefs(self) -> Array:
        """psi on the first `truncation_layers` W+ layers, 1 elsewhere: [L]."""
        layers = jnp.arange(self.num_layers)
        psi = jnp.where(layers < self.truncation_layers, self.truncation_psi, 1.0)
        return psi.astype(jnp.float32)

    def truncation(self, w: Array) -> Array:
        """w' = w_avg + (w - w_avg) * coef, w [N, L, w_dim]."""
        w_avg = self.w_avg.value
        return w_avg + (w - w_avg) * self.truncation_coefs()[None, :, None]

    def codes(self, z: Array) -> Array:
        """The code `generate` synthesises for z [N, z_dim]: truncation(mapping(z))."""
        return self.truncation(self.mapping(z))

    def synthesis(self, wp: Array) -> Array:
        return self.synthesis_net(wp)

    def __call__(self, z: Array) -> Array:
        """generate: z [N, z_dim] -> image [N, H, W, 3]."""
        return self.synthesis(self.codes(z))

    def init_inputs(self) -> tuple:
        return (jnp.zeros((1, self.z_dim), jnp.float32),)


def from_shapes(shp: Mapping[str, tuple[int, ...]]) -> IdinvertGenerator:
    """The architecture read from converted variable shapes (raises KeyError/ValueError)."""
    depth = 0
    while f"params/mapping/dense{depth}/kernel" in shp:
        depth += 1
    if depth == 0:
        raise KeyError("params/mapping/dense0/kernel")
    z_dim, width = shp["params/mapping/dense0/kernel"]
    w_dim = shp["buffers/w_avg"][0]
    out = shp[f"params/mapping/dense{depth - 1}/kernel"][1]
    if out % w_dim:
        raise ValueError(f"mapping output {out} is not a multiple of w_dim {w_dim}")
    layers = out // w_dim
    if layers < 2 or layers % 2:
        raise ValueError(f"{layers} W+ layers: expected an even number >= 2")
    channels = []
    for k in range(layers):
        # several variables carry the width: the first present, so one broken one is reported
        p = f"params/synthesis/layer{k}"
        cands = [("params/synthesis/const", 3)] if k == 0 else [(f"{p}/conv/kernel", 3)]
        cands += [(f"{p}/epilogue/bias", 0), (f"{p}/epilogue/noise_weight", 0)]
        found = [shp[key][i] for key, i in cands if key in shp and len(shp[key]) > i]
        if not found:
            raise KeyError(f"{p}/conv/kernel")
        channels.append(found[0])
    return IdinvertGenerator(z_dim, w_dim, tuple(channels), depth, width)
