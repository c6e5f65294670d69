"""Load one case's arrays at the model resolution (optionally FFHQ-aligning the photos first)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from occjax.cli.cases import AUTO, Case
from occjax.io import ImageError, check_square, mask_array, open_image, resize_rgb


@dataclass
class Loaded:
    target: np.ndarray  # [3, R, R] in [-1, 1]
    mask: np.ndarray | None  # [1, R, R] {0, 1}; None until estimated (--mask auto)
    refs: np.ndarray | None  # [N, 3, R, R] or None (no references)
    refs_error: str | None  # why the references cannot be used (prior approaches, personal fail)
    clean: np.ndarray | None
    aligned: object | None = None  # AlignedFace of the target (with --align)
    auto_mask: bool = False  # the mask was estimated (--mask auto)


def _aligned(path: Path, res: int):
    from occjax.faces.align import align_face

    try:
        return align_face(path, output_size=res)
    except Exception as e:  # FaceError, missing dlib, ...
        raise ImageError(f"{path}: cannot align ({e})") from None


def _photo(path: Path, res: int, align: bool) -> tuple[np.ndarray, object | None]:
    if align:
        face = _aligned(path, res)
        return resize_rgb(Image.fromarray(face.image), res), face
    im = open_image(path)
    check_square(im, path)
    return resize_rgb(im, res), None


def _mask(path: Path | None, photo: Path, res: int, face) -> np.ndarray:
    if path is None:
        raise ImageError(
            f"{photo}: no mask given (pass --mask FILE, or --mask auto to estimate one)"
        )
    im = open_image(path)
    src = open_image(photo).size
    if im.size != src:
        raise ImageError(
            f"{path}: mask is {im.size[0]}x{im.size[1]} but the photo {photo.name} is "
            f"{src[0]}x{src[1]}; masks must have the photo's size"
        )
    if face is not None:
        from occjax.faces.align import aligned_mask

        return aligned_mask(np.asarray(im.convert("L")), face.quad, res)
    return mask_array(im, res)


def load_case(case: Case, res: int, align: bool = False) -> Loaded:
    """Raises ImageError for an unusable target or mask; reference problems go to refs_error."""
    target, face = _photo(case.target, res, align)
    mask = None if case.mask == AUTO else _mask(case.mask, case.target, res, face)
    refs, refs_error = None, None
    if not case.refs:
        refs_error = (
            "no reference photos (prior approaches and personal need --refs/--refs-dir or "
            "reference_imgs/)"
        )
    else:
        try:
            refs = np.stack([_photo(r, res, align)[0] for r in case.refs])
        except ImageError as e:
            refs_error = f"reference {e}"
    clean = None
    if case.clean is not None:
        try:
            clean = _photo(case.clean, res, align)[0]
        except ImageError:
            clean = None
    return Loaded(target, mask, refs, refs_error, clean, face)
