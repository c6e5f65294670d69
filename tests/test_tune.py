"""Grid search: the paper's 64-point grid, one engine call per photo, tune.py end to end."""

from __future__ import annotations

import json
from types import SimpleNamespace

import jax.numpy as jnp
import numpy as np
import pytest

from occjax.eval import tune


def test_grid_is_the_papers_64_points():
    pts = tune.grid_points(tune.Grid())
    assert len(pts) == 64
    assert len({tuple(p.values()) for p in pts}) == 64
    assert {p["shift"] for p in pts} == {8, 10, 11, 13}
    assert {p["discriminator_weight"] for p in pts} == {0.1, 0.5, 1, 2}
    assert {p["sigma"] for p in pts} == {5, 7, 10, 15}
    assert {p["scale"] for p in pts} == {0.25}
    cfgs = tune.grid_configs(tune.Grid())
    assert all(c.prior and c.approach == "prior_disc" for c in cfgs)
    assert [(c.shift, c.sigma) for c in cfgs[:2]] == [(8, 5), (8, 7)]


def test_grid_without_a_discriminator_has_no_discriminator_axis():
    from occjax.config import preset

    base = preset("prior")
    pts = tune.grid_points(tune.Grid(), base)
    assert len(pts) == 16 and all("discriminator_weight" not in p for p in pts)
    assert all(not c.uses_discriminator for c in tune.grid_configs(tune.Grid(), base))


class _FakeLPIPS:
    def spatial(self, a, b):
        return jnp.abs(a - b).mean(-1)


def test_whole_grid_runs_as_one_batch_per_photo(monkeypatch, tmp_path):
    from occjax import api

    calls = []

    def fake_invert(models, targets, masks, refs, config, **kw):
        calls.append(len(config))
        assert len(targets) == len(masks) == len(refs) == len(config)
        # grid point j restores the image with a quality that depends on its sigma
        err = np.asarray([c.sigma / 100 for c in config], np.float32)[:, None, None, None]
        return SimpleNamespace(images=np.clip(targets * 0 + err, -1, 1))

    monkeypatch.setattr(api, "invert", fake_invert)
    rng = np.random.default_rng(0)
    cases = [
        tune.Case(
            f"c{i}",
            rng.uniform(-1, 1, (3, 16, 16)).astype(np.float32),
            (rng.random((1, 16, 16)) > 0.5).astype(np.float32),
            rng.standard_normal((2, 4, 8)).astype(np.float32),  # codes: no reference inversion
            np.zeros((3, 16, 16), np.float32),
        )
        for i in range(3)
    ]
    cfgs = tune.grid_configs(tune.Grid())
    scores = tune.run_grid(None, cases, cfgs, _FakeLPIPS())
    assert calls == [64, 64, 64]
    assert scores["local_lpips"].shape == (3, 64)
    metric = tune.selection_metric(cases)
    rows = tune.table_rows(tune.grid_points(tune.Grid()), scores, metric)
    assert rows[0]["sigma"] == 5 and rows[-1]["sigma"] == 15  # smallest error first
    chosen = tune.write_outputs(tmp_path, rows, metric, 3, "")
    assert chosen["values"]["sigma"] == 5
    assert len(json.loads((tmp_path / "table.json").read_text())) == 64


def test_selection_falls_back_to_visible_pixels_without_ground_truth():
    c = tune.Case("x", np.zeros((3, 4, 4)), np.zeros((1, 4, 4)), np.zeros((1, 2, 2)), None)
    assert tune.selection_metric([c]) == "visible_lpips"


@pytest.mark.slow
def test_tune_script_end_to_end(tmp_path):
    import importlib.util
    import sys
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "tune_script", Path(__file__).resolve().parents[1] / "scripts" / "tune.py"
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses resolve annotations through it
    spec.loader.exec_module(mod)
    grid = tune.Grid(shift=(8.0, 13.0), discriminator_weight=(0.1,), sigma=(5.0, 15.0))
    args = mod.TuneArgs(
        out=tmp_path,
        steps=1,
        reference_steps=1,
        synthetic_identities=1,
        synthetic_refs=2,
        synthetic_sizes=("medium",),
        grid=grid,
    )
    out = mod.main(args)  # the built-in faces64: prior (no discriminator), a 2 x 2 grid
    assert set(out["chosen"]["values"]) == {"scale", "shift", "sigma"}
    rows = json.loads((tmp_path / "table.json").read_text())
    assert len(rows) == 4 and all(np.isfinite(r["local_lpips_mean"]) for r in rows)
    assert "local_lpips" in (tmp_path / "table.md").read_text()
    assert json.loads((tmp_path / "chosen.json").read_text())["metric"] == "local_lpips"
