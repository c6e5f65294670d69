"""Build an occlusion-removal dataset from an LFW-style photo tree (offline).

    python scripts/make_dataset.py --lfw-root DIR --out DIR --seed N

Keeps people with >= 2 photos, FFHQ-aligns every photo (dlib landmarks), occludes one photo per
person three ways (small / medium / large), keeps the rest as references, and writes the layout that
`scripts/invert.py --dataset` reads plus clean_img/, manifest.jsonl, splits.json and skipped.jsonl.
See `occjax.occlusion.dataset` for the details. Without the face pipeline (dlib and its model file,
or 2D-FAN) it stops at once: one line on stderr naming the fix, exit code 2.
"""

from __future__ import annotations

import collections
import logging
import sys

import tyro

from occjax.deps import MissingDependency
from occjax.faces.landmarks import MissingDependencyError, ModelFileNotFoundError
from occjax.occlusion.dataset import DatasetConfig, build_dataset

EXIT_MISSING_DEPENDENCY = 2


def main(config: DatasetConfig) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        records = build_dataset(config)
    except (MissingDependency, MissingDependencyError, ModelFileNotFoundError) as e:
        print(e, file=sys.stderr)
        raise SystemExit(EXIT_MISSING_DEPENDENCY) from None
    by_split = collections.Counter(r["split"] for r in records)
    by_size = collections.Counter(r["size"] for r in records)
    people = len({r["person"] for r in records})
    print(
        f"{len(records)} cases from {people} people -> {config.out} "
        f"(splits {dict(by_split)}, sizes {dict(by_size)}); see manifest.jsonl and skipped.jsonl"
    )


if __name__ == "__main__":
    main(tyro.cli(DatasetConfig))
