"""What the page's buttons do, through occjax's public API only (no inversion logic here).

auto mask -> `occjax.estimate_mask`; reference uploads -> `occjax.screen_references`;
Run -> `occjax.invert` with the model's preset (`models.preset`; `personal`: the model's
`personal_config`, tuned on the kept reference photos) and the page's overrides, and, for an
aligned photo, `occjax.faces.paste_back`. Plain Python: no gradio, testable without it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import occjax
import occjax.cache
from occjax.app.errors import UserError
from occjax.app.inputs import Photo, load_references
from occjax.app.session import References
from occjax.io import to_uint8
from occjax.masks import MaskConfig, mask_steps
from occjax.personal import PersonalConfig, personal_config


@dataclass(frozen=True)
class Settings:
    """The page's inversion settings."""

    approach: str
    steps: int
    adaptive: bool  # the preset's adaptive prior weight (True) or `prior_weight`
    prior_weight: float  # lambda3: 0 = fidelity to the photo only, higher = closer to the refs
    reference_steps: int  # baseline steps that turn each reference into its code


def approaches(models) -> list[str]:
    """The approaches this model supports, in the paper's order, then the opt-in `personal`
    (listed, never preselected)."""
    return list(models.supported_approaches(opt_in=True))


def model_config(models, approach: str):
    """The model's tuned config for `approach`: its preset, or `personal`'s PersonalConfig."""
    if approach == "personal":
        return personal_config(models)
    return models.preset(approach)


def uses_prior_weight(cfg) -> bool:
    return isinstance(cfg, occjax.InvertConfig) and cfg.prior


def default_settings(models, approach: str | None = None) -> Settings:
    """The model's tuned values for `approach` (default: prior where supported, never an opt-in
    approach)."""
    names = list(models.supported_approaches())
    approach = approach or ("prior" if "prior" in names else names[-1])
    cfg = model_config(models, approach)
    adaptive = not uses_prior_weight(cfg) or cfg.prior_weight is None
    weight = 1.0 if adaptive else cfg.prior_weight
    return Settings(approach, cfg.steps, adaptive, weight, cfg.reference_steps)


def default_mask_steps(models) -> int:
    """Steps of the auto mask's first round: what `occjax.estimate_mask` takes by default
    (`masks.mask_steps`: 3/4 of the model's steps)."""
    return mask_steps(models, MaskConfig())


def make_config(models, s: Settings) -> occjax.InvertConfig | PersonalConfig:
    """The model's config for the approach with the page's steps and prior weight (`personal`:
    its steps and reference steps)."""
    if s.approach not in approaches(models):
        raise UserError(f"approach {s.approach!r} is not one this model supports")
    cfg = model_config(models, s.approach)
    over = {"reference_steps": int(s.reference_steps)}
    if cfg.steps > 0:  # enc stays the encoder's code
        if int(s.steps) < 1:
            raise UserError("steps must be at least 1")
        over["steps"] = int(s.steps)
    if uses_prior_weight(cfg):
        over["prior_weight"] = None if s.adaptive else float(s.prior_weight)
    try:
        return dataclasses.replace(cfg, **over)
    except ValueError as e:
        raise UserError(str(e)) from None


def kept_codes(references: References | None) -> np.ndarray | None:
    """The codes of the references the screening kept, or None."""
    if references is None or references.screening is None:
        return None
    codes = references.screening.kept_codes
    return codes if len(codes) else None


def kept_photos(references: References | None) -> np.ndarray | None:
    """The reference photos [R, 3, S, S] the screening kept (what `personal` tunes on), or None."""
    if references is None or references.screening is None:
        return None
    kept = [p.image for p, k in zip(references.photos, references.screening.kept) if k]
    return np.stack(kept) if kept else None


def propose_mask(models, photo: Photo, references: References | None, steps: int) -> np.ndarray:
    """The occlusion mask [1, S, S] to restore the photo with: the estimate (held near the person's
    kept references when there are some) grown by its restoration margin."""
    codes = kept_codes(references)
    refs = None if codes is None else [codes]
    est = occjax.estimate_mask(
        models, photo.image[None], refs, steps=max(1, int(steps)), return_details=True
    )
    # what the restoration should leave out: the estimate and its margin (MaskConfig.margin_*)
    return np.asarray(est.restore[0], np.float32)


def screen(models, paths: list[str | Path], align: bool, steps: int) -> References:
    """Load and screen reference uploads (unusable files are skipped, with a line each)."""
    key = (tuple(str(p) for p in paths), bool(align), int(steps))
    photos, skipped = load_references(list(paths), models.resolution, align)
    if not photos:
        return References([], None, skipped, key)
    images = np.stack([p.image for p in photos])
    (screening,) = occjax.screen_references(
        models, [images], min_quality=None, steps=int(steps), cache=occjax.cache.reference_dir()
    )
    return References(photos, screening, skipped, key)


class Cancelled(Exception):
    """Raised from the progress callback when the user pressed Cancel: it stops `invert`."""

    def __init__(self, done: int, total: int):
        super().__init__(f"cancelled after {done} of {total} steps")
        self.done, self.total = done, total


@dataclass
class Restoration:
    """One run's inputs and outputs."""

    photo: Photo
    mask: np.ndarray  # [1, S, S] {0, 1}, the mask used
    config: occjax.InvertConfig | PersonalConfig
    result: occjax.InvertResult
    reference_codes: np.ndarray | None  # [R, L, D] the kept references' codes
    restored: np.ndarray  # [S, S, 3] uint8
    pasted: np.ndarray | None  # [H, W, 3] uint8, the restoration in the original photo (aligned)
    seconds: float


def restore(
    models,
    photo: Photo,
    mask: np.ndarray,
    references: References | None,
    settings: Settings,
    on_step: Callable[[int, int], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> Restoration:
    """Invert the photo with the page's settings; `on_step(done, total)` about every tenth of the
    steps (`personal`: every step, after its pivots); `stop()` returning True cancels (raises
    Cancelled)."""
    cfg = make_config(models, settings)
    codes = kept_codes(references)
    if cfg.uses_references and codes is None:
        raise UserError(
            f"{cfg.approach} needs reference photos of the person: add some (none is kept now), "
            "or choose baseline"
        )
    if cfg.steps > 0 and float(mask.sum()) == 0:
        raise UserError('the mask is empty: paint the occluded area, or press "auto mask"')

    def progress(done: int) -> None:
        if on_step is not None:
            on_step(done, cfg.steps)
        if stop is not None and done < cfg.steps and stop():
            raise Cancelled(done, cfg.steps)

    t0 = time.perf_counter()
    if isinstance(cfg, PersonalConfig):  # tuned on the kept photos; their pivots from the cache
        res = occjax.invert(
            models,
            photo.image[None],
            mask[None],
            [kept_photos(references)],
            config=cfg,
            progress=progress,
            reference_cache=occjax.cache.reference_dir(),
        )
    else:
        refs = [codes] if cfg.uses_prior else None
        res = occjax.invert(
            models, photo.image[None], mask[None], refs, config=cfg, record=True, progress=progress
        )
    restored = to_uint8(res.images[0])
    pasted = None
    if photo.aligned is not None:
        from occjax.blend import blend
        from occjax.faces import paste_back

        # the colour at the mask's edge from the photo, the detail from the restoration
        blended = blend(res.images[:1], photo.image[None], mask[None], "poisson")[0]
        pasted = paste_back(to_uint8(blended), photo.original, photo.aligned, mask[0] > 0.5)
    return Restoration(photo, mask, cfg, res, codes, restored, pasted, time.perf_counter() - t0)
