"""Faces in: offline 68-point landmarks (dlib, optional 2D-FAN), FFHQ alignment and paste-back.

Importing this package needs neither dlib nor torch: dlib is imported when landmarks are first
detected (`pip install 'occjax[faces]'`), torch only inside the optional 2D-FAN backend.
"""

from occjax.faces.align import (
    AlignedFace,
    align_face,
    apply_matrix,
    ffhq_anchors,
    ffhq_quad,
    load_rgb,
    paste_back,
    quad_matrix,
    render_quad,
)
from occjax.faces.landmarks import (
    DetectedFace,
    FaceError,
    FaceNotFoundError,
    MissingDependencyError,
    ModelFileNotFoundError,
    PartialFaceError,
    detect_faces,
    detect_landmarks,
    dlib_model_path,
    fan_weights_path,
    partial_face_reason,
)

__all__ = [
    "AlignedFace",
    "DetectedFace",
    "FaceError",
    "FaceNotFoundError",
    "MissingDependencyError",
    "ModelFileNotFoundError",
    "PartialFaceError",
    "align_face",
    "apply_matrix",
    "detect_faces",
    "detect_landmarks",
    "dlib_model_path",
    "fan_weights_path",
    "ffhq_anchors",
    "ffhq_quad",
    "load_rgb",
    "paste_back",
    "partial_face_reason",
    "quad_matrix",
    "render_quad",
]
