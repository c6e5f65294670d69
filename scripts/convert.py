"""Convert checkpoints (idinvert, StyleNAT, DCGAN) into an occjax bundle (safetensors + bundle.json).

    python scripts/convert.py --generator styleganinv_ffhq256_generator.pth \
        --encoder styleganinv_ffhq256_encoder.pth --perceptual vgg16.pth \
        --discriminator FFHQ256_940k_flip.pt --out models/ffhq256

idinvert's original TensorFlow release is read without TensorFlow (generator from Gs, discriminator
from D); combine it with the PyTorch files for the rest (a role given as a .pth is taken from it):

    python scripts/convert.py --tf-pickle styleganinv_face_256.pkl \
        --encoder styleganinv_ffhq256_encoder.pth --perceptual vgg16.pth --out models/ffhq256_tf
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import tyro


@dataclass(frozen=True)
class ConvertConfig:
    out: Path
    """Bundle folder to write (created if missing)."""
    generator: Path | None = None
    """Generator checkpoint: idinvert's styleganinv_ffhq256_generator.pth, or a DCGAN (e.g. gan-face-generate's weights.tar); the family is recognised from the keys."""
    encoder: Path | None = None
    """idinvert encoder .pth (styleganinv_ffhq256_encoder.pth)."""
    perceptual: Path | None = None
    """idinvert VGG16 .pth (vgg16.pth)."""
    discriminator: Path | None = None
    """Discriminator: StyleNAT FFHQ256_940k_flip.pt (the paper's) or a genforce StyleGAN D .pth."""
    tf_pickle: Path | None = None
    """idinvert's TensorFlow release styleganinv_face_256.pkl (E, G, D, Gs), read without TensorFlow: gives the generator (from Gs) and the discriminator (from D), except a role also given as a .pth (the .pth wins). Its encoder is never converted: use --encoder."""
    stylegan2: Path | None = None
    """A StyleGAN2 / StyleGAN2-ADA checkpoint: NVlabs' network pickle (ffhq.pkl; read with a restricted unpickler, its embedded code never run) or rosinality's .pt (stylegan2-ffhq-config-f.pt): gives the generator (G_ema / g_ema) and the discriminator (D / d), except a role also given as a .pth."""
    tf_generator: Literal["Gs", "G"] = "Gs"
    """Which generator of the TF release to convert: Gs (the moving average idinvert uses) or G."""
    dtype: Literal["float32", "float16"] = "float32"
    """Storage dtype of the bundle's tensors (float16 halves the size; they load as float32)."""
    fused_min_res: int = 128
    """TF release: resolution from which the generator's up-sampling is fused (TF's rule, and the real release: 128); a TF file cannot tell. The tiny test fixture needs 32."""


def run(cfg: ConvertConfig) -> dict:
    from converters import convert_file, write_bundle

    sources = {
        r: p
        for r, p in (
            ("generator", cfg.generator),
            ("encoder", cfg.encoder),
            ("perceptual", cfg.perceptual),
            ("discriminator", cfg.discriminator),
        )
        if p is not None
    }
    tf_roles = tuple(r for r in ("generator", "discriminator") if r not in sources)
    if cfg.tf_pickle is not None and not tf_roles:
        raise SystemExit(
            "convert: --tf-pickle gives the generator and discriminator, but both are given as "
            ".pth files (--generator, --discriminator): drop one of them"
        )
    if not sources and cfg.tf_pickle is None and cfg.stylegan2 is None:
        raise SystemExit(
            "convert: give at least one of --generator --encoder --perceptual --discriminator "
            "--tf-pickle --stylegan2"
        )
    if cfg.fused_min_res < 4:
        raise SystemExit(
            f"convert: --fused-min-res must be a resolution >= 4, got {cfg.fused_min_res}"
        )
    t0 = time.perf_counter()
    converted = {}
    if cfg.tf_pickle is not None:
        from converters.tf_release import convert_tf_release

        tf_conv, rel = convert_tf_release(
            cfg.tf_pickle, tf_roles, cfg.tf_generator, cfg.fused_min_res
        )
        converted.update(tf_conv)
        for note in rel.notes:
            print(f"note: {note}")
        for role in sorted({"generator", "discriminator"} - set(tf_roles)):
            print(f"note: {role} from --{role}; the TF release's is not used")
        if "encoder" not in sources:
            print(f"note: {rel.encoder.message}")
        elif rel.encoder.candidate != "absent":
            print(f"note: encoder from --encoder ({rel.encoder.candidate} TF encoder not used)")
    if cfg.stylegan2 is not None:
        from converters.stylegan2 import convert_stylegan2

        sg2 = convert_stylegan2(cfg.stylegan2)
        converted.update({r: c for r, c in sg2.items() if r not in sources})
    converted.update({role: convert_file(path, role) for role, path in sources.items()})
    extra = {}
    if cfg.stylegan2 is not None:  # no encoder: start from w_avg, so no encoder regulariser
        extra["defaults"] = {"encoder_reg_weight": 0.0} if "encoder" not in converted else {}
        if "perceptual" not in converted:  # a perceptual term needs --perceptual
            extra["defaults"]["perceptual_weight"] = 0.0
    entries = write_bundle(cfg.out, converted, cfg.dtype, **extra)["networks"]
    for role, e in entries.items():
        print(
            f"{role:13s} {e['family']:24s} {e['tensors']:4d} tensors {e['parameters']:>12,d} params "
            f"sha256 {e['source_sha256'][:12]}  {e['convert_s']:.1f}s  <- {e['source']}"
            + (f" [{e['tf_network']}]" if "tf_network" in e else "")
        )
    print(f"wrote {cfg.out} in {time.perf_counter() - t0:.1f}s")
    return entries


def main(argv: list[str] | None = None) -> int:
    from converters.common import ConversionError

    cfg = tyro.cli(ConvertConfig, args=argv)
    try:
        run(cfg)
    except (ConversionError, FileNotFoundError) as e:
        print(f"convert: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
