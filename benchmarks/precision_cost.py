"""Quality cost of faster arithmetic: the same inversion in float32 and in each cheaper mode.

    python benchmarks/precision_cost.py --size ffhq256 --approach prior_disc --steps 100 --json out.json

Variants: `float32` (matmul precision "highest"; the reference run), `float32_again` (the same run
repeated: run-to-run noise), `tf32` (matmul precision "tensorfloat32": TF32 on NVIDIA GPUs, no
effect on CPU) and `bfloat16` (`compute_dtype="bfloat16"`: networks in bf16, codes, Adam and loss
sums float32). Each reports the max and mean |code - float32 code| after `steps` steps and the PSNR
of its image G(code) against the float32 image, next to the float32 image's own PSNR against the
target (the size of the effect next to the size of the reconstruction error). Images are always
synthesised in float32. Targets are the FFHQ-aligned faces of ../shared/data when present.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import tyro
from _common import write_json

VARIANTS = {
    "float32": ("highest", "float32"),
    "float32_again": ("highest", "float32"),
    "tf32": ("tensorfloat32", "float32"),
    "bfloat16": ("highest", "bfloat16"),
}


@dataclass(frozen=True)
class PrecisionConfig:
    size: str = "tiny"
    """'tiny' (64 px fixture models) or 'ffhq256' (random weights of the real shapes)."""
    approach: str = "prior_disc"
    """Preset: baseline, disc, prior, prior_disc."""
    batch: int = 2
    """Faces inverted at once."""
    steps: int = 100
    """Adam steps (the issue's quality cost is after 100)."""
    refs: int = 4
    """Reference codes per face for the prior approaches (random codes near the encoder's)."""
    variants: tuple[str, ...] = ("float32", "float32_again", "tf32", "bfloat16")
    """Which of float32, float32_again, tf32, bfloat16 to run (float32 always runs first)."""
    json: Path | None = None
    """Write the rows here."""


def _targets(res: int, batch: int):
    import numpy as np

    from occjax.io import load_image

    faces = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ffhq_examples"
    files = sorted(faces.glob("*.png"))[:batch] if faces.is_dir() else []
    if len(files) == batch:
        return np.stack([load_image(f, res) for f in files]), "ffhq_examples"
    rng = np.random.default_rng(0)
    return rng.uniform(-1, 1, (batch, 3, res, res)).astype(np.float32), "random"


def main(argv=None) -> int:
    cfg = tyro.cli(PrecisionConfig, args=argv)
    import jax
    import numpy as np

    import occjax
    from occjax.eval.metrics import psnr

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_invert import _models

    unknown = set(cfg.variants) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"unknown variants {sorted(unknown)}; choose from {sorted(VARIANTS)}")
    models = _models(cfg.size)
    res = models.resolution
    targets, source = _targets(res, cfg.batch)
    masks = np.zeros((cfg.batch, 1, res, res), np.float32)
    masks[:, :, res // 3 : res // 2, res // 4 : 3 * res // 4] = 1  # a band over the nose
    refs = None
    if occjax.preset(cfg.approach).prior:
        # references: codes near each face's encoder code (stand-ins for inverted reference photos)
        z0 = np.asarray(models.encode(targets))
        rng = np.random.default_rng(1)
        refs = [z + 0.1 * rng.normal(size=(cfg.refs, *z.shape)).astype(np.float32) for z in z0]

    def run(variant):
        precision, dtype = VARIANTS[variant]
        icfg = occjax.preset(cfg.approach, steps=cfg.steps, compute_dtype=dtype)
        t = time.perf_counter()
        with jax.default_matmul_precision(precision):
            r = occjax.invert(models, targets, masks, refs, icfg)
        return r, time.perf_counter() - t

    base, base_s = run("float32")
    nhwc = lambda a: np.asarray(a).transpose(0, 2, 3, 1)  # noqa: E731
    to_target = np.asarray(psnr(nhwc(base.images), nhwc(targets)))
    dev = jax.local_devices()[0]
    rows = []
    for variant in dict.fromkeys(("float32", *cfg.variants)):
        r, secs = (base, base_s) if variant == "float32" else run(variant)
        d = np.abs(r.codes - base.codes)
        p = np.asarray(psnr(nhwc(r.images), nhwc(base.images)))
        row = {
            "size": cfg.size,
            "approach": cfg.approach,
            "batch": cfg.batch,
            "steps": cfg.steps,
            "variant": variant,
            "matmul_precision": VARIANTS[variant][0],
            "compute_dtype": VARIANTS[variant][1],
            "device": f"{dev.platform}:{dev.device_kind}",
            "targets": source,
            "max_abs_code_diff": float(d.max()),
            "mean_abs_code_diff": float(d.mean()),
            # null: identical images (infinite PSNR has no JSON number)
            "psnr_vs_float32_db_min": float(p.min()) if np.isfinite(p.min()) else None,
            "psnr_vs_float32_db_mean": float(p.mean()) if np.all(np.isfinite(p)) else None,
            "psnr_float32_vs_target_db_mean": float(to_target.mean()),
            "final_total_loss_mean": float(r.final_losses["total"].mean()),
            "flagged": int(r.flagged.sum()),
            "wall_s": round(secs, 2),
        }
        rows.append(row)
        print(
            f"{variant:14s} max|dz| {row['max_abs_code_diff']:.3g}  mean|dz| "
            f"{row['mean_abs_code_diff']:.3g}  PSNR vs float32 {p.min():.1f} dB "
            f"(float32 vs target {row['psnr_float32_vs_target_db_mean']:.1f} dB)  "
            f"loss {row['final_total_loss_mean']:.5g}  {secs:.1f} s"
        )
    write_json(cfg.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
