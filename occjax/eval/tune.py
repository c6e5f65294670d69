"""Grid search of the prior / discriminator hyper-parameters (the paper's Table I -> Table II).

Each validation photo's whole grid (default 1 x 4 x 4 x 4 = 64 `prior_disc` configs: k, x0,
discriminator weight, sigma) runs as ONE vectorised batch through `occjax.api.invert` (a list of
configs sharing every static field). Selection metric: local LPIPS inside the occlusion against the
ground truth (lower is better); without ground truth, LPIPS of the visible pixels against the
occluded input (a fidelity proxy: it cannot judge what was hidden).
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from occjax.config import InvertConfig, preset

GRID_FIELDS = ("scale", "shift", "discriminator_weight", "sigma")


@dataclass(frozen=True)
class Grid:
    scale: tuple[float, ...] = (0.25,)
    """k of the adaptive prior weight."""
    shift: tuple[float, ...] = (8.0, 10.0, 11.0, 13.0)
    """x0 of the adaptive prior weight (occluded percent)."""
    discriminator_weight: tuple[float, ...] = (0.1, 0.5, 1.0, 2.0)
    """lambda4, the discriminator term's weight."""
    sigma: tuple[float, ...] = (5.0, 7.0, 10.0, 15.0)
    """Width of the Gaussian prior."""


@dataclass
class Case:
    """One validation problem: target [3,H,W], mask [1,H,W] (1 = occluded), references (photos
    [R,3,H,W] or codes [R,L,D]) and the ground truth [3,H,W] or None."""

    name: str
    target: np.ndarray
    mask: np.ndarray
    refs: np.ndarray
    clean: np.ndarray | None = None


def grid_fields(base: InvertConfig | None = None) -> tuple[str, ...]:
    """The grid's fields for a base config: without a discriminator term, its weight is no axis."""
    if base is not None and not base.uses_discriminator:
        return tuple(f for f in GRID_FIELDS if f != "discriminator_weight")
    return GRID_FIELDS


def grid_points(grid: Grid, base: InvertConfig | None = None) -> list[dict[str, float]]:
    """Every combination of the grid's values, as {field: value}."""
    fields = grid_fields(base)
    values = [getattr(grid, f) for f in fields]
    return [dict(zip(fields, v)) for v in itertools.product(*values)]


def grid_configs(grid: Grid, base: InvertConfig | None = None) -> list[InvertConfig]:
    """One config per grid point (`prior_disc` unless `base` is given), fields replaced."""
    import dataclasses

    base = base if base is not None else preset("prior_disc")
    return [dataclasses.replace(base, **p) for p in grid_points(grid, base)]


def score_case(images: np.ndarray, case: Case, lpips) -> dict[str, np.ndarray]:
    """Per grid point metrics of one case's restored images [G, 3, H, W]."""
    import jax.numpy as jnp

    from occjax.eval.metrics import from_nchw, local_lpips, masked_psnr

    g = len(images)

    occ = jnp.asarray(np.repeat(case.mask[None, 0] > 0.5, g, 0), jnp.float32)
    res = from_nchw(images)
    out = {}
    if case.clean is not None:
        clean = from_nchw(np.repeat(case.clean[None], g, 0))
        out["local_lpips"] = np.asarray(local_lpips(lpips, res, clean, occ))
        out["local_psnr"] = np.asarray(masked_psnr(res, clean, occ))
    tgt = from_nchw(np.repeat(case.target[None], g, 0))
    out["visible_lpips"] = np.asarray(local_lpips(lpips, res, tgt, 1.0 - occ))
    return out


def reference_codes(models, case: Case, steps: int, chunk_size: int | None) -> np.ndarray:
    """The case's reference codes (photos are inverted once, not once per grid point)."""
    from occjax import api

    refs = np.asarray(case.refs, np.float32)
    if refs.ndim == 3:
        return refs
    return api.invert_references(models, refs, steps, chunk_size=chunk_size)[0]


