"""Synthetic identity benchmark: ground truth by construction, for any generator (the demo's too).

Each identity is a random W+ code: the mapping of a random z, then truncation. References and the
ground-truth target are the generator's images of small W+ perturbations of that code (noise of std
`perturbation` times the per-dimension spread of the identity codes). The target is occluded by a
random ellipse or rectangle painted with a random colour (the landmark-guided occlusion synthesis of
`occjax.occlusion` needs a real face's 68 landmarks, which random-weight generators do not draw).

Two conditions per identity:
  same   the references are of the same identity (informative: the prior should help)
  other  the references are of the NEXT identity (uninformative: the prior should not hurt much)
Every approach (enc, baseline, disc, prior, prior_disc) is scored inside the occlusion against the
un-occluded ground truth: local MSE, local PSNR (dB) and local LPIPS (mask mean of the VGG map),
plus the W+ distance of its code to the identity code.

If the mapping network is degenerate (the random demo's mapping collapses every z to the same w),
identities are drawn directly as W codes ~ N(0, 1) broadcast over the W+ layers
(`identity_source` in the output says which).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw

from occjax.config import APPROACHES, InvertConfig, preset
from occjax.occlusion.measure import occluded_percentage

CONDITIONS = ("same", "other")
METRICS = ("local_mse", "local_psnr", "local_lpips", "w_dist")


@dataclass(frozen=True)
class SyntheticConfig:
    identities: int = 4
    """Number of random identities (cases per condition)."""
    refs: int = 3
    """References per identity."""
    steps: int = 20
    """Adam steps of the optimising approaches (enc always uses 0)."""
    reference_steps: int = 20
    """Baseline steps that invert each reference photo into its code (ref_input='photos')."""
    ref_input: Literal["photos", "codes"] = "photos"
    """'photos': references are images, inverted once with the baseline; 'codes': their true codes."""
    perturbation: float = 0.15
    """Std of the W+ noise of references and target, relative to the identity codes' spread."""
    occlusion: tuple[float, float] = (15.0, 35.0)
    """Range of the occluded percentage (of the paper's box) drawn per identity."""
    prior_weight: float | None = None
    """Fixed lambda3 for prior approaches (None: the adaptive weight of the preset)."""
    approaches: tuple[str, ...] = APPROACHES
    """Approaches to run (enc is the encoder's code, steps 0)."""
    seed: int = 0
    """Seed of identities, perturbations and occlusions."""
    chunk_size: int | None = None
    """At most this many problems per compiled call (memory budget)."""
    lpips: bool = True
    """Compute local LPIPS (VGG); off: pixel metrics only."""


@dataclass
class SyntheticSet:
    """Identity codes [N, L, D], clean targets / occluded targets [N, 3, H, W], masks [N, 1, H, W],
    reference photos [N, R, 3, H, W] and their true codes [N, R, L, D]."""

    identity_codes: np.ndarray
    target_codes: np.ndarray
    clean: np.ndarray
    targets: np.ndarray
    masks: np.ndarray
    ref_codes: np.ndarray
    ref_images: np.ndarray
    identity_source: str
    occluded_pct: list[dict] = field(default_factory=list)


