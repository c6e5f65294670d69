"""Key table of idinvert's PyTorch encoder (`styleganinv_ffhq256_encoder.pth`)."""

from __future__ import annotations

from converters.common import Family, Rule, keep, torch_weight
from occjax import encoder as E


def _dropped(spec: E.EncoderSpec) -> set[str]:
    keys = {"block0.bn.bn.num_batches_tracked"}
    for b in range(1, len(spec.channels)):
        keys |= {f"block{b}.bn1.bn.num_batches_tracked", f"block{b}.bn2.bn.num_batches_tracked"}
        if spec.channels[b - 1] != spec.channels[b]:
            keys.add(f"block{b}.bn.bn.num_batches_tracked")
    keys.add(f"block{len(spec.channels)}.bn.bn.num_batches_tracked")
    return keys


RULES = (
    Rule(r"block\d+\.(conv|conv1|conv2|fc)\.weight", torch_weight),
    Rule(r"block\d+\.wscale[12]\.bias", keep),
    Rule(r"block\d+\.bn[12]?\.bn\.(weight|bias|running_mean|running_var)", keep),
    Rule(r"block\d+\.bn[12]?\.bn\.num_batches_tracked", None),  # training counter, unused in eval
)

FAMILY = Family(
    name="idinvert_encoder",
    role="encoder",
    rules=RULES,
    spec_from_shapes=E.spec_from_shapes,
    param_shapes=E.param_shapes,
    signature=("block0.conv.weight", "block0.bn.bn.running_mean"),
    description="idinvert domain-guided encoder (PyTorch release)",
    dropped_keys=_dropped,
)
