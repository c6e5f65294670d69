"""Key table of idinvert's perceptual VGG16 (`vgg16.pth`, converted from Keras, BGR caffe weights)."""

from __future__ import annotations

from converters.common import Family, Rule, keep, oihw_to_hwio
from occjax import vgg as V

RULES = (
    Rule(r"layer(0|2|5|7|10|12|14|17|19|21|24|26|28)\.weight", oihw_to_hwio),
    Rule(r"layer(0|2|5|7|10|12|14|17|19|21|24|26|28)\.bias", keep),
)

FAMILY = Family(
    name="idinvert_vgg16",
    role="perceptual",
    rules=RULES,
    spec_from_shapes=V.spec_from_shapes,
    param_shapes=V.param_shapes,
    signature=("layer0.weight", "layer28.weight"),
    description="VGG16 perceptual network of idinvert (Keras weights, BGR)",
)