def identity_codes(models, n: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """Random people's codes [n, L, D] (`occjax.identities`)."""
    from occjax.identities import sample_people

    return sample_people(models, n, rng), "codes(z)"


def random_shape_mask(res: int, rng: np.random.Generator, lo: float, hi: float) -> np.ndarray:
    """float32 [res, res] mask (1 = occluded): an ellipse or rectangle inside the paper's box whose
    box percentage lies in [lo, hi] (its area is solved from a drawn target)."""
    target = rng.uniform(lo, hi)
    box = 170 / 256 * res
    for _ in range(20):
        aspect = np.exp(rng.uniform(-0.5, 0.5))
        kind = "ellipse" if rng.random() < 0.5 else "rectangle"
        area = target / 100 * box * box / (np.pi / 4 if kind == "ellipse" else 1.0)
        w, h = np.sqrt(area * aspect), np.sqrt(area / aspect)
        cx = rng.uniform(res / 2 - box / 4, res / 2 + box / 4)
        cy = rng.uniform(res / 2 - box / 4, res / 2 + box / 4)
        im = Image.new("L", (res, res), 0)
        xy = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
        draw = ImageDraw.Draw(im)
        (draw.ellipse if kind == "ellipse" else draw.rectangle)(xy, fill=255)
        m = (np.asarray(im) > 127).astype(np.float32)
        if lo <= occluded_percentage(m, "box") <= hi:
            return m
    return m


def make_set(models, cfg: SyntheticConfig) -> SyntheticSet:
    """The identities, their references, ground truths and occluded targets (deterministic)."""
    rng = np.random.default_rng(cfg.seed)
    ids, source = identity_codes(models, cfg.identities, rng)
    spread = max(float(ids.std(0).mean()), 1e-3) if len(ids) > 1 else 1.0
    if source.startswith("gaussian"):
        spread = 1.0
    n, r = cfg.identities, cfg.refs
    noise = rng.standard_normal((n, r + 1, *ids.shape[1:])).astype(np.float32)
    codes = ids[:, None] + cfg.perturbation * spread * noise  # [N, R+1, L, D]; index 0 = target
    images = np.asarray(models.synthesis(codes.reshape(-1, *ids.shape[1:])), np.float32)
    images = np.clip(images, -1, 1).reshape(n, r + 1, *images.shape[1:])
    res = images.shape[-1]
    masks = np.stack([random_shape_mask(res, rng, *cfg.occlusion) for _ in range(n)])[:, None]
    colours = rng.uniform(-1, 1, (n, 3, 1, 1)).astype(np.float32)
    clean = images[:, 0]
    targets = clean * (1 - masks) + colours * masks
    pct = [
        {"box": occluded_percentage(m[0], "box"), "image": occluded_percentage(m[0], "image")}
        for m in masks
    ]
    return SyntheticSet(
        ids, codes[:, 0], clean, targets, masks, codes[:, 1:], images[:, 1:], source, pct
    )


def _problems(cfg: SyntheticConfig) -> list[tuple[str, str]]:
    """(approach, condition) of each optimising problem per identity; ref-free ones run once."""
    out = []
    for a in cfg.approaches:
        if a == "enc":
            continue
        conds = CONDITIONS if preset(a).prior else ("same",)
        out += [(a, c) for c in conds]
    return out


def approach_config(name: str, cfg: SyntheticConfig) -> InvertConfig:
    over: dict = {
        "steps": 0 if name == "enc" else cfg.steps,
        "reference_steps": cfg.reference_steps,
    }
    if preset(name).prior and cfg.prior_weight is not None:
        over["prior_weight"] = cfg.prior_weight
    return preset(name, **over)


def local_metrics(images: np.ndarray, clean: np.ndarray, masks: np.ndarray, lpips=None) -> dict:
    """Per-image local MSE / PSNR / LPIPS inside masks (NCHW in [-1, 1], masks [N, 1, H, W])."""
    import jax.numpy as jnp

    m = masks[:, 0] > 0.5
    a, b = np.clip(images, -1, 1), np.clip(clean, -1, 1)
    se = (((a - b) / 2) ** 2).mean(1)  # on [0, 1] images, mean over channels
    mse = np.asarray([se[i][m[i]].mean() for i in range(len(m))], np.float64)
    out = {"local_mse": mse, "local_psnr": 10 * np.log10(1.0 / np.maximum(mse, 1e-12))}
    if lpips is not None:
        from occjax.eval.metrics import local_lpips

        nhwc = (jnp.moveaxis(jnp.asarray(a), 1, -1), jnp.moveaxis(jnp.asarray(b), 1, -1))
        out["local_lpips"] = np.asarray(local_lpips(lpips, *nhwc, jnp.asarray(m, jnp.float32)))
    return out


def run_benchmark(models, cfg: SyntheticConfig, out_dir: str | Path | None = None) -> dict:
    """Run every approach x condition; returns {"rows": [...], "summary": {...}, ...} and writes
    table.md / results.json (and results.jsonl + PNGs for scripts/evaluate.py) under out_dir."""
    from occjax import api

    t0 = time.perf_counter()
    s = make_set(models, cfg)
    n = cfg.identities
    other = [(i + 1) % n for i in range(n)]
    if cfg.ref_input == "codes":
        ref_codes = s.ref_codes
    else:
        flat = s.ref_images.reshape(-1, *s.ref_images.shape[2:])
        codes, _ = api.invert_references(
            models, flat, cfg.reference_steps, chunk_size=cfg.chunk_size
        )
        ref_codes = codes.reshape(s.ref_codes.shape)
    results: dict[
        tuple[str, str], dict
    ] = {}  # (approach, condition) -> images, codes, losses, time
    if "enc" in cfg.approaches:
        t = time.perf_counter()
        r = api.invert(
            models, s.targets, s.masks, None, approach_config("enc", cfg), chunk_size=cfg.chunk_size
        )
        results[("enc", "same")] = {
            "images": r.images,
            "codes": r.codes,
            "losses": r.final_losses,
            "time": time.perf_counter() - t,
        }
    probs = _problems(cfg)
    if probs:
        t = time.perf_counter()
        idx = [(p, i) for p in probs for i in range(n)]
        refs = [ref_codes[i if c == "same" else other[i]] for (_, c), i in idx]
        cfgs = [approach_config(a, cfg) for (a, _), _ in idx]
        r = api.invert(
            models,
            s.targets[[i for _, i in idx]],
            s.masks[[i for _, i in idx]],
            refs,
            cfgs,
            chunk_size=cfg.chunk_size,
        )
        dt = (time.perf_counter() - t) / len(probs)
        for k, p in enumerate(probs):
            sl = slice(k * n, (k + 1) * n)
            results[p] = {
                "images": r.images[sl],
                "codes": r.codes[sl],
                "losses": {t_: v[sl] for t_, v in r.final_losses.items()},
                "time": dt,
            }
    lp = None
    if cfg.lpips:
        from occjax.eval.lpips import LPIPS

        lp = LPIPS("vgg")
    rows = []
    for (a, c0), res in results.items():
        met = local_metrics(res["images"], s.clean, s.masks, lp)
        wd = np.linalg.norm((res["codes"] - s.identity_codes).reshape(n, -1), axis=1)
        conds = (c0,) if preset(a).prior else CONDITIONS  # ref-free results count in both
        for cond in conds:
            for i in range(n):
                rows.append(
                    {
                        "case": f"id{i:03d}_{cond}",
                        "identity": i,
                        "approach": a,
                        "condition": cond,
                        **{k: float(v[i]) for k, v in met.items()},
                        "w_dist": float(wd[i]),
                        "losses": {t_: float(v[i]) for t_, v in res["losses"].items()},
                        "time_s": res["time"] / n,
                        "_images": res["images"][i],
                    }
                )
    out = {
        "config": dataclasses.asdict(cfg),
        "identity_source": s.identity_source,
        "occlusion": "random ellipse/rectangle (landmark-guided synthesis needs real faces)",
        "summary": summarize(rows),
        "time_s": time.perf_counter() - t0,
    }
    out["rows"] = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    if out_dir is not None:
        write_outputs(Path(out_dir), out, rows, s, ref_codes)
    return out


def summarize(rows: list[dict]) -> dict:
    """{approach: {condition: {metric: [mean, std, n]}}} over identities."""
    out: dict = {}
    for r in rows:
        out.setdefault(r["approach"], {}).setdefault(r["condition"], []).append(r)
    return {
        a: {
            c: {
                m: [float(np.mean(v)), float(np.std(v)), len(v)]
                for m in METRICS
                if (v := [x[m] for x in rs if m in x])
            }
            for c, rs in conds.items()
        }
        for a, conds in out.items()
    }


def markdown_table(summary: dict) -> str:
    metrics = [m for m in METRICS if any(m in c for a in summary.values() for c in a.values())]
    arrows = {"local_mse": "↓", "local_psnr": "↑", "local_lpips": "↓", "w_dist": "↓"}
    head = "| approach | condition | " + " | ".join(f"{m} {arrows[m]}" for m in metrics) + " |"
    lines = [head, "|" + "---|" * (len(metrics) + 2)]
    order = [a for a in APPROACHES if a in summary] + [a for a in summary if a not in APPROACHES]
    for a in order:
        for c in CONDITIONS:
            if c not in summary[a]:
                continue
            vals = [summary[a][c].get(m) for m in metrics]
            cells = [f"{v[0]:.4g} ± {v[1]:.2g}" if v else "-" for v in vals]
            lines.append(f"| {a} | {c} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _png(x: np.ndarray, path: Path) -> str:
    from occjax.eval.metrics import to_uint8

    path.parent.mkdir(parents=True, exist_ok=True)
    if x.shape[0] == 1:
        Image.fromarray(np.where(x[0] > 0.5, 255, 0).astype(np.uint8), "L").save(path)
    else:
        Image.fromarray(to_uint8(np.moveaxis(x, 0, -1))).save(path)
    return str(path.resolve())


def write_outputs(out_dir: Path, out: dict, rows: list[dict], s: SyntheticSet, ref_codes) -> None:
    """table.md, results.json and a run folder per condition (results.jsonl + PNGs)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "table.md").write_text(
        f"Synthetic identity benchmark ({out['identity_source']}; occlusion: {out['occlusion']}); "
        "metrics inside the occlusion vs the un-occluded ground truth, mean ± std over identities.\n\n"
        + markdown_table(out["summary"])
    )
    (out_dir / "results.json").write_text(json.dumps({k: v for k, v in out.items()}, indent=1))
    n = len(s.clean)
    other = [(i + 1) % n for i in range(n)]
    inputs = out_dir / "inputs"
    paths = []
    for i in range(n):
        p = {
            "target": _png(s.targets[i], inputs / f"id{i:03d}_target.png"),
            "mask": _png(s.masks[i], inputs / f"id{i:03d}_mask.png"),
            "clean": _png(s.clean[i], inputs / f"id{i:03d}_clean.png"),
            "refs": [
                _png(x, inputs / f"id{i:03d}_ref{j}.png") for j, x in enumerate(s.ref_images[i])
            ],
        }
        paths.append(p)
    for cond in CONDITIONS:
        run = out_dir / f"run_{cond}"
        lines = []
        for r in rows:
            if r["condition"] != cond:
                continue
            i = r["identity"]
            rel = f"restored/{r['approach']}/id{i:03d}.png"
            _png(r["_images"], run / rel)
            src = i if cond == "same" else other[i]
            rec = {
                "case": f"id{i:03d}",
                "approach": r["approach"],
                "status": "ok",
                "error": None,
                "target": paths[i]["target"],
                "mask": paths[i]["mask"],
                "refs": paths[src]["refs"],
                "clean": paths[i]["clean"],
                "restored": rel,
                "encoder": None,
                "resolution": int(s.clean.shape[-1]),
                "occluded_pct": s.occluded_pct[i],
                "n_refs": len(paths[src]["refs"]),
                "losses": r["losses"],
                "time_s": r["time_s"],
                "meta": {"condition": cond, "identity": i, "ref_identity": src, "synthetic": True},
            }
            lines.append(json.dumps(rec))
        if lines:
            run.mkdir(parents=True, exist_ok=True)
            (run / "results.jsonl").write_text("\n".join(lines) + "\n")
