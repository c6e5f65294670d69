"""Build an occlusion-removal dataset from an LFW-style tree, as the paper built its LFW test set.

Input: `<root>/<Person>/<Person>_NNNN.jpg` (any image suffix). People with at least `min_photos`
photos are kept; every photo (the first max_refs + 1 usable ones, if set) is FFHQ-aligned (largest face); one photo per person, drawn with the
seed, is occluded once per size band (small / medium / large); the others become references.
Photos without a usable face are skipped and logged (`skipped.jsonl`); people left with fewer
than `min_photos` aligned photos are dropped. A missing face pipeline (dlib, its model file, the
2D-FAN package or weights) is not a bad photo: `check_dependencies` stops the build before any
photo with one line naming the fix (`MissingDependency` or `ModelFileNotFoundError`). Output (read by `scripts/invert.py --dataset`):

    <out>/<Person>/occluded_img/<Person>_NNNN_01_<size>.png    RGB, the occluded photo
    <out>/<Person>/occlusion_mask/<Person>_NNNN_01_<size>.png  L, 255 = occluded
    <out>/<Person>/clean_img/<Person>_NNNN_01_<size>.png       RGB, the ground truth (unoccluded)
    <out>/<Person>/reference_imgs/<Person>_MMMM_01.png         RGB, clean photos of the same person
    <out>/manifest.jsonl   one line per occluded case (paths relative to <out>, occlusion metadata)
    <out>/splits.json      {"validation": [people], "test": [people]}
    <out>/skipped.jsonl    photos (or people) left out, with the reason

"_01" is the face number of the FFHQ tools' naming (the chosen face). Randomness is drawn per person
from (seed, crc32(person)), so a person's cases do not depend on which other people are present.
The split is by person (all sizes of a case stay together): ceil(val_cases / len(sizes)) people go
to validation (the paper: 117 validation cases), at most half of them, the rest to test.
"""

from __future__ import annotations

import json
import logging
import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from occjax.deps import MissingDependency, missing_message, require
from occjax.faces.align import AlignedFace, align_face, load_rgb
from occjax.faces.landmarks import FaceError, MissingDependencyError, ModelFileNotFoundError
from occjax.occlusion.measure import SIZES
from occjax.occlusion.occluders import (
    IMAGE_SUFFIXES,
    Occluder,
    load_mask_textures,
    load_occluder_folder,
    paper_dataset_cutouts,
    starter_occluders,
)
from occjax.occlusion.regions import covered_regions, region_coverage
from occjax.occlusion.synth import OcclusionError, SynthConfig, occlude

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetConfig:
    """Build an occlusion dataset (aligned, occluded three ways, with references) from LFW photos."""

    lfw_root: Path
    """LFW-style tree: <Person>/<Person>_NNNN.jpg."""
    out: Path
    """Output folder (created; existing files with the same names are overwritten)."""
    seed: int = 0
    """Seed of every random choice (target photo, occluders, poses, split)."""
    output_size: int = 256
    """Side of the aligned images in pixels."""
    min_photos: int = 2
    """Keep people with at least this many aligned photos (one target + references)."""
    sizes: tuple[str, ...] = SIZES
    """Size bands to occlude each target with (see occjax.occlusion.measure.SIZE_BANDS)."""
    occluders: Path | None = None
    """Folder of RGBA PNG occluders; None: the procedural starter set (hands and objects)."""
    hand_samples: Path | None = None
    """Also cut real hands from a dataset in the paper's layout (<P>/occluded_img + occlusion_mask)."""
    mask_textures: Path | None = None
    """Also use the surgical-mask textures of this folder (warped over nose and mouth)."""
    val_cases: int = 117
    """Occluded cases in the validation split (the paper: 117); split by person."""
    max_people: int | None = None
    """Use only the first N eligible people (sorted by name); None: all."""
    max_refs: int | None = None
    """Keep at most N reference photos per person; None: all."""
    backend: Literal["dlib", "fan"] = "dlib"
    """Landmark backend (fan needs face-alignment and its weights on disk)."""


def check_dependencies(config: DatasetConfig) -> None:
    """Raise MissingDependency / ModelFileNotFoundError (one line, with the fix) unless the face
    pipeline of config.backend can run; imports nothing."""
    from occjax.faces import landmarks

    require("dlib", "faces", "make_dataset", "face detection and landmarks")
    if config.backend == "dlib":
        try:
            landmarks.dlib_model_path()
        except MissingDependencyError as e:
            raise MissingDependency(
                missing_message("face_recognition_models", "faces", "make_dataset", "landmarks")
            ) from e
    else:
        require("face_alignment", "fan", "make_dataset", "the 2D-FAN landmark backend")
        if not landmarks.fan_weights_path().is_file():
            raise ModelFileNotFoundError(
                f"make_dataset: the 2D-FAN weights are not at {landmarks.fan_weights_path()} "
                f"(nothing is downloaded: {landmarks.FAN_URL}), or use --backend dlib"
            )


