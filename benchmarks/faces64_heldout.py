"""The built-in model's encoder and its 100-step `baseline` on held-out samples.

    python benchmarks/faces64_heldout.py --json benchmarks/results/faces64_heldout.json

Held-out: 256 codes z ~ N(0, I) drawn with numpy (seed 2024), never seen by the encoder's training
(which draws its own codes from JAX's PRNG). Per sample: PSNR of the encoder's reconstruction
G(E(x)) against x, and PSNR after the model's `baseline` preset (its own defaults, 100 steps), on
unoccluded photos.
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
    n: int = 256
    batch: int = 64
    steps: int | None = None
    """Adam steps (default: the model's)."""
    seed: int = 2024
    json: Path | None = None


def main(args: Args) -> dict:

    import occjax
    from occjax.eval.metrics import from_nchw, psnr

    models = occjax.load_models(bundle=args.bundle)
    cfg = models.preset("baseline", **({"steps": args.steps} if args.steps else {}))
    z = np.random.default_rng(args.seed).normal(size=(args.n, models.z_dim)).astype(np.float32)

    enc, inv = [], []
    t0 = time.perf_counter()
    for i in range(0, args.n, args.batch):
        x = np.asarray(models.generate(z[i : i + args.batch]))
        e = np.asarray(models.synthesis(models.encode(x)))
        res = occjax.invert(models, x, None, None, config=cfg)
        enc.append(np.asarray(psnr(from_nchw(e), from_nchw(x))))
        inv.append(np.asarray(psnr(from_nchw(res.images), from_nchw(x))))
        print(f"{i + len(x)}/{args.n}: encoder {np.concatenate(enc).mean():.2f} dB, baseline {np.concatenate(inv).mean():.2f} dB")  # fmt: skip
    enc, inv = np.concatenate(enc), np.concatenate(inv)
    out = {
        "env": env_meta(),
        "args": vars(args),
        "steps": cfg.steps,
        "encoder_psnr": {
            "mean": float(enc.mean()),
            "min": float(enc.min()),
            "median": float(np.median(enc)),
        },  # fmt: skip
        "baseline_psnr": {
            "mean": float(inv.mean()),
            "min": float(inv.min()),
            "median": float(np.median(inv)),
            "below_25db": int((inv < 25).sum()),
        },  # fmt: skip
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    print(out)
    write_json(args.json, out)
    return out


if __name__ == "__main__":
    main(tyro.cli(Args))
