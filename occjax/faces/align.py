"""FFHQ-style face alignment (the dlib 68-landmark recipe of NVlabs/ffhq-dataset) and its inverse.

`ffhq_quad` turns landmarks into the recipe's oriented square crop: x axis along (eye-to-eye minus
the eye-to-mouth vector turned 90 degrees), half-side max(2 x eye distance, 1.8 x eye-to-mouth),
centre at eye_avg + 0.1 x eye_to_mouth. `align_face` resamples that square like the recipe (integer
pre-shrink, crop, reflect-pad with blurred/median-faded borders, bilinear quad warp at
`supersample` x the output size, Lanczos down-sampling). The crop is a similarity transform, so the
aligned face keeps the forward matrix original -> aligned; `paste_back` uses its inverse to put
restored pixels back into the original photo inside a feathered mask.

Points are (x, y) with pixel centres at integers (dlib's convention); a pixel index i covers the
continuous interval [i - 0.5, i + 0.5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from occjax.faces.landmarks import (
    FaceNotFoundError,
    PartialFaceError,
    _as_rgb_uint8,
    detect_faces,
    partial_face_reason,
)


@dataclass(frozen=True)
class AlignedFace:
    """An aligned face and how it maps to its source photo.

    image: [S, S, 3] uint8. matrix: [3, 3] forward transform, homogeneous (x, y, 1) in the original
    -> (u, v, 1) in the aligned image (a similarity). quad: [4, 2] original-image corners of the
    crop (top-left, bottom-left, bottom-right, top-right of the output). landmarks: [68, 2] in the
    original. source_shape: (H, W) of the original. face_index: which detection (0 = largest).
    """

    image: np.ndarray
    matrix: np.ndarray
    quad: np.ndarray
    landmarks: np.ndarray
    source_shape: tuple[int, int]
    face_index: int = 0
    num_faces: int = 1

    @property
    def output_size(self) -> int:
        return int(self.image.shape[0])

    def to_aligned(self, points: np.ndarray) -> np.ndarray:
        """[N, 2] original-image points -> [N, 2] aligned-image points."""
        return apply_matrix(self.matrix, points)

    def to_original(self, points: np.ndarray) -> np.ndarray:
        """[N, 2] aligned-image points -> [N, 2] original-image points."""
        return apply_matrix(np.linalg.inv(self.matrix), points)

    @property
    def landmarks_aligned(self) -> np.ndarray:
        """[68, 2] landmarks in aligned-image pixels."""
        return self.to_aligned(self.landmarks)


def apply_matrix(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a [3, 3] affine matrix to [N, 2] points."""
    p = np.asarray(points, dtype=np.float64)
    return p @ matrix[:2, :2].T + matrix[:2, 2]


