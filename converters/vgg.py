"""Key table of idinvert's perceptual VGG16 (`vgg16.pth`, converted from Keras, BGR caffe weights).

The torch module is an nn.Sequential: convs at indices 0,2,5,7,10,12,14,17,19,21 (conv1_1 ..
conv4_3) feed relu(conv4_3); block 5 (24, 26, 28) is in the file but unused, so it is not kept.
"""

from __future__ import annotations

import re

from converters.common import Family, Rule, oihw_to_hwio
from occjax.networks.vgg16 import CONV_NAMES

SEQUENTIAL = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)  # torch index of each conv
USED = 10  # convs up to conv4_3


def _target(var: str):
    def target(m: re.Match, ctx) -> str | None:
        i = SEQUENTIAL.index(int(m["i"]))
        return f"params/{CONV_NAMES[i]}/{var}" if i < USED else None

    return target


_IDX = "|".join(map(str, SEQUENTIAL))
RULES = (
    Rule(rf"layer(?P<i>{_IDX})\.weight", _target("kernel"), oihw_to_hwio),
    Rule(rf"layer(?P<i>{_IDX})\.bias", _target("bias")),
)

FAMILY = Family(
    name="idinvert_vgg16",
    role="perceptual",
    rules=RULES,
    signature=("layer0.weight", "layer28.weight"),
    description="VGG16 perceptual network of idinvert (Keras weights, BGR)",
    required=lambda ctx, keys: {f"layer{i}.{v}" for i in SEQUENTIAL for v in ("weight", "bias")},
)
