"""Which perceptual term, learning rate and encoder-regulariser weight invert the faces64 DCGAN best.

    python benchmarks/faces64_settings.py --json benchmarks/results/faces64_settings.json

The `baseline` approach (100 steps, from the encoder's code) with each perceptual variant:
  lpips     LPIPS-VGG distance (torchvision VGG16 + LPIPS heads), what faces64 ships;
  relu43    mean squared relu4_3 features of the same VGG16 (ImageNet input scaling);
  none      no perceptual term;
over a small grid of its weight, the learning rate and the encoder-regulariser weight. Scored on
held-out generator samples: PSNR / LPIPS of the reconstruction of unoccluded photos, and local
LPIPS / PSNR inside a hand occlusion (medium size) against the clean photo (the task itself).
"""

from __future__ import annotations

import dataclasses
import itertools
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
    """The model (its generator and encoder are used; the perceptual network is varied)."""
    n: int = 8
    """Held-out samples (and occluded cases, one medium hand each)."""
    steps: int = 100
    """Adam steps (step steps/2 is scored too)."""
    lrs: tuple[float, ...] = (0.03, 0.1)
    regs: tuple[float, ...] = (0.0, 0.5)
    lpips_weights: tuple[float, ...] = (0.1, 0.3, 1.0)
    relu43_weights: tuple[float, ...] = (0.003, 0.01, 0.03)
    json: Path | None = None


def perceptual_variants(models):
    """{name: (perceptual Network or None, weights)}: LPIPS as shipped, its trunk's relu4_3."""
    from occjax.models import Network

    lp = models.net("perceptual")
    trunk = {k: v for k, v in lp.variables["params"].items() if k.startswith("conv")}
    names = [f"conv{b}_{i}" for b, n in ((1, 2), (2, 2), (3, 3), (4, 3)) for i in range(1, n + 1)]
    relu43 = Network(
        "lpips_vgg16",
        lp.module.clone(channels=lp.module.channels[:10], kind="imagenet"),
        {"params": {k: trunk[k] for k in names}},
    )
    return {"lpips": lp, "relu43": relu43, "none": None}


def main(args: Args) -> dict:
    import occjax
    from occjax.eval.lpips import LPIPS
    from occjax.eval.metrics import local_lpips, masked_psnr, psnr
    from occjax.eval.synthetic import SyntheticConfig, make_cases
    from occjax.models import Models

    base = occjax.load_models(bundle=args.bundle)
    rng = np.random.default_rng(7)
    cases, _, _ = make_cases(
        base, SyntheticConfig(people=args.n, refs=1, sizes=("medium",), identity=False), rng
    )
    clean = np.stack([c.clean for c in cases])
    occluded = np.stack([c.target for c in cases])
    masks = np.stack([c.mask for c in cases])
    n = len(cases)
    lp = LPIPS("vgg")
    nhwc = lambda x: np.moveaxis(np.clip(np.asarray(x), -1, 1), 1, -1)  # noqa: E731
    rows = []
    weights = {"lpips": args.lpips_weights, "relu43": args.relu43_weights, "none": (0.0,)}
    for name, net in perceptual_variants(base).items():
        nets = dict(base.nets)
        if net is None:
            nets.pop("perceptual")
        else:
            nets["perceptual"] = net
        models = Models(nets, info=base.info)
        grid = list(itertools.product(weights[name], args.lrs, args.regs))
        cfgs = [
            occjax.preset("baseline", steps=args.steps, lr=lr, encoder_reg_weight=reg,
                          perceptual_weight=w)
            for w, lr, reg in grid
        ]  # fmt: skip
        # every grid point on every photo, clean and occluded, as one batch
        x = np.concatenate(
            [np.tile(clean, (len(grid), 1, 1, 1)), np.tile(occluded, (len(grid), 1, 1, 1))]
        )
        mk = np.concatenate(
            [
                np.zeros_like(np.tile(masks, (len(grid), 1, 1, 1))),
                np.tile(masks, (len(grid), 1, 1, 1)),
            ]
        )
        cf = [c for c in cfgs for _ in range(n)] * 2
        t0 = time.perf_counter()
        r = occjax.invert(models, x, mk, config=cf, record=True, progress=True)
        dt = time.perf_counter() - t0
        enc = np.asarray(models.synthesis(r.init_codes[:n]))
        for at in sorted({args.steps // 2, args.steps}):
            imgs = (
                r.images
                if at == args.steps
                else np.asarray(models.synthesis(r.trace.codes[at - 1]))
            )
            for j, (w, lr, reg) in enumerate(grid):
                a = imgs[j * n : (j + 1) * n]
                b = imgs[(len(grid) + j) * n : (len(grid) + j + 1) * n]
                m = masks[:, 0]
                row = dict(perceptual=name, weight=w, lr=lr, encoder_reg=reg, steps=at)
                row["unoccluded_psnr"] = float(np.mean(psnr(nhwc(a), nhwc(clean))))
                row["unoccluded_lpips"] = float(np.mean(lp(nhwc(a), nhwc(clean))))
                row["local_lpips"] = float(np.mean(local_lpips(lp, nhwc(b), nhwc(clean), m)))
                row["local_psnr"] = float(np.mean(masked_psnr(nhwc(b), nhwc(clean), m)))
                row["encoder_psnr"] = float(np.mean(psnr(nhwc(enc), nhwc(clean))))
                row["batch_time_s"] = round(dt, 1)
                rows.append(row)
                print(
                    ", ".join(
                        f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                        for k, v in row.items()
                    )
                )
    full = [r for r in rows if r["steps"] == args.steps]
    best = min(full, key=lambda r: r["local_lpips"])
    out = {
        "args": dataclasses.asdict(args),
        "env": env_meta(),
        "rows": rows,
        "best_local_lpips": best,
    }
    if args.json:
        write_json(args.json, out)
    return out


if __name__ == "__main__":
    main(tyro.cli(Args))
