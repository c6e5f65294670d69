"""Key table of idinvert's PyTorch generator (`styleganinv_ffhq256_generator.pth`)."""

from __future__ import annotations

import re

from converters.common import (
    Family,
    Rule,
    blur_kernel_121_ok,
    flip_hw,
    must_be_zero,
    nchw_to_nhwc,
    oihw_to_hwio,
    out_in_to_in_out,
)

L = r"synthesis\.layer(?P<k>\d+)"
E = rf"{L}\.epilogue"
P = "params/synthesis/layer{k}"


def _context(src) -> dict:
    """The last ToRGB (the only one that reaches the output at lod 0) and the number of layers."""
    outs = [int(m[1]) for k in src if (m := re.fullmatch(r"synthesis\.output(\d+)\.bias", k))]
    layers = [int(m[1]) for k in src if (m := re.fullmatch(rf"{E}\.bias", k))]
    return {"last": max(outs, default=-1), "layers": max(layers, default=-1) + 1}


def _to_rgb(var: str):
    def target(m: re.Match, ctx) -> str | None:
        # lower-resolution ToRGBs serve progressive growing only: checked present, not kept
        return f"params/synthesis/to_rgb/{var}" if int(m["b"]) == ctx["last"] else None

    return target


def _required(ctx, keys) -> set[str]:
    req = {"truncation.truncation", "synthesis.lod"}
    req |= {f"synthesis.layer{k}.blur.kernel" for k in range(2, ctx["layers"], 2)}
    req |= {f"synthesis.output{b}.{v}" for b in range(ctx["last"]) for v in ("conv.weight", "bias")}
    return req


RULES = (
    Rule(
        r"mapping\.dense(?P<i>\d+)\.fc\.weight", "params/mapping/dense{i}/kernel", out_in_to_in_out
    ),
    Rule(r"mapping\.dense(?P<i>\d+)\.wscale\.bias", "params/mapping/dense{i}/bias"),
    Rule(r"truncation\.w_avg", "buffers/w_avg"),
    Rule(r"truncation\.truncation", None),  # rebuilt from psi / layers, as the reference does
    Rule(r"synthesis\.lod", None, check=must_be_zero),
    Rule(r"synthesis\.layer0\.const", "params/synthesis/const", nchw_to_nhwc),
    Rule(rf"{L}\.conv\.weight", f"{P}/conv/kernel", oihw_to_hwio),
    # fused up-sampling: TF layout [3,3,in,out]; the same function as nearest x2 + this kernel flipped
    Rule(rf"{L}\.weight", f"{P}/conv/kernel", flip_hw),
    Rule(rf"{L}\.blur\.kernel", None, check=blur_kernel_121_ok),
    Rule(rf"{E}\.bias", f"{P}/epilogue/bias"),
    Rule(rf"{E}\.apply_noise\.weight", f"{P}/epilogue/noise_weight"),
    Rule(rf"{E}\.apply_noise\.noise", "buffers/synthesis/layer{k}/noise", nchw_to_nhwc),
    Rule(rf"{E}\.style_mod\.dense\.fc\.weight", f"{P}/epilogue/style/kernel", out_in_to_in_out),
    Rule(rf"{E}\.style_mod\.dense\.wscale\.bias", f"{P}/epilogue/style/bias"),
    Rule(r"synthesis\.output(?P<b>\d+)\.conv\.weight", _to_rgb("kernel"), oihw_to_hwio),
    Rule(r"synthesis\.output(?P<b>\d+)\.bias", _to_rgb("bias")),
)

FAMILY = Family(
    name="idinvert_generator",
    role="generator",
    rules=RULES,
    signature=("mapping.dense0.fc.weight", "synthesis.layer0.const"),
    description="idinvert StyleGAN generator (PyTorch release)",
    context=_context,
    required=_required,
)
