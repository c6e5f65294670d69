"""Seeded random networks of a preset architecture, from the Flax modules' own initialisers (no torch).

For the tests that need idinvert shapes (the small "demo" architecture) and the benchmarks (the real
ffhq256 shapes). The weights are random: images look like coloured noise, never like faces. The
modules initialise as the reference does (unit normal where a layer applies its equalised learning
rate at run time, He-normal where it does not); w_avg is then set as the reference tracked it, the
mean of the mapping's first W+ layer.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from occjax.models import Models, Network
from occjax.networks.idinvert_encoder import IdinvertEncoder
from occjax.networks.idinvert_generator import IdinvertGenerator, nf
from occjax.networks.stylegan2 import StyleGAN2Generator
from occjax.networks.stylegan_discriminator import StyleGANDiscriminator
from occjax.networks.vgg16 import VGG16
from occjax.params import flatten, unflatten


def generator_module(res: int, z_dim: int, w_dim: int, base: int, fmax: int) -> IdinvertGenerator:
    layers = 2 * (int(np.log2(res)) - 1)
    channels = tuple(nf(4 * 2 ** (k // 2), base, fmax) for k in range(layers))
    return IdinvertGenerator(z_dim, w_dim, channels, 8, fmax)


def encoder_module(res: int, w_dim: int, base: int, fmax: int) -> IdinvertEncoder:
    blocks = int(np.log2(res)) - 1  # block 0 + residual blocks down to 4x4
    return IdinvertEncoder(tuple(min(base * 2**i, fmax) for i in range(blocks)), 2 * blocks, w_dim)


def discriminator_module(res: int, base: int, fmax: int) -> StyleGANDiscriminator:
    channels = tuple(nf(res // 2**i, base, fmax) for i in range(int(np.log2(res)) - 1))
    return StyleGANDiscriminator(channels, channels[-1])


PRESETS = {
    # the real idinvert ffhq256 shapes (29.5 M + 165 M + 14.7 M + 23 M parameters)
    "ffhq256": dict(
        generator=generator_module(256, 512, 512, 16384, 512),
        encoder=encoder_module(256, 512, 64, 1024),
        perceptual=VGG16((64, 64, 128, 128, 256, 256, 256, 512, 512, 512)),
        discriminator=discriminator_module(256, 16384, 512),
    ),
    # small 64 px idinvert shapes, fast on 2 CPU cores
    "demo": dict(
        generator=generator_module(64, 32, 32, 1024, 32),
        encoder=encoder_module(64, 32, 8, 64),
        perceptual=VGG16((8, 8, 16, 16, 32, 32, 32, 64, 64, 64)),
        discriminator=discriminator_module(64, 1024, 64),
    ),
}
FAMILY = {
    "generator": "idinvert_generator",
    "encoder": "idinvert_encoder",
    "perceptual": "idinvert_vgg16",
    "discriminator": "stylegan_discriminator",
}


def stylegan2_module(
    res: int, z_dim: int, channel_base: int, channel_max: int, depth: int
) -> StyleGAN2Generator:
    """NVlabs' channel rule min(channel_base // res, channel_max) per resolution 4..res."""
    resolutions = [4 * 2**k for k in range(int(np.log2(res)) - 1)]
    channels = tuple(min(channel_base // r, channel_max) for r in resolutions)
    return StyleGAN2Generator(z_dim, z_dim, channels, depth, z_dim)


# StyleGAN2 generators alone (no encoder: inversions start from w_avg or sampled codes)
STYLEGAN2_PRESETS = {
    # a small 64 px model, fast on 2 CPU cores (z = w = 64, 4 mapping layers, 64..32 channels)
    "stylegan2_64": stylegan2_module(64, 64, 2048, 64, 4),
    # NVlabs' config-f shapes at 256 px (stylegan2-ffhq-config-f / ffhq.pkl cut at 256 px: z = w
    # = 512, 8 mapping layers, channel_base 32768, channel_max 512)
    "stylegan2_256": stylegan2_module(256, 512, 32768, 512, 8),
}


def random_stylegan2(
    name: str = "stylegan2_64", seed: int = 0, noise_strength: float = 0.1
) -> Models:
    """A seeded random StyleGAN2 generator as NVlabs initialises one (unit-normal weights scaled at
    run time, the affine layers' biases 1, the mapping's weights 1 / lr_mul), except the noise
    strengths: `noise_strength` times a unit normal each (NVlabs starts them at 0 and training makes
    them nonzero; at 0 the noise maps would not reach the image at all). w_avg: the mean of 1024
    mapped z. The defaults of a converted StyleGAN2 bundle: no encoder regulariser, no perceptual
    term."""
    module = STYLEGAN2_PRESETS[name]
    key = jax.random.key(seed)
    variables = jax.jit(module.init)(key, *module.init_inputs())
    variables = {c: v for c, v in variables.items() if c != "intermediates"}
    flat = flatten(variables)
    rng = np.random.default_rng(seed)
    for k in sorted(flat):
        if k.endswith("affine/bias"):
            flat[k] = np.ones_like(flat[k])
        elif k.endswith("noise_strength"):
            flat[k] = (noise_strength * rng.standard_normal(flat[k].shape)).astype(np.float32)
    variables = jax.tree.map(jnp.asarray, unflatten(flat))
    z = jax.random.normal(jax.random.key(100), (1024, module.z_dim))
    w = module.apply(variables, z, method="mapping")
    variables["buffers"] = {**variables["buffers"], "w_avg": jnp.mean(w[:, 0], axis=0)}
    info = {"source": f"random:{name}:seed{seed}", "source_sha256": f"random-{name}-{seed}"}
    g = Network("stylegan2_generator", module, variables, info)
    defaults = {"encoder_reg_weight": 0.0, "perceptual_weight": 0.0}
    return Models({"generator": g}, defaults=defaults, info={"name": f"random-{name}"})


def random_models(name: str = "demo", seed: int = 0, roles=None) -> Models:
    """Seeded random Models of a preset architecture ("demo" or "ffhq256"; a StyleGAN2 preset,
    "stylegan2_64" or "stylegan2_256", is its generator alone: `random_stylegan2`)."""
    if name in STYLEGAN2_PRESETS:
        return random_stylegan2(name, seed)
    if name not in PRESETS:
        raise ValueError(
            f"unknown random model preset {name!r}; choose one of "
            f"{list(PRESETS) + list(STYLEGAN2_PRESETS)}"
        )
    nets: dict[str, Network] = {}
    for i, (role, module) in enumerate(PRESETS[name].items()):
        if roles is not None and role not in roles:
            continue
        key = jax.random.key(seed * 16 + i)
        variables = jax.jit(module.init)(key, *module.init_inputs())
        variables = {c: v for c, v in variables.items() if c != "intermediates"}
        if role == "generator":  # w_avg as the reference tracked it
            z = jax.random.normal(jax.random.key(100), (1024, module.z_dim))
            w = module.apply(variables, z, method="mapping")
            variables["buffers"] = {**variables["buffers"], "w_avg": jnp.mean(w[:, 0], axis=0)}
        info = {"source": f"random:{name}:seed{seed}", "source_sha256": f"random-{name}-{seed}"}
        nets[role] = Network(FAMILY[role], module, variables, info)
    return Models(nets, info={"name": f"random-{name}"})


__all__ = ["random_models", "random_stylegan2", "PRESETS", "STYLEGAN2_PRESETS"]
