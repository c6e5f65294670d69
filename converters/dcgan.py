"""Key table of a DCGAN generator in PyTorch's DCGAN-tutorial layout (an nn.Sequential `main`):
ConvTranspose2d (4x4, no bias) at 3i, BatchNorm2d at 3i+1, ReLU at 3i+2, the last ConvTranspose2d
at 3n, then Tanh. E.g. the face generator of the `gan-face-generate` package (`weights.tar`, the
state dict under "netG_state_dict"; see occjax/bundles/faces64/README.md).
"""

from __future__ import annotations

import re

import numpy as np

from converters.common import Family, Rule

SUBKEY = "netG_state_dict"
BN = {"weight": "params/{}/scale", "bias": "params/{}/bias"}
BN |= {"running_mean": "batch_stats/{}/mean", "running_var": "batch_stats/{}/var"}


def convt_weight(a: np.ndarray) -> np.ndarray:
    """torch ConvTranspose2d weight [in,out,kh,kw] -> flax ConvTranspose (transpose_kernel) [kh,kw,out,in]."""
    if a.ndim != 4:
        raise ValueError(f"expected a 4-d ConvTranspose2d weight, got shape {a.shape}")
    return a.transpose(2, 3, 1, 0)


def _context(src) -> int:
    """Number of hidden blocks: the BatchNorm layers."""
    return sum(1 for k in src if re.fullmatch(r"main\.\d+\.running_mean", k))


def _target(m: re.Match, n: int) -> str | None:
    i, r = divmod(int(m["t"]), 3)
    var = m["var"]
    if r == 0 and var == "weight" and i <= n:  # ConvTranspose2d
        return "params/to_rgb/kernel" if i == n else f"params/block{i}/convt/kernel"
    if r == 1 and i < n:  # BatchNorm2d
        return None if var == "num_batches_tracked" else BN[var].format(f"block{i}/bn")
    raise ValueError(f"main.{m['t']}.{var} has no place in a DCGAN generator of {n} blocks")


def _layout(a: np.ndarray) -> np.ndarray:
    return convt_weight(a) if a.ndim == 4 else a


RULES = (
    Rule(
        r"main\.(?P<t>\d+)\.(?P<var>weight|bias|running_mean|running_var|num_batches_tracked)",
        _target,
        _layout,
    ),
)

FAMILY = Family(
    name="dcgan_generator",
    role="generator",
    rules=RULES,
    signature=("main.0.weight", "main.1.running_mean"),
    description="DCGAN generator (PyTorch DCGAN-tutorial layout)",
    context=_context,
    required=lambda n, keys: {f"main.{3 * i + 1}.num_batches_tracked" for i in range(n)},
)
