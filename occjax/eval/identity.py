"""Identity distance between face images: dlib's 128-d face-recognition embeddings.

dlib's ResNet (`dlib_face_recognition_resnet_model_v1.dat`, shipped in `face-recognition-models`
beside the landmark models) maps an aligned 150x150 face chip to a 128-d vector; two photos of the
same person lie within Euclidean distance 0.6 of each other (dlib's documented threshold). Here it
measures whether a restored face still shows the person of the ground truth.

Per image (uint8 RGB [H, W, 3]):
  1. upsample (PIL Lanczos) to 256 px on the short side when smaller: the model's results are 64 px
     crops, and dlib's HOG detector needs faces of about 80 px (ffhq_examples resized to 64 px: it
     finds 0 of 19 as they are, 18 with its own 2x pass, 19 after this upsampling);
  2. detect with dlib's HOG frontal detector (no upsampling, then 2x when nothing was found; the 2x
     pass only up to 1280 px), keep the largest face;
  3. 5 landmarks (`shape_predictor_5_face_landmarks.dat`, what dlib's face-recognition example
     uses) in the face box, `dlib.get_face_chip(size=150, padding=0.25)`, then the descriptor.

Whole-image fallback: the HOG detector needs some context around a face, so it misses faces that
fill the frame (ffhq_examples cropped to the face box, at 64 px: 16 of 19 found). For an image that
had to be upsampled (a small face crop, such as a generated 64 px face) where no face was found,
the whole image serves as the face box of step 3, and `Embeddings.fallback` records it. It is taken
only when the detector, run down to FALLBACK_MIN_SCORE, saw at least a weak face candidate, so
faceless images stay NaN: uniform grey, noise and the occluder textures score -0.9 or lower, the
missed tight crops -0.6..0 (all 19 then embed, their fallback embeddings 0.29 on average from those
of the 256 px photos, like the detected ones). Detection still comes first: on loose crops the whole
image is a poor face box (64 px ffhq_examples: 0.24 mean, 0.73 max from the detected box's).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from occjax.deps import available, missing_message, require

RECOGNITION_MODEL = "dlib_face_recognition_resnet_model_v1.dat"
SHAPE_MODEL = "shape_predictor_5_face_landmarks.dat"
SAME_PERSON = 0.6  # dlib's threshold: below it, the same person
MIN_SIDE = 256  # images with a shorter short side are upsampled to it
MAX_SIDE_2X = 1280  # the 2x detection pass runs only on images up to this side
CHIP_SIZE, CHIP_PADDING = 150, 0.25  # dlib's face chip of the recognition model
FALLBACK_MIN_SCORE = -0.6  # weakest detector score that allows the whole-image fallback
DIM = 128


@dataclass(frozen=True)
class Embeddings:
    """`vectors` [N, 128] float32 (NaN rows: no usable face); `fallback` [N] bool (whole image)."""

    vectors: np.ndarray
    fallback: np.ndarray


def missing_dependency() -> str | None:
    """Why identity embeddings cannot run here (a missing package), or None; imports nothing."""
    for module in ("dlib", "face_recognition_models"):
        if not available(module):
            return missing_message(module, "faces", "identity distance", "face recognition")
    return None


def model_path(name: str) -> Path:
    """A dlib model file of `face-recognition-models` (the folder of the 68-point predictor)."""
    from occjax.faces.landmarks import ModelFileNotFoundError, dlib_model_path

    path = dlib_model_path().parent / name
    if not path.is_file():
        raise ModelFileNotFoundError(f"dlib model {name} not found at {path}")
    return path


def _rgb(image) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"expected uint8 [H, W, 3] images, got {image.dtype} {image.shape}")
    return np.ascontiguousarray(image[..., :3])


def upsample(image: np.ndarray, min_side: int = MIN_SIDE) -> tuple[np.ndarray, bool]:
    """(image with its short side raised to min_side by Lanczos, whether it was resized)."""
    h, w = image.shape[:2]
    if min(h, w) >= min_side:
        return image, False
    f = min_side / min(h, w)
    size = (max(min_side, round(w * f)), max(min_side, round(h * f)))
    return np.asarray(Image.fromarray(image).resize(size, Image.LANCZOS)), True


class IdentityEmbedder:
    """dlib's detector, 5-point predictor and face-recognition ResNet, loaded once."""

    def __init__(self) -> None:
        require("dlib", "faces", "identity distance", "face recognition")
        import dlib

        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(model_path(SHAPE_MODEL)))
        self._net = dlib.face_recognition_model_v1(str(model_path(RECOGNITION_MODEL)))

    def _face_box(self, image: np.ndarray):
        """(largest detected face rectangle or None, best detector score seen, -inf if none)."""
        best = -math.inf
        for up in (0, 1):
            if up and max(image.shape[:2]) > MAX_SIDE_2X:
                break
            rects, scores, _ = self._detector.run(image, up, FALLBACK_MIN_SCORE)
            best = max([best, *scores])
            found = [r for r, s in zip(rects, scores) if s >= 0.0]
            if found:
                return max(found, key=lambda r: r.area()), best
        return None, best

    def embeddings(self, images: Sequence[np.ndarray] | np.ndarray) -> Embeddings:
        """Embeddings of uint8 RGB images (a list of [H, W, 3], or [N, H, W, 3]); see module doc."""
        n = len(images)
        vectors = np.full((n, DIM), np.nan, np.float32)
        fallback = np.zeros(n, bool)
        chips, rows = [], []
        for i, im in enumerate(images):
            image, upsampled = upsample(_rgb(im))
            box, best = self._face_box(image)
            if box is None and upsampled and best >= FALLBACK_MIN_SCORE:
                h, w = image.shape[:2]
                box, fallback[i] = self._dlib.rectangle(0, 0, w - 1, h - 1), True
            if box is None:
                continue
            shape = self._predictor(image, box)
            chips.append(self._dlib.get_face_chip(image, shape, CHIP_SIZE, CHIP_PADDING))
            rows.append(i)
        if chips:
            vectors[rows] = np.asarray(self._net.compute_face_descriptor(chips), np.float32)
        return Embeddings(vectors, fallback)

    def embed(self, images: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """[N, 128] float32 embeddings, NaN rows where no face could be used."""
        return self.embeddings(images).vectors


@functools.lru_cache(maxsize=1)
def embedder() -> IdentityEmbedder:
    """The process-wide embedder (models loaded on first use)."""
    return IdentityEmbedder()


def distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance of embeddings along the last axis (NaN where either is NaN)."""
    return np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64), axis=-1)


def identity_distance(a_uint8: np.ndarray, b_uint8: np.ndarray) -> float:
    """Identity distance of two uint8 RGB face images (< 0.6: same person); NaN if either has no
    usable face."""
    e = embedder().embed([a_uint8, b_uint8])
    return float(distance(e[0], e[1]))
