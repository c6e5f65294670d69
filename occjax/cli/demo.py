"""The embedded demo: inputs made with the small random-weight model (no files, no download).

An identity is a W+ code; its references are the generator's images of small perturbations of it;
the ground truth is another perturbation, and the target is that image with a procedural occluder
(occjax.occlusion.occluders.starter_occluders) pasted on, whose alpha gives the mask. The inputs are
written as PNGs under <run>/inputs/ so the rest of the pipeline (and the evaluation) reads files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from occjax.cli.cases import Case
from occjax.io import save_image, to_uint8

DEMO_STEPS = 30
DEMO_REFS = 4
RANDOM_WEIGHTS_NOTE = (
    "NOTE: the demo model has RANDOM weights (images look like coloured noise, not faces); "
    "for real restorations convert the released checkpoints (README, 'Real checkpoints') and pass "
    "--models DIR."
)


def identity_codes(models, seed: int, n: int, spread: float = 0.15) -> np.ndarray:
    """[n + 1, L, D]: an identity's W+ code perturbed n + 1 times (small Gaussian steps)."""
    rng = np.random.default_rng([seed, 1])
    g = models.net("generator").spec
    z = rng.standard_normal((1, g.z_dim)).astype(np.float32)
    code = np.asarray(models.truncation(models.mapping(z)))
    scale = spread * float(code.std())
    noise = rng.standard_normal((n + 1, *code.shape[1:])).astype(np.float32) * scale
    return code + noise


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
    meta = {"demo": True, "seed": seed, "random_weights": True}
    return Case("demo", paths["target"], paths["mask"], tuple(refs), paths["clean"], meta)
