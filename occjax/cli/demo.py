"""The embedded demo: inputs made with the model itself (no files, no download).

A person is a code of the generator; their photos are its images of small perturbations of that
code (`occjax.identities`): the ground truth is one, the references are four others, and the target
is the ground truth with a procedural hand (occjax.occlusion.occluders.starter_occluders) pasted
on, whose alpha gives the mask. The inputs are written as PNGs under <run>/inputs/ so the rest of
the pipeline (and the evaluation) reads files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from occjax.cli.cases import Case
from occjax.io import save_image, to_uint8

DEMO_REFS = 4
# the demo's references are the model's own faces, which 50 steps already invert to > 30 dB; the
# model's 100 would take the demo over a minute on a 2-core CPU (--reference-steps sets it)
DEMO_REFERENCE_STEPS = 50
# and its restorations 50 steps, not the model's 100 (--steps sets it): on the demo's case
# baseline 35.9 / prior 35.3 dB against 37.2 / 34.8 at 100, and the warm demo in 11.8 s instead
# of 17.7 on an idle 2-core CPU (benchmarks/results/cpu_demo_cache_cold_warm.json)
DEMO_STEPS = 50
RANDOM_WEIGHTS_NOTE = (
    "NOTE: --demo-model random uses RANDOM weights (images look like coloured noise, not faces); "
    "drop it for the built-in face model."
)


def identity_codes(models, seed: int, n: int) -> np.ndarray:
    """[n + 1, L, D]: n + 1 photos (codes) of one seeded person."""
    from occjax.identities import photos_of, sample_people

    rng = np.random.default_rng([seed, 1])
    return photos_of(models, sample_people(models, 1, rng), n + 1, rng)[0]


def occluder_rgba(seed: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """A procedural hand, [size, size, 4] uint8, placed over the lower-middle face."""
    from occjax.occlusion.occluders import starter_occluders

    occ = starter_occluders(seed, hands=1, size=256)[0].rgba  # a hand-like shape
    side = int(size * rng.uniform(0.40, 0.55))
    h, w = occ.shape[:2]
    scale = side / max(h, w)
    small = Image.fromarray(occ).resize(
        (max(1, round(w * scale)), max(1, round(h * scale))), Image.LANCZOS
    )
    canvas = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    x = int(size / 2 - small.size[0] / 2 + rng.uniform(-0.1, 0.1) * size)
    y = int(size * rng.uniform(0.45, 0.6) - small.size[1] / 2)
    canvas.paste(small, (x, y), small)
    return np.asarray(canvas)


def make_demo_case(models, seed: int, folder: Path) -> Case:
    """Generate the demo's target, mask, references and ground truth as PNGs in `folder`."""
    folder = Path(folder).resolve()
    res = models.resolution
    codes = identity_codes(models, seed, DEMO_REFS)
    images = np.asarray(models.synthesis(codes))  # [n + 1, 3, H, W]
    clean_u8 = to_uint8(images[0])
    rgba = occluder_rgba(seed, res, np.random.default_rng([seed, 2]))
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    target_u8 = np.rint(rgba[..., :3] * alpha + clean_u8 * (1 - alpha)).astype(np.uint8)
    mask_u8 = np.where(rgba[..., 3] > 127, 255, 0).astype(np.uint8)
    paths = {
        "target": folder / "target.png",
        "mask": folder / "mask.png",
        "clean": folder / "clean.png",
    }
    save_image(paths["target"], target_u8)
    save_image(paths["mask"], mask_u8)
    save_image(paths["clean"], clean_u8)
    refs = []
    for i, im in enumerate(images[1:]):
        p = folder / f"ref_{i}.png"
        save_image(p, im)
        refs.append(p)
    meta = {"demo": True, "seed": seed, "model": models.name}
    return Case("demo", paths["target"], paths["mask"], tuple(refs), paths["clean"], meta)