def run_grid(
    models,
    cases: list[Case],
    configs: list[InvertConfig],
    lpips,
    chunk_size: int | None = None,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """metric -> [n_cases, G]: one `api.invert` call per case with the whole grid as its batch."""
    from occjax import api

    per: dict[str, list[np.ndarray]] = {}
    g = len(configs)
    for case in cases:
        codes = reference_codes(models, case, configs[0].reference_steps, chunk_size)
        res = api.invert(
            models,
            np.repeat(case.target[None], g, 0),
            np.repeat(case.mask[None], g, 0),
            [codes] * g,
            configs,
            chunk_size=chunk_size,
            progress=progress,
        )
        for k, v in score_case(res.images, case, lpips).items():
            per.setdefault(k, []).append(v)
    return {k: np.stack(v) for k, v in per.items()}


def selection_metric(cases: list[Case]) -> str:
    return "local_lpips" if all(c.clean is not None for c in cases) else "visible_lpips"


def table_rows(points: list[dict], scores: dict[str, np.ndarray], metric: str) -> list[dict]:
    """One row per grid point (values + mean/std of each metric over cases), sorted by `metric`."""
    rows = []
    for j, p in enumerate(points):
        row = dict(p)
        for k, v in scores.items():
            row[f"{k}_mean"] = float(np.nanmean(v[:, j]))
            row[f"{k}_std"] = float(np.nanstd(v[:, j]))
        rows.append(row)
    sign = -1.0 if metric.endswith("psnr") else 1.0
    return sorted(rows, key=lambda r: sign * r[f"{metric}_mean"])


def markdown(rows: list[dict], metric: str, note: str = "") -> str:
    cols = list(rows[0])
    lines = [f"Grid search, sorted by {metric} (lower is better). {note}".strip(), ""]
    lines += ["| rank | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 1)]
    for i, r in enumerate(rows, 1):
        cells = [f"{r[c]:.4g}" for c in cols]
        lines.append(f"| {i} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_outputs(out: Path, rows: list[dict], metric: str, n_cases: int, note: str) -> dict:
    """table.md / table.csv / table.json and chosen.json (the best grid point)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(markdown(rows, metric, note))
    with open(out / "table.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (out / "table.json").write_text(json.dumps(rows, indent=1))
    best = rows[0]
    chosen = {
        "values": {k: best[k] for k in GRID_FIELDS if k in best},
        "metric": metric,
        "metric_mean": best[f"{metric}_mean"],
        "n_cases": n_cases,
        "note": note,
    }
    (out / "chosen.json").write_text(json.dumps(chosen, indent=1))
    return chosen


def load_dataset(root: Path, size: int, max_cases: int | None = None) -> list[Case]:
    """Cases of the paper layout: <Person>/occluded_img/*.png with occlusion_mask/ and optional
    clean_img/ of the same name, reference_imgs/* of the person."""
    try:
        from occjax.io import load_image, load_mask  # type: ignore[import-not-found]
    except ImportError:
        load_image, load_mask = _load_image, _load_mask
    cases = []
    for person in sorted(p for p in Path(root).iterdir() if p.is_dir()):
        refs_dir = person / "reference_imgs"
        ref_files = sorted(refs_dir.glob("*")) if refs_dir.is_dir() else []
        refs = np.stack([load_image(f, size) for f in ref_files]) if ref_files else None
        for tgt in sorted((person / "occluded_img").glob("*")):
            mask_f = person / "occlusion_mask" / tgt.name
            clean_f = person / "clean_img" / tgt.name
            if not mask_f.is_file() or refs is None:
                continue
            cases.append(
                Case(
                    name=f"{person.name}/{tgt.stem}",
                    target=load_image(tgt, size),
                    mask=load_mask(mask_f, size),
                    refs=refs,
                    clean=load_image(clean_f, size) if clean_f.is_file() else None,
                )
            )
            if max_cases is not None and len(cases) >= max_cases:
                return cases
    return cases


def _load_image(path, size: int) -> np.ndarray:
    from PIL import Image

    im = Image.open(path).convert("RGB")
    if im.size != (size, size):
        im = im.resize((size, size), Image.LANCZOS)
    return np.moveaxis(np.asarray(im, np.float32) / 127.5 - 1.0, -1, 0)


def _load_mask(path, size: int) -> np.ndarray:
    from PIL import Image

    im = Image.open(path).convert("L")
    if im.size != (size, size):
        im = im.resize((size, size), Image.BILINEAR)
    return (np.asarray(im) > 127).astype(np.float32)[None]


def synthetic_cases(
    models, people: int, refs: int, seed: int = 0, split: str = "validation", sizes=None
) -> list[Case]:
    """Cases of the synthetic benchmark's split (`occjax.eval.synthetic`): a generated person's
    photo occluded by a hand at each size, the clean photo, R reference photos of the person."""
    from occjax.eval.synthetic import SPLIT_SEED, SyntheticConfig, make_cases

    cfg = SyntheticConfig(people=people, refs=refs, split=split, seed=seed, identity=False)
    if sizes:
        cfg = dataclasses.replace(cfg, sizes=tuple(sizes))
    cases, ref_photos, _ = make_cases(models, cfg, np.random.default_rng(SPLIT_SEED[split] + seed))
    return [
        Case(f"{split}_p{c.person:03d}_{c.size}", c.target, c.mask, ref_photos[c.person], c.clean)
        for c in cases
    ]
