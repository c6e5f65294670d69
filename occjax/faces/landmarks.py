"""Offline 68-point face landmarks: dlib's HOG detector + shape predictor, optionally 2D-FAN.

The dlib model file ships inside the `face-recognition-models` package (install `occjax[faces]`:
`dlib-bin`, no compiler needed). Its `__init__` imports `pkg_resources`, which is gone from
setuptools >= 81, so the `.dat` file is located with `importlib.util.find_spec` without importing it.

2D-FAN (`face-alignment`, the paper's landmark network) is optional (`occjax[fan]`): it runs on the
CPU without `torch.compile`, takes its face boxes from dlib's detector, and never downloads: when its
weights are not in the torch hub cache, `ModelFileNotFoundError` says where to put them. torch is
imported only inside that backend.

Coordinates are (x, y) pixel positions with pixel centres at integers (dlib's convention), in the
68-point iBUG layout: jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, mouth 48-67.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DLIB_MODEL = "shape_predictor_68_face_landmarks.dat"
FAN_WEIGHTS = "2DFAN4-11f355bf06.pth.tar"  # face-alignment 1.x, 2D, network size LARGE
FAN_URL = "https://www.adrianbulat.com/downloads/python-fan/" + FAN_WEIGHTS


class FaceError(RuntimeError):
    """Base class of the face pipeline's errors."""


class MissingDependencyError(FaceError, ImportError):
    """An optional dependency (dlib, face-recognition-models, face-alignment) is not installed."""


class ModelFileNotFoundError(FaceError, FileNotFoundError):
    """A landmark model file is not on disk (nothing is ever downloaded)."""


class FaceNotFoundError(FaceError):
    """No face was detected in the photo."""


class PartialFaceError(FaceError):
    """The chosen face is cut by the photo border, so its landmarks are extrapolated."""


@dataclass(frozen=True)
class DetectedFace:
    """One face: `box` (left, top, right, bottom) in pixels, detector `score`, `landmarks` [68, 2]."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray

    @property
    def area(self) -> float:
        l, t, r, b = self.box
        return max(r - l, 0.0) * max(b - t, 0.0)


def _import_dlib():
    try:
        import dlib
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(
            "dlib is not installed: pip install 'occjax[faces]' (the dlib-bin wheel, no compiler)"
        ) from e
    return dlib


def dlib_model_path() -> Path:
    """Path of `shape_predictor_68_face_landmarks.dat` inside `face-recognition-models`.

    Set OCCJAX_DLIB_LANDMARKS to use another copy of the file.
    """
    env = os.environ.get("OCCJAX_DLIB_LANDMARKS")
    if env:
        path = Path(env)
    else:
        spec = importlib.util.find_spec("face_recognition_models")
        if spec is None or not spec.submodule_search_locations:
            raise MissingDependencyError(
                "face-recognition-models is not installed: pip install 'occjax[faces]' "
                "(or set OCCJAX_DLIB_LANDMARKS to a shape_predictor_68_face_landmarks.dat)"
            )
        path = Path(next(iter(spec.submodule_search_locations))) / "models" / DLIB_MODEL
    if not path.is_file():
        raise ModelFileNotFoundError(f"dlib landmark model not found at {path}")
    return path


@functools.lru_cache(maxsize=1)
def _dlib_models():
    dlib = _import_dlib()
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(dlib_model_path()))


def _as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise TypeError(f"expected a uint8 image, got {image.dtype}")
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"expected an [H, W, 3] RGB image, got shape {image.shape}")
    return np.ascontiguousarray(image[..., :3])


def _resize_for_detection(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Shrink so the longest side is <= max_side (HOG cost grows with the pixel count)."""
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale >= 1.0:
        return image, 1.0
    from PIL import Image

    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
    return small, size[0] / w


def detect_boxes(
    image: np.ndarray, upsample: int | None = None, max_side: int = 1280
) -> list[tuple[tuple[float, float, float, float], float]]:
    """dlib HOG face boxes ((left, top, right, bottom), score) in full-image pixels, largest first.

    `image` [H, W, 3] uint8 RGB. `upsample=None` tries 0 and then 1 (faces down to ~40 px) when
    nothing is found; detection runs on a copy shrunk to `max_side`.
    """
    image = _as_rgb_uint8(image)
    detector, _ = _dlib_models()
    small, scale = _resize_for_detection(image, max_side)
    tries = (0, 1) if upsample is None else (upsample,)
    boxes: list[tuple[tuple[float, float, float, float], float]] = []
    for up in tries:
        rects, scores, _ = detector.run(small, up, 0.0)
        boxes = [
            (
                (
                    r.left() / scale,
                    r.top() / scale,
                    (r.right() + 1) / scale,
                    (r.bottom() + 1) / scale,
                ),
                float(s),
            )
            for r, s in zip(rects, scores)
        ]
        if boxes:
            break
    boxes.sort(key=lambda b: -(b[0][2] - b[0][0]) * (b[0][3] - b[0][1]))
    return boxes


