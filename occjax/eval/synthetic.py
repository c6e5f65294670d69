"""The method measured on faces with ground truth by construction (the built-in model's, or any).

People and their photos come from the generator (`occjax.identities`): a person is a code, their
photos are its images of small perturbations of it. For each person: a clean target photo, R
reference photos of the same person ("same") and R of the next person ("other"), and the target
occluded by a hand at each size (small / medium / large: `occjax.occlusion.SIZE_BANDS`, in the
paper's box). The hands are the real cut-outs of ../shared/data/lfw_hand_samples when present,
procedural hands otherwise; they are placed by `occjax.occlusion.occlude` on the face's 68 dlib
landmarks (found on the 256 px upsampled photo; the mean landmarks of the set where dlib finds no
face), at 256 px, then the photo and mask are resized to the model's resolution.

Every approach the model supports runs; prior approaches run with both reference sets. Metrics
against the clean photo: local LPIPS (LPIPS-VGG map averaged over the mask), PSNR inside the mask,
and the dlib identity distance of the whole restored face (`occjax.eval.identity`; NaN when dlib
finds no face). `split` picks disjoint seeds: tune on "validation", report on "test".
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from occjax.config import APPROACHES
from occjax.occlusion.measure import SIZES, occluded_percentage

CONDITIONS = ("same", "other")
METRICS = ("local_lpips", "local_psnr", "identity")
SPLIT_SEED = {"validation": 1000, "test": 2000}
SHARED_HANDS = Path(__file__).resolve().parents[3] / "shared" / "data" / "lfw_hand_samples"
UP = 256  # occlusions are synthesised at this size


@dataclass(frozen=True)
class SyntheticConfig:
    people: int = 8
    """People (identities)."""
    refs: int = 4
    """Reference photos per person."""
    sizes: tuple[str, ...] = SIZES
    """Occlusion sizes (each person's target is occluded once per size)."""
    split: Literal["validation", "test"] = "test"
    """Disjoint seeds: tune on validation, report on test."""
    seed: int = 0
    """Added to the split's seed."""
    approaches: tuple[str, ...] = ()
    """Approaches to run (default: every one the model supports)."""
    steps: int | None = None
    """Adam steps (default: the model's)."""
    reference_steps: int | None = None
    """Steps that invert each reference photo (default: the model's)."""
    hands: Literal["auto", "lfw", "procedural"] = "auto"
    """Occluders: the LFW hand cut-outs (auto: when ../shared is present) or procedural hands."""
    hands_dir: Path | None = None
    """Folder in the paper's layout to cut hands from (default: ../shared/data/lfw_hand_samples)."""
    identity: bool = True
    """Compute the dlib identity distance (needs dlib; skipped with a note otherwise)."""
    chunk_size: int | None = None
    """At most this many problems per compiled call (memory budget)."""
    config_overrides: dict = field(default_factory=dict)
    """InvertConfig fields set on every approach (e.g. a tuned sigma)."""


@dataclass
class Case:
    person: int
    size: str
    target: np.ndarray  # [3, H, W] in [-1, 1]
    mask: np.ndarray  # [1, H, W] {0, 1}
    clean: np.ndarray  # [3, H, W]
    occluder: str
    pct: dict


def hand_pool(cfg: SyntheticConfig):
    from occjax.occlusion import paper_dataset_cutouts, starter_occluders

    root = cfg.hands_dir or SHARED_HANDS
    if cfg.hands == "lfw" or (cfg.hands == "auto" and root.is_dir()):
        return paper_dataset_cutouts(root), "lfw_hand_samples cut-outs"
    return [o for o in starter_occluders(0, hands=6) if o.kind == "hand"], "procedural hands"


def _up(x: np.ndarray) -> np.ndarray:
    from occjax.io import to_uint8

    return np.asarray(Image.fromarray(to_uint8(x)).resize((UP, UP), Image.LANCZOS))


def face_landmarks(models, faces_u8: list[np.ndarray]) -> list[np.ndarray]:
    """68 dlib landmarks per 256 px face; where dlib finds none (or is not installed), the model's
    mean face layout (its bundle's "face_template", in [0, 1] coordinates), else the set's mean."""
    from occjax.eval.landmarks import detect_largest, missing_dependency

    found: list[np.ndarray | None] = [None] * len(faces_u8)
    if missing_dependency("dlib") is None:
        found = [detect_largest(f, "dlib") for f in faces_u8]
    ok = [f for f in found if f is not None]
    if "face_template" in models.info:
        template = np.asarray(models.info["face_template"], np.float64) * UP
    elif ok:
        template = np.mean(ok, axis=0)
    else:
        raise RuntimeError(
            "placing occluders on this model's faces needs dlib (pip install 'occjax[faces]'): "
            "the model has no face_template"
        )
    return [f if f is not None else template for f in found]


def make_cases(models, cfg: SyntheticConfig, rng: np.random.Generator):
    """(cases, reference photos {person: [R,3,H,W]}, occluder description)."""
    from occjax.identities import photos_of, sample_people
    from occjax.io import resize_rgb
    from occjax.occlusion import occlude_from_pool

    people = sample_people(models, cfg.people, rng)
    codes = photos_of(models, people, 1 + cfg.refs, rng)  # [P, 1+R, L, D]
    flat = codes.reshape(-1, *codes.shape[2:])
    images = np.clip(np.asarray(models.synthesis(flat)), -1, 1).reshape(
        cfg.people, 1 + cfg.refs, 3, models.resolution, models.resolution
    )
    pool, source = hand_pool(cfg)
    clean_up = [_up(images[p, 0]) for p in range(cfg.people)]
    lms = face_landmarks(models, clean_up)
    res = models.resolution
    cases = []
    for p in range(cfg.people):
        for size in cfg.sizes:
            o = occlude_from_pool(clean_up[p], lms[p], pool, rng, size, tries=10)
            if o is None:
                raise RuntimeError(f"could not place a {size} occlusion on person {p}")
            mask = np.asarray(Image.fromarray(o.mask).resize((res, res), Image.BILINEAR)) > 127
            mask = mask.astype(np.float32)[None]
            target = resize_rgb(Image.fromarray(o.image), res)
            # outside the mask, the target is the clean photo (the hand's blurred rim is inside)
            target = np.where(mask > 0, target, images[p, 0]).astype(np.float32)
            pct = {m: occluded_percentage(mask[0], m) for m in ("box", "image")}
            cases.append(Case(p, size, target, mask, images[p, 0], o.meta.occluder, pct))
    refs = {p: images[p, 1:] for p in range(cfg.people)}
    return cases, refs, source


def score(images, cases: list[Case], lpips, identity) -> dict[str, np.ndarray]:
    """Per result: local LPIPS, PSNR in the mask, identity distance to the clean photo."""
    import jax.numpy as jnp

    from occjax.eval.metrics import from_nchw, local_lpips, masked_psnr
    from occjax.io import to_uint8

    clean = from_nchw(np.stack([c.clean for c in cases]))
    res = from_nchw(images)
    m = jnp.asarray(np.stack([c.mask[0] for c in cases]))
    out = {
        "local_lpips": np.asarray(local_lpips(lpips, res, clean, m)),
        "local_psnr": np.asarray(masked_psnr(res, clean, m)),
    }
    if identity is not None:
        a = identity.embed([to_uint8(x) for x in images])
        b = identity.embed([to_uint8(c.clean) for c in cases])
        out["identity"] = np.linalg.norm(a - b, axis=1)
    return out


def approaches_for(models, cfg: SyntheticConfig) -> list[str]:
    names = cfg.approaches or tuple(a for a in APPROACHES if not models.unsupported(a))
    for a in names:
        models.check_supports(a)
    return list(names)


def run_benchmark(models, cfg: SyntheticConfig, out_dir: str | Path | None = None) -> dict:
    """Run every (approach, condition) on every case; returns {"rows", "summary", ...} and writes
    table.md and results.json under out_dir."""
    from occjax import api
    from occjax.eval.lpips import LPIPS

    t0 = time.perf_counter()
    rng = np.random.default_rng(SPLIT_SEED[cfg.split] + cfg.seed)
    cases, refs, source = make_cases(models, cfg, rng)
    over = dict(cfg.config_overrides)
    if cfg.steps is not None:
        over["steps"] = cfg.steps
    if cfg.reference_steps is not None:
        over["reference_steps"] = cfg.reference_steps
    approaches = approaches_for(models, cfg)
    cfgs = {a: models.preset(a, **(over if a != "enc" else {})) for a in approaches}
    ref_steps = max(c.reference_steps for c in cfgs.values())
    people = sorted(refs)
    photos = np.concatenate([refs[p] for p in people])
    codes, _ = api.invert_references(models, photos, ref_steps, chunk_size=cfg.chunk_size)
    codes = codes.reshape(len(people), cfg.refs, *codes.shape[1:])
    n = cfg.people
    problems = []  # (approach, condition, case index)
    for a in approaches:
        conds = CONDITIONS if cfgs[a].uses_prior else ("none",)
        problems += [(a, c, i) for c in conds for i in range(len(cases))]
    groups: dict[bool, list] = {}
    for p in problems:  # enc (0 steps) apart: the steps count shapes the compiled program
        groups.setdefault(cfgs[p[0]].steps == 0, []).append(p)
    images = {}
    for probs in groups.values():
        idx = [i for _, _, i in probs]
        ref_codes = [
            None if c == "none" else codes[cases[i].person if c == "same" else (cases[i].person + 1) % n]
            for _, c, i in probs
        ]  # fmt: skip
        r = api.invert(
            models,
            np.stack([cases[i].target for i in idx]),
            np.stack([cases[i].mask for i in idx]),
            ref_codes,
            [cfgs[a] for a, _, _ in probs],
            chunk_size=cfg.chunk_size,
        )
        images |= {p: r.images[k] for k, p in enumerate(probs)}
    identity = None
    notes = []
    if cfg.identity:
        from occjax.eval.identity import embedder, missing_dependency

        why = missing_dependency()
        identity = None if why else embedder()
        if why:
            notes.append(f"identity distance skipped: {why}")
    lpips = LPIPS("vgg")
    order = list(images)
    scores = score(
        np.stack([images[p] for p in order]), [cases[i] for _, _, i in order], lpips, identity
    )
    rows = []
    for k, (a, c, i) in enumerate(order):
        case = cases[i]
        row = {"approach": a, "condition": c, "person": case.person, "size": case.size}
        row |= {m: float(v[k]) for m, v in scores.items()}
        row |= {"occluder": case.occluder, "pct_box": case.pct["box"]}
        rows.append(row)
    out = {
        "config": json.loads(json.dumps(dataclasses.asdict(cfg), default=str)),
        "model": models.name,
        "approach_configs": {a: dataclasses.asdict(c) for a, c in cfgs.items()},
        "occluders": source,
        "notes": notes,
        "rows": rows,
        "summary": summarize(rows),
        "time_s": round(time.perf_counter() - t0, 1),
    }
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "results.json").write_text(json.dumps(out, indent=1))
        (out_dir / "table.md").write_text(header(out) + markdown_table(out["summary"]))
        save_examples(out_dir / "examples.png", cases, images, refs, cfg)
    return out


