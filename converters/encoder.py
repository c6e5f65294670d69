"""Key table of idinvert's PyTorch encoder (`styleganinv_ffhq256_encoder.pth`)."""

from __future__ import annotations

import re

from converters.common import Family, Rule, torch_weight

BN = {"weight": "params/{}/scale", "bias": "params/{}/bias"}
BN |= {"running_mean": "batch_stats/{}/mean", "running_var": "batch_stats/{}/var"}


def _context(src) -> int:
    """The last block (the dense head): the one with an `fc`."""
    return max(
        (int(m[1]) for k in src if (m := re.fullmatch(r"block(\d+)\.fc\.weight", k))), default=-1
    )


def _bn(m: re.Match, last: int) -> str | None:
    b, which, var = int(m["b"]), m["which"], m["var"]
    if var == "num_batches_tracked":
        return None  # training counter, unused in eval
    if which:  # bn1 / bn2 of a residual block
        layer = f"block{b}/bn{which}"
    elif b == last:
        layer = "head/bn"
    else:
        layer = "block0/bn" if b == 0 else f"block{b}/shortcut_bn"
    return BN[var].format(layer)


def _conv(m: re.Match, last: int) -> str:
    b, name = int(m["b"]), m["name"]
    if name == "fc":
        return "params/head/dense/kernel"
    if name == "conv":
        return "params/block0/conv/kernel" if b == 0 else f"params/block{b}/shortcut/kernel"
    return f"params/block{b}/{name}/kernel"


def _required(last, keys) -> set[str]:
    """num_batches_tracked of every batch norm (a strict torch load requires them)."""
    bns = {k.rsplit(".", 1)[0] for k in keys if k.endswith(".running_mean")}
    return {f"{p}.num_batches_tracked" for p in bns}


RULES = (
    Rule(r"block(?P<b>\d+)\.(?P<name>conv|conv1|conv2|fc)\.weight", _conv, torch_weight),
    Rule(r"block(?P<b>\d+)\.wscale(?P<i>[12])\.bias", "params/block{b}/conv{i}/bias"),
    Rule(
        r"block(?P<b>\d+)\.bn(?P<which>[12]?)\.bn\."
        r"(?P<var>weight|bias|running_mean|running_var|num_batches_tracked)",
        _bn,
    ),
)

FAMILY = Family(
    name="idinvert_encoder",
    role="encoder",
    rules=RULES,
    signature=("block0.conv.weight", "block0.bn.bn.running_mean"),
    description="idinvert domain-guided encoder (PyTorch release)",
    context=_context,
    required=_required,
)
