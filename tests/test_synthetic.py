"""The method measured on faces (the built-in model): the benchmark's cases and tables, and the
prior's effect in the direction claimed, on seeds fixed here."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import DATA, need

import occjax
from occjax.eval import synthetic
from occjax.occlusion.measure import SIZE_BANDS, occluded_percentage


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    need(DATA / "lfw_hand_samples")
    out = tmp_path_factory.mktemp("synthetic")
    # few steps keep it short; the direction tested holds at the model's 100 steps too
    # (benchmarks/results/synthetic_faces64.json)
    cfg = synthetic.SyntheticConfig(
        people=2, refs=3, sizes=("large",), seed=0, steps=30, reference_steps=30,
        approaches=("baseline", "prior"),
    )  # fmt: skip
    return out, synthetic.run_benchmark(occjax.load_models(bundle="faces64"), cfg, out)


def test_cases_have_real_hands_in_their_size_band():
    need(DATA / "lfw_hand_samples")
    models = occjax.load_models(bundle="faces64")
    cfg = synthetic.SyntheticConfig(people=2, refs=2)
    cases, refs, source = synthetic.make_cases(models, cfg, np.random.default_rng(0))
    assert source.startswith("lfw_hand_samples") and len(cases) == 2 * 3
    for c in cases:
        lo, hi = SIZE_BANDS[c.size]
        # the band is met at 256 px; resizing the mask to 64 px moves its edge by about a pixel
        assert lo - 1.5 <= occluded_percentage(c.mask[0], "box") <= hi + 1.5, c.size
        outside = c.mask[0] == 0
        assert np.array_equal(c.target[:, outside], c.clean[:, outside])
    assert refs[0].shape == (2, 3, 64, 64)


@pytest.mark.slow
def test_tables_and_records(bench):
    out, res = bench
    s = res["summary"]
    for key in ("baseline|none|large", "prior|same|large", "prior|other|large"):
        assert s[key]["local_lpips"][2] == 2 and np.isfinite(s[key]["local_psnr"][0]), key
    table = (out / "table.md").read_text()
    assert "| same | large | prior |" in table and "| other | large | prior |" in table
    saved = json.loads((out / "results.json").read_text())
    assert saved["occluders"].startswith("lfw")
    # every number in the table is the mean and std of the per-case rows it summarises
    rows = saved["rows"]
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) < 4 or cells[2] not in ("baseline", "prior"):
            continue
        cond, size, a = cells[:3]
        sel = [r for r in rows if r["approach"] == a and r["condition"] == cond]
        sel = [r for r in sel if size == "all" or r["size"] == size]
        for m, cell in zip(synthetic.METRICS, cells[3:]):
            v = np.array([r.get(m, np.nan) for r in sel], float)
            v = v[np.isfinite(v)]
            if not v.size:
                assert cell == "-", (line, m)
                continue
            mean, std = (float(x) for x in cell.split(" ± "))
            # the table prints the mean to 4 significant digits and the std to 2
            np.testing.assert_allclose(mean, v.mean(), rtol=5e-4, err_msg=line)
            np.testing.assert_allclose(std, v.std(), rtol=5e-2, atol=1e-12, err_msg=line)
    assert (out / "examples.png").stat().st_size > 1000


@pytest.mark.slow
def test_same_persons_references_beat_another_persons(bench):
    """Seeds fixed here: with references of the same person the prior restores the occluded region
    better (local LPIPS, in-mask PSNR) and closer to the person (identity distance) than with
    another person's references, which pull the face towards someone else."""
    _, res = bench
    s = res["summary"]
    same, other = s["prior|same|large"], s["prior|other|large"]
    assert same["local_lpips"][0] < other["local_lpips"][0]
    assert same["local_psnr"][0] > other["local_psnr"][0]
    if same["identity"]:  # None without dlib
        assert same["identity"][0] < other["identity"][0]
