"""Uploads -> the model's inputs: a photo (aligned or centre-cropped), a mask file, references.

Every failure is a `UserError` naming the file: the page shows it instead of a traceback. Without
"align face", a photo that is not square is centre-cropped to its largest centred square (the
page says so), so any photo can be used; with it, the crop follows the face (FFHQ alignment).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from occjax.app.errors import UserError
from occjax.io import mask_array, open_image, resize_rgb, to_rgb


@dataclass
class Photo:
    """The uploaded photo and how the model's square input was cut from it."""

    name: str
    original: np.ndarray  # [H, W, 3] uint8, as uploaded (RGB)
    image: np.ndarray  # [3, S, S] float32 in [-1, 1]: what is restored
    aligned: object | None = None  # occjax.faces.AlignedFace with "align face"
    crop: tuple[int, int, int, int] | None = None  # (left, top, right, bottom) without it
    note: str = ""  # one line for the page: what was done to the photo


def alignment_unavailable() -> str | None:
    """Why "align face" cannot work here (dlib or its model missing, with the fix), or None."""
    from occjax.eval.landmarks import missing_dependency

    return missing_dependency("dlib")


def read_image(path: str | Path) -> Image.Image:
    """The decoded upload, or UserError("<name>: not an image ...")."""
    name = Path(path).name
    try:
        return open_image(path)
    except Exception as e:  # ImageError, a decompression bomb, ...
        raise UserError(f"{name}: not an image that can be read ({e.__class__.__name__})") from None


def centre_square(w: int, h: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the largest centred square of a w x h image."""
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    return left, top, left + s, top + s


def load_photo(path: str | Path, size: int, align: bool) -> Photo:
    """An uploaded photo as the model's [3, size, size] input (see the module docstring)."""
    name = Path(path).name
    im = to_rgb(ImageOps.exif_transpose(read_image(path)))  # phone photos: upright
    original = np.asarray(im)
    if align:
        if why := alignment_unavailable():
            raise UserError(f"align face: {why}")
        from occjax.faces import FaceError, align_face

        try:
            face = align_face(original, output_size=size)
        except (FaceError, ValueError, ImportError) as e:
            raise UserError(f"{name}: cannot align the face ({e})") from None
        note = f"{name}: {im.width}x{im.height}, face aligned (FFHQ crop) to {size}x{size}"
        if face.num_faces > 1:
            note += f" (the largest of {face.num_faces} faces)"
        return Photo(
            name, original, resize_rgb(Image.fromarray(face.image), size), face, None, note
        )
    box = centre_square(im.width, im.height)
    note = f"{name}: {im.width}x{im.height}, resized to {size}x{size}"
    if box != (0, 0, im.width, im.height):
        note = (
            f"{name}: {im.width}x{im.height} is not square: centre-cropped to "
            f"{box[2] - box[0]}x{box[3] - box[1]}, resized to {size}x{size} "
            '(tick "align face" to crop around the face instead)'
        )
    return Photo(name, original, resize_rgb(im.crop(box), size), None, box, note)


def load_mask_file(path: str | Path, photo: Photo) -> np.ndarray:
    """A mask image of the photo's size -> [1, S, S] {0, 1} in the model's frame (grey > 127 =
    occluded), cut like the photo: warped with the alignment, or centre-cropped."""
    name = Path(path).name
    im = read_image(path)
    h, w = photo.original.shape[:2]
    if im.size != (w, h):
        raise UserError(
            f"{name}: the mask is {im.width}x{im.height} but the photo {photo.name} is {w}x{h}; "
            "a mask must have the photo's size"
        )
    size = photo.image.shape[-1]
    if photo.aligned is not None:
        from occjax.faces.align import aligned_mask

        return aligned_mask(np.asarray(im.convert("L")), photo.aligned.quad, size)
    return mask_array(im.crop(photo.crop), size)


def load_references(paths: list[str | Path], size: int, align: bool) -> tuple[list, list[str]]:
    """Reference uploads -> ([Photo per usable file], [one line per skipped file])."""
    photos, skipped = [], []
    for p in paths:
        try:
            photos.append(load_photo(p, size, align))
        except UserError as e:
            skipped.append(f"{e}: skipped")
    return photos, skipped