def ffhq_anchors(landmarks: np.ndarray) -> dict[str, np.ndarray]:
    """The recipe's anchor points of [68, 2] landmarks: eye centres, eye and mouth midpoints."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"expected [68, 2] landmarks, got {lm.shape}")
    eye_left = lm[36:42].mean(axis=0)  # image-left eye (the subject's right)
    eye_right = lm[42:48].mean(axis=0)
    mouth = (lm[48] + lm[54]) * 0.5
    return {
        "eye_left": eye_left,
        "eye_right": eye_right,
        "eye_avg": (eye_left + eye_right) * 0.5,
        "mouth": mouth,
    }


def ffhq_quad(landmarks: np.ndarray) -> np.ndarray:
    """[4, 2] crop corners (top-left, bottom-left, bottom-right, top-right) from [68, 2] landmarks."""
    a = ffhq_anchors(landmarks)
    eye_to_eye = a["eye_right"] - a["eye_left"]
    eye_to_mouth = a["mouth"] - a["eye_avg"]
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = a["eye_avg"] + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def quad_matrix(quad: np.ndarray, output_size: int) -> np.ndarray:
    """[3, 3] forward matrix original -> aligned for a crop `quad` [4, 2] resampled to output_size.

    In continuous coordinates (pixel centre + 0.5) the corner quad[0] goes to (0, 0), quad[3] to
    (S, 0) and quad[1] to (0, S).
    """
    q = np.asarray(quad, dtype=np.float64)
    basis = np.stack([q[3] - q[0], q[1] - q[0]], axis=1) / output_size  # aligned -> original
    inv = np.linalg.inv(basis)
    m = np.eye(3)
    m[:2, :2] = inv
    m[:2, 2] = inv @ (0.5 - (q[0] + 0.5)) - 0.5
    return m


def load_rgb(image: np.ndarray | Image.Image | str | Path) -> np.ndarray:
    """[H, W, 3] uint8 RGB from an array, a PIL image or a file path."""
    if isinstance(image, (str, Path)):
        with Image.open(image) as im:
            return np.asarray(im.convert("RGB"))
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    return _as_rgb_uint8(image)


def _reflect_pad(img: Image.Image, pad: tuple[int, int, int, int], qsize: float) -> Image.Image:
    """The recipe's padding: reflect, blur towards the outside, fade to the median colour."""
    left, top, right, bottom = pad
    arr = np.pad(np.asarray(img), ((top, bottom), (left, right), (0, 0)), "reflect")
    h, w, _ = arr.shape
    yy, xx, _ = np.ogrid[:h, :w, :1]
    xx, yy = xx.astype(np.float32), yy.astype(np.float32)
    mask = np.maximum(
        1.0 - np.minimum(xx / left, (w - 1 - xx) / right),
        1.0 - np.minimum(yy / top, (h - 1 - yy) / bottom),
    )
    blurred = np.asarray(
        Image.fromarray(arr).filter(ImageFilter.GaussianBlur(qsize * 0.02)), dtype=np.float32
    )
    out = arr.astype(np.float32)
    out += (blurred - out) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
    out += (np.median(out, axis=(0, 1)) - out) * np.clip(mask, 0.0, 1.0)
    return Image.fromarray(np.uint8(np.clip(np.rint(out), 0, 255)), "RGB")


def render_quad(
    image: np.ndarray,
    quad: np.ndarray,
    output_size: int,
    supersample: int = 4,
    padding: bool = True,
) -> np.ndarray:
    """Resample the crop `quad` [4, 2] of `image` [H, W, 3] uint8 to [S, S, 3] like the recipe."""
    img = Image.fromarray(image)
    quad = np.asarray(quad, dtype=np.float64).copy()
    qsize = float(np.hypot(*(quad[3] - quad[0])))
    shrink = int(np.floor(qsize / output_size * 0.5))
    if shrink > 1:
        w, h = img.size
        rsize = (int(np.rint(w / shrink)), int(np.rint(h / shrink)))
        img = img.resize(rsize, Image.Resampling.LANCZOS)
        quad = (quad + 0.5) * [rsize[0] / w, rsize[1] / h] - 0.5
        qsize /= shrink
    border = max(int(np.rint(qsize * 0.1)), 3)
    lo, hi = np.floor(quad.min(axis=0)).astype(int), np.ceil(quad.max(axis=0)).astype(int)
    crop = (
        max(lo[0] - border, 0),
        max(lo[1] - border, 0),
        min(hi[0] + border, img.size[0]),
        min(hi[1] + border, img.size[1]),
    )
    if crop[2] - crop[0] < img.size[0] or crop[3] - crop[1] < img.size[1]:
        img = img.crop(crop)
        quad -= crop[0:2]
    lo, hi = np.floor(quad.min(axis=0)).astype(int), np.ceil(quad.max(axis=0)).astype(int)
    pad = (
        max(-lo[0] + border, 0),
        max(-lo[1] + border, 0),
        max(hi[0] - img.size[0] + border, 0),
        max(hi[1] - img.size[1] + border, 0),
    )
    if padding and max(pad) > border - 4:
        pad = tuple(max(p, int(np.rint(qsize * 0.3))) for p in pad)
        img = _reflect_pad(img, pad, qsize)
        quad += pad[:2]
    size = output_size * max(int(supersample), 1)
    img = img.transform(
        (size, size), Image.Transform.QUAD, tuple((quad + 0.5).flatten()), Image.Resampling.BILINEAR
    )
    if size != output_size:
        img = img.resize((output_size, output_size), Image.Resampling.LANCZOS)
    return np.asarray(img)


