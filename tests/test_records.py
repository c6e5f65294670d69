"""Run records a user can trust: one reader, settings hashes and refusal, safe case names, merged
paths, the mask a restoration used, stage errors recorded, tampered bundles refused, and the API's
input checks (occjax.records, occjax.cli, occjax.validate, occjax.options)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA, need
from PIL import Image

import occjax
from occjax import records
from occjax.cli import InvertCLI, main
from occjax.cli.cases import Case, manifest_cases, safe_name
from occjax.cli.plan import plan

LFW = DATA / "lfw_hand_samples"


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# ---- the one reader ------------------------------------------------------------------------------


def test_reader_latest_line_wins_torn_line_tolerated(tmp_path):
    w = records.ResultsWriter(tmp_path)
    w.append({"case": "c1", "approach": "prior", "status": "failed", "error": "oom"})
    w.append({"case": "c2", "approach": "prior", "status": "ok"})
    w.append({"case": "c1", "approach": "prior", "status": "ok", "restored": "cases/c1/p.png"})
    with open(tmp_path / records.RESULTS, "ab") as f:
        f.write(b'{"case": "c3", "appro')  # killed mid-write
    recs = records.read_records(tmp_path)
    assert [(r["case"], r["status"]) for r in recs] == [("c1", "ok"), ("c2", "ok")]
    assert len(records.read_lines(tmp_path)) == 3
    assert records.finished(tmp_path, retry_failed=True) == {("c1", "prior"), ("c2", "prior")}
    (abs_rec,) = [r for r in records.read_records(tmp_path, absolute=True) if r["case"] == "c1"]
    assert abs_rec["restored"] == str((tmp_path / "cases/c1/p.png").resolve())
    # the evaluation reads through the same reader
    from occjax.eval.runs import read_results

    assert [r["case"] for r in read_results(tmp_path)] == ["c1", "c2"]
    # a corrupt line in the middle is an error that names it, not a silent skip
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / records.RESULTS).write_text(
        '{"case": "a", "approach": "b"}\nnot json\n{}\n'
    )
    with pytest.raises(records.RecordsError, match=r"results.jsonl:2"):
        records.read_records(tmp_path / "bad")


# ---- settings ------------------------------------------------------------------------------------


def test_settings_diff_names_what_changed():
    old = {"common": {"align": False}, "approaches": {"prior": {"steps": 100, "lr": 0.1}}}
    new = {"common": {"align": True}, "approaches": {"prior": {"steps": 5, "lr": 0.1}, "enc": {}}}
    assert records.settings_diff(old, new) == ["align False -> True", "prior.steps 100 -> 5"]
    assert records.line_hash({"a": 1}, {"b": 2}) != records.line_hash({"a": 1}, {"b": 3})


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """A run folder as a first demo run (faces64, 3 steps) leaves it: its planned settings, run.json
    and one results line per approach (fabricated: no inversion needed to test resuming)."""
    from occjax.cli.runner import write_run_json

    out = tmp_path_factory.mktemp("demo_run")
    cfg = InvertCLI(out=out, steps=3, progress=False)
    p = plan(cfg, out)
    write_run_json(p, "2026-01-01T00:00:00", {})
    w = records.ResultsWriter(out)
    for a in p.approaches:
        w.append({"case": "demo", "approach": a, "status": "ok", "settings_hash": p.line_hash(a)})
    return out


def test_resume_with_other_settings_is_refused_and_folder_untouched(demo_run, tmp_path, capsys):
    before = _snapshot(demo_run)
    code = main(InvertCLI(out=demo_run, steps=5, progress=False))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "baseline.steps 3 -> 5" in err[0] and "prior.steps 3 -> 5" in err[0]
    assert "mask_estimation.refit_steps 3 -> 5" in err[0]  # --steps sets the mask's rounds too
    assert "another --out" in err[0] and "--overwrite" in err[0]
    assert _snapshot(demo_run) == before
    # another model too
    assert main(InvertCLI(out=demo_run, steps=3, demo_model="random", progress=False)) == 2
    assert "models_hash" in capsys.readouterr().err
    assert _snapshot(demo_run) == before
    # the same settings plan a resume with nothing left to do
    p = plan(InvertCLI(out=demo_run, steps=3, progress=False), demo_run)
    assert p.pending == [] and set(p.previous["demo"]) == set(p.approaches)
    assert _snapshot(demo_run) == before


def test_personal_settings_are_hashed_and_a_change_refused(demo_run, tmp_path, capsys):
    """personal's line hash covers every PersonalConfig field; adding it to a folder is a resume,
    changing one of its settings is refused like any approach's, the folder left untouched."""
    from occjax.cli.runner import write_run_json
    from occjax.personal import personal_config

    out = tmp_path / "run"
    shutil.copytree(demo_run, out)
    cfg = InvertCLI(out=out, steps=3, approach=("baseline", "personal"), progress=False)
    p = plan(cfg, out)
    assert p.todo == {"demo": ["personal"]}  # baseline done: adding personal is a resume
    mine = p.settings["approaches"]["personal"]
    assert mine == dataclasses.asdict(personal_config(p.models, steps=3, reference_steps=3))
    for field, v in (("weight_lr", 2e-3), ("init_steps", 7), ("tune", ["to_rgb"]), ("seed", 1)):
        other = records.line_hash(p.settings["common"], {**mine, field: v})
        assert other != p.line_hash("personal"), field
    write_run_json(p, "2026-01-02T00:00:00", {})
    records.ResultsWriter(out).append(
        {"case": "demo", "approach": "personal", "status": "ok", "settings_hash": p.line_hash("personal")}
    )  # fmt: skip
    before = _snapshot(out)
    code = main(InvertCLI(out=out, steps=3, reference_steps=4, approach=("personal",), progress=False))  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "personal.reference_steps 3 -> 4" in err[0], err
    assert _snapshot(out) == before
    assert plan(cfg, out).pending == []  # the same settings: nothing left to do


