"""Reference photos, codes or None -> each problem's reference codes, for `invert`,
`estimate_mask`, `screen_references` and the benchmarks.

Photos [R, 3, H, W] are inverted once with the model's `baseline` preset (all problems' photos in
one batch, in chunks of `Options.chunk_size`) and cached on disk when `Options.cache` is a folder:
<cache>/<key>.npy, key = sha256(image content, model weights, settings), so re-runs and
references shared between targets cost nothing. Codes [R, L, D] are used as given.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from occjax.config import InvertConfig
from occjax.options import Options
from occjax.params import atomic_write_bytes
from occjax.validate import as_images


def reference_key(image: np.ndarray, models_id: str, cfg: InvertConfig, invariant: bool) -> str:
    settings = json.dumps(asdict(cfg), sort_keys=True)
    h = hashlib.sha256(np.ascontiguousarray(image, np.float32).tobytes())
    h.update(models_id.encode())
    h.update(settings.encode())
    h.update(b"invariant" if invariant else b"")
    return h.hexdigest()[:32]


def invert_photos(models, images: np.ndarray, steps: int, opts: Options) -> tuple[np.ndarray, int]:
    """Codes [N, L, D] of reference photos [N, 3, H, W] and the number of cache hits."""
    from occjax.api import invert
    from occjax.models import models_hash

    cfg = models.preset("baseline", steps=steps)
    images = as_images(images, "references", models.resolution)
    mid = models_hash(models)
    keys = [reference_key(im, mid, cfg, opts.batch_invariant) for im in images]
    out: dict[str, np.ndarray] = {}
    cache = Path(opts.cache) if opts.cache is not None else None
    if cache is not None:
        for k in set(keys):
            f = cache / f"{k}.npy"
            if f.is_file():
                try:
                    out[k] = np.load(f, allow_pickle=False)
                except (OSError, ValueError):  # a damaged entry is recomputed
                    pass
    hits = sum(k in out for k in keys)
    todo = [i for i, k in enumerate(keys) if k not in out and keys.index(k) == i]
    if todo:
        res = invert(
            models,
            images[todo],
            config=cfg,
            chunk_size=opts.chunk_size,
            devices=opts.devices,
            progress=bool(opts.progress),
            batch_invariant=opts.batch_invariant,
        )
        for i, code in zip(todo, res.codes):
            out[keys[i]] = code
            if cache is not None:
                buf = io.BytesIO()
                np.save(buf, code)
                atomic_write_bytes(cache / f"{keys[i]}.npy", buf.getvalue())
    return np.stack([out[k] for k in keys]), hits


def as_codes(models, references, b: int, steps: int, opts: Options) -> list[np.ndarray]:
    """One entry per problem: codes [R_b, L, D] (R_b = 0 for None or an empty entry)."""
    shape = models.code_shape
    if references is None:
        return [np.zeros((0, *shape), np.float32) for _ in range(b)]
    if len(references) != b:
        raise ValueError(
            f"references: expected a list of {b} entries (one per target), got {len(references)}"
        )
    codes: list[np.ndarray | None] = [None] * b
    photos, owners = [], []
    for i, r in enumerate(references):
        if r is None or len(r) == 0:
            codes[i] = np.zeros((0, *shape), np.float32)
            continue
        r = np.asarray(r, np.float32)
        if r.ndim == 3 and r.shape[1:] == shape:
            if not np.isfinite(r).all():
                raise ValueError(f"references[{i}]: codes are NaN or infinite")
            codes[i] = r
        elif r.ndim == 4:
            photos.append(as_images(r, f"references[{i}]", models.resolution))
            owners.append(i)
        else:
            raise ValueError(
                f"references[{i}]: expected photos [R, 3, H, W] or codes [R, {shape[0]}, "
                f"{shape[1]}], got {r.shape}"
            )
    if photos:
        allc, _ = invert_photos(models, np.concatenate(photos), steps, opts)
        start = 0
        for i, ph in zip(owners, photos):
            codes[i] = allc[start : start + len(ph)]
            start += len(ph)
    return codes


def pad(codes: list[np.ndarray], code_shape) -> tuple[np.ndarray, np.ndarray]:
    """([B, R, L, D] codes padded to the largest count, at least 1; validity [B, R])."""
    b = len(codes)
    r_max = max([1, *(len(c) for c in codes)])
    padded = np.zeros((b, r_max, *code_shape), np.float32)
    valid = np.zeros((b, r_max), np.float32)
    for i, c in enumerate(codes):
        padded[i, : len(c)] = c
        valid[i, : len(c)] = 1
    return padded, valid
