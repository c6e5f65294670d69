"""Landmarks, FFHQ alignment and paste-back on the shared photos (../shared/data).

Alignment is checked against properties of the FFHQ recipe, measured on landmarks re-detected in
the aligned image (independent of our transform): the crop centre eye_avg + 0.1 eye_to_mouth lies
at the image centre, the half-side max(2 |eye_to_eye|, 1.8 |eye_to_mouth|) is half the output, the
crop axis is horizontal; and against the eye/mouth positions in real FFHQ-aligned faces (mean over
ffhq_examples, measured with the same detector at test time).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import need
from PIL import Image

from occjax.faces import (
    FaceNotFoundError,
    PartialFaceError,
    align_face,
    detect_landmarks,
    ffhq_anchors,
    ffhq_quad,
    load_rgb,
    paste_back,
    quad_matrix,
    render_quad,
)

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
PHOTOS = ["obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg", "group_t1.jpg"]
S = 256
CENTRE_TOL_PX = 2.0  # crop centre, re-detected, at 256 px
HALF_TOL = 0.03  # relative error of the crop half-side
ANGLE_TOL_DEG = 1.5
FFHQ_TOL_PX = 8.0  # eyes / mouth vs the FFHQ examples' mean (their own spread is ~6-9 px std)


def shared(*parts: str) -> Path:
    path = DATA.joinpath(*parts)
    return need(path)


@pytest.fixture(scope="module", autouse=True)
def _need_dlib():
    pytest.importorskip("dlib", reason="dlib missing: pip install 'occjax[faces]'")


def anchors3(lm: np.ndarray) -> np.ndarray:
    """[3, 2]: image-left eye, image-right eye, mouth midpoint."""
    a = ffhq_anchors(lm)
    return np.stack([a["eye_left"], a["eye_right"], a["mouth"]])


def recipe_errors(lm: np.ndarray, size: int) -> tuple[float, float, float]:
    """(centre error px, relative half-side error, axis angle deg) of landmarks in an aligned image."""
    a = ffhq_anchors(lm)
    e2e, e2m = a["eye_right"] - a["eye_left"], a["mouth"] - a["eye_avg"]
    centre = a["eye_avg"] + 0.1 * e2m
    half = max(2 * np.hypot(*e2e), 1.8 * np.hypot(*e2m))
    axis = e2e - np.flipud(e2m) * [-1, 1]
    return (
        float(np.hypot(*(centre - (size - 1) / 2))),
        abs(half / (size / 2) - 1),
        abs(float(np.degrees(np.arctan2(axis[1], axis[0])))),
    )


@pytest.fixture(scope="module")
def ffhq_mean() -> np.ndarray:
    """[3, 2] mean eye / mouth positions over the FFHQ-aligned examples (256 px)."""
    files = sorted(shared("ffhq_examples").glob("*.png"))
    found = [detect_landmarks(load_rgb(f)) for f in files]
    pts = [anchors3(f[0]) for f in found if f]
    assert len(pts) >= len(files) - 2
    return np.mean(pts, axis=0)


@pytest.fixture(scope="module")
def aligned() -> dict[str, object]:
    return {name: align_face(shared("unaligned", name), output_size=S) for name in PHOTOS}


@pytest.mark.parametrize("name", PHOTOS)
def test_alignment_matches_ffhq_recipe_and_positions(name, aligned, ffhq_mean):
    face = aligned[name]
    assert face.image.shape == (S, S, 3) and face.image.dtype == np.uint8
    found = detect_landmarks(face.image)
    assert found, "no face re-detected in the aligned image"
    lm = found[0]
    centre, half, angle = recipe_errors(lm, S)
    assert centre <= CENTRE_TOL_PX and half <= HALF_TOL and angle <= ANGLE_TOL_DEG
    # the forward matrix predicts where the re-detected points are
    pred = anchors3(face.landmarks_aligned)
    assert np.hypot(*(anchors3(lm) - pred).T).max() <= 2.5
    err = np.hypot(*(anchors3(lm) - ffhq_mean).T)
    assert err.max() <= FFHQ_TOL_PX, f"eyes/mouth off the FFHQ positions by {err} px"


def test_group_photo_faces_largest_first():
    path = shared("unaligned", "group_t1.jpg")
    image = load_rgb(path)
    faces = detect_landmarks(image)
    assert len(faces) == 6
    widths = [np.ptp(lm[:, 0]) for lm in faces]
    assert widths[0] == pytest.approx(max(widths), rel=0.15)
    largest = align_face(image, face_index="largest")
    assert largest.num_faces == 6 and largest.face_index == 0
    other = align_face(image, face_index=3)
    assert np.abs(other.quad - largest.quad).max() > 50  # another person
    with pytest.raises(FaceNotFoundError, match="6 face"):
        align_face(image, face_index=6)


def test_partial_and_missing_faces_raise_clear_errors():
    partial = load_rgb(shared("unaligned", "obama_partial_face.jpg"))
    with pytest.raises(PartialFaceError, match="cut by the photo border"):
        align_face(partial)
    assert align_face(partial, allow_partial=True).image.shape == (S, S, 3)
    texture = load_rgb(shared("occluders", "mask_blue.jpg"))
    for image in (texture, np.full((200, 300, 3), 128, np.uint8)):
        with pytest.raises(FaceNotFoundError, match="no face found"):
            align_face(image)


@pytest.mark.parametrize("person", ["Abdullah_Gul", "Al_Gore"])
def test_realigning_aligned_photos_barely_moves_them(person):
    for path in sorted(shared("lfw_hand_samples", person, "reference_imgs").glob("*.png")):
        image = load_rgb(path)
        n = image.shape[0]
        quad = align_face(image, output_size=64).quad  # in the 1024 px photo
        full = np.array([[0, 0], [0, n], [n, n], [n, 0]]) - 0.5
        shift = np.hypot(*(quad.mean(axis=0) - full.mean(axis=0)))
        scale = np.hypot(*(quad[3] - quad[0])) / n
        angle = np.degrees(np.arctan2(*(quad[3] - quad[0])[::-1]))
        assert shift <= 0.01 * n and abs(scale - 1) <= 0.05 and abs(angle) <= 2.0, path.name


def test_render_quad_follows_the_forward_matrix():
    """Dots drawn in a synthetic photo land where the matrix says (to 0.1 px), padding included."""
    h, w = 300, 400
    lm = np.tile([200.0, 140.0], (68, 1))
    lm[36:42], lm[42:48] = [170.0, 120.0], [236.0, 128.0]  # tilted eyes
    lm[48], lm[54] = [172.0, 190.0], [224.0, 196.0]
    dots = np.array([[150.0, 100.0], [260.0, 200.0], [205.0, 60.0]])
    yy, xx = np.mgrid[:h, :w]
    image = np.zeros((h, w), np.float64)
    for x, y in dots:
        image += 255 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 3.0**2))
    rgb = np.repeat(np.uint8(np.clip(image, 0, 255))[..., None], 3, axis=-1)
    face = align_face(rgb, output_size=S, landmarks=lm)
    np.testing.assert_allclose(face.to_original(face.to_aligned(dots)), dots, atol=1e-9)
    corners = np.array([[0, 0], [0, S], [S, S], [S, 0]]) - 0.5
    np.testing.assert_allclose(face.to_aligned(ffhq_quad(lm)), corners, atol=1e-9)
    np.testing.assert_allclose(face.matrix, quad_matrix(face.quad, S))
    out = face.image[..., 0].astype(np.float64)
    for u, v in face.to_aligned(dots):
        r = 12
        ys, xs = np.mgrid[int(v) - r : int(v) + r + 1, int(u) - r : int(u) + r + 1]
        wts = out[ys, xs]
        got = np.array([(xs * wts).sum(), (ys * wts).sum()]) / wts.sum()
        assert np.hypot(*(got - [u, v])) <= 0.1
    # bigger output: the same dot positions, scaled in continuous coordinates
    big = render_quad(rgb, face.quad, 2 * S, supersample=2)
    assert big.shape == (2 * S, 2 * S, 3)


def test_paste_back_roundtrip_and_mask(aligned):
    original = load_rgb(shared("unaligned", "obama.jpg"))
    face = aligned["obama.jpg"]
    same = paste_back(face.image, original, face)
    assert same.shape == original.shape
    from occjax.occlusion.regions import polygon_mask

    c = face.quad.mean(axis=0)
    inside = polygon_mask(c + (face.quad - c) * 0.8, original.shape[:2])
    outside = ~polygon_mask(c + (face.quad - c) * 1.02, original.shape[:2])
    assert np.array_equal(same[outside], original[outside])
    assert np.abs(same[inside].astype(float) - original[inside]).mean() < 8  # resampling only
    restored = face.image.copy()
    restored[100:140, 100:140] = (255, 0, 0)
    mask = np.zeros((S, S), np.uint8)
    mask[100:140, 100:140] = 255
    out = paste_back(restored, original, face, mask=mask, feather=2.0)
    x, y = np.rint(face.to_original(np.array([[119.5, 119.5]]))[0]).astype(int)
    assert np.abs(out[y, x].astype(int) - (255, 0, 0)).max() <= 2
    x, y = np.rint(face.to_original(np.array([[40.0, 200.0]]))[0]).astype(int)
    assert np.array_equal(out[y, x], original[y, x])
    # a restored image at another resolution maps onto the same frame
    big = np.asarray(Image.fromarray(restored).resize((2 * S, 2 * S), Image.Resampling.NEAREST))
    big_mask = np.kron(mask, np.ones((2, 2), np.uint8))
    out2 = paste_back(big, original, face, mask=big_mask, feather=4.0)
    assert np.abs(out2.astype(int) - out).mean() < 0.5
    with pytest.raises(ValueError, match="aligned from"):
        paste_back(face.image, original[:-1], face)


def test_importable_without_dlib_and_torch(tmp_path):
    """No dlib: a clear install hint; FAN without weights: where to put them; torch never imported."""
    code = f"""
import sys
sys.modules["dlib"] = None
import numpy as np
import occjax.faces, occjax.occlusion, occjax.occlusion.dataset
from occjax.faces import MissingDependencyError, ModelFileNotFoundError, detect_landmarks
from occjax.faces import dlib_model_path
assert dlib_model_path().name == "shape_predictor_68_face_landmarks.dat"
assert "face_recognition_models" not in sys.modules
try:
    detect_landmarks(np.zeros((32, 32, 3), np.uint8), backend="fan")
except ModelFileNotFoundError as e:
    assert {str(tmp_path)!r} in str(e) and "2DFAN4" in str(e), e
else:
    raise AssertionError("no error without FAN weights")
try:
    detect_landmarks(np.zeros((32, 32, 3), np.uint8))
except MissingDependencyError as e:
    assert "pip install 'occjax[faces]'" in str(e), e
else:
    raise AssertionError("no error without dlib")
assert "torch" not in sys.modules and "face_alignment" not in sys.modules
print("ok")
"""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TORCH_HOME": str(tmp_path)}
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr
