"""The network families: one Flax module per family, and this table of them.

A family is a network architecture with a fixed role (generator, encoder, perceptual,
discriminator). Its module file holds the Flax module (the architecture, described once: the
expected variables are the module's own `init`, seen through `jax.eval_shape`) and `from_shapes`,
which reads the module's few size settings from converted variable shapes. The converters
(`converters/`, one key table per checkpoint family) are the only place that knows checkpoint names.

What each role's module provides (NHWC images in [-1, 1]):
  generator      synthesis(code [N,L,D]) -> image; codes(z [N,z_dim]) -> code; __call__(z) = generate;
                 properties resolution, code_shape (L, D), z_dim; optional mapping / truncation
  encoder        __call__(image) -> code [N,L,D]
  perceptual     features(image) -> features; distance(fa, fb) -> [N]
  discriminator  __call__(image, group_size) -> raw scores [N] (high = real)
Every module also gives `init_inputs()`: example inputs of its `__call__`, which creates every
variable.

Adding a family: one module file here, one line below, one key table in `converters/`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

ROLES = ("generator", "encoder", "perceptual", "discriminator")


@dataclass(frozen=True)
class Family:
    name: str
    role: str
    module: str  # occjax.networks.<module>
    cls: str  # the Flax module class in it
    from_shapes: str = "from_shapes"  # function of that module: shapes -> configured Flax module
    model_family: str | None = None  # generators: the name models report as `family`
    description: str = ""

    def _mod(self):
        return importlib.import_module(f"occjax.networks.{self.module}")

    def config_from_shapes(self, shapes):
        """The configured module read from flat variable shapes."""
        return getattr(self._mod(), self.from_shapes)(shapes)

    def from_config(self, config: dict):
        """The configured module from its settings (a bundle's "config"; lists become tuples)."""
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
        return getattr(self._mod(), self.cls)(**kw)


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("idinvert_generator", "generator", "idinvert_generator", "IdinvertGenerator",
               model_family="idinvert", description="idinvert StyleGAN generator (W+ codes)"),
        Family("dcgan_generator", "generator", "dcgan_generator", "DCGANGenerator",
               model_family="dcgan", description="DCGAN generator (z codes)"),
        Family("idinvert_encoder", "encoder", "idinvert_encoder", "IdinvertEncoder",
               description="idinvert domain-guided encoder"),
        Family("conv_encoder", "encoder", "conv_encoder", "ConvEncoder",
               description="occjax's conv encoder, trained by scripts/train_encoder.py"),
        Family("idinvert_vgg16", "perceptual", "vgg16", "VGG16", "idinvert_from_shapes",
               description="VGG16 relu4_3 of idinvert (Keras caffe weights, BGR)"),
        Family("lpips_vgg16", "perceptual", "vgg16", "VGG16", "lpips_from_shapes",
               description="LPIPS v0.1 over torchvision's ImageNet VGG16"),
        Family("stylegan_discriminator", "discriminator", "stylegan_discriminator",
               "StyleGANDiscriminator",
               description="StyleGAN discriminator (genforce layout; idinvert's TF-release D)"),
        Family("stylenat_discriminator", "discriminator", "stylenat_discriminator",
               "StyleNATDiscriminator", description="StyleNAT wavelet discriminator with spectral norm"),
        Family("stylegan2_generator", "generator", "stylegan2", "StyleGAN2Generator",
               model_family="stylegan2", description="StyleGAN2 / StyleGAN2-ADA generator (W+ codes)"),
        Family("stylegan2_discriminator", "discriminator", "stylegan2_discriminator",
               "StyleGAN2Discriminator", description="StyleGAN2 residual discriminator"),
    )
}  # fmt: skip


def family(name: str) -> Family:
    if name not in FAMILIES:
        raise ValueError(f"unknown network family {name!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[name]
