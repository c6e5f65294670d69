"""Key table of genforce's StyleGAN discriminator (the architecture of idinvert's TF-release D)."""

from __future__ import annotations

import re

from converters.common import Family, Rule, blur_kernel_121_ok, must_be_zero, torch_weight


def _context(src) -> int:
    """Number of down-sampling blocks: the odd layers whose weight is a conv (4-d)."""
    b = 0
    while getattr(src.get(f"layer{2 * b + 1}.weight"), "ndim", 0) == 4:
        b += 1
    return b


def _layer(m: re.Match, blocks: int) -> str:
    j, var = int(m["j"]), "kernel" if m["var"] == "weight" else "bias"
    if j < 2 * blocks:
        return f"params/block{j // 2}_{'conv0' if j % 2 == 0 else 'conv1_down'}/{var}"
    head = {0: "head_conv", 1: "head_dense0", 2: "head_dense1"}.get(j - 2 * blocks)
    if head is None:
        raise ValueError(f"no layer {j} in a discriminator of {blocks} blocks")
    return f"params/{head}/{var}"


def _required(blocks, keys) -> set[str]:
    req = {"lod"} | {f"layer{2 * i + 1}.blur.kernel" for i in range(blocks)}
    return req | {f"input{i}.{v}" for i in range(1, blocks + 1) for v in ("weight", "bias")}


RULES = (
    Rule(r"lod", None, check=must_be_zero),
    Rule(r"input0\.weight", "params/from_rgb/kernel", torch_weight),
    Rule(r"input0\.bias", "params/from_rgb/bias"),
    # the FromRGBs of lower resolutions serve progressive growing only (unused at lod 0)
    Rule(r"input[1-9]\d*\.(weight|bias)", None),
    Rule(r"layer(?P<j>\d+)\.(?P<var>weight)", _layer, torch_weight),
    Rule(r"layer(?P<j>\d+)\.(?P<var>bias)", _layer),
    Rule(r"layer\d+\.blur\.kernel", None, check=blur_kernel_121_ok),
)

FAMILY = Family(
    name="stylegan_discriminator",
    role="discriminator",
    rules=RULES,
    signature=("input0.weight", "layer0.weight", "lod"),
    description="StyleGAN discriminator (genforce layout; idinvert's TF-release D)",
    context=_context,
    required=_required,
)
