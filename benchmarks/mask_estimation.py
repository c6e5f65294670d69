"""Automatic occlusion masks (`occjax.estimate_mask`) measured on faces with known masks.

    python benchmarks/mask_estimation.py --split validation --json benchmarks/results/mask_val.json
    python benchmarks/mask_estimation.py --split test --json benchmarks/results/mask_test.json
    python benchmarks/mask_estimation.py --split validation --deltas 0.15 --thresholds 0.2 \
        --downstream --downstream-grows 2 4 --downstream-thresholds 0.15 \
        --json benchmarks/results/mask_validation_downstream.json
    python benchmarks/mask_estimation.py --split test --downstream --downstream-grows 2 \
        --downstream-true-grows 1 2 --downstream-robust 0.15 \
        --json benchmarks/results/mask_test_downstream.json
    python benchmarks/mask_estimation.py --split validation --deltas 0.15 --thresholds 0.2 \
        --downstream --downstream-grows 1 2 --downstream-margins 0.08:5 0.1:3 0.05:3 \
        --json benchmarks/results/mask_validation_downstream_margins.json
    python benchmarks/mask_estimation.py --split test --people 16 --downstream \
        --downstream-grows 2 --downstream-margins default \
        --json benchmarks/results/mask_test16_downstream.json
    python benchmarks/mask_estimation.py --split test --people 2 --downstream \
        --downstream-grows 2 --downstream-margins default --figure docs/mask_example.png
    python benchmarks/mask_estimation.py --split validation --deltas 0.15 --thresholds 0.2 \
        --rounds 1 --downstream --downstream-margins default --downstream-rounds 2 \
        --json benchmarks/results/mask_validation_downstream_rounds.json
    python benchmarks/mask_estimation.py --split test --people 16 --downstream \
        --downstream-margins default --downstream-rounds 1 \
        --json benchmarks/results/mask_test16_rounds2.json
    python benchmarks/mask_estimation.py --split validation --steps 25 50 100 \
        --json benchmarks/results/mask_validation_steps.json
    python benchmarks/mask_estimation.py --split validation --steps 75 100 \
        --json benchmarks/results/mask_validation_steps75.json
    python benchmarks/mask_estimation.py --split validation --steps 75 --refit 25 40 \
        --json benchmarks/results/mask_validation_refit.json

(Runs saved before MaskConfig.rounds became 2, the JSONs above mask_validation_downstream_rounds,
had one round: add --rounds 1 to repeat them.)

Cases: the synthetic benchmark's people (`occjax.eval.synthetic`, the built-in model), each photo
occluded by a real hand cut-out (../shared/data/lfw_hand_samples) at small, medium and large sizes,
plus the same photos unoccluded. Per size: IoU of the estimated mask with the true one, and on the
unoccluded photos the fraction of pixels flagged (false positives). With --split validation, every
`--deltas` value is inverted once and every `--thresholds` value scored on its residuals, and the
best setting (highest mean IoU on medium and large with at most 2 % false positives) is reported.
With --downstream, the restoration (`prior`, references of the same person) runs with the true and
with the estimated masks, and their local LPIPS (against the clean photo) is compared; with
--downstream-grows, also with the masks grown by those margins (MaskConfig.margin_px was chosen
this way); with --downstream-margins, margins grown only into pixels of raised residual (the
default's); with --downstream-rounds, the masks of estimate_mask run with that many rounds
and their default margin; with --downstream-true-grows, controls with the true masks grown; with
--downstream-robust, the grown masks with RGI's robust cost on the visible pixels; all in one batch.

With --steps, each N runs `estimate_mask` with MaskConfig(steps=N) (Adam steps per round; one delta
and threshold, --delta/--threshold or MaskConfig's, on either split, and --rounds) and reports the
scores above and its time: the whole batch (every photo in one call; wall seconds / photos), and one
photo alone (batch 1, a medium-hand case) after a warm-up call of the same config, so that compiling
is left out of the timed call and reported apart (the warm-up's compile seconds, JAX's monitoring
events, loads from the persistent compile cache included). The references are inverted once,
before any N (timed apart: the same for every N), and passed to every call as codes, what a user's
second photo of a person gets from the reference cache. Load averages are recorded beside each
timing (the machine may be shared).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import tyro

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import env_meta, write_json  # noqa: E402


@dataclass(frozen=True)
class Args:
    split: Literal["validation", "test"] = "validation"
    bundle: str = "faces64"
    people: int = 8
    refs: int = 4
    deltas: tuple[float, ...] = (0.15, 0.25, 0.4)
    thresholds: tuple[float, ...] = (0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6)
    grows: tuple[int, ...] = (0,)
    """Validation: dilations after the clean-up to score."""
    rounds: int | None = None
    """Rounds of estimate_mask (2: refit with the first mask, threshold that residual; default:
    occjax.MaskConfig's)."""
    delta: float | None = None
    """Test split: the robust threshold (default: occjax.MaskConfig's)."""
    threshold: float | None = None
    """Test split: the mask threshold (default: occjax.MaskConfig's)."""
    use_refs: bool = True
    """Estimate with the references (the Gaussian prior) or from the photo alone."""
    downstream: bool = False
    """Also restore with true vs estimated masks and compare local LPIPS."""
    downstream_grows: tuple[int, ...] = ()
    """Downstream: also restore with the best threshold's masks grown by these many pixels
    (validation: choose the dilation by the restoration itself, not by IoU)."""
    downstream_thresholds: tuple[float, ...] = ()
    """Downstream: also restore with masks at these thresholds (each with every grow)."""
    downstream_margins: tuple[str, ...] = ()
    """Downstream: also restore with the best threshold's masks and a margin grown only into
    pixels of raised residual, each "THRESHOLD:PIXELS" (`occjax.masks.restore_masks`); "default"
    is MaskConfig's own (what `--mask auto` restores with)."""
    downstream_rounds: tuple[int, ...] = ()
    """Downstream: also restore with the masks of `estimate_mask` run with these many rounds, and
    their default margin (estimated again unless the scoring run had the same config: compares
    the rounds in one restoration batch)."""
    downstream_true_grows: tuple[int, ...] = ()
    """Downstream controls: also restore with the TRUE masks grown by these many pixels (what a
    near-perfect mask with a margin costs)."""
    downstream_robust: tuple[float, ...] = ()
    """Downstream: also restore with the first grown variant's masks and RGI's robust cost of this
    delta on the visible pixels (missed occluder pixels then cost little)."""
    refit: tuple[int, ...] = ()
    """With --steps: also each of these MaskConfig.refit_steps (later rounds start from the first
    round's codes with this many steps)."""
    steps: tuple[int, ...] = ()
    """Run estimate_mask with MaskConfig(steps=N) for each N and time it (batch and one photo
    alone) instead of the delta/threshold grid; see the module's docstring."""
    figure: Path | None = None
    """Downstream: also draw a few cases (masks and restorations) to this PNG."""
    json: Path | None = None


def cases_and_refs(models, args: Args):
    from occjax.eval.synthetic import SPLIT_SEED, SyntheticConfig, make_cases

    cfg = SyntheticConfig(people=args.people, refs=args.refs, split=args.split, identity=False)
    cases, refs, source = make_cases(models, cfg, np.random.default_rng(SPLIT_SEED[args.split]))
    return cases, refs, source


def scores(masks: np.ndarray, cases, n_clean: int) -> dict:
    """IoU per size on the occluded cases, false-positive rate on the clean photos (the last)."""
    from occjax.masks import iou

    occ = masks[: len(cases)]
    out = {}
    for size in ("small", "medium", "large"):
        sel = [i for i, c in enumerate(cases) if c.size == size]
        true = np.stack([cases[i].mask for i in sel])
        out[f"iou_{size}"] = float(np.mean(iou(occ[sel], true)))
    out["false_positive"] = float(masks[len(cases) :].mean()) if n_clean else float("nan")
    out["iou_medium_large"] = (out["iou_medium"] + out["iou_large"]) / 2
    return out


def main(args: Args) -> dict:
    import occjax
    from occjax.masks import MaskConfig, _clean, restore_masks

    models = occjax.load_models(bundle=args.bundle)
    cases, refs, source = cases_and_refs(models, args)
    people = sorted({c.person for c in cases})
    targets = np.concatenate(
        [np.stack([c.target for c in cases]), np.stack([refs[p][0] for p in people])]
    )
    clean_people = people  # the unoccluded photos: each person's first reference photo
    ref_sets = [refs[c.person][1:] for c in cases] + [refs[p][1:] for p in clean_people]
    if not args.use_refs:
        ref_sets = None
    if args.steps:
        out = {"args": dataclasses.asdict(args), "env": env_meta(), "occluders": source}
        out |= steps_sweep(models, args, cases, targets, ref_sets, len(people))
        write_json(args.json, out)
        return out
    rows, t_all = [], {}
    base = MaskConfig()
    deltas = args.deltas if args.split == "validation" else (args.delta or base.delta,)
    thresholds = (
        args.thresholds if args.split == "validation" else (args.threshold or base.threshold,)
    )
    fits = {}  # delta -> (the config it was estimated with, its MaskEstimate)
    for delta in deltas:
        t0 = time.perf_counter()
        first = dataclasses.replace(base, delta=delta, rounds=args.rounds or base.rounds)
        if args.split == "test":  # a second round refits with the first round's own mask
            first = dataclasses.replace(first, threshold=thresholds[0])
        est = occjax.estimate_mask(models, targets, ref_sets, first, return_details=True)
        t_all[delta] = time.perf_counter() - t0
        fits[delta] = (first, est)
        grows = args.grows if args.split == "validation" else (base.grow_px,)
        for thr, grow in itertools.product(thresholds, grows):
            cfg = dataclasses.replace(base, delta=delta, threshold=thr, grow_px=grow)
            masks = _clean(est.residual > thr, cfg, None)[:, None].astype(np.float32)
            row = {"delta": delta, "threshold": thr, "grow_px": grow, "rounds": first.rounds}
            row |= scores(masks, cases, len(people))
            rows.append(row)
            print(", ".join(f"{k} {v:.3f}" for k, v in row.items()))
    ok = [r for r in rows if r["false_positive"] <= 0.02] or rows
    best = max(ok, key=lambda r: r["iou_medium_large"])
    out = {
        "args": dataclasses.asdict(args),
        "env": env_meta(),
        "occluders": source,
        "rows": rows,
        "best": best,
        "seconds_per_photo": {str(d): t / len(targets) for d, t in t_all.items()},
    }
    if args.downstream:
        variants = [(best["threshold"], best["grow_px"])]
        for thr in (best["threshold"], *args.downstream_thresholds):
            variants += [(thr, g) for g in args.downstream_grows if (thr, g) not in variants]
        # each variant's masks of every photo, once: the occluded ones restore, all are scored
        fit_cfg, fit = fits[best["delta"]]
        res = fit.residual
        full = [
            _clean(res > thr, dataclasses.replace(base, threshold=thr, grow_px=g), None)
            for thr, g in variants
        ]
        for spec in args.downstream_margins:
            t, px = (
                (base.margin_threshold, base.margin_px)
                if spec == "default"
                else (float(spec.split(":")[0]), int(spec.split(":")[1]))
            )
            cfg = dataclasses.replace(base, margin_threshold=t, margin_px=px)
            full.append(restore_masks(full[0], res, cfg))
            variants.append((best["threshold"], f"{px} > {t}"))
        for r in args.downstream_rounds:
            cfg = dataclasses.replace(
                base, delta=best["delta"], threshold=best["threshold"], rounds=r
            )
            # the scoring loop's own estimate when it ran with this very config
            est = (
                fit
                if cfg == fit_cfg
                else occjax.estimate_mask(models, targets, ref_sets, cfg, return_details=True)
            )
            full.append(est.restore[:, 0] > 0.5)
            variants.append((best["threshold"], f"rounds {r}, default margin"))
        out["downstream"] = downstream(
            models, cases, refs, variants, [m[: len(cases)] for m in full], args
        )
        for m, row in zip(full, out["downstream"]["variants"]):
            row |= scores(m[:, None], cases, len(people))
    write_json(args.json, out)
    return out


def steps_sweep(models, args: Args, cases, targets, ref_sets, n_clean: int) -> dict:
    """--steps: per N, the scores and the time of estimate_mask on the whole batch and on one photo
    alone (warm-up call first); the references' codes computed once and passed to every call."""
    import occjax
    from occjax.cache import compile_stats
    from occjax.masks import MaskConfig, iou
    from occjax.options import Options
    from occjax.references import as_codes

    def load() -> list[float]:
        return [round(v, 2) for v in os.getloadavg()]

    def timed(fn, *a, **k):
        la, c0, t0 = load(), compile_stats(), time.perf_counter()
        res = fn(*a, **k)
        dt = time.perf_counter() - t0
        c1 = compile_stats()
        info = {
            "wall_s": dt,
            "compile_s": c1["compile_s"] - c0["compile_s"],
            "programs_compiled": c1["programs_compiled"] - c0["programs_compiled"],
            "programs_from_cache": c1["programs_from_cache"] - c0["programs_from_cache"],
            "load_before": la,
            "load_after": load(),
        }
        return res, info

    base = MaskConfig()
    cfg0 = dataclasses.replace(
        base,
        delta=args.delta or base.delta,
        threshold=args.threshold or base.threshold,
        rounds=args.rounds or base.rounds,
    )
    b = len(targets)
    codes, ref_info = None, None
    if ref_sets is not None:  # what estimate_mask does with photos: the same codes
        ref_steps = models.preset("prior").reference_steps
        codes, ref_info = timed(as_codes, models, ref_sets, b, ref_steps, Options())
        ref_info |= {"photos": int(sum(len(r) for r in ref_sets)), "steps": ref_steps}
        ref_info["note"] = "inverted once (duplicates once) and passed to every call as codes"
    one = next(i for i, c in enumerate(cases) if c.size == "medium")
    rows = []
    for n, rs in itertools.product(args.steps, args.refit or (None,)):
        cfg = dataclasses.replace(cfg0, steps=n, refit_steps=rs)
        est, batch = timed(occjax.estimate_mask, models, targets, codes, cfg, return_details=True)
        row = {"steps": n, "refit_steps": rs, "delta": cfg.delta, "threshold": cfg.threshold, "rounds": cfg.rounds}  # fmt: skip
        row |= scores(est.masks, cases, n_clean)
        batch |= {"batch": b, "seconds_per_photo": batch["wall_s"] / b}
        batch["seconds_per_photo_without_compile"] = (batch["wall_s"] - batch["compile_s"]) / b
        row["batch"] = batch
        x, rc = targets[one : one + 1], None if codes is None else [codes[one]]
        _, warm = timed(occjax.estimate_mask, models, x, rc, cfg)
        m1, single = timed(occjax.estimate_mask, models, x, rc, cfg)
        single |= {"batch": 1, "photo": one, "size": cases[one].size, "warm_up": warm}
        single["references"] = "passed as codes" if codes is not None else "none"
        single["iou_with_batch_mask"] = float(iou(m1, est.masks[one : one + 1])[0])
        row["single"] = single
        rows.append(row)
        print(
            f"steps {n} refit {rs}: IoU small/medium/large {row['iou_small']:.3f} / {row['iou_medium']:.3f}"
            f" / {row['iou_large']:.3f} (medium+large {row['iou_medium_large']:.3f}), false"
            f" positives {row['false_positive']:.4f}; batch {b}: {batch['seconds_per_photo']:.2f}"
            f" s per photo (compile {batch['compile_s']:.1f} s, load {batch['load_before']});"
            f" one photo: {single['wall_s']:.2f} s (warm-up {warm['wall_s']:.1f} s, compile"
            f" {warm['compile_s']:.1f} s, load {single['load_before']})",
            flush=True,
        )
    ok = [r for r in rows if r["false_positive"] <= 0.02] or rows
    return {
        "references": ref_info,
        "steps": rows,
        "best": max(ok, key=lambda r: r["iou_medium_large"]),
        "people": args.people,
        "photos": b,
    }


def downstream(models, cases, refs, variants: list, autos: list[np.ndarray], args: Args) -> dict:
    """Local LPIPS of `prior` restorations with the true masks vs each estimated variant, per size.

    One batch: the true-mask restorations, then one block per (threshold, grow_px) variant, then the
    controls (true masks grown) and the robust-cost variants. With robust variants, every block runs
    in mask mode "robust" (the blocks of one batch share it) and the others with a delta no residual
    reaches (1e3), whose cost is the squared residual of "visible" mode.
    """
    import jax.numpy as jnp

    import occjax
    from occjax.eval.lpips import LPIPS
    from occjax.eval.metrics import from_nchw, local_lpips
    from occjax.masks import dilate

    n = len(cases)
    targets = np.stack([c.target for c in cases])
    rs = [refs[c.person][1:] for c in cases]
    true = np.stack([c.mask for c in cases])
    masks = [true] + [a[:, None].astype(np.float32) for a in autos]
    deltas = [None] * len(masks)
    for g in args.downstream_true_grows:
        masks.append((np.asarray(dilate(jnp.asarray(true[:, 0]), g)) > 0.5)[:, None] * 1.0)
        deltas.append(None)
        variants = [*variants, ("true", g)]
    # the robust variants take the first grown variant's masks (a plain margin's)
    grown = next((i for i, (_, g) in enumerate(variants) if isinstance(g, int) and g > 0), 0)
    for d in args.downstream_robust:
        masks.append(masks[1 + grown])
        deltas.append(d)
        variants = [*variants, (*variants[grown], f"robust {d}")]
    if args.downstream_robust:
        cfgs = [
            models.preset("prior", mask_mode="robust", robust_delta=1e3 if d is None else d)
            for d in deltas
            for _ in range(n)
        ]
    else:
        cfgs = "prior"
    res = occjax.invert(
        models,
        np.concatenate([targets] * len(masks)),
        np.concatenate(masks).astype(np.float32),
        rs * len(masks),
        cfgs,
    )
    lp = LPIPS("vgg")
    clean = from_nchw(np.stack([c.clean for c in cases]))
    region = jnp.asarray(true[:, 0])

    per_case = [
        np.asarray(local_lpips(lp, from_nchw(res.images[b * n : (b + 1) * n]), clean, region))
        for b in range(len(masks))
    ]

    def per_size(block: int) -> dict:
        ll = per_case[block]
        out = {"local_lpips": float(ll.mean())}
        for size in ("small", "medium", "large"):
            out[f"local_lpips_{size}"] = float(ll[[c.size == size for c in cases]].mean())
        out["per_case"] = [round(float(v), 6) for v in ll]
        return out

    true_row = per_size(0)
    rows = []
    rng = np.random.default_rng(0)
    boot = rng.integers(0, n, (2000, n))  # the same resampled cases for every variant
    for b, (thr, g, *cost) in enumerate(variants, start=1):
        row = {"threshold": thr, "grow_px": g, "cost": cost[0] if cost else "squared"}
        row |= per_size(b)
        row["ratio"] = row["local_lpips"] / true_row["local_lpips"]
        # the ratio's spread over the cases (paired bootstrap, 2000 resamples): 90 % interval
        ratios = per_case[b][boot].mean(1) / per_case[0][boot].mean(1)
        row["ratio_90"] = [float(v) for v in np.percentile(ratios, [5, 95])]
        rows.append(row)
        print(
            ", ".join(
                f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                for k, v in row.items()
                if k != "per_case"
            )
        )
    if args.figure is not None:  # the first residual-guided margin variant, else the first
        b = next((i for i, (_, g, *_) in enumerate(variants) if isinstance(g, str)), 0) + 1
        figure(args.figure, cases, masks[1][:, 0], masks[b][:, 0], res.images, n, b, per_case)
    # flat keys of the first variant (the IoU-chosen setting) for the README's table
    first = rows[0]
    out = {
        f"true_mask{k[len('local_lpips') :]}": v
        for k, v in true_row.items()
        if k.startswith("local")
    }
    out |= {
        f"auto_mask{k[len('local_lpips') :]}": v for k, v in first.items() if k.startswith("local")
    }
    out["ratio"] = first["ratio"]
    out["true_mask_per_case"] = true_row["per_case"]
    out["variants"] = rows
    return out


def figure(path: Path, cases, auto, restore, images, n: int, b: int, per_case) -> None:
    """Two cases per hand size: the photo with the true (red) and estimated (blue) masks, the mask
    restored with, the restorations with the true and with that mask, the clean photo."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from occjax.io import to_uint8

    pick = [i for s in ("small", "medium", "large") for i in [j for j, c in enumerate(cases) if c.size == s][:2]]  # fmt: skip
    cols = ["photo: true (red), estimated (blue)", "restored with (white)", "restored, true mask",
            "restored, estimated mask", "clean"]  # fmt: skip
    fig, axes = plt.subplots(len(pick), len(cols), figsize=(2.3 * len(cols), 2.3 * len(pick)))
    for r, i in enumerate(pick):
        c = cases[i]
        ims = [c.target, restore[i], images[i], images[b * n + i], c.clean]
        for j, ax in enumerate(axes[r]):
            ax.axis("off")
            if r == 0:
                ax.set_title(cols[j], fontsize=8)
            if j == 1:
                ax.imshow(ims[j], cmap="gray", vmin=0, vmax=1)
            else:
                ax.imshow(to_uint8(ims[j]))
            if j == 0:
                ax.contour(c.mask[0], levels=[0.5], colors="r", linewidths=0.7)
                ax.contour(auto[i], levels=[0.5], colors="b", linewidths=0.7)
                ax.text(0, -0.04, f"{c.size}", fontsize=7, transform=ax.transAxes, va="top")
            if j in (2, 3):
                v = per_case[0 if j == 2 else b][i]
                ax.text(0, -0.04, f"local LPIPS {v:.4f}", fontsize=7, transform=ax.transAxes, va="top")  # fmt: skip
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main(tyro.cli(Args))
