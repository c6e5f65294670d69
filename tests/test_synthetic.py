"""Synthetic identity benchmark: end to end on the demo model, both conditions, the prior's pull."""

from __future__ import annotations

import json

import numpy as np
import pytest

from occjax.config import APPROACHES
from occjax.eval import synthetic
from occjax.occlusion.measure import occluded_percentage


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    from occjax.random_init import random_models

    out = tmp_path_factory.mktemp("synthetic")
    cfg = synthetic.SyntheticConfig(
        identities=3, refs=2, steps=10, ref_input="codes", prior_weight=50.0
    )
    return out, synthetic.run_benchmark(random_models("demo", 0), cfg, out)


def test_table_has_every_approach_in_both_conditions(bench):
    out, res = bench
    for a in APPROACHES:
        for c in synthetic.CONDITIONS:
            stats = res["summary"][a][c]
            assert stats["local_lpips"][2] == 3
            assert np.isfinite(stats["local_psnr"][0])
    table = (out / "table.md").read_text()
    assert table.count("| prior | same |") == 1 and table.count("| prior | other |") == 1


def test_results_jsonl_contract(bench):
    out, _ = bench
    for cond in synthetic.CONDITIONS:
        recs = [
            json.loads(x) for x in (out / f"run_{cond}" / "results.jsonl").read_text().splitlines()
        ]
        assert len(recs) == 3 * len(APPROACHES)
        for r in recs:
            assert r["status"] == "ok" and r["meta"]["condition"] == cond
            assert (out / f"run_{cond}" / r["restored"]).is_file()
            assert len(r["refs"]) == r["n_refs"] == 2
            assert set(r["occluded_pct"]) == {"box", "image"}
        other = [r["meta"]["ref_identity"] != r["meta"]["identity"] for r in recs]
        assert all(other) if cond == "other" else not any(other)


def test_prior_with_informative_references_pulls_toward_the_identity(bench):
    _, res = bench
    s = res["summary"]
    assert s["prior"]["same"]["w_dist"][0] < s["baseline"]["same"]["w_dist"][0] - 0.1
    # references of another identity do not pull toward this one
    assert s["prior"]["other"]["w_dist"][0] > s["prior"]["same"]["w_dist"][0]


def test_random_shape_mask_hits_the_requested_band():
    rng = np.random.default_rng(1)
    for _ in range(5):
        m = synthetic.random_shape_mask(64, rng, 15.0, 35.0)
        assert 15.0 <= occluded_percentage(m, "box") <= 35.0