def aligned_mask(mask: np.ndarray, quad: np.ndarray, output_size: int) -> np.ndarray:
    """A mask of the original photo (grey [H, W], > 127 = occluded) cut like the aligned face:
    [1, S, S] float32 in {0, 1}. The CLI's --align and the page's "align face" both use it."""
    grey = np.asarray(mask, np.uint8)
    warped = render_quad(np.repeat(grey[..., None], 3, axis=2), quad, output_size)
    return (warped[..., 0] > 127).astype(np.float32)[None]


def _select_face(image: np.ndarray, face_index: int | str, backend: str):
    faces = detect_faces(image, backend=backend)
    h, w = image.shape[:2]
    if not faces:
        raise FaceNotFoundError(
            f"no face found in the {w}x{h} photo: dlib's detector needs a roughly frontal face of "
            "at least ~40 px; use another photo or pass landmarks= ([68, 2]) yourself"
        )
    index = 0 if face_index == "largest" else face_index
    if not isinstance(index, int) or not 0 <= index < len(faces):
        raise FaceNotFoundError(
            f"face_index={face_index!r} but {len(faces)} face(s) were found (0 = largest)"
        )
    return faces[index], index, len(faces)


def align_face(
    image: np.ndarray | Image.Image | str | Path,
    output_size: int = 256,
    landmarks: np.ndarray | None = None,
    face_index: int | str = "largest",
    backend: str = "dlib",
    supersample: int = 4,
    padding: bool = True,
    allow_partial: bool = False,
) -> AlignedFace:
    """Detect (unless `landmarks` [68, 2] is given), check and FFHQ-align one face.

    face_index: "largest" (= 0) or an index into the faces sorted by box area, largest first.
    Raises FaceNotFoundError (no face / bad index) or PartialFaceError (face cut by the border,
    unless allow_partial). Returns an AlignedFace with an [output_size, output_size, 3] uint8 image.
    """
    rgb = np.ascontiguousarray(load_rgb(image))
    box, index, count = None, 0, 1
    if landmarks is None:
        face, index, count = _select_face(rgb, face_index, backend)
        landmarks, box = face.landmarks, face.box
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.shape != (68, 2):
        raise ValueError(f"expected [68, 2] landmarks, got {landmarks.shape}")
    if not allow_partial:
        reason = partial_face_reason(landmarks, rgb.shape, box)
        if reason:
            raise PartialFaceError(
                f"the face is cut by the photo border ({reason}); use an uncropped photo, "
                "another face_index, or allow_partial=True to align it anyway"
            )
    quad = ffhq_quad(landmarks)
    aligned = render_quad(rgb, quad, output_size, supersample=supersample, padding=padding)
    return AlignedFace(
        image=aligned,
        matrix=quad_matrix(quad, output_size),
        quad=quad,
        landmarks=landmarks,
        source_shape=(rgb.shape[0], rgb.shape[1]),
        face_index=index,
        num_faces=count,
    )


