"""Key table of idinvert's PyTorch generator (`styleganinv_ffhq256_generator.pth`)."""

from __future__ import annotations

from converters.common import (
    Family,
    Rule,
    blur_kernel_121_ok,
    keep,
    must_be_zero,
    nchw_to_nhwc,
    oihw_to_hwio,
    out_in_to_in_out,
)
from occjax import generator as G


def _dropped(spec: G.GeneratorSpec) -> set[str]:
    keys = {"truncation.truncation", "synthesis.lod"}
    keys |= {f"synthesis.layer{k}.blur.kernel" for k in range(2, spec.num_layers, 2)}
    return keys


RULES = (
    Rule(r"mapping\.dense\d+\.fc\.weight", out_in_to_in_out),
    Rule(r"mapping\.dense\d+\.wscale\.bias", keep),
    Rule(r"truncation\.w_avg", keep),
    Rule(
        r"truncation\.truncation", None
    ),  # rebuilt from psi / layers, as the reference does on load
    Rule(r"synthesis\.lod", None, must_be_zero),
    Rule(r"synthesis\.layer0\.const", nchw_to_nhwc),
    Rule(r"synthesis\.layer\d+\.conv\.weight", oihw_to_hwio),
    Rule(r"synthesis\.layer\d+\.weight", keep),  # fused up-sampling: already [3,3,in,out]
    Rule(r"synthesis\.layer\d+\.blur\.kernel", None, blur_kernel_121_ok),
    Rule(r"synthesis\.layer\d+\.epilogue\.bias", keep),
    Rule(r"synthesis\.layer\d+\.epilogue\.apply_noise\.weight", keep),
    Rule(r"synthesis\.layer\d+\.epilogue\.apply_noise\.noise", nchw_to_nhwc),
    Rule(r"synthesis\.layer\d+\.epilogue\.style_mod\.dense\.fc\.weight", out_in_to_in_out),
    Rule(r"synthesis\.layer\d+\.epilogue\.style_mod\.dense\.wscale\.bias", keep),
    Rule(r"synthesis\.output\d+\.conv\.weight", oihw_to_hwio),
    Rule(r"synthesis\.output\d+\.bias", keep),
)

FAMILY = Family(
    name="idinvert_generator",
    role="generator",
    rules=RULES,
    spec_from_shapes=G.spec_from_shapes,
    param_shapes=G.param_shapes,
    signature=("mapping.dense0.fc.weight", "synthesis.layer0.const"),
    description="idinvert StyleGAN generator (PyTorch release)",
    dropped_keys=_dropped,
)
