"""Seeded random networks of any consistent architecture, directly in our layouts (no torch).

For the embedded demo (a small model that runs anywhere) and the benchmarks (the real ffhq256
shapes). The weights are random: images look like coloured noise, never like faces. Scales follow
the reference's initialisation (unit normal weights where the network applies equalised learning
rate at run time, He-normal where it does not), so activations stay in a sane range.
"""

from __future__ import annotations

import numpy as np

from occjax import discriminator, encoder, generator, vgg
from occjax.models import Models, Network, network_from_flat
from occjax.params import flatten, unflatten


def nf(res: int, base: int, fmax: int) -> int:
    return min(base // res, fmax)


def generator_spec(res: int, z_dim: int, w_dim: int, base: int, fmax: int, fused_from: int):
    layers = 2 * (int(np.log2(res)) - 1)
    channels = tuple(nf(4 * 2 ** (k // 2), base, fmax) for k in range(layers))
    fused = tuple(b > 0 and 4 * 2**b >= fused_from for b in range(layers // 2))
    return generator.GeneratorSpec(res, z_dim, w_dim, layers, 8, fmax, channels, fused)


def encoder_spec(res: int, w_dim: int, base: int, fmax: int) -> encoder.EncoderSpec:
    blocks = int(np.log2(res)) - 1  # block 0 + residual blocks down to 4x4
    channels = tuple(min(base * 2**i, fmax) for i in range(blocks))
    layers = 2 * blocks
    return encoder.EncoderSpec(res, layers, w_dim, channels, w_dim * layers)


def discriminator_spec(res: int, base: int, fmax: int) -> discriminator.DiscriminatorSpec:
    blocks = int(np.log2(res)) - 2
    channels = tuple(nf(res // 2**i, base, fmax) for i in range(blocks + 1))
    return discriminator.DiscriminatorSpec(res, channels, channels[-1])


PRESETS = {
    # the real idinvert ffhq256 shapes (29.5 M + 165 M + 14.7 M + 23 M parameters)
    "ffhq256": dict(
        gen=(256, 512, 512, 16384, 512, 128),
        enc=(256, 512, 64, 1024),
        vgg=(64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512),
        disc=(256, 16384, 512),
    ),
    # the embedded demo: 64 px, small widths, fast on 2 CPU cores
    "demo": dict(
        gen=(64, 32, 32, 1024, 64, 32),
        enc=(64, 32, 8, 64),
        vgg=(8, 8, 16, 16, 32, 32, 32, 64, 64, 64, 64, 64, 64),
        disc=(64, 1024, 64),
    ),
}


def _normal(rng, shape, std=1.0):
    return (rng.standard_normal(shape) * std).astype(np.float32)


def _fill(shapes: dict, rng, rule) -> dict[str, np.ndarray]:
    return {k: rule(k, s, rng) for k, s in shapes.items()}


def random_generator(spec, rng) -> dict[str, np.ndarray]:
    def rule(k, s, rng):
        if k.endswith("bias") or k == "truncation.w_avg":
            return np.zeros(s, np.float32)
        if k.endswith("apply_noise.weight"):
            return _normal(rng, s, 0.1)
        if k.startswith("mapping"):  # stored / lrmul, as StyleGAN initialises them
            return _normal(rng, s, 1.0 / generator.MAPPING_LRMUL)
        return _normal(rng, s)

    flat = _fill(generator.param_shapes(spec), rng, rule)
    # w_avg as the reference tracked it: the mean of the mapping's first W+ layer
    z = _normal(np.random.default_rng(100), (1024, spec.z_dim))
    w = generator.mapping(unflatten(flat), z, spec)
    flat["truncation.w_avg"] = np.asarray(w[:, 0].mean(0), np.float32)
    return flat


def random_encoder(spec, rng) -> dict[str, np.ndarray]:
    def rule(k, s, rng):
        if k.endswith("running_var") or (k.endswith(".weight") and len(s) == 1):
            return np.ones(s, np.float32)
        if len(s) == 1:
            return np.zeros(s, np.float32)
        if k.endswith("fc.weight"):
            return _normal(rng, s)
        return _normal(rng, s, np.sqrt(2.0 / np.prod(s[:3])))

    return _fill(encoder.param_shapes(spec), rng, rule)


def random_vgg(spec, rng) -> dict[str, np.ndarray]:
    def rule(k, s, rng):
        if len(s) == 1:
            return np.zeros(s, np.float32)
        return _normal(rng, s, np.sqrt(2.0 / np.prod(s[:3])))

    return _fill(vgg.param_shapes(spec), rng, rule)


def random_discriminator(spec, rng) -> dict[str, np.ndarray]:
    def rule(k, s, rng):
        return np.zeros(s, np.float32) if len(s) == 1 else _normal(rng, s)

    return _fill(discriminator.param_shapes(spec), rng, rule)


def random_models(name: str = "demo", seed: int = 0, roles=None) -> Models:
    """Seeded random Models of a preset architecture ("demo" or "ffhq256")."""
    if name not in PRESETS:
        raise ValueError(f"unknown random model preset {name!r}; choose one of {list(PRESETS)}")
    p = PRESETS[name]
    specs = {
        "generator": ("idinvert_generator", generator_spec(*p["gen"]), random_generator),
        "encoder": ("idinvert_encoder", encoder_spec(*p["enc"]), random_encoder),
        "perceptual": ("idinvert_vgg16", vgg.VGGSpec(tuple(p["vgg"])), random_vgg),
        "discriminator": (
            "stylegan_discriminator",
            discriminator_spec(*p["disc"]),
            random_discriminator,
        ),
    }
    nets: dict[str, Network] = {}
    for i, (role, (family, spec, make)) in enumerate(specs.items()):
        if roles is not None and role not in roles:
            continue
        flat = make(spec, np.random.default_rng([seed, i]))
        info = {"source": f"random:{name}:seed{seed}", "source_sha256": f"random-{name}-{seed}"}
        nets[role] = network_from_flat(family, flat, info, f"random {name} {role}")
    return Models(nets)


__all__ = ["random_models", "PRESETS", "flatten"]
