"""Key tables of rosinality's `stylegan2-pytorch` checkpoints (`model.py` Generator and
Discriminator): a `.pt` dict {"g_ema": state dict, "d": state dict, "latent_avg"?, ...}, read with
`torch.load(weights_only=True)` (train.py's argparse `args` is the one non-tensor object allowed).

Modulated-conv weights [1,O,I,k,k] -> [k,k,I,O]; noise weights [1] -> scalar; ToRGB bias
[1,3,1,1] -> [3]; the [1,3,3,1] FIR buffers are checked and dropped. W+ layer / resolution of
each layer: conv1 = b4_conv1, convs.{j} = b{8*2**(j//2)}_conv{j%2}, noises.noise_{i} follows the
same order. `latent_avg` (kept by converted and most released checkpoints) becomes w_avg; a
checkpoint without it gets the mean of 10000 mapped z (`w_avg_from_mapping`).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from converters.common import (
    ConversionError,
    Family,
    Rule,
    nchw_to_nhwc,
    oihw_to_hwio,
    out_in_to_in_out,
    torch_weight,
)
from occjax.networks.stylegan2 import RESAMPLE


def modconv(a: np.ndarray) -> np.ndarray:
    """ModulatedConv2d weight [1,O,I,k,k] -> [k,k,I,O]."""
    if a.ndim != 5 or a.shape[0] != 1:
        raise ValueError(f"expected a [1,O,I,k,k] modulated weight, got shape {a.shape}")
    return oihw_to_hwio(a[0])


def scalar(a: np.ndarray) -> np.ndarray:
    if a.size != 1:
        raise ValueError(f"expected one value, got shape {a.shape}")
    return a.reshape(1)  # kept 1-d: checkpoints and safetensors both handle [1] plainly


def flat3(a: np.ndarray) -> np.ndarray:
    if a.size != 3:
        raise ValueError(f"expected 3 values, got shape {a.shape}")
    return a.reshape(3)


def fir_ok(key: str, a: np.ndarray) -> str | None:
    """The [1,3,3,1] up/down-sampling buffers (x4 when they up-sample)."""
    ok = a.shape == (4, 4) and any(np.allclose(a, RESAMPLE * g, atol=1e-6) for g in (1.0, 4.0))
    return None if ok else f"{key}: expected the fixed [1,3,3,1] filter"


def _conv(m: re.Match, ctx) -> str:
    j = int(m["j"])
    return f"params/synthesis/b{8 * 2 ** (j // 2)}_conv{j % 2}"


def _gvar(var: str):
    return lambda m, ctx: f"{_conv(m, ctx)}/{var}"


def _noise(m: re.Match, ctx) -> str:
    i = int(m["i"])
    if i == 0:
        return "buffers/synthesis/b4_conv1/noise"
    return f"buffers/synthesis/b{4 * 2 ** ((i + 1) // 2)}_conv{(i + 1) % 2}/noise"


def _rgb(var: str):
    return lambda m, ctx: f"params/synthesis/b{8 * 2 ** int(m['j'])}_torgb/{var}"


C1, S = "params/synthesis/b4_conv1", "params/synthesis/b4_torgb"
G_RULES = (
    Rule(r"style\.(?P<j>\d+)\.weight", lambda m, c: f"params/mapping/fc{int(m['j']) - 1}/kernel",
         out_in_to_in_out),
    Rule(r"style\.(?P<j>\d+)\.bias", lambda m, c: f"params/mapping/fc{int(m['j']) - 1}/bias"),
    Rule(r"latent_avg", "buffers/w_avg"),
    Rule(r"input\.input", "params/synthesis/const", nchw_to_nhwc),
    Rule(r"conv1\.conv\.weight", f"{C1}/kernel", modconv),
    Rule(r"conv1\.conv\.modulation\.weight", f"{C1}/affine/kernel", out_in_to_in_out),
    Rule(r"conv1\.conv\.modulation\.bias", f"{C1}/affine/bias"),
    Rule(r"conv1\.noise\.weight", f"{C1}/noise_strength", scalar),
    Rule(r"conv1\.activate\.bias", f"{C1}/bias"),
    Rule(r"to_rgb1\.conv\.weight", f"{S}/kernel", modconv),
    Rule(r"to_rgb1\.conv\.modulation\.weight", f"{S}/affine/kernel", out_in_to_in_out),
    Rule(r"to_rgb1\.conv\.modulation\.bias", f"{S}/affine/bias"),
    Rule(r"to_rgb1\.bias", f"{S}/bias", flat3),
    Rule(r"convs\.(?P<j>\d+)\.conv\.weight", _gvar("kernel"), modconv),
    Rule(r"convs\.(?P<j>\d+)\.conv\.modulation\.weight", _gvar("affine/kernel"), out_in_to_in_out),
    Rule(r"convs\.(?P<j>\d+)\.conv\.modulation\.bias", _gvar("affine/bias")),
    Rule(r"convs\.(?P<j>\d+)\.noise\.weight", _gvar("noise_strength"), scalar),
    Rule(r"convs\.(?P<j>\d+)\.activate\.bias", _gvar("bias")),
    Rule(r"convs\.\d+\.conv\.blur\.kernel", None, check=fir_ok),
    Rule(r"to_rgbs\.(?P<j>\d+)\.conv\.weight", _rgb("kernel"), modconv),
    Rule(r"to_rgbs\.(?P<j>\d+)\.conv\.modulation\.weight", _rgb("affine/kernel"), out_in_to_in_out),
    Rule(r"to_rgbs\.(?P<j>\d+)\.conv\.modulation\.bias", _rgb("affine/bias")),
    Rule(r"to_rgbs\.(?P<j>\d+)\.bias", _rgb("bias"), flat3),
    Rule(r"to_rgbs\.\d+\.upsample\.kernel", None, check=fir_ok),
    Rule(r"noises\.noise_(?P<i>\d+)", _noise, nchw_to_nhwc),
)  # fmt: skip


def _d_context(src) -> int:
    """The input resolution: 4 * 2**(number of residual blocks)."""
    blocks = {int(m[1]) for k in src if (m := re.fullmatch(r"convs\.(\d+)\.conv1\.0\.weight", k))}
    return 4 * 2 ** len(blocks)


def _dblock(layer: str, var: str):
    return lambda m, res: f"params/b{res // 2 ** (int(m['j']) - 1)}_{layer}/{var}"


D_RULES = (
    Rule(r"convs\.0\.0\.weight", lambda m, res: f"params/b{res}_fromrgb/kernel", torch_weight),
    Rule(r"convs\.0\.1\.bias", lambda m, res: f"params/b{res}_fromrgb/bias"),
    Rule(r"convs\.(?P<j>\d+)\.conv1\.0\.weight", _dblock("conv0", "kernel"), torch_weight),
    Rule(r"convs\.(?P<j>\d+)\.conv1\.1\.bias", _dblock("conv0", "bias")),
    Rule(r"convs\.(?P<j>\d+)\.conv2\.1\.weight", _dblock("conv1", "kernel"), torch_weight),
    Rule(r"convs\.(?P<j>\d+)\.conv2\.2\.bias", _dblock("conv1", "bias")),
    Rule(r"convs\.(?P<j>\d+)\.skip\.1\.weight", _dblock("skip", "kernel"), torch_weight),
    Rule(r"convs\.\d+\.(conv2|skip)\.0\.kernel", None, check=fir_ok),
    Rule(r"final_conv\.0\.weight", "params/b4_conv/kernel", torch_weight),
    Rule(r"final_conv\.1\.bias", "params/b4_conv/bias"),
    Rule(r"final_linear\.0\.weight", "params/b4_fc/kernel", torch_weight),
    Rule(r"final_linear\.0\.bias", "params/b4_fc/bias"),
    Rule(r"final_linear\.1\.weight", "params/b4_out/kernel", torch_weight),
    Rule(r"final_linear\.1\.bias", "params/b4_out/bias"),
)

G_FAMILY = Family(
    name="stylegan2_generator",
    role="generator",
    rules=G_RULES,
    signature=("style.1.weight", "input.input", "to_rgb1.conv.weight"),
    description="rosinality stylegan2-pytorch generator (g_ema)",
)
D_FAMILY = Family(
    name="stylegan2_discriminator",
    role="discriminator",
    rules=D_RULES,
    signature=("convs.0.0.weight", "final_linear.1.weight", "final_conv.0.weight"),
    description="rosinality stylegan2-pytorch discriminator (d)",
    context=_d_context,
)


def read_rosinality(path: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """{"generator": g_ema state dict (+ latent_avg), "discriminator": d state dict (if kept)} as
    float32 numpy; only tensors (and train.py's argparse args) are unpickled."""
    import argparse

    import torch

    path = Path(path)
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            ck = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        msg = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConversionError(f"{path}: refused or unreadable as a rosinality checkpoint ({msg[:200]})") from None  # fmt: skip
    if not isinstance(ck, dict) or not isinstance(ck.get("g_ema"), dict):
        raise ConversionError(f"{path}: not a rosinality stylegan2-pytorch checkpoint (no 'g_ema')")

    def numpy(sd: dict) -> dict[str, np.ndarray]:
        bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
        if bad:
            raise ConversionError(f"{path}: non-tensor entries {bad[:8]}")
        return {k: v.detach().to(torch.float32).numpy() for k, v in sd.items()}

    out = {"generator": numpy(ck["g_ema"])}
    if isinstance(ck.get("latent_avg"), torch.Tensor):
        out["generator"]["latent_avg"] = ck["latent_avg"].to(torch.float32).numpy().reshape(-1)
    if isinstance(ck.get("d"), dict):
        out["discriminator"] = numpy(ck["d"])
    return out


def checkpoint_latent_avg(path: str | Path) -> np.ndarray | None:
    """The top-level `latent_avg` [w_dim] of a rosinality checkpoint dict, or None (a bare state
    dict, or a checkpoint without one)."""
    import argparse

    import torch

    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            ck = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception:
        return None
    avg = ck.get("latent_avg") if isinstance(ck, dict) else None
    return avg.to(torch.float32).numpy().reshape(-1) if isinstance(avg, torch.Tensor) else None
