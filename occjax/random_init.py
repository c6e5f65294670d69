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
from occjax.networks.stylegan_discriminator import StyleGANDiscriminator
from occjax.networks.vgg16 import VGG16


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


def random_models(name: str = "demo", seed: int = 0, roles=None) -> Models:
    """Seeded random Models of a preset architecture ("demo" or "ffhq256")."""
    if name not in PRESETS:
        raise ValueError(f"unknown random model preset {name!r}; choose one of {list(PRESETS)}")
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


__all__ = ["random_models", "PRESETS"]