def test_a_line_of_other_settings_is_caught_whatever_run_json_says(demo_run, tmp_path):
    out = tmp_path / "mixed"
    shutil.copytree(demo_run, out)
    records.ResultsWriter(out).append(
        {"case": "other", "approach": "baseline", "status": "ok", "settings_hash": "0" * 16}
    )
    p_cfg = InvertCLI(out=out, steps=3, progress=False)
    with pytest.raises(Exception, match="1 result"):
        plan(p_cfg, out)


def test_overwrite_removes_only_the_run_outputs(tmp_path):
    for name in ("cases/c/x.png", "inputs/t.png", "reference_cache/k.npy", "mine/keep.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    (tmp_path / records.RESULTS).write_text("{}\n")
    (tmp_path / records.RUN_JSON).write_text("{}")
    (tmp_path / "notes.md").write_text("mine")
    records.overwrite(tmp_path)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == [
        "mine",
        "mine/keep.txt",
        "notes.md",
    ]


# ---- merge -----------------------------------------------------------------------------------------


def _fake_run(root: Path, name: str, cases: list[str], settings: dict) -> Path:
    """A run folder laid out as the CLI writes one with --mask auto: run-relative mask, input and
    restored paths, absolute target and clean."""
    run = root / name
    rng = np.random.default_rng(len(name))
    w = records.ResultsWriter(run)
    for c in cases:
        folder = run / "cases" / c
        folder.mkdir(parents=True)
        clean = rng.integers(0, 255, (64, 64, 3), np.uint8)
        target = clean.copy()
        target[20:40, 20:40] = 200
        mask = np.zeros((64, 64), np.uint8)
        mask[18:42, 18:42] = 255
        Image.fromarray(clean).save(root / f"{name}_{c}_clean.png")
        Image.fromarray(target).save(root / f"{name}_{c}_target.png")
        Image.fromarray(target).save(folder / "input.png")
        Image.fromarray(mask).save(folder / "mask.png")
        Image.fromarray(mask[..., None].repeat(3, 2) // 2).save(folder / "mask_auto.png")
        Image.fromarray(clean // 2 + 60).save(folder / "baseline.png")
        rel = f"cases/{c}"
        w.append(
            {
                "case": c,
                "approach": "baseline",
                "status": "ok",
                "settings_hash": records.line_hash(settings["common"], {}),
                "target": str(root / f"{name}_{c}_target.png"),
                "clean": str(root / f"{name}_{c}_clean.png"),
                "input": f"{rel}/input.png",
                "mask": f"{rel}/mask.png",
                "mask_source": "auto",
                "mask_estimate": f"{rel}/mask_auto.png",
                "restored": f"{rel}/baseline.png",
                "refs": [],
                "resolution": 64,
                "n_refs": 0,
                "meta": {},
            }
        )
    (run / records.RUN_JSON).write_text(json.dumps({"settings": settings}))
    return run


def test_merge_of_auto_mask_runs_then_evaluate(tmp_path):
    """--mask auto records a run-relative mask; merged elsewhere, every path still resolves and the
    evaluation scores against the mask each restoration used."""
    from occjax.eval.report import ReportConfig, evaluate
    from occjax.eval.runs import EvalConfig

    s = {"common": {"align": False}, "approaches": {"baseline": {}}}
    a = _fake_run(tmp_path / "shards", "a", ["c1", "c2"], s)
    b = _fake_run(tmp_path / "shards", "b", ["c3"], s)
    out = tmp_path / "elsewhere" / "merged"
    assert main(InvertCLI(merge=(a, b), out=out)) == 0
    recs = records.read_records(out, absolute=True)
    assert [r["case"] for r in recs] == ["c1", "c2", "c3"]
    for r in recs:
        for k in ("input", "mask", "mask_estimate", "restored", "target", "clean"):
            assert Path(r[k]).is_file(), (r["case"], k)
    assert json.loads((out / records.RUN_JSON).read_text())["settings"] == s
    rows = evaluate([out], tmp_path / "report", EvalConfig(landmarks="none", identity=False),
                    ReportConfig(n_grid=1))  # fmt: skip
    assert len(rows) == 3 and all(np.isfinite(r["local_psnr"]) for r in rows)
    # the mask used (24x24) not the estimate: the occluded share is that of mask.png
    assert all(r["has_mask"] for r in rows)
    # runs of other settings are not merged
    c = _fake_run(tmp_path / "shards", "c", ["c4"], {"common": {"align": True}, "approaches": {}})
    assert main(InvertCLI(merge=(a, c), out=tmp_path / "m2")) == 2
    assert not (tmp_path / "m2").exists()


# ---- case names ------------------------------------------------------------------------------------


def test_manifest_names_stay_inside_cases(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    rows = [
        {"target": str(data / "p1" / "a.png"), "mask": "auto"},  # absolute, no case column
        {"target": str(data / "p1" / "a.jpg"), "mask": "auto"},  # the same name once derived
        {"target": "../outside/b.png", "mask": "auto"},  # outside the manifest's folder
        {"target": "x.png", "case": "../../escape", "mask": "auto"},
        {"target": "y.png", "case": "/abs/name", "mask": "auto"},
        {"target": "z.png", "case": "Case", "mask": "auto"},
        {"target": "w.png", "case": "case", "mask": "auto"},  # differs only in letter case
    ]
    man = data / "m.jsonl"
    man.write_text("".join(json.dumps(r) + "\n" for r in rows))
    names = [c.name for c in manifest_cases(man)]
    assert names == ["p1/a", "p1/a_2", "outside/b", "escape", "abs/name", "Case", "case_2"]
    root = (tmp_path / "run" / "cases").resolve()
    for n in names:
        assert root in (root / n).resolve().parents
    assert safe_name("..") == "case" and safe_name("a/../../b") == "a/b"


def test_case_folder_guard(tmp_path):
    from occjax.cli.write import CaseWriter

    class _Plan:
        out = tmp_path
        models = occjax.load_models(bundle="faces64")

    w = CaseWriter(_Plan(), records.ResultsWriter(tmp_path))
    assert w.folder(Case("ok/name", Path("t.png"), None)).parent.name == "ok"
    with pytest.raises(occjax.io.ImageError, match="outside"):
        w.folder(Case("../../x", Path("t.png"), None))


# ---- bundles -----------------------------------------------------------------------------------------


def test_tampered_bundle_is_refused(tmp_path):
    from occjax.models import BUILTIN
    from occjax.params import BundleError

    bundle = tmp_path / "faces64"
    shutil.copytree(BUILTIN / "faces64", bundle)
    occjax.load_models(bundle=bundle)  # intact: loads
    f = bundle / "encoder.safetensors"
    data = bytearray(f.read_bytes())
    data[-1] ^= 0x01  # one bit of one weight
    f.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"encoder\.safetensors does not match bundle\.json"):
        occjax.load_models(bundle=bundle)


# ---- the API's input checks --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def faces64():
    return occjax.load_models(bundle="faces64")


def test_api_rejects_bad_images_devices_and_configs(faces64):
    x = np.zeros((2, 3, 64, 64), np.float32)
    with pytest.raises(ValueError, match=r"values span \[0, 255\].*x / 127.5 - 1"):
        occjax.invert(faces64, np.linspace(0, 255, x.size).reshape(x.shape), config="enc")
    bad = x.copy()
    bad[1, 0, 3, 3] = np.nan
    with pytest.raises(ValueError, match="targets: 1 values are NaN"):
        occjax.invert(faces64, bad, config="enc")
    with pytest.raises(ValueError, match=r"references\[0\]: values span"):
        occjax.invert(faces64, x[:1], None, [x + 3], config="prior")
    m = np.zeros((2, 1, 64, 64), np.float32)
    m[0, 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="masks: some values are NaN"):
        occjax.invert(faces64, x, m, config="enc")
    for d in (0, -1, 99, True, "cpu"):
        with pytest.raises(ValueError, match="devices"):
            occjax.invert(faces64, x, config="enc", devices=d)
    with pytest.raises(ValueError, match="chunk_size"):
        occjax.invert(faces64, x, config="enc", chunk_size=0)
    for field, v in (("beta1", 1.0), ("beta2", -0.1), ("eps", 0.0), ("robust_delta", 0.0),
                     ("lr", float("inf")), ("perceptual_weight", float("nan")),
                     ("reconstruction_weight", -1.0), ("reference_steps", -1)):  # fmt: skip
        with pytest.raises(ValueError, match=field):
            occjax.InvertConfig(**{field: v})


def test_estimate_mask_inverts_references_once(faces64, monkeypatch):
    """Two rounds share the references' codes; `steps` and `refit_steps` are taken as given (0
    included)."""
    from occjax import api, references

    calls, steps = [], []
    real_invert = api.invert

    def photos_to_codes(models, images, steps, opts):  # the counted call, without its 100 steps
        calls.append(len(images))
        return np.zeros((len(images), *models.code_shape), np.float32), 0

    monkeypatch.setattr(references, "invert_photos", photos_to_codes)

    def spy(models, targets, masks=None, refs=None, config=None, *a, **k):
        steps.append(config.steps)
        return real_invert(models, targets, masks, refs, config, *a, **k)

    monkeypatch.setattr(api, "invert", spy)
    z = np.random.default_rng(0).normal(size=(3, 100)).astype(np.float32)
    photos = np.asarray(faces64.generate(z))
    out = occjax.estimate_mask(faces64, photos[:1], [photos[1:]], steps=0, refit_steps=0)
    assert out.shape == (1, 1, 64, 64)
    assert calls == [2]  # the references' inversion, once for both rounds
    assert steps == [0, 0]  # both rounds: 0 steps (the second once took the model's 100)


def test_stage_errors_are_recorded_in_one_line(tmp_path, monkeypatch, capsys):
    """Out of memory in screening, bad input in mask estimation: one line each, the batch's pairs
    recorded as failed, the run goes on to its summary (exit 1), no traceback."""

    def oom(*a, **k):
        raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 9 GiB")

    monkeypatch.setattr(occjax, "screen_references", oom)
    run = tmp_path / "run"
    assert main(InvertCLI(out=run, steps=2, reference_steps=2, progress=False)) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    recs = records.read_records(run)
    assert {r["approach"] for r in recs} == {"enc", "baseline", "prior"}
    for r in recs:
        assert r["status"] == "failed"
        assert r["error"].startswith("screening references: out of memory; run again with a smaller --batch-size")  # fmt: skip

    def bad(*a, **k):
        raise ValueError("targets: values span [0, 255], expected [-1, 1]\nsecond line")

    monkeypatch.setattr(occjax, "estimate_mask", bad)
    target = run / "inputs" / "target.png"
    cfg = InvertCLI(out=tmp_path / "auto", target=target, mask="auto", approach=("baseline",),
                    steps=2, progress=False)  # fmt: skip
    assert main(cfg) == 1
    (rec,) = records.read_records(tmp_path / "auto")
    assert rec["error"] == "estimating masks: targets: values span [0, 255], expected [-1, 1]"
    assert "Traceback" not in capsys.readouterr().err


def test_missing_shared_fails_under_ci(monkeypatch, tmp_path):
    """conftest.need skips on a developer's machine but fails under CI=true, so CI can never pass
    with the parity suite skipped."""
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        need(tmp_path / "absent")
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception):
        need(tmp_path / "absent")
    assert need(tmp_path) == tmp_path


def test_face_region_without_dlib_says_so(monkeypatch):
    import sys

    from occjax.deps import MissingDependency
    from occjax.masks import face_regions

    monkeypatch.setitem(sys.modules, "dlib", None)
    with pytest.raises(MissingDependency, match=r"face_region: .*pip install 'occjax\[faces\]'"):
        face_regions(np.zeros((1, 3, 64, 64), np.float32))


def test_a_complete_last_line_without_newline_is_kept(tmp_path):
    """A file written by hand may end without a newline: its last record is complete, kept by the
    reader, and ended (not cut) before the next append."""
    (tmp_path / records.RESULTS).write_text('{"case": "a", "approach": "enc", "status": "ok"}')
    assert [r["case"] for r in records.read_records(tmp_path)] == ["a"]
    records.ResultsWriter(tmp_path).append({"case": "b", "approach": "enc", "status": "ok"})
    assert [r["case"] for r in records.read_records(tmp_path)] == ["a", "b"]


def test_screening_honours_chunk_size(faces64, monkeypatch):
    from occjax import api

    seen = []
    real = api.invert

    def spy(*a, **k):
        seen.append(k.get("chunk_size"))
        return real(*a, **k)

    monkeypatch.setattr(api, "invert", spy)
    z = np.random.default_rng(1).normal(size=(3, 100)).astype(np.float32)
    photos = np.asarray(faces64.generate(z))
    out = occjax.screen_references(faces64, [photos[:2], photos[2:]], steps=1, chunk_size=2,
                                   identity=False)  # fmt: skip
    assert seen == [2] and [len(s.codes) for s in out] == [2, 1]