def _dlib_landmarks(image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    dlib = _import_dlib()
    _, predictor = _dlib_models()
    l, t, r, b = (round(v) for v in box)
    shape = predictor(image, dlib.rectangle(l, t, r - 1, b - 1))
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)


def fan_weights_path() -> Path:
    """Where face-alignment looks for its 2D-FAN weights (torch hub cache), without importing torch.

    Mirrors `torch.hub.get_dir()`: $TORCH_HOME/hub, else $XDG_CACHE_HOME/torch/hub, else
    ~/.cache/torch/hub; the file is `checkpoints/2DFAN4-11f355bf06.pth.tar`.
    """
    torch_home = os.environ.get("TORCH_HOME")
    if not torch_home:
        cache = os.environ.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache"))
        torch_home = os.path.join(cache, "torch")
    return Path(os.path.expanduser(torch_home)) / "hub" / "checkpoints" / FAN_WEIGHTS


@functools.lru_cache(maxsize=1)
def _fan_model():
    path = fan_weights_path()
    if not path.is_file():
        raise ModelFileNotFoundError(
            f"2D-FAN weights not found at {path}. Nothing is downloaded: fetch {FAN_URL} on a "
            f"machine with internet and copy it there (or set TORCH_HOME), or use backend='dlib'."
        )
    if importlib.util.find_spec("face_alignment") is None:
        raise MissingDependencyError("face-alignment is not installed: pip install 'occjax[fan]'")
    import face_alignment  # imports torch; only here

    return face_alignment.FaceAlignment(
        face_alignment.LandmarksType.TWO_D,
        device="cpu",
        compile=False,
        face_detector="folder",  # boxes come from dlib: the default detector would download
    )


def _fan_landmarks(image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    model = _fan_model()
    out = model.get_landmarks_from_image(image, detected_faces=[list(box)])
    if not out:
        raise FaceNotFoundError("2D-FAN returned no landmarks for the detected face box")
    # face-alignment uses the same pixel-centre convention as dlib for its output points
    return np.asarray(out[0], dtype=np.float64)[:, :2]


def detect_faces(
    image: np.ndarray,
    backend: str = "dlib",
    upsample: int | None = None,
    max_side: int = 1280,
) -> list[DetectedFace]:
    """All faces of `image` [H, W, 3] uint8 RGB with 68 landmarks each, largest box first.

    `backend`: "dlib" (shape predictor) or "fan" (2D-FAN, needs its weights on disk).
    Boxes always come from dlib's HOG detector. An empty list when no face is found.
    """
    if backend not in ("dlib", "fan"):
        raise ValueError(f"backend must be 'dlib' or 'fan', got {backend!r}")
    image = _as_rgb_uint8(image)
    if backend == "fan":
        _fan_model()  # fail early (missing weights) before running the detector
    predict = _dlib_landmarks if backend == "dlib" else _fan_landmarks
    return [
        DetectedFace(box=box, score=score, landmarks=predict(image, box))
        for box, score in detect_boxes(image, upsample=upsample, max_side=max_side)
    ]


def detect_landmarks(image: np.ndarray, backend: str = "dlib", **kwargs) -> list[np.ndarray]:
    """68-point landmarks ([68, 2] float (x, y) arrays) of every face in `image`, largest first."""
    return [f.landmarks for f in detect_faces(image, backend=backend, **kwargs)]


def partial_face_reason(
    landmarks: np.ndarray,
    image_shape: tuple[int, ...],
    box: tuple[float, float, float, float] | None = None,
    landmark_margin: float = 0.02,
    max_box_outside: float = 0.1,
) -> str | None:
    """Why a face looks cut by the border, or None when it is whole.

    Cut when a landmark lies outside the image by more than `landmark_margin` x face width (the
    predictor then extrapolates), or when more than `max_box_outside` of the detector box area lies
    outside the image. `landmarks` [68, 2]; `image_shape` (H, W, ...).
    """
    h, w = image_shape[:2]
    lm = np.asarray(landmarks, dtype=np.float64)
    width = float(np.ptp(lm[:, 0])) or 1.0
    tol = landmark_margin * width
    lo = lm.min(axis=0)
    hi = lm.max(axis=0)
    over = max(-lo[0] - 0.5, -lo[1] - 0.5, hi[0] - (w - 0.5), hi[1] - (h - 0.5))
    if over > tol:
        return f"landmarks reach {over:.0f} px beyond the photo border (face width {width:.0f} px)"
    if box is not None:
        l, t, r, b = box
        area = max(r - l, 1e-9) * max(b - t, 1e-9)
        inside = max(min(r, w) - max(l, 0), 0) * max(min(b, h) - max(t, 0), 0)
        outside = 1.0 - inside / area
        if outside > max_box_outside:
            return f"{outside:.0%} of the face box lies outside the photo"
    return None