def summarize(rows: list[dict]) -> dict:
    """{f"{approach}|{condition}|{size}": {metric: [mean, std, n]}} (NaN-aware), sizes and "all"."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        for size in (r["size"], "all"):
            groups.setdefault(f"{r['approach']}|{r['condition']}|{size}", []).append(r)
    out = {}
    for key, rs in groups.items():
        stats = {}
        for m in METRICS:
            v = np.array([x.get(m, np.nan) for x in rs], np.float64)
            v = v[np.isfinite(v)]
            stats[m] = [float(v.mean()), float(v.std()), int(v.size)] if v.size else None
        out[key] = stats
    return out


def header(out: dict) -> str:
    return (
        f"Synthetic benchmark on {out['model']} ({out['config']['split']} split, "
        f"{out['config']['people']} people, occluders: {out['occluders']}): metrics inside the "
        "occlusion against the clean photo, mean ± std over cases. Conditions: references of the "
        "same person, of another person, or none.\n\n" + "".join(f"{n}\n\n" for n in out["notes"])
    )


def markdown_table(summary: dict) -> str:
    arrows = {"local_lpips": "↓", "local_psnr": "↑", "identity": "↓"}
    lines = [
        "| condition | size | approach | " + " | ".join(f"{m} {arrows[m]}" for m in METRICS) + " |"
    ]
    lines.append("|" + "---|" * (3 + len(METRICS)))

    def sort_key(key):
        a, c, s = key.split("|")
        sizes = [*SIZES, "all"]
        return (
            ("none", *CONDITIONS).index(c),
            sizes.index(s),
            APPROACHES.index(a) if a in APPROACHES else 99,
        )

    for key in sorted(summary, key=sort_key):
        a, c, s = key.split("|")
        cells = [f"{v[0]:.4g} ± {v[1]:.2g}" if (v := summary[key][m]) else "-" for m in METRICS]
        lines.append(f"| {c} | {s} | {a} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def save_examples(path: Path, cases, images, refs, cfg: SyntheticConfig, n: int = 4) -> None:
    """A labelled picture: per example case, occluded | clean | each result | two references."""
    from PIL import ImageDraw

    from occjax.io import to_uint8

    keys = sorted({(a, c) for a, c, _ in images}, key=lambda k: (APPROACHES.index(k[0]), k[1]))
    labels = ["occluded", "clean"] + [a if c == "none" else f"{a} ({c} refs)" for a, c in keys]
    labels += ["reference", "reference"]
    sizes = list(dict.fromkeys(c.size for c in cases))
    pick = [  # person k, the k-th size (cycling): every size is shown
        next((i for i, c in enumerate(cases) if c.person == k and c.size == sizes[k % len(sizes)]), None)
        for k in range(n)
    ]  # fmt: skip
    rows = []
    for i in [i for i in pick if i is not None]:
        c = cases[i]
        tiles = [c.target, c.clean] + [images[(a, cond, i)] for a, cond in keys]
        tiles += list(refs[c.person][:2])
        rows.append(np.concatenate([to_uint8(t) for t in tiles], axis=1))
    grid = np.concatenate(rows, axis=0)
    scale, side = 2, cases[0].clean.shape[-1] * 2
    im = Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST)
    canvas = Image.new("RGB", (im.width, im.height + 14), "white")
    canvas.paste(im, (0, 14))
    draw = ImageDraw.Draw(canvas)
    for j, label in enumerate(labels):
        draw.text((j * side + 2, 1), label, fill="black")
    canvas.save(path)
