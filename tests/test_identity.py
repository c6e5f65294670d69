"""Identity distance (dlib face recognition) on real photos: the same person is close, others far,
faceless images NaN, 64 px faces still embed."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from occjax.deps import MissingDependency, available

pytest.importorskip("dlib", reason="dlib missing: pip install 'occjax[faces]'")
if not available("face_recognition_models"):
    pytest.skip("face-recognition-models missing: occjax[faces]", allow_module_level=True)

from conftest import need  # noqa: E402

from occjax.eval import identity  # noqa: E402
from occjax.eval.identity import SAME_PERSON, embedder, identity_distance  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
# ffhq_examples holds three people twice: 000007 / 000009, 000008 / 000010, 000011 / 000012
FFHQ_SAME = (("000007", "000009"), ("000008", "000010"))


def _load(rel: str, size: int | None = None) -> np.ndarray:
    path = DATA / rel
    need(path)
    im = Image.open(path).convert("RGB")
    return np.asarray(im.resize((size, size), Image.LANCZOS) if size else im)


@pytest.fixture(scope="module")
def people() -> dict[str, np.ndarray]:
    """Embeddings of the unaligned photos (250-330 px faces in photos up to 2333 px)."""
    names = ("obama", "obama2", "obama3", "biden")
    e = embedder().embeddings([_load(f"unaligned/{n}.jpg") for n in names])
    assert not e.fallback.any()  # large photos never use the whole-image fallback
    return dict(zip(names, e.vectors))


def test_same_person_is_closer_than_another(people):
    same = [
        identity.distance(people[a], people[b])
        for a, b in (("obama", "obama2"), ("obama", "obama3"), ("obama2", "obama3"))
    ]
    other = [identity.distance(people[o], people["biden"]) for o in ("obama", "obama2", "obama3")]
    assert max(same) < SAME_PERSON < min(other), (same, other)


def test_same_image_is_zero_and_embeddings_are_finite():
    face = _load("ffhq_examples/000002.png")
    assert identity_distance(face, face) < 1e-6
    v = embedder().embed(face[None])
    assert v.shape == (1, 128) and v.dtype == np.float32 and np.isfinite(v).all()


def test_no_face_is_nan_without_crashing():
    rng = np.random.default_rng(0)
    faceless = [
        np.full((64, 64, 3), 128, np.uint8),
        rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),
        np.full((300, 400, 3), 90, np.uint8),
    ]
    e = embedder().embeddings(faceless)
    assert np.isnan(e.vectors).all() and not e.fallback.any()
    assert math.isnan(identity_distance(_load("ffhq_examples/000002.png", 64), faceless[0]))
    with pytest.raises(ValueError, match="uint8"):
        embedder().embed([np.zeros((64, 64, 3), np.float32)])


def test_64px_faces_embed_and_keep_identity():
    """FFHQ-aligned faces at 64 px are detected after the 256 px upsampling; same-person pairs stay
    below 0.6 and different people above."""
    names = sorted({n for pair in FFHQ_SAME for n in pair})
    e = embedder().embeddings([_load(f"ffhq_examples/{n}.png", 64) for n in names])
    assert np.isfinite(e.vectors).all() and not e.fallback.any()
    v = dict(zip(names, e.vectors))
    for a, b in FFHQ_SAME:
        assert identity.distance(v[a], v[b]) < SAME_PERSON, (a, b)
    assert identity.distance(v["000007"], v["000008"]) > SAME_PERSON
    full = embedder().embed([_load(f"ffhq_examples/{n}.png") for n in names])
    assert (identity.distance(e.vectors, full) < 0.35).all()  # 64 px vs 256 px of one photo


def test_tight_64px_crop_uses_the_whole_image_fallback():
    """000006 cropped to its face fills the frame: the detector misses it, the fallback embeds it
    close to the full photo's embedding."""
    full = _load("ffhq_examples/000006.png")
    crop = np.asarray(
        Image.fromarray(full).crop((56, 64, 200, 232)).resize((64, 64), Image.LANCZOS)
    )
    e = embedder().embeddings([crop, full])
    assert e.fallback.tolist() == [True, False]
    assert np.isfinite(e.vectors).all()
    assert identity.distance(e.vectors[0], e.vectors[1]) < SAME_PERSON


def test_upsample_only_small_images():
    im = np.zeros((64, 100, 3), np.uint8)
    up, resized = identity.upsample(im)
    assert resized and up.shape == (256, 400, 3)
    same, resized = identity.upsample(np.zeros((256, 300, 3), np.uint8))
    assert not resized and same.shape == (256, 300, 3)


def test_missing_dlib_is_reported(monkeypatch):
    monkeypatch.setitem(sys.modules, "dlib", None)  # `import dlib` now raises ImportError
    assert "pip install 'occjax[faces]'" in identity.missing_dependency()
    with pytest.raises(MissingDependency, match="identity distance needs dlib"):
        identity.IdentityEmbedder()
