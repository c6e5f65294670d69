"""Real photos, real hands: `personal` against the frozen model and classical inpainting.

People: ../shared/data/real_people (7 people, raw photos, FFHQ-aligned here with dlib) and the
two people of ../shared/data/lfw_hand_samples (their clean reference photos, already aligned).
Each photo in turn is the target: a real hand cut-out (from lfw_hand_samples' occluded photos) is
pasted on it at 256 px by `occjax.occlusion.occlude` (the paper's recipe, small / medium / large),
then photo and mask go to the model's resolution; the person's other photos are the references.

Approaches: `personal` (occjax.personal), `prior` and `baseline` (frozen model), OpenCV's Telea
and scikit-image's biharmonic inpainting. Every restoration is scored as the photo a user gets:
put back into the occluded photo inside the mask (`occjax.blend`), by cut-and-paste (`alpha`, the
approach's own name) and by the gradient-domain blend (`+poisson`); inpainting is a composite by
construction. Metrics against the clean photo: PSNR and SSIM inside the mask (SSIM map averaged
over the mask), local LPIPS-VGG (the objective's own network), local LPIPS-Alex (not optimised by
anything), and the dlib identity distance of the whole composite; each mean with a 90 % bootstrap
interval over the cases, and per hand size.

    python benchmarks/real_photos.py --split test --out benchmarks/results/real_photos_test.json
    python benchmarks/real_photos.py --split validation --personal-grid \
        --out benchmarks/results/real_photos_validation.json

Splits: validation = the lfw_hand_samples people (choose hyper-parameters there), test = the
real_people folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data"
SIZES = ("small", "medium", "large")
UP = 256


def load_people(split: str) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """person -> [(aligned 256 px uint8 photo, its 68 landmarks)]."""
    from occjax.eval.landmarks import detect_largest
    from occjax.faces.align import align_face

    people: dict[str, list] = {}
    if split == "test":
        for d in sorted((DATA / "real_people").iterdir()):
            if not d.is_dir():
                continue
            for f in sorted(d.iterdir()):
                if f.suffix.lower() not in (".jpg", ".png", ".jpeg"):
                    continue
                a = align_face(f, UP, allow_partial=True)
                people.setdefault(d.name, []).append((a.image, a.landmarks_aligned))
    else:
        for d in sorted((DATA / "lfw_hand_samples").iterdir()):
            if not d.is_dir():
                continue
            for f in sorted((d / "reference_imgs").glob("*.png")):
                with Image.open(f) as im:
                    img = np.asarray(im.convert("RGB").resize((UP, UP), Image.LANCZOS))
                people.setdefault(d.name, []).append((img, detect_largest(img, "dlib")))
    return people


def to_model(img_u8: np.ndarray, res: int) -> np.ndarray:
    """uint8 [H, W, 3] -> [3, res, res] in [-1, 1]."""
    from occjax.io import resize_rgb

    return resize_rgb(Image.fromarray(img_u8), res)


def make_cases(people, res: int, sizes=SIZES, seed: int = 0):
    from occjax.occlusion import occlude_from_pool, paper_dataset_cutouts

    pool = paper_dataset_cutouts(DATA / "lfw_hand_samples")
    rng = np.random.default_rng(seed)
    cases = []
    for name, photos in people.items():
        small = [to_model(p, res) for p, _ in photos]
        for i, (img, lm) in enumerate(photos):
            refs = np.stack([small[j] for j in range(len(photos)) if j != i])
            for size in sizes:
                o = occlude_from_pool(img, lm, pool, rng, size, tries=20)
                if o is None:
                    raise RuntimeError(f"no {size} hand on {name} {i}")
                m = np.asarray(Image.fromarray(o.mask).resize((res, res), Image.BILINEAR)) > 127
                mask = m.astype(np.float32)[None]
                target = np.where(mask > 0, to_model(o.image, res), small[i]).astype(np.float32)
                cases.append(
                    {"person": name, "photo": i, "size": size, "target": target, "mask": mask,
                     "clean": small[i], "refs": refs}
                )  # fmt: skip
    return cases


def classical(cases, method: str) -> np.ndarray:
    """Telea (OpenCV) or biharmonic (scikit-image) inpainting of every case: [N, 3, H, W]."""
    from occjax.io import to_uint8

    out = []
    for c in cases:
        u8 = to_uint8(c["target"])  # [H, W, 3]
        m = (c["mask"][0] > 0.5).astype(np.uint8)
        if method == "telea":
            import cv2

            r = cv2.inpaint(u8, m * 255, 3, cv2.INPAINT_TELEA).astype(np.float32) / 127.5 - 1
        else:
            from skimage.restoration import inpaint_biharmonic

            r = inpaint_biharmonic(
                u8.astype(np.float64) / 127.5 - 1, m.astype(bool), channel_axis=-1
            )
        out.append(np.transpose(np.clip(r, -1, 1), (2, 0, 1)).astype(np.float32))
    return np.stack(out)


def score(images: np.ndarray, cases, lp_vgg, lp_alex, identity) -> dict[str, list[float]]:
    import jax.numpy as jnp

    from occjax.eval.metrics import from_nchw, local_lpips, masked_mean, masked_psnr
    from occjax.io import to_uint8

    clean = from_nchw(np.stack([c["clean"] for c in cases]))
    res = from_nchw(images)
    m = jnp.asarray(np.stack([c["mask"][0] for c in cases]))
    from skimage.metrics import structural_similarity

    # SSIM map (Gaussian 11 px, sigma 1.5, as occjax.eval.metrics.ssim) averaged over the mask
    maps = [
        structural_similarity(
            np.asarray(a), np.asarray(b), data_range=2.0, channel_axis=-1, gaussian_weights=True,
            sigma=1.5, use_sample_covariance=False, full=True,
        )[1].mean(-1)
        for a, b in zip(res, clean)
    ]  # fmt: skip
    out = {
        "psnr": np.asarray(masked_psnr(res, clean, m)),
        "ssim": np.asarray(masked_mean(jnp.asarray(np.stack(maps)), m)),
        "lpips_vgg": np.asarray(local_lpips(lp_vgg, res, clean, m)),
        "lpips_alex": np.asarray(local_lpips(lp_alex, res, clean, m)),
    }
    if identity is not None:
        a = identity.embed([to_uint8(x) for x in images])
        b = identity.embed([to_uint8(c["clean"]) for c in cases])
        out["identity"] = np.linalg.norm(a - b, axis=1)
    return {k: [float(x) for x in v] for k, v in out.items()}


def figure(path: Path, cases, shown: dict[str, np.ndarray], n: int = 8) -> None:
    """Rows: the first n cases (one per person where possible); columns: the occluded target, the
    clean photo, then each approach's restoration; 3x upscaled."""
    from occjax.io import to_uint8

    pick, seen = [], set()
    for i, c in enumerate(cases):
        if c["person"] not in seen and len(pick) < n:
            pick.append(i)
            seen.add(c["person"])
    rows = []
    for i in pick:
        cols = [cases[i]["target"], cases[i]["clean"], *(v[i] for v in shown.values())]
        rows.append(np.concatenate([to_uint8(x) for x in cols], 1))
    img = Image.fromarray(np.concatenate(rows, 0))
    img = img.resize((img.width * 3, img.height * 3), Image.NEAREST)
    img.save(path)
    (path.with_suffix(".columns.txt")).write_text("target, clean, " + ", ".join(shown) + "\n")


