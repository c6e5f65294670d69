"""Key table of StyleNAT's spectral-norm wavelet discriminator (`FFHQ256_940k_flip.pt["d"]`).

The discriminator the occlusion-removal paper loads (`models/styleNAT_discriminator.py`, size 256).
Conv `weight_orig` OIHW -> HWIO, dense `weight_orig` [out,in] -> [in,out]; the `weight_v` of the 3x3
convs is reordered from torch's (in,kh,kw) to (kh,kw,in) so it stays consistent with the HWIO kernel
(see `occjax.networks.stylenat_discriminator`); u, biases and 1x1/dense v are kept. Haar and
[1,3,3,1] blur buffers are checked against the values the network rebuilds, then dropped (a strict
load still requires them).
"""

from __future__ import annotations

import numpy as np

from converters.common import Family, Rule, oihw_to_hwio, out_in_to_in_out
from occjax.networks import stylenat_discriminator as S

SUBKEY = "d"  # StyleNAT's training checkpoint holds the discriminator's state dict under "d"


def v_torch_to_hwio_order(a: np.ndarray) -> np.ndarray:
    """A 3x3 conv's spectral-norm v, torch order (in,kh,kw) -> ours (kh,kw,in)."""
    if a.ndim != 1 or a.size % 9:
        raise ValueError(f"expected a 3x3 conv's v of length in*9, got shape {a.shape}")
    return a.reshape(-1, 3, 3).transpose(1, 2, 0).reshape(-1)


def v_hwio_to_torch_order(a: np.ndarray) -> np.ndarray:
    """Inverse of `v_torch_to_hwio_order` (to compare with or write back torch buffers)."""
    a = np.asarray(a)
    return a.reshape(3, 3, -1).transpose(2, 0, 1).reshape(-1)


def _haar_ok(key: str, a: np.ndarray) -> str | None:
    band = key.rsplit(".", 1)[1]
    filters = S.inverse_haar_filters() if ".iwt." in key else S.haar_filters()
    want = filters[band]
    ok = a.shape == want.shape and np.allclose(a, want, rtol=0, atol=1e-6)
    return None if ok else f"{key}: expected the fixed Haar filter {want.ravel().tolist()}"


def _blur_ok(key: str, a: np.ndarray) -> str | None:
    want = S.blur_kernel()
    ok = a.shape == want.shape and np.allclose(a, want, rtol=0, atol=1e-7)
    return None if ok else f"{key}: expected the fixed [1,3,3,1] blur kernel (outer / 64)"


def _required(ctx, keys) -> set[str]:
    n = 1 + max((int(k.split(".")[1]) for k in keys if k.startswith("from_rgbs.")), default=0)
    req = {f"dwt.{b}" for b in S.BANDS}
    for k in range(1, n):
        req |= {f"from_rgbs.{k}.{t}.{b}" for t in ("iwt", "dwt") for b in S.BANDS}
        req.add(f"from_rgbs.{k}.downsample.kernel")
    return req | {f"convs.{k}.conv2.0.kernel" for k in range(n - 1)}


# (torch layer prefix, our layer name, kind): conv1 = 1x1 conv, conv3 = 3x3 conv, dense
SN = (
    (r"from_rgbs\.(?P<k>\d+)\.conv\.0", "from_rgb{k}", "conv1"),
    (r"convs\.(?P<k>\d+)\.conv1\.0", "conv{k}_1", "conv3"),
    (r"convs\.(?P<k>\d+)\.conv2\.1", "conv{k}_2", "conv3"),
    (r"final_conv\.0", "final_conv", "conv3"),
    (r"final_linear\.0", "final_dense0", "dense"),
    (r"final_linear\.2", "final_dense1", "dense"),
)
_SN_RULES = tuple(
    rule
    for src, ours, kind in SN
    for rule in (
        Rule(rf"{src}\.weight_orig", f"params/{ours}/kernel",
             out_in_to_in_out if kind == "dense" else oihw_to_hwio),
        Rule(rf"{src}\.weight_u", f"batch_stats/{ours}/u"),
        Rule(rf"{src}\.weight_v", f"batch_stats/{ours}/v",
             v_torch_to_hwio_order if kind == "conv3" else (lambda a: a)),
    )
)  # fmt: skip

RULES = (
    Rule(r"dwt\.(ll|lh|hl|hh)", None, check=_haar_ok),
    Rule(r"from_rgbs\.\d+\.(iwt|dwt)\.(ll|lh|hl|hh)", None, check=_haar_ok),
    Rule(r"from_rgbs\.\d+\.downsample\.kernel", None, check=_blur_ok),
    Rule(r"convs\.\d+\.conv2\.0\.kernel", None, check=_blur_ok),
    *_SN_RULES,
    # the fused leaky ReLUs' biases, and the dense layers' own biases
    Rule(r"from_rgbs\.(?P<k>\d+)\.conv\.1\.bias", "params/from_rgb{k}_act_bias"),
    Rule(r"convs\.(?P<k>\d+)\.conv1\.1\.bias", "params/conv{k}_1_act_bias"),
    Rule(r"convs\.(?P<k>\d+)\.conv2\.2\.bias", "params/conv{k}_2_act_bias"),
    Rule(r"final_conv\.1\.bias", "params/final_conv_act_bias"),
    Rule(r"final_linear\.0\.bias", "params/final_dense0/bias"),
    Rule(r"final_linear\.1\.bias", "params/final_dense0_act_bias"),
    Rule(r"final_linear\.2\.bias", "params/final_dense1/bias"),
)

FAMILY = Family(
    name="stylenat_discriminator",
    role="discriminator",
    rules=RULES,
    signature=("from_rgbs.0.conv.0.weight_orig", "final_linear.2.weight_orig"),
    description="StyleNAT FFHQ-256 wavelet discriminator with spectral norm (PyTorch release)",
    required=_required,
)
