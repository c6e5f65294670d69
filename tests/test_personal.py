"""`personal`: per-problem weight copies tuned with the target's code (occjax.personal).

Properties: a problem's weights depend on its own data only (another problem's data, learning rate
or NaN never move them, bit for bit); a non-finite problem is frozen and flagged; `personalize`
round-trips through a bundle; the API dispatches config="personal". The slow tier restores a real
photo of ../shared/data/real_people better than the frozen model inside the mask.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

import occjax
from occjax.personal import PersonalConfig, personalize, save_bundle, tune

# pixels only (no LPIPS): the properties do not depend on the terms, and it compiles fast
CFG = PersonalConfig(
    steps=2, init_steps=2, reference_steps=2, weight_lr=1e-3, lr=0.05, perceptual_weight=0.0
)


@pytest.fixture(scope="module")
def faces64():
    return occjax.load_models(bundle="faces64")


def _data(models, b=2, r=2, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((b * (r + 1), 100)).astype(np.float32)
    img = np.transpose(np.asarray(models.generate(z)), (0, 2, 3, 1)).reshape(b, r + 1, 64, 64, 3)
    vis = np.ones((b, 64, 64, 1), np.float32)
    vis[:, 30:50, 20:44] = 0
    z = z + 0.5 * rng.standard_normal(z.shape).astype(np.float32)  # pivots off the photos' codes
    return {
        "target": img[:, 0],
        "visible": vis,
        "refs": img[:, 1:],
        "pivots": z.reshape(b, r + 1, 1, 100)[:, 1:],
        "valid": np.ones((b, r), np.float32),
        "pivot": z.reshape(b, r + 1, 1, 100)[:, 0],
    }


def _moved(theta, p0, i):
    return max(float(np.abs(np.asarray(a[i]) - np.asarray(b)).max()) for a, b in zip(jax.tree.leaves(theta), jax.tree.leaves(p0)))  # fmt: skip


def test_problems_are_independent_and_nan_frozen(faces64):
    """Problem 0's tuned weights are bit-identical whatever problem 1 holds (other data, a zero
    learning rate, NaN); problem 1 with NaN data is frozen at the original weights and flagged."""
    p0 = faces64.net("generator").variables["params"]
    data = _data(faces64)
    still = dataclasses.replace(CFG, weight_lr=0.0, lr=0.0)
    s1, losses, _ = tune(faces64, data, [CFG, still])
    assert losses["total"].shape == (2, 2)
    assert _moved(s1.theta, p0, 0) > 0  # problem 0 learnt
    assert _moved(s1.theta, p0, 1) == 0  # problem 1's zero learning rate: untouched
    assert s1.alive.all()
    bad = {k: v.copy() for k, v in data.items()}
    bad["target"][1] = np.nan
    s2, _, _ = tune(faces64, bad, [CFG, CFG])
    assert list(np.asarray(s2.alive)) == [True, False]
    assert _moved(s2.theta, p0, 1) == 0  # frozen at its last finite weights (the originals)
    np.testing.assert_array_equal(np.asarray(s2.z[1]), data["pivot"][1])
    for a, b in zip(jax.tree.leaves(s1.theta), jax.tree.leaves(s2.theta)):
        np.testing.assert_array_equal(np.asarray(a[0]), np.asarray(b[0]))
    np.testing.assert_array_equal(np.asarray(s1.z[0]), np.asarray(s2.z[0]))


def test_tune_layers_and_config_checks(faces64):
    """Only the named layers move; unknown layers and negative rates are refused."""
    p0 = faces64.net("generator").variables["params"]
    cfg = dataclasses.replace(CFG, steps=1, tune=("to_rgb",))
    s, _, _ = tune(faces64, _data(faces64), [cfg, cfg])  # the shapes of the test above
    for name in p0:
        d = max(float(np.abs(np.asarray(a[0]) - np.asarray(b)).max()) for a, b in zip(jax.tree.leaves(s.theta[name]), jax.tree.leaves(p0[name])))  # fmt: skip
        assert (d > 0) == (name == "to_rgb"), name
    with pytest.raises(ValueError, match="no layer"):
        tune(faces64, _data(faces64), [dataclasses.replace(cfg, tune=("nope",))] * 2)
    with pytest.raises(ValueError, match="weight_lr"):
        PersonalConfig(weight_lr=-1.0)


def test_save_bundle_roundtrip(faces64, tmp_path):
    """A Models whose generator was changed (as personalize changes it) -> save_bundle ->
    load_models: the same weights, the same images, the other networks and defaults kept."""
    from occjax.models import Models
    from occjax.networks.build import Network

    g = faces64.net("generator")
    params = jax.tree.map(lambda a: a * 1.01, g.variables["params"])
    tuned = Network(g.family, g.module, {**g.variables, "params": params}, dict(g.info))
    mine = Models({**faces64.nets, "generator": tuned}, None, faces64.defaults, faces64.info)
    back = occjax.load_models(bundle=save_bundle(mine, tmp_path / "me"))
    z = np.random.default_rng(1).standard_normal((2, 1, 100)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(back.synthesis(z)), np.asarray(mine.synthesis(z)))
    assert back.defaults == faces64.defaults and back.has("encoder") and back.has("perceptual")


@pytest.mark.slow
def test_invert_personal_and_personalize_roundtrip(faces64, tmp_path):
    """occjax.invert(config=PersonalConfig) returns one restoration per target; personalize ->
    save_bundle -> load_models gives the same tuned generator, not the original one."""
    d = _data(faces64, b=2, r=2)
    targets = np.transpose(d["target"], (0, 3, 1, 2))
    masks = 1.0 - np.transpose(d["visible"], (0, 3, 1, 2))
    refs = [np.transpose(r, (0, 3, 1, 2)) for r in d["refs"]]
    res = occjax.invert(faces64, targets, masks, refs, config=CFG)
    assert res.images.shape == (2, 3, 64, 64) and np.isfinite(res.images).all()
    assert list(res.n_refs) == [2, 2] and not res.flagged.any()
    mine = personalize(faces64, refs[0], CFG)
    folder = save_bundle(mine, tmp_path / "me")
    back = occjax.load_models(bundle=folder)
    z = np.random.default_rng(1).standard_normal((2, 1, 100)).astype(np.float32)
    a, b = np.asarray(mine.synthesis(z)), np.asarray(back.synthesis(z))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - np.asarray(faces64.synthesis(z))).max() > 1e-4
    assert back.defaults == faces64.defaults and back.has("encoder") and back.has("perceptual")


@pytest.mark.slow
def test_real_photo_restored_better_than_frozen(faces64):
    """A real photo (obama, real_people) with a real hand cut-out, the person's other photos as
    references: `personal` beats the frozen model's `baseline` inside the mask (PSNR)."""
    import sys

    from conftest import DATA, REPO, need

    need(DATA / "real_people" / "obama")
    sys.path.insert(0, str(REPO / "benchmarks"))
    import real_photos as rp

    people = {"obama": rp.load_people("test")["obama"]}
    case = rp.make_cases(people, 64, ("medium",))[0]
    t, m = case["target"][None], case["mask"][None]
    frozen = occjax.invert(faces64, t, m, None, config="baseline")
    mine = occjax.invert(faces64, t, m, [case["refs"]], config="personal")
    clean = case["clean"]

    def psnr(x):
        se = ((x[0] - clean) ** 2 / 4).mean(0)[m[0, 0] > 0.5]
        return -10 * np.log10(se.mean())

    assert psnr(mine.images) > psnr(frozen.images)
