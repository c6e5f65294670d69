"""Restoration without a hand-made mask: estimated masks against known ones, reference screening,
the one-command path from a raw photo, and a missing optional dependency stopping the command."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import DATA, REPO, need

import occjax
from occjax.masks import clean_masks, drop_small, iou


@pytest.fixture(scope="module")
def faces64():
    return occjax.load_models(bundle="faces64")


@pytest.fixture(scope="module")
def cases(faces64):
    """Seeded synthetic cases (validation split): 2 people, medium and large real hands."""
    need(DATA / "lfw_hand_samples")
    from occjax.eval.synthetic import SPLIT_SEED, SyntheticConfig, make_cases

    cfg = SyntheticConfig(people=2, refs=3, sizes=("medium", "large"), split="validation")
    return make_cases(faces64, cfg, np.random.default_rng(SPLIT_SEED["validation"] + 7))


def test_morphology_and_components():
    m = np.zeros((1, 14, 14), np.float32)
    m[0, 2:10, 2:10] = 1  # a block
    m[0, 12, 12] = 1  # a speck
    m[0, 5, 5] = 0  # a hole
    out = np.asarray(clean_masks(jnp.asarray(m), 1, 1))
    assert out[0, 12, 12] == 0 and out[0, 2:10, 2:10].all() and out.sum() == 64
    b = np.zeros((1, 6, 6), bool)
    b[0, :2, :2] = b[0, 4:, 4:] = True
    b[0, 5, 0] = True
    kept = drop_small(b, 3)
    assert kept[0, :2, :2].all() and kept[0, 4:, 4:].all() and not kept[0, 5, 0]
    assert list(iou(np.ones((2, 4)), np.array([[1, 1, 0, 0], [0, 0, 0, 0]]))) == [0.5, 0.0]
    # the restoration margin: the cleaned-up block grown margin_px into pixels of raised residual
    from occjax.masks import MaskConfig, _clean, restore_masks

    raw = np.zeros((1, 24, 24), bool)
    raw[0, 8:14, 8:14] = True
    cfg = MaskConfig(min_area=0.01, margin_px=3, margin_threshold=0.1)
    est = _clean(raw, cfg, None)
    assert est.sum() == 36
    residual = np.zeros((1, 24, 24), np.float32)
    residual[0, 4:14, 8:20] = 0.2  # raised above the block and to its right
    residual[0, 20:, :] = 0.5  # raised, but out of reach
    grown = restore_masks(est, residual, cfg)
    want = est[0] | (residual[0] > 0.1)
    want[:5, :] = want[:, 17:] = want[14:, :] = False  # 3 px reach: rows 5.., columns ..16
    assert np.array_equal(grown[0], want)
    # threshold 0: a plain dilation by margin_px (a square of side 6 + 2 * 3)
    plain = restore_masks(est, residual, dataclasses.replace(cfg, margin_threshold=0.0))
    assert plain[0, 5:17, 5:17].all() and plain.sum() == 144


def test_default_steps_are_three_quarters_of_the_models(faces64, monkeypatch):
    """MaskConfig.steps=None: 75 of faces64's 100 steps in round 1, the refit 40 from its codes;
    an int is taken as is."""
    from types import SimpleNamespace

    from occjax import api

    seen = []

    starts = []

    def fake_invert(models, targets, masks=None, refs=None, config=None, *a, **k):
        seen.append(config.steps)  # no inversion: the fit is the photo itself
        starts.append(k.get("init_codes"))
        codes = np.full((len(targets), *models.code_shape), len(seen), np.float32)
        return SimpleNamespace(images=np.asarray(targets), codes=codes)

    monkeypatch.setattr(api, "invert", fake_invert)
    photo = np.zeros((1, 3, 64, 64), np.float32)
    assert faces64.preset("baseline").steps == 100
    occjax.estimate_mask(faces64, photo)
    # the refit (refit_steps, 40) starts where the first round ended
    assert seen == [75, 40] and starts[0] is None and np.all(starts[1] == 1)
    occjax.estimate_mask(faces64, photo, steps=40, rounds=1)
    assert seen[2:] == [40]
    occjax.estimate_mask(faces64, photo, steps=30, refit_steps=10)
    assert seen[3:] == [30, 10] and starts[3] is None and np.all(starts[4] == 4)
    # refit_steps=None: a fresh start with the first round's steps (the earlier behaviour)
    occjax.estimate_mask(faces64, photo, refit_steps=None)
    assert seen[5:] == [75, 75] and starts[5] is None and starts[6] is None


@pytest.mark.slow
def test_estimated_masks_find_the_hands_and_leave_clean_faces_alone(faces64, cases):
    """IoU >= 0.6 on medium and large hands; at most 2 % of the pixels of unoccluded photos."""
    cs, refs, _ = cases
    targets = np.stack([c.target for c in cs] + [refs[p][0] for p in sorted(refs)])
    ref_sets = [refs[c.person][1:] for c in cs] + [refs[p][1:] for p in sorted(refs)]
    est = occjax.estimate_mask(faces64, targets, ref_sets, return_details=True)
    masks = est.masks
    assert masks.shape == (len(targets), 1, 64, 64) and set(np.unique(masks)) <= {0.0, 1.0}
    true = np.stack([c.mask for c in cs])
    assert np.mean(iou(masks[: len(cs)], true)) >= 0.6
    assert masks[len(cs) :].mean() <= 0.02
    # the masks to restore with hold the estimate and a margin around it
    assert np.all(est.restore[masks > 0] == 1) and est.restore.sum() > masks.sum()


@pytest.fixture(scope="module")
def screened(faces64, cases):
    """Two problems screened in one batch: two good photos of a person with a non-face and a heavily
    corrupted photo; three photos of one person with one of another."""
    _, refs, _ = cases
    good = refs[0][:2]
    rng = np.random.default_rng(0)
    noise = rng.uniform(-1, 1, (1, 3, 64, 64)).astype(np.float32)  # not a face
    corrupted = np.clip(good[:1] + rng.normal(0, 0.6, good[:1].shape), -1, 1).astype(np.float32)
    mixed = np.concatenate([refs[0][:3], refs[1][:1]])
    return occjax.screen_references(faces64, [np.concatenate([good, noise, corrupted]), mixed])


@pytest.mark.slow
def test_screening_drops_bad_references_and_keeps_good_ones(screened):
    s = screened[0]
    assert list(s.kept) == [True, True, False, False], s.record()
    assert s.psnr[:2].min() > s.psnr[2:].max()
    assert "dropped" in s.reasons[2] and s.kept_codes.shape == (2, 1, 100)
    rec = s.record()
    assert rec[2]["kept"] is False and rec[0]["reason"] == ""
    assert all(screened[1].kept)  # four real faces: all usable


@pytest.mark.slow
def test_another_persons_reference_is_flagged(screened):
    pytest.importorskip("dlib")
    s = screened[1]
    assert s.other_person[3] and not s.other_person[:3].any(), s.record()


@pytest.mark.slow
def test_one_command_from_raw_photos(tmp_path):
    """--align --mask auto --paste-back on an unaligned photo with unaligned references."""
    pytest.importorskip("dlib")
    photo = need(DATA / "unaligned" / "obama.jpg")
    refs = [DATA / "unaligned" / "obama2.jpg", DATA / "unaligned" / "obama3.jpg"]
    out = tmp_path / "run"
    cmd = [sys.executable, str(REPO / "scripts/invert.py"), "--target", str(photo)]
    cmd += ["--refs", *map(str, refs), "--align", "--mask", "auto", "--paste-back"]
    cmd += ["--approach", "prior", "--steps", "10", "--reference-steps", "10"]
    cmd += ["--out", str(out), "--no-progress"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    (rec,) = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert rec["status"] == "ok" and rec["mask_source"] == "auto"
    assert (out / rec["mask"]).is_file() and len(rec["screening"]) == 2
    from PIL import Image

    assert Image.open(out / rec["pasted"]).size == Image.open(photo).size
    assert (out / rec["side_by_side"]).is_file()
    info = json.loads((out / "run.json").read_text())
    assert "min_ref_quality" in info


def test_missing_dependency_stops_the_command_with_one_line(tmp_path):
    """--align without dlib: one clear line, exit 2, no per-photo failure records."""
    code = (
        "import sys; sys.modules['dlib'] = None; "
        "from occjax.cli import InvertCLI, main; from pathlib import Path; "
        f"sys.exit(main(InvertCLI(target=Path({str(DATA / 'unaligned' / 'obama.jpg')!r}), "
        f"mask='auto', align=True, out=Path({str(tmp_path)!r}), progress=False)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "occjax[faces]" in done.stderr
    assert not (tmp_path / "results.jsonl").exists()
