"""Key table of genforce's StyleGAN discriminator (the architecture of idinvert's TF-release D)."""

from __future__ import annotations

from converters.common import Family, Rule, blur_kernel_121_ok, keep, must_be_zero, torch_weight
from occjax import discriminator as D


def _dropped(spec: D.DiscriminatorSpec) -> set[str]:
    return {"lod"} | {f"layer{2 * i + 1}.blur.kernel" for i in range(spec.num_blocks)}


RULES = (
    Rule(r"lod", None, must_be_zero),
    Rule(r"input\d+\.weight", torch_weight),
    Rule(r"input\d+\.bias", keep),
    Rule(r"layer\d+\.weight", torch_weight),
    Rule(r"layer\d+\.bias", keep),
    Rule(r"layer\d+\.blur\.kernel", None, blur_kernel_121_ok),
)

FAMILY = Family(
    name="stylegan_discriminator",
    role="discriminator",
    rules=RULES,
    spec_from_shapes=D.spec_from_shapes,
    param_shapes=D.param_shapes,
    signature=("input0.weight", "layer0.weight", "lod"),
    description="StyleGAN discriminator (genforce layout; idinvert's TF-release D)",
    dropped_keys=_dropped,
)
