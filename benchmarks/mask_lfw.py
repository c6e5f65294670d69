"""`occjax.estimate_mask` on the real LFW photos of ../shared/data/lfw_hand_samples (aligned, with
their true hand masks and reference photos), with the built-in 64 px model.

    python benchmarks/mask_lfw.py --json benchmarks/results/mask_lfw.json
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import env_meta, write_json  # noqa: E402


@dataclass(frozen=True)
class Args:
    bundle: str = "faces64"
    data: Path = Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw_hand_samples"
    json: Path | None = None


def main(args: Args) -> dict:
    import occjax
    from occjax.io import load_image, load_mask
    from occjax.masks import iou

    models = occjax.load_models(bundle=args.bundle)
    r = models.resolution
    rows = []
    for person in sorted(p for p in args.data.iterdir() if p.is_dir()):
        occ = sorted((person / "occluded_img").iterdir())
        refs = np.stack([load_image(p, r) for p in sorted((person / "reference_imgs").iterdir())])
        targets = np.stack([load_image(p, r) for p in occ])
        true = np.stack([load_mask(person / "occlusion_mask" / p.name, r) for p in occ])
        est = occjax.estimate_mask(models, targets, [refs] * len(occ))
        for p, e, t in zip(occ, est, true):
            row = {"photo": p.name, "flagged": float(e.mean()), "true": float(t.mean()), "iou": float(iou(e[None], t[None])[0])}  # fmt: skip
            rows.append(row)
            print(row)
    out = {"env": env_meta(), "args": vars(args), "rows": rows}
    write_json(args.json, out)
    return out


if __name__ == "__main__":
    main(tyro.cli(Args))
