"""Landmark detection for evaluation: a thin adapter over `occjax.faces.landmarks`.

`detect_largest(image, backend)` returns the 68 (x, y) landmarks [68, 2] of the largest face, or
None when no face is found. Backends (both through `occjax.faces.landmarks.detect_landmarks`, face
boxes from dlib's HOG detector):
  "dlib"  dlib's 68-point shape predictor (offline; the file ships in `face-recognition-models`).
  "fan"   2D-FAN (face-alignment + torch, the paper's landmark network); needs its weights file
          (`occjax.faces.landmarks.fan_weights_path()`), checked up front by `check_backend`.
A backend that cannot run raises `LandmarkBackendError` with the reason and the fix;
`missing_dependency` tells, without importing anything, whether a package it needs is missing (the
report then skips the landmark metrics instead of failing).
"""

from __future__ import annotations

import os

import numpy as np

from occjax.deps import available, missing_message

BACKENDS = ("dlib", "fan")


class LandmarkBackendError(RuntimeError):
    """The requested landmark backend cannot run here (missing package or weights)."""


def _faces():
    from occjax.faces import landmarks

    return landmarks


def missing_dependency(backend: str) -> str | None:
    """Why `backend` cannot run for want of a package (one line with the fix), or None."""
    if backend not in BACKENDS:
        raise ValueError(f"landmark backend must be one of {BACKENDS}, got {backend!r}")
    what = f"the {backend!r} landmark backend"
    if not available("dlib"):
        return missing_message("dlib", "faces", what, "face boxes")
    own_model = os.environ.get("OCCJAX_DLIB_LANDMARKS")  # see occjax.faces.landmarks
    if backend == "dlib" and not own_model and not available("face_recognition_models"):
        return missing_message("face_recognition_models", "faces", what, "its model file")
    if backend == "fan" and not available("face_alignment"):
        return missing_message("face_alignment", "fan", what, "2D-FAN")
    return None


def check_backend(backend: str) -> None:
    """Raise ValueError / LandmarkBackendError unless `backend` can run here (cheap, no model load)."""
    reason = missing_dependency(backend)
    if backend == "fan" and available("dlib"):  # the weights file first: it is the harder fix
        mod = _faces()
        path = mod.fan_weights_path()
        if not path.is_file():
            raise LandmarkBackendError(
                f"the 'fan' backend (2D-FAN) needs its weights file at {path} ({mod.FAN_URL}; "
                "nothing is downloaded), or use the 'dlib' backend"
            )
    if reason:
        raise LandmarkBackendError(reason)


def detect_all(image: np.ndarray, backend: str = "dlib") -> list[np.ndarray]:
    """Landmarks [68, 2] (x, y) of every face in a uint8 RGB [H, W, 3] image, largest face first."""
    check_backend(backend)
    mod = _faces()
    image = np.ascontiguousarray(image, np.uint8)
    try:
        faces = mod.detect_landmarks(image, backend=backend)
    except mod.FaceNotFoundError:
        return []
    except (ImportError, OSError) as e:
        raise LandmarkBackendError(f"landmark backend {backend!r} cannot run: {e}") from e
    return [np.asarray(lm, np.float64) for lm in faces]


def detect_largest(image: np.ndarray, backend: str = "dlib") -> np.ndarray | None:
    """Landmarks [68, 2] of the largest face, or None if no face is detected."""
    faces = detect_all(image, backend)
    return faces[0] if faces else None
