"""How well the built-in model reproduces usable and unusable reference photos: the data behind
its `min_ref_quality` (the screening's default threshold, `occjax.screening`).

    python benchmarks/reference_quality.py --json benchmarks/results/reference_quality.json

Usable: faces the model drew itself (seeded), real FFHQ-aligned faces and the LFW samples' reference
photos (../shared/data). Unusable: uniform noise, generated faces under heavy Gaussian noise
(sigma 0.6), and occluder textures (not faces). Each photo is inverted as the screening inverts it
(the model's `baseline`, its reference steps) and its reconstruction PSNR is recorded per group.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import env_meta, write_json  # noqa: E402


@dataclass(frozen=True)
class Args:
    bundle: str = "faces64"
    generated: int = 12
    """Faces drawn by the model (seed 0)."""
    bad: int = 4
    """Photos per unusable group."""
    data: Path = Path(__file__).resolve().parents[2] / "shared" / "data"
    json: Path | None = None


def main(args: Args) -> dict:
    import occjax
    from occjax.io import load_image
    from occjax.screening import screen_references

    models = occjax.load_models(bundle=args.bundle)
    r = models.resolution
    rng = np.random.default_rng(0)
    z = rng.normal(size=(args.generated + args.bad, models.z_dim)).astype(np.float32)
    faces = np.asarray(models.generate(z))
    groups = {
        "generated": faces[: args.generated],
        "ffhq_real": np.stack(
            [load_image(p, r) for p in sorted((args.data / "ffhq_examples").glob("*.png"))]
        ),  # fmt: skip
        "lfw_references": np.stack(
            [
                load_image(p, r)
                for p in sorted(args.data.glob("lfw_hand_samples/*/reference_imgs/*"))
            ]
        ),  # fmt: skip
        "noise": rng.uniform(-1, 1, (args.bad, 3, r, r)).astype(np.float32),
        "corrupted": np.clip(
            faces[args.generated :] + rng.normal(0, 0.6, faces[args.generated :].shape), -1, 1
        ).astype(np.float32),  # fmt: skip
        "textures": np.stack([_square(p, r) for p in sorted((args.data / "occluders").glob("*"))]),
    }
    names = list(groups)
    t0 = time.perf_counter()
    (s,) = screen_references(models, [np.concatenate([groups[n] for n in names])], min_quality=-1e9, identity=False)  # fmt: skip
    wall = time.perf_counter() - t0
    out, i = {}, 0
    for n in names:
        p = s.psnr[i : i + len(groups[n])]
        q = s.lpips[i : i + len(groups[n])]
        i += len(groups[n])
        out[n] = {"n": len(p), "psnr_min": float(p.min()), "psnr_median": float(np.median(p)), "psnr_max": float(p.max()), "lpips_min": float(q.min()), "lpips_median": float(np.median(q)), "lpips_max": float(q.max()), "psnr": p.round(2).tolist(), "lpips": q.round(4).tolist()}  # fmt: skip
        print(f"{n:<16} n={len(p):>3}  PSNR min {p.min():6.2f}  median {np.median(p):6.2f}  max {p.max():6.2f} dB  LPIPS min {q.min():.3f} median {np.median(q):.3f} max {q.max():.3f}")  # fmt: skip
    good = min(out[n]["psnr_min"] for n in ("generated", "ffhq_real", "lfw_references"))
    bad = max(out[n]["psnr_max"] for n in ("noise", "corrupted", "textures"))
    res = {"env": env_meta(), "args": vars(args), "groups": out, "wall_s": wall,
           "worst_usable_psnr": good, "best_unusable_psnr": bad, "midpoint": (good + bad) / 2}  # fmt: skip
    worst_lpips = max(out[n]["lpips_max"] for n in ("generated", "ffhq_real", "lfw_references"))
    best_bad_lpips = min(out[n]["lpips_min"] for n in ("noise", "corrupted", "textures"))
    res |= {"worst_usable_lpips": worst_lpips, "best_unusable_lpips": best_bad_lpips}
    print(f"worst usable {good:.2f} dB, best unusable {bad:.2f} dB")
    print(f"LPIPS: worst usable {worst_lpips:.3f}, best unusable {best_bad_lpips:.3f}")
    write_json(args.json, res)
    return res


def _square(path: Path, r: int) -> np.ndarray:
    """Centre square crop of a non-square picture, [3, r, r] in [-1, 1]."""
    from PIL import Image

    im = Image.open(path).convert("RGB")
    s = min(im.size)
    x, y = (im.width - s) // 2, (im.height - s) // 2
    a = np.asarray(im.crop((x, y, x + s, y + s)).resize((r, r), Image.LANCZOS), np.float32)
    return a.transpose(2, 0, 1) / 127.5 - 1.0


if __name__ == "__main__":
    main(tyro.cli(Args))
