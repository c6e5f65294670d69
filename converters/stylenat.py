"""Key table of StyleNAT's spectral-norm wavelet discriminator (`FFHQ256_940k_flip.pt["d"]`).

The discriminator the occlusion-removal paper loads (`models/styleNAT_discriminator.py`, size 256).
Conv `weight_orig` OIHW -> HWIO, dense `weight_orig` [out,in] -> [in,out]; the `weight_v` of the 3x3
convs is reordered from torch's (in,kh,kw) to (kh,kw,in) so it stays consistent with the HWIO kernel
(see `occjax.stylenat`); u, biases and 1x1/dense v are kept. Haar and [1,3,3,1] blur buffers are
checked against the values the network rebuilds, then dropped (a strict load still requires them).
"""

from __future__ import annotations

import numpy as np

from converters.common import Family, Rule, keep, oihw_to_hwio, out_in_to_in_out
from occjax import stylenat as S

SUBKEY = "d"  # StyleNAT's training checkpoint holds the discriminator's state dict under "d"

_CONV3 = r"(convs\.\d+\.conv1\.0|convs\.\d+\.conv2\.1|final_conv\.0)"
_CONV1 = r"from_rgbs\.\d+\.conv\.0"
_DENSE = r"final_linear\.[02]"


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


def _dropped(spec: S.StyleNATSpec) -> set[str]:
    keys = {f"dwt.{b}" for b in S.BANDS}
    for k in range(1, len(spec.channels)):
        keys |= {f"from_rgbs.{k}.{t}.{b}" for t in ("iwt", "dwt") for b in S.BANDS}
        keys.add(f"from_rgbs.{k}.downsample.kernel")
    keys |= {f"convs.{k}.conv2.0.kernel" for k in range(spec.num_convs)}
    return keys


RULES = (
    Rule(r"dwt\.(ll|lh|hl|hh)", None, _haar_ok),
    Rule(r"from_rgbs\.\d+\.(iwt|dwt)\.(ll|lh|hl|hh)", None, _haar_ok),
    Rule(r"from_rgbs\.\d+\.downsample\.kernel", None, _blur_ok),
    Rule(r"convs\.\d+\.conv2\.0\.kernel", None, _blur_ok),
    Rule(rf"({_CONV1}|{_CONV3})\.weight_orig", oihw_to_hwio),
    Rule(rf"{_DENSE}\.weight_orig", out_in_to_in_out),
    Rule(rf"({_CONV1}|{_CONV3}|{_DENSE})\.weight_u", keep),
    Rule(rf"({_CONV1}|{_DENSE})\.weight_v", keep),
    Rule(rf"{_CONV3}\.weight_v", v_torch_to_hwio_order),
    Rule(r"from_rgbs\.\d+\.conv\.1\.bias", keep),
    Rule(r"convs\.\d+\.(conv1\.1|conv2\.2)\.bias", keep),
    Rule(r"(final_conv\.1|final_linear\.[012])\.bias", keep),
)

FAMILY = Family(
    name="stylenat_discriminator",
    role="discriminator",
    rules=RULES,
    spec_from_shapes=S.spec_from_shapes,
    param_shapes=S.param_shapes,
    signature=("from_rgbs.0.conv.0.weight_orig", "final_linear.2.weight_orig"),
    description="StyleNAT FFHQ-256 wavelet discriminator with spectral norm (PyTorch release)",
    dropped_keys=_dropped,
)