def list_people(root: Path, min_photos: int) -> dict[str, list[Path]]:
    """{person: sorted photo paths} for the sub-folders of `root` with >= min_photos images."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"LFW root {root} is not a folder")
    people = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        photos = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if len(photos) >= min_photos:
            people[d.name] = photos
    return people


def occluder_pool(config: DatasetConfig) -> list[Occluder]:
    """The occluders the config asks for (starter set unless a folder is given)."""
    pool = (
        load_occluder_folder(config.occluders)
        if config.occluders
        else starter_occluders(config.seed)
    )
    if config.hand_samples:
        pool += paper_dataset_cutouts(config.hand_samples)
    if config.mask_textures:
        pool += load_mask_textures(config.mask_textures)
    return pool


def person_rng(seed: int, person: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(person.encode("utf-8"))])


def split_people(people: list[str], seed: int, val_cases: int, n_sizes: int) -> dict[str, list]:
    """Seeded person-level split: ceil(val_cases / n_sizes) people (at most half) to validation."""
    order = sorted(people)
    perm = np.random.default_rng([seed, 1]).permutation(len(order))
    n_val = min(math.ceil(val_cases / max(n_sizes, 1)), len(order) // 2)
    val = sorted(order[i] for i in perm[:n_val])
    return {"validation": val, "test": sorted(set(order) - set(val))}


def _save(array: np.ndarray, path: Path, mode: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path)


def _occlude_case(
    aligned: AlignedFace, pool: list[Occluder], size: str, rng: np.random.Generator
) -> tuple:
    """Try occluders in a random order until one reaches the size band."""
    lm = aligned.landmarks_aligned
    for i in rng.permutation(len(pool))[:12]:
        try:
            return occlude(aligned.image, lm, pool[int(i)], rng, size, SynthConfig()), lm
        except OcclusionError:
            continue
    raise OcclusionError(f"no occluder reached the {size} band")


def build_person(
    person: str,
    photos: list[Path],
    config: DatasetConfig,
    pool: list[Occluder],
    skip: Callable[[dict], None],
    on_photo: Callable[[], None] = lambda: None,
) -> list[dict]:
    """Align, occlude and write one person; returns their manifest records (no split yet)."""
    aligned: dict[Path, AlignedFace] = {}
    needed = len(photos) if config.max_refs is None else config.max_refs + 1
    for photo in photos:
        on_photo()
        if len(aligned) >= needed:
            continue
        try:
            aligned[photo] = align_face(
                load_rgb(photo), output_size=config.output_size, backend=config.backend
            )
        except (MissingDependencyError, ModelFileNotFoundError):
            raise  # the pipeline cannot run: not a bad photo
        except (FaceError, OSError) as e:
            skip(
                {
                    "person": person,
                    "photo": str(photo.relative_to(config.lfw_root)),
                    "reason": f"{type(e).__name__}: {e}",
                }
            )
    if len(aligned) < config.min_photos:
        skip({"person": person, "reason": f"only {len(aligned)} aligned photo(s)"})
        return []
    rng = person_rng(config.seed, person)
    kept = list(aligned)
    target = kept[int(rng.integers(len(kept)))]
    refs = [p for p in kept if p != target]
    base = Path(person)
    ref_paths = []
    for p in refs:
        rel = base / "reference_imgs" / f"{p.stem}_01.png"
        _save(aligned[p].image, config.out / rel)
        ref_paths.append(rel.as_posix())
    records = []
    for size in config.sizes:
        try:
            occ, lm = _occlude_case(aligned[target], pool, size, rng)
        except OcclusionError as e:
            skip(
                {
                    "person": person,
                    "photo": str(target.relative_to(config.lfw_root)),
                    "reason": f"{size}: {e}",
                }
            )
            continue
        name = f"{target.stem}_01_{size}.png"
        paths = {k: base / k / name for k in ("occluded_img", "occlusion_mask", "clean_img")}
        _save(occ.image, config.out / paths["occluded_img"])
        _save(occ.mask, config.out / paths["occlusion_mask"], "L")
        _save(aligned[target].image, config.out / paths["clean_img"])
        meta = occ.meta.to_dict()
        records.append(
            {
                "person": person,
                "target": paths["occluded_img"].as_posix(),
                "mask": paths["occlusion_mask"].as_posix(),
                "clean": paths["clean_img"].as_posix(),
                "refs": ref_paths,
                "size": size,
                "occluder": meta.pop("occluder"),
                "percent_box": meta.pop("percent_box"),
                "percent_image": meta.pop("percent_image"),
                "regions": covered_regions(occ.mask, lm),
                "region_coverage": {
                    k: round(v, 4) for k, v in region_coverage(occ.mask, lm).items()
                },
                "source": str(target.relative_to(config.lfw_root)),
                **meta,
            }
        )
    return records


def build_dataset(config: DatasetConfig, progress: bool = True) -> list[dict]:
    """Build the whole dataset under config.out; returns the manifest records."""
    from tqdm import tqdm

    check_dependencies(config)
    people = list_people(config.lfw_root, config.min_photos)
    if config.max_people is not None:
        people = dict(list(people.items())[: config.max_people])
    if not people:
        raise FileNotFoundError(
            f"no person folder with >= {config.min_photos} photos under {config.lfw_root}"
        )
    unknown = set(config.sizes) - set(SIZES)
    if unknown:
        raise ValueError(f"unknown sizes {sorted(unknown)}; choose from {SIZES}")
    config.out.mkdir(parents=True, exist_ok=True)
    pool = occluder_pool(config)
    skipped: list[dict] = []

    def skip(entry: dict) -> None:
        log.warning("skipped %s", entry)
        skipped.append(entry)

    records: list[dict] = []
    total = sum(len(p) for p in people.values())
    with tqdm(total=total, desc="photos", unit="photo", disable=not progress) as bar:
        for person, photos in people.items():
            records += build_person(person, photos, config, pool, skip, lambda: bar.update(1))
    splits = split_people(
        sorted({r["person"] for r in records}), config.seed, config.val_cases, len(config.sizes)
    )
    split_of = {p: k for k, ps in splits.items() for p in ps}
    for r in records:
        r["split"] = split_of[r["person"]]
    with open(config.out / "manifest.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    with open(config.out / "skipped.jsonl", "w") as f:
        f.writelines(json.dumps(s) + "\n" for s in skipped)
    (config.out / "splits.json").write_text(json.dumps(splits, indent=1) + "\n")
    return records