def bootstrap(x, n: int = 2000, seed: int = 0) -> dict:
    x = np.asarray([v for v in x if np.isfinite(v)])
    if len(x) == 0:
        return {"mean": None, "lo": None, "hi": None, "n": 0}
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), (n, len(x)))].mean(1)
    lo, hi = np.percentile(means, [5, 95])
    return {"mean": float(x.mean()), "lo": float(lo), "hi": float(hi), "n": int(len(x))}


def run_personal(models, cases, cfg, chunk_size=None, init_codes=None, cache=None):
    """`personal` on every case; `init_codes` (the targets' pivots) and `cache` (the references'
    pivots on disk) let a grid compute the frozen inversions once."""
    import occjax

    t0 = time.perf_counter()
    r = occjax.invert(
        models,
        np.stack([c["target"] for c in cases]),
        np.stack([c["mask"] for c in cases]),
        [c["refs"] for c in cases],
        config=[cfg] * len(cases),
        chunk_size=chunk_size,
        init_codes=init_codes,
        reference_cache=cache,
    )
    return r.images, time.perf_counter() - t0, r


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--split", choices=("validation", "test"), default="test")
    ap.add_argument("--sizes", nargs="+", default=list(SIZES))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--chunk-size", type=int, default=8)
    ap.add_argument("--personal-grid", action="store_true", help="validation: a grid of settings")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument(
        "--personal",
        type=json.loads,
        default={},
        help='PersonalConfig overrides, JSON: {"weight_lr": 1e-3}',
    )
    ap.add_argument("--max-cases", type=int, default=None)
    ap.add_argument("--grid", nargs="+", default=None, help="names of the grid's points to run")
    args = ap.parse_args(argv)

    import occjax
    from occjax.blend import blend
    from occjax.eval.identity import embedder
    from occjax.eval.lpips import LPIPS
    from occjax.personal import personal_config

    models = occjax.load_models(bundle="faces64")
    people = load_people(args.split)
    cases = make_cases(people, models.resolution, tuple(args.sizes))
    if args.max_cases:
        cases = cases[: args.max_cases]
    lp_vgg, lp_alex, ident = LPIPS("vgg"), LPIPS("alex"), embedder()
    base = personal_config(models)
    if args.steps is not None:
        base = dataclasses.replace(base, steps=args.steps)
    base = dataclasses.replace(base, **{k: tuple(v) if isinstance(v, list) else v for k, v in args.personal.items()})  # fmt: skip
    runs: dict[str, dict] = {}
    pivots_s = 0.0

    def save():
        doc = {
            "split": args.split,
            "sizes": args.sizes,
            "pivots_s": pivots_s,
            "people": {k: len(v) for k, v in people.items()},
            "cases": [{k: c[k] for k in ("person", "photo", "size")} for c in cases],
            "runs": runs,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc, indent=1))

    shown: dict[str, np.ndarray] = {}

    def record_one(name, images, seconds, extra=None):
        shown[name] = np.asarray(images)
        s = score(images, cases, lp_vgg, lp_alex, ident)
        by_size = {
            z: {k: bootstrap([v[i] for i, c in enumerate(cases) if c["size"] == z]) for k, v in s.items()}
            for z in args.sizes
        }  # fmt: skip
        runs[name] = {"seconds": seconds, "per_case": s, "summary": {k: bootstrap(v) for k, v in s.items()}, "by_size": by_size, **(extra or {})}  # fmt: skip
        print(name, {k: round(v["mean"], 4) for k, v in runs[name]["summary"].items() if v["mean"] is not None}, f"{seconds:.0f}s", flush=True)  # fmt: skip
        save()

    def record(name, images, seconds, extra=None, gan=True):
        """A GAN's restoration is scored pasted (alpha) and blended (poisson) into the photo."""
        if not gan:
            return record_one(name, images, seconds, extra)
        record_one(name, blend(images, targets, masks, "alpha"), seconds, extra)
        record_one(name + "+poisson", blend(images, targets, masks, "poisson"), seconds, extra)

    targets = np.stack([c["target"] for c in cases])
    masks = np.stack([c["mask"] for c in cases])
    refs = [c["refs"] for c in cases]
    cache = Path(tempfile.mkdtemp(prefix="real_photos_refs_"))  # the references' pivots, once
    t0 = time.perf_counter()
    pre = occjax.invert(models, targets, masks, None, models.preset("baseline", steps=base.init_steps), chunk_size=args.chunk_size)  # fmt: skip
    occjax.invert_references(models, np.concatenate(refs), base.reference_steps, cache, args.chunk_size)  # fmt: skip
    pivots_s = time.perf_counter() - t0
    print(f"pivots {pivots_s:.0f}s", flush=True)
    for m in ("telea", "biharmonic"):
        t0 = time.perf_counter()
        record(m, classical(cases, m), time.perf_counter() - t0, gan=False)
    if not args.personal_grid:
        for a in ("baseline", "prior"):
            t0 = time.perf_counter()
            r = occjax.invert(models, targets, masks, refs, config=a, chunk_size=args.chunk_size)
            record(a, r.images, time.perf_counter() - t0)
        images, sec, r = run_personal(models, cases, base, args.chunk_size, pre.codes, cache)
        record("personal", images, sec + pivots_s, {"config": dataclasses.asdict(base)})
    else:
        # this session's grid (faces64, validation split, medium hands); every point also
        # scored blended (+poisson). Pixels only (perceptual_weight 0) unless named lpips.
        mse = {"perceptual_weight": 0.0}
        grid = {
            "lpips_wlr3e-4": {"perceptual_weight": 1.0, "weight_lr": 3e-4},
            "wlr3e-4": {**mse, "weight_lr": 3e-4},
            "wlr1e-4": {**mse, "weight_lr": 1e-4},
            "wlr1e-3": {**mse, "weight_lr": 1e-3},
            "wlr3e-3": {**mse, "weight_lr": 3e-3},
            "wlr1e-3_steps25": {**mse, "weight_lr": 1e-3, "steps": 25},
            "wlr1e-3_steps100": {**mse, "weight_lr": 1e-3, "steps": 100},
            "wlr3e-4_steps100": {**mse, "weight_lr": 3e-4, "steps": 100},
            "wlr1e-3_anchor1": {**mse, "weight_lr": 1e-3, "anchor_weight": 1.0},
            "wlr1e-3_late": {**mse, "weight_lr": 1e-3, "tune": ("block2", "block3", "to_rgb")},
            "wlr3e-4_codelr0.05": {**mse, "weight_lr": 3e-4, "lr": 0.05},
        }
        for name, kw in grid.items():
            if args.grid and name not in args.grid:
                continue
            cfg = dataclasses.replace(base, **kw)
            images, sec, r = run_personal(models, cases, cfg, args.chunk_size, pre.codes, cache)
            record(name, images, sec + pivots_s, {"config": dataclasses.asdict(cfg)})
    save()
    figure(args.out.with_suffix(".png"), cases, shown)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