def _blur_f(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a float [H, W] map in [0, 1] (through 16-bit precision)."""
    if sigma <= 0:
        return x
    scaled = Image.fromarray(np.uint8(np.clip(np.rint(x * 255.0), 0, 255)))
    return np.asarray(scaled.filter(ImageFilter.GaussianBlur(sigma)), dtype=np.float32) / 255.0


def _dilate(x: np.ndarray, radius: int) -> np.ndarray:
    """Grey dilation of [H, W] by a (2 radius + 1)^2 square (separable sliding max)."""
    win = np.lib.stride_tricks.sliding_window_view
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (radius, radius)
        x = win(np.pad(x, pad, mode="edge"), 2 * radius + 1, axis=axis).max(axis=-1)
    return x


def _as_alpha(mask: np.ndarray) -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim == 3:
        m = m[..., 0]
    if m.dtype == np.bool_:
        return m.astype(np.float32)
    if np.issubdtype(m.dtype, np.integer):
        return m.astype(np.float32) / 255.0
    return np.clip(m.astype(np.float32), 0.0, 1.0)


def paste_back(
    restored_aligned: np.ndarray,
    original: np.ndarray | Image.Image | str | Path,
    aligned_face: AlignedFace,
    mask: np.ndarray | None = None,
    feather: float = 3.0,
) -> np.ndarray:
    """Composite restored aligned pixels into the original photo, at the original's size.

    restored_aligned: [S, S, 3] uint8 (any S: it is mapped onto the aligned frame). mask: optional
    [S, S] (bool, uint8 255 = replace, or float in [0, 1]) saying where to take restored pixels;
    None = the whole aligned square. The mask is grown by 3 x feather and blurred with sigma
    `feather` (in restored-image pixels), so an occlusion mask is covered fully with a soft edge,
    and it fades to 0 within 3 x feather of the square's border (no seam). feather=0: hard edges.
    Returns [H, W, 3] uint8; pixels outside the aligned square are the original's.
    """
    orig = np.ascontiguousarray(load_rgb(original))
    if orig.shape[:2] != aligned_face.source_shape:
        raise ValueError(
            f"original is {orig.shape[:2]} but the face was aligned from {aligned_face.source_shape}"
        )
    rest = np.ascontiguousarray(load_rgb(restored_aligned))
    s = rest.shape[0]
    if rest.shape[1] != s:
        raise ValueError(f"restored image must be square, got {rest.shape}")
    alpha = np.ones((s, s), np.float32) if mask is None else _as_alpha(mask)
    if alpha.shape != (s, s):
        alpha = np.asarray(Image.fromarray(alpha, "F").resize((s, s), Image.Resampling.BILINEAR))
    grow = int(math.ceil(3 * feather))
    if feather > 0:
        if mask is not None:
            alpha = _dilate(alpha, grow)
        alpha = alpha.astype(np.float32).copy()
        alpha[:grow], alpha[-grow:], alpha[:, :grow], alpha[:, -grow:] = 0, 0, 0, 0
        alpha = _blur_f(alpha, feather)
    # original -> restored frame in continuous coordinates (pixel centre + 0.5):
    # u_c = A x_c + t_c, scaled by s / S; PIL's AFFINE maps output (original) -> input (restored)
    k = s / aligned_face.output_size
    a = aligned_face.matrix[:2, :2]
    tc = aligned_face.matrix[:2, 2] + 0.5 - a @ [0.5, 0.5]
    a, tc = a * k, tc * k
    h, w = orig.shape[:2]
    big = aligned_face.output_size
    corners = aligned_face.to_original(np.array([[0, 0], [0, big], [big, big], [big, 0]]) - 0.5)
    x0, y0 = np.maximum(np.floor(corners.min(axis=0)).astype(int) - 1, 0)
    x1, y1 = np.minimum(np.ceil(corners.max(axis=0)).astype(int) + 2, [w, h])
    if x1 <= x0 or y1 <= y0:
        return orig.copy()
    # the crop starts at (x0, y0): shift output coordinates by it
    data = (a[0, 0], a[0, 1], a[0, 0] * x0 + a[0, 1] * y0 + tc[0])
    data += (a[1, 0], a[1, 1], a[1, 0] * x0 + a[1, 1] * y0 + tc[1])
    size = (int(x1 - x0), int(y1 - y0))
    warped = Image.fromarray(rest).transform(
        size, Image.Transform.AFFINE, data, Image.Resampling.BICUBIC
    )
    walpha = Image.fromarray(alpha.astype(np.float32), "F").transform(
        size, Image.Transform.AFFINE, data, Image.Resampling.BILINEAR
    )
    wa = np.clip(np.asarray(walpha), 0.0, 1.0)[..., None]
    out = orig.copy()
    region = orig[y0:y1, x0:x1].astype(np.float32)
    blended = region + (np.asarray(warped, np.float32) - region) * wa
    out[y0:y1, x0:x1] = np.uint8(np.clip(np.rint(blended), 0, 255))
    return out
