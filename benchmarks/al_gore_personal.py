"""One real photo with a real hand, four real references: `personal` timed at batch 1, and the
README's figure (docs/al_gore_personal.png), restored at 64 px and pasted back on the photo.

    python benchmarks/al_gore_personal.py --out benchmarks/results/al_gore_personal.json

Data: ../shared/data/lfw_hand_samples/Al_Gore (already FFHQ-aligned: the occluded photo 0008
medium, its hand mask, references 0001-0004). There is no clean photo, so no score: this is the
time of one restoration (pivots included, compile included) and a picture to look at.
Columns of the figure: the occluded photo, then `baseline` (frozen model), biharmonic inpainting
and `personal`; each GAN restoration is first blended into the 64 px photo (`occjax.blend`,
poisson), then every one is pasted back inside the hand's mask (feathered 2 px) at 256 px.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SRC = REPO.parent / "shared" / "data" / "lfw_hand_samples" / "Al_Gore"
SHOW = 256


def _load(path: Path, res: int) -> np.ndarray:
    from occjax.io import resize_rgb

    with Image.open(path) as im:
        return resize_rgb(im.convert("RGB"), res)


def paste(restored: np.ndarray, photo: Image.Image, mask: Image.Image) -> np.ndarray:
    """The restored [3, h, w] image upsampled to the photo's size, composited inside the mask."""
    from occjax.io import to_uint8

    up = Image.fromarray(to_uint8(restored)).resize(photo.size, Image.LANCZOS)
    alpha = mask.filter(ImageFilter.MaxFilter(5)).filter(ImageFilter.GaussianBlur(2))
    a = np.asarray(alpha, np.float32)[..., None] / 255.0
    return (np.asarray(up) * a + np.asarray(photo) * (1 - a)).astype(np.uint8)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--figure", type=Path, default=REPO / "docs" / "al_gore_personal.png")
    args = ap.parse_args(argv)

    from real_photos import classical

    import occjax

    models = occjax.load_models(bundle="faces64")
    res = models.resolution
    name = "Al_Gore_0008_01_medium.png"
    target = _load(SRC / "occluded_img" / name, res)[None]
    with Image.open(SRC / "occlusion_mask" / name) as m:
        mask_full = m.convert("L")
    mask = (np.asarray(mask_full.resize((res, res), Image.BILINEAR)) > 127).astype(np.float32)
    mask = mask[None, None]
    refs = np.stack([_load(p, res) for p in sorted((SRC / "reference_imgs").glob("*.png"))])
    t0 = time.perf_counter()
    r = occjax.invert(models, target, mask, [refs], config="personal")
    personal_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    base = occjax.invert(models, target, mask, None, config="baseline")
    baseline_s = time.perf_counter() - t0
    bih = classical([{"target": target[0], "mask": mask[0]}], "biharmonic")
    from occjax.blend import blend

    shown = [blend(x.images, target, mask)[0] for x in (base, r)]
    with Image.open(SRC / "occluded_img" / name) as im:
        photo = im.convert("RGB").resize((SHOW, SHOW), Image.LANCZOS)
    small_mask = mask_full.resize((SHOW, SHOW), Image.BILINEAR)
    cols = [np.asarray(photo)] + [paste(x, photo, small_mask) for x in (shown[0], bih[0], shown[1])]
    args.figure.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(cols, 1)).save(args.figure)
    doc = {
        "references": len(refs),
        "personal_s": personal_s,
        "personal_timings": r.timings,
        "baseline_s": baseline_s,
        "figure": str(args.figure.relative_to(REPO)),
        "columns": ["occluded", "baseline", "biharmonic", "personal"],
    }
    args.out.write_text(json.dumps(doc, indent=1))
    print(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
