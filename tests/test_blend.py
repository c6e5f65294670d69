"""occjax.blend: cut-and-paste and the gradient-domain (Poisson) blend of a restoration."""

import numpy as np
import pytest

from occjax.blend import blend, harmonic_fill


def _scene(b=2, h=48):
    yy, xx = np.mgrid[0:h, 0:h] / h
    photo = np.stack([np.sin(3 * xx) + yy, xx * yy, np.cos(2 * yy)]) * 0.4
    photos = np.stack([photo * (1 + 0.1 * i) for i in range(b)]).astype(np.float32)
    masks = np.zeros((b, 1, h, h), np.float32)
    masks[0, :, h // 5 : h // 2 + 5, h // 4 : h - 13] = 1
    masks[1:, :, 5 : h // 2, h // 3 : h - 8] = 1
    return photos, masks, xx, yy


def test_poisson_removes_a_smooth_colour_offset_exactly():
    """A restoration that is the photo plus a linear (hence harmonic) colour ramp comes back as
    the photo inside the mask; cut-and-paste keeps the ramp."""
    photos, masks, xx, yy = _scene()
    ramp = (0.1 + 0.2 * xx - 0.15 * yy).astype(np.float32)
    restored = photos + ramp
    out = blend(restored, photos, masks, "poisson")
    assert np.abs(out - photos).max() < 1e-4
    pasted = blend(restored, photos, masks, "alpha")
    inside = np.broadcast_to(masks > 0.5, photos.shape)
    assert np.abs(pasted - photos)[inside].min() > 0.01
    np.testing.assert_array_equal(pasted[~inside], photos[~inside])
    np.testing.assert_array_equal(out[~inside], photos[~inside])


def test_poisson_keeps_the_restorations_detail():
    """Detail the photo lacks (a checker pattern drawn only by the restoration) survives inside."""
    photos, masks, _, _ = _scene()
    rng = np.random.default_rng(0)
    detail = (rng.uniform(-1, 1, photos.shape) * 0.2).astype(np.float32)
    restored = photos + detail
    out = blend(restored, photos, masks, "poisson")
    inside = np.broadcast_to(masks > 0.5, photos.shape)
    # the harmonic correction is smooth: the pixel-to-pixel detail is kept
    err = (out - restored)[inside]
    assert np.std(err) < 0.5 * np.std(detail[inside])


def test_harmonic_fill_matches_a_jacobi_solution():
    photos, masks, _, _ = _scene(b=2, h=24)
    rng = np.random.default_rng(1)
    vals = rng.normal(size=photos.shape).astype(np.float32)
    got = np.asarray(harmonic_fill(vals, masks))
    m = np.broadcast_to(masks > 0.5, vals.shape)
    x = np.where(m, 0.0, vals).astype(np.float64)
    for _ in range(4000):
        p = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
        avg = (p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:]) / 4
        x = np.where(m, avg, x)
    np.testing.assert_allclose(got, x, atol=1e-4)


def test_blend_refuses_bad_input():
    photos, masks, _, _ = _scene()
    with pytest.raises(ValueError, match="mode"):
        blend(photos, photos, masks, "feather")
    with pytest.raises(ValueError, match="masks"):
        blend(photos, photos, masks[:, 0])
    with pytest.raises(ValueError, match="match"):
        blend(photos[:1], photos, masks)
