"""Occlusion synthesis: the paper's percentage measure, size bands, occluder sources, regions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import need
from PIL import Image

from occjax.occlusion import (
    REGIONS,
    SIZE_BANDS,
    SIZES,
    Occluder,
    SynthConfig,
    covered_regions,
    hand_cutout,
    load_mask_textures,
    load_occluder,
    load_occluder_folder,
    occlude,
    occluded_percentage,
    region_masks,
    size_category,
    starter_occluders,
)
from occjax.occlusion.regions import convex_hull

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
BOX_FRACTION = (170 / 256) ** 2 * 100  # the box's share of the image, percent


def shared(*parts: str) -> Path:
    path = DATA.joinpath(*parts)
    return need(path)


@pytest.fixture(scope="module")
def face() -> tuple[np.ndarray, np.ndarray]:
    """An FFHQ-aligned 256 px face and its [68, 2] landmarks."""
    pytest.importorskip("dlib", reason="dlib missing: pip install 'occjax[faces]'")
    from occjax.faces import detect_landmarks, load_rgb

    image = load_rgb(shared("ffhq_examples", "000001.png"))
    return image, detect_landmarks(image)[0]


@pytest.fixture(scope="module")
def real_hands() -> list[Occluder]:
    root = shared("lfw_hand_samples")
    from occjax.occlusion import paper_dataset_cutouts

    return paper_dataset_cutouts(root)


def test_occluded_percentage_box_definition():
    for n in (256, 1024):
        k = n // 256
        box = np.zeros((n, n), bool)
        box[51 * k : 221 * k, 51 * k : 221 * k] = True
        assert occluded_percentage(box) == pytest.approx(100.0)
        assert occluded_percentage(box, "image") == pytest.approx(BOX_FRACTION)
    row = np.zeros((256, 256), np.uint8)
    row[50] = 255  # just outside
    assert occluded_percentage(row) == 0.0
    row[220] = 255  # last row inside
    assert occluded_percentage(row) == pytest.approx(100 / 170)
    row[221] = 255
    assert occluded_percentage(row) == pytest.approx(100 / 170)
    assert occluded_percentage(row, "image") == pytest.approx(3 * 100 / 256)  # three rows
    ints = np.full((256, 256), 127, np.uint8)
    assert occluded_percentage(ints) == 0 and occluded_percentage(ints + 1) == 100
    floats = np.full((128, 128), 0.5, np.float32)
    assert occluded_percentage(floats) == 0 and occluded_percentage(floats + 0.01) == 100
    with pytest.raises(ValueError):
        occluded_percentage(ints, "face")


def test_size_bands():
    assert SIZES == ("small", "medium", "large")
    lo_med, hi_med = SIZE_BANDS["medium"]
    assert lo_med < 13 < hi_med  # the paper's medium average
    for size, (lo, hi) in SIZE_BANDS.items():
        assert size_category(lo) == size and size_category((lo + hi) / 2) == size
    assert size_category(SIZE_BANDS["small"][0] - 0.01) is None
    assert size_category(SIZE_BANDS["large"][1]) == "large"
    assert size_category(SIZE_BANDS["large"][1] + 0.01) is None


def test_occlusions_land_in_their_bands(face, real_hands):
    image, lm = face
    occluders = starter_occluders(0, hands=2)[:3] + real_hands[:1]
    rng = np.random.default_rng(0)
    for occ in occluders:
        for size in SIZES:
            out = occlude(image, lm, occ, rng, size)
            lo, hi = SIZE_BANDS[size]
            pct = occluded_percentage(out.mask)
            assert lo <= pct <= hi and out.meta.percent_box == pct
            assert out.meta.percent_image == occluded_percentage(out.mask, "image")
            assert set(np.unique(out.mask)) <= {0, 255} and out.mask.dtype == np.uint8
            diff = np.abs(out.image.astype(int) - image).max(axis=-1)
            # outside the mask at most mask_threshold of the occluder shows through
            assert diff[out.mask == 0].max() <= 255 * SynthConfig().mask_threshold + 1
            assert (diff[out.mask == 255] > 0).mean() > 0.5
            assert out.meta.occluder == occ.name and out.meta.size == size


def test_medium_average_near_paper(face):
    image, lm = face
    rng = np.random.default_rng(1)
    pool = starter_occluders(1)
    pcts = [
        occlude(image, lm, pool[i % len(pool)], rng, "medium").meta.percent_box for i in range(20)
    ]
    assert 10 <= np.mean(pcts) <= 17  # the paper: about 13 %


def test_seeded_determinism(face):
    image, lm = face
    occ = starter_occluders(0, hands=1)[0]
    a = occlude(image, lm, occ, np.random.default_rng(7), "medium")
    b = occlude(image, lm, occ, np.random.default_rng(7), "medium")
    c = occlude(image, lm, occ, np.random.default_rng(8), "medium")
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert a.meta == b.meta and a.meta != c.meta
    s0, s1 = starter_occluders(3), starter_occluders(3)
    assert all(np.array_equal(x.rgba, y.rgba) for x, y in zip(s0, s1))


def test_surgical_mask_covers_nose_and_mouth(face):
    image, lm = face
    masks = load_mask_textures(shared("occluders"))
    assert {m.kind for m in masks} == {"mask"} and len(masks) == 4
    out = occlude(image, lm, masks[0], np.random.default_rng(0), "large")
    covered = covered_regions(out.mask, lm)
    assert {"nose", "mouth"} <= set(covered)
    assert not {"left_eye", "right_eye", "left_brow", "right_brow"} & set(covered)


def test_occluder_sources(tmp_path, real_hands):
    starter = starter_occluders(0)
    assert {o.kind for o in starter} == {"hand", "object"}
    for o in starter:
        alpha = o.rgba[..., 3]
        assert alpha.max() == 255 and alpha.min() == 0 and (alpha > 0).mean() > 0.2
    for o in starter[:3]:
        Image.fromarray(o.rgba).save(tmp_path / f"{o.name}.png")
    loaded = load_occluder_folder(tmp_path)
    assert [o.name for o in loaded] == sorted(o.name for o in starter[:3])
    assert all(o.kind == "hand" for o in loaded)  # "hand" in the file names
    by_name = {o.name: o for o in starter}
    for o in loaded:
        assert np.array_equal(o.rgba[..., 3] > 0, by_name[o.name].rgba[..., 3] > 0)
    Image.new("RGB", (8, 8)).save(tmp_path / "flat.png")
    with pytest.raises(ValueError, match="no alpha"):
        load_occluder(tmp_path / "flat.png")
    # real hand cut-outs: every 255-pixel of the mask, with the photo's colours
    person = shared("lfw_hand_samples", "Al_Gore")
    name = "Al_Gore_0008_01_medium.png"
    photo = np.asarray(Image.open(person / "occluded_img" / name).convert("RGB"))
    mask = np.asarray(Image.open(person / "occlusion_mask" / name).convert("L"))
    hand = hand_cutout(photo, mask)
    assert (hand.rgba[..., 3] == 255).sum() == (mask == 255).sum()
    ys, xs = np.nonzero(mask == 255)
    y0, x0 = ys.min() - 2, xs.min() - 2
    hy, hx = np.nonzero(hand.rgba[..., 3])
    assert np.array_equal(hand.rgba[hy, hx, :3], photo[hy + y0, hx + x0])
    assert len(real_hands) == 3 and all(o.kind == "hand" for o in real_hands)


def test_regions(face):
    image, lm = face
    masks = region_masks(lm, image.shape[:2])
    assert set(masks) == set(REGIONS)
    for name in REGIONS:
        assert masks[name].any()
        if name != "face":  # every region lies (mostly) in the face
            assert (masks[name] & masks["face"]).mean() >= 0.9 * masks[name].mean()
    assert not (masks["left_eye"] & masks["right_eye"]).any()
    assert masks["left_eye"].nonzero()[1].mean() < masks["right_eye"].nonzero()[1].mean()
    assert masks["nose"].nonzero()[0].mean() < masks["mouth"].nonzero()[0].mean()
    assert covered_regions(masks["mouth"], lm) == ["mouth"]
    both_eyes = masks["left_eye"] | masks["right_eye"]
    assert covered_regions(both_eyes, lm) == ["left_eye", "right_eye"]
    square = np.array([[0, 0], [2, 0], [2, 2], [0, 2], [1, 1]])
    assert sorted(map(tuple, convex_hull(square))) == [(0, 0), (0, 2), (2, 0), (2, 2)]
