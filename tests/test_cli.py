"""scripts/invert.py: option parsing, inputs, results.jsonl, the demo, a dataset run killed and
resumed, and bad inputs (recorded as failed cases, one-line errors)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tyro
from PIL import Image

import occjax
from occjax.cli import InvertCLI, main, run
from occjax.cli.cases import dataset_cases, manifest_cases, select_shard, shard_of
from occjax.io import ImageError, load_image, load_mask
from occjax.records import ResultsWriter, finished, merge, read_records
from tests.conftest import DATA, REPO, TINY, fake_invert_personal, need

LFW = DATA / "lfw_hand_samples"


def test_parse_options():
    args = ["--approach", "enc", "prior", "--target", "t.png", "--mask", "m.png"]
    args += ["--refs", "a.png", "b.png", "--steps", "3", "--batch-size", "2", "--shard", "1/4"]
    args += ["--paste-back", "--out", "o", "--compute-dtype", "bfloat16"]
    want = InvertCLI(
        approach=("enc", "prior"),
        target=Path("t.png"),
        mask="m.png",
        refs=(Path("a.png"), Path("b.png")),
        steps=3,
        batch_size=2,
        shard="1/4",
        paste_back=True,
        out=Path("o"),
        compute_dtype="bfloat16",
    )
    assert tyro.cli(InvertCLI, args=args) == want
    assert tyro.cli(InvertCLI, args=[]) == InvertCLI()
    from occjax.cli.plan import invert_configs

    cfgs = invert_configs(want, want.approach, occjax.load_models(bundle="faces64"))
    assert {c.compute_dtype for c in cfgs.values()} == {"bfloat16"}
    assert cfgs["prior"].steps == 3 and cfgs["enc"].steps == 0


def test_help_documents_every_field(capsys):
    with pytest.raises(SystemExit):
        tyro.cli(InvertCLI, args=["--help"])
    text = capsys.readouterr().out
    for flag in ("--dataset", "--manifest", "--shard", "--merge", "--paste-back", "--align"):
        assert flag in text
    assert "paper's layout" in text


def test_io_modes_and_errors(tmp_path):
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 255
    Image.fromarray(rgba).save(tmp_path / "a.png")
    Image.fromarray(np.full((32, 32), 128, np.uint8)).save(tmp_path / "g.png")
    x = load_image(tmp_path / "a.png", 16)
    assert x.shape == (3, 16, 16) and x.dtype == np.float32
    np.testing.assert_allclose(x[0], 1.0)
    np.testing.assert_allclose(x[1], -1.0)
    assert load_image(tmp_path / "g.png", 8).shape == (3, 8, 8)
    m = load_mask(tmp_path / "g.png", 8)
    assert m.shape == (1, 8, 8) and m.min() == 1.0  # 128 > 127 = occluded
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "wide.png")
    with pytest.raises(ImageError, match="align"):
        load_image(tmp_path / "wide.png", 16)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ImageError, match="unreadable"):
        load_image(tmp_path / "bad.png", 16)


def test_dataset_manifest_and_shards(tmp_path):
    cases = dataset_cases(need(LFW))
    names = [c.name for c in cases]
    assert "Al_Gore/Al_Gore_0008_01_medium" in names and len(names) == len(set(names))
    c = cases[names.index("Al_Gore/Al_Gore_0008_01_medium")]
    assert c.mask.name == c.target.name and c.mask.parent.name == "occlusion_mask"
    assert len(c.refs) == 4 and c.clean is None
    parts = [select_shard(cases, f"{i}/3") for i in range(3)]
    assert sorted(x.name for p in parts for x in p) == sorted(names)
    assert shard_of("x", 7) == shard_of("x", 7)
    (tmp_path / "m.csv").write_text("target,mask,refs\np.png,m.png,a.png;b.png\n")
    (tmp_path / "m.jsonl").write_text(
        json.dumps({"target": "p.png", "mask": "m.png", "refs": ["a.png"], "meta": {"k": 1}}) + "\n"
    )
    csv_case = manifest_cases(tmp_path / "m.csv")[0]
    assert csv_case.target == (tmp_path / "p.png").resolve()
    assert [r.name for r in csv_case.refs] == ["a.png", "b.png"]
    assert manifest_cases(tmp_path / "m.jsonl")[0].meta == {"k": 1}


def test_results_torn_line_and_merge(tmp_path):
    w = ResultsWriter(tmp_path / "a")
    w.append({"case": "c1", "approach": "enc", "status": "ok", "restored": "cases/c1/enc.png"})
    with open(tmp_path / "a" / "results.jsonl", "ab") as f:
        f.write(b'{"case": "c2", "appr')  # killed mid-write
    assert finished(tmp_path / "a" / "results.jsonl") == {("c1", "enc")}
    w = ResultsWriter(tmp_path / "a")  # repairs the torn line on open
    w.append({"case": "c2", "approach": "enc", "status": "failed", "error": "x"})
    recs = read_records(tmp_path / "a" / "results.jsonl")
    assert [r["case"] for r in recs] == ["c1", "c2"]
    assert finished(tmp_path / "a" / "results.jsonl", retry_failed=True) == {("c1", "enc")}
    merged = merge([tmp_path / "a"], tmp_path / "m")
    assert merged[0]["restored"] == os.path.join("..", "a", "cases", "c1", "enc.png")


def test_unknown_approach_and_missing_models(tmp_path, capsys):
    assert main(InvertCLI(approach=("nope",), out=tmp_path)) == 2
    err = capsys.readouterr().err
    assert "unknown approach" in err and "prior_disc" in err and "Traceback" not in err
    assert main(InvertCLI(models=str(tmp_path / "absent"), out=tmp_path)) == 2
    err = capsys.readouterr().err
    assert "no such folder" in err and "faces64" in err and "Traceback" not in err


@pytest.mark.slow
def test_demo_on_the_builtin_face_model(tmp_path, capsys):
    """No arguments: the built-in faces64, every approach it supports (the others skipped, with the
    reason), the side-by-side, and the error table against the clean photo."""
    assert run(InvertCLI(out=tmp_path, steps=5, reference_steps=5, progress=False)) == 0
    out = capsys.readouterr().out
    assert "skipping disc, prior_disc: they need a discriminator" in out and "PSNR" in out
    recs = read_records(tmp_path / "results.jsonl")
    assert [r["approach"] for r in recs] == ["enc", "baseline", "prior"]
    assert all(r["status"] == "ok" and r["resolution"] == 64 for r in recs)
    prior = recs[2]
    assert prior["n_refs"] == len(prior["screening"]) == 4
    assert all(s["kept"] for s in prior["screening"])
    info = json.loads((tmp_path / "run.json").read_text())
    assert info["model"]["family"] == "dcgan" and not info["random_weights"]
    sbs = Image.open(tmp_path / "cases/demo/side_by_side.png")
    assert sbs.size[1] >= 3 * 192  # three rows of 192 px tiles


@pytest.mark.slow
def test_demo_on_random_networks_end_to_end(tmp_path, capsys):
    """The demo's pipeline on small random idinvert-shaped networks (--demo-model random), which
    have a discriminator: all five approaches, resume, and the evaluation report over the run."""
    kw = dict(out=tmp_path, steps=3, reference_steps=2, progress=False, demo_model="random")
    assert run(InvertCLI(**kw)) == 0
    out = capsys.readouterr().out
    assert "RANDOM weights" in out and "PSNR" in out
    recs = read_records(tmp_path / "results.jsonl")
    assert sorted(r["approach"] for r in recs) == sorted(
        ["enc", "baseline", "disc", "prior", "prior_disc"]
    )
    for r in recs:
        assert r["status"] == "ok" and r["resolution"] == 64 and r["n_refs"] == 4
        assert Path(r["target"]).is_absolute() and Path(r["clean"]).is_file()
        assert Image.open(tmp_path / r["restored"]).size == (64, 64)
        assert r["occluded_pct"]["box"] > 0
    assert (tmp_path / "cases/demo/side_by_side.png").is_file()
    assert (tmp_path / "cases/demo/losses.png").is_file()
    csv = (tmp_path / "cases/demo/prior_losses.csv").read_text().splitlines()
    assert csv[0].startswith("step,") and len(csv) == 4
    info = json.loads((tmp_path / "run.json").read_text())
    assert info["random_weights"] and info["models_hash"] and "jax" in info["versions"]
    # resume: nothing left to do, no duplicate line
    assert run(InvertCLI(**kw)) == 0
    assert len(read_records(tmp_path / "results.jsonl")) == 5
    _check_report(tmp_path, tmp_path / "report", "--landmarks", "none")


def _check_report(run_dir: Path, out: Path, *extra: str) -> str:
    """The evaluation report is one command over a run folder; every file it links exists."""
    cmd = [sys.executable, str(REPO / "scripts/evaluate.py"), "--runs", str(run_dir)]
    done = subprocess.run(
        [*cmd, "--out", str(out), *extra], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    html = (out / "index.html").read_text()
    import re

    links = re.findall(r"(?:src|href)=[\"']([^\"'#:]+)[\"']", html)
    assert links and all((out / link).is_file() for link in links)
    assert all((out / link).stat().st_size > 0 for link in links if link.endswith(".png"))
    return (out / "report.md").read_text()


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    for p in TINY.values():
        need(p)
    out = tmp_path_factory.mktemp("bundle")
    cmd = [sys.executable, str(REPO / "scripts/convert.py"), "--out", str(out)]
    for role, p in TINY.items():
        cmd += [f"--{role}", str(p)]
    subprocess.run(cmd, check=True, capture_output=True, cwd=REPO)
    return out


def _invert_cmd(*args) -> list[str]:
    return [sys.executable, str(REPO / "scripts/invert.py"), "--no-progress", *map(str, args)]


@pytest.mark.slow
def test_dataset_killed_and_resumed(tiny_bundle, tmp_path):
    need(LFW)
    args = ["--models", tiny_bundle, "--dataset", LFW, "--out", tmp_path, "--steps", "2"]
    args += [
        "--reference-steps",
        "2",
        "--batch-size",
        "1",
        "--approach",
        "enc",
        "baseline",
        "prior",
    ]
    proc = subprocess.Popen(_invert_cmd(*args), cwd=REPO, stdout=subprocess.DEVNULL)
    results = tmp_path / "results.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if results.is_file() and results.read_bytes().count(b"\n") >= 1:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_first = len(read_records(results))
    assert n_first >= 1
    done = subprocess.run(_invert_cmd(*args), cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    recs = read_records(results)
    keys = [(r["case"], r["approach"]) for r in recs]
    n_cases = len(dataset_cases(LFW))
    assert len(keys) == len(set(keys)) == 3 * n_cases  # every (case, approach) exactly once
    assert all(r["status"] == "ok" for r in recs)
    assert not list(tmp_path.rglob("*.tmp"))
    assert all((tmp_path / r["restored"]).is_file() for r in recs)
    r = next(r for r in recs if r["approach"] == "prior")
    assert r["n_refs"] == 4 and r["losses"]["prior"] != 0.0
    report = _check_report(tmp_path, tmp_path / "report")  # dlib landmarks on real faces
    assert "visible" in report.lower()  # no ground truth here: visible-pixel metrics only


@pytest.mark.slow
def test_bad_inputs_are_recorded(tiny_bundle, tmp_path, capsys):
    need(LFW)
    person = LFW / "Al_Gore"
    good = person / "occluded_img" / "Al_Gore_0008_01_medium.png"
    mask = person / "occlusion_mask" / good.name
    refs = ";".join(str(p) for p in sorted((person / "reference_imgs").iterdir()))
    (tmp_path / "bad.png").write_bytes(b"garbage")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "small_mask.png")
    rows = [
        f"good,{good},{mask},{refs}",
        f"unreadable,{tmp_path / 'bad.png'},{mask},{refs}",
        f"wrong_mask,{good},{tmp_path / 'small_mask.png'},{refs}",
        f"no_refs,{good},{mask},",
    ]
    (tmp_path / "m.csv").write_text("case,target,mask,refs\n" + "\n".join(rows) + "\n")
    cfg = InvertCLI(
        models=tiny_bundle,
        manifest=tmp_path / "m.csv",
        out=tmp_path / "run",
        steps=2,
        reference_steps=2,
        batch_size=4,
        approach=("baseline", "prior"),
        progress=False,
        paste_back=True,
    )
    assert main(cfg) == 1
    err = capsys.readouterr().err
    assert "failed" in err and "Traceback" not in err
    recs = {(r["case"], r["approach"]): r for r in read_records(tmp_path / "run/results.jsonl")}
    assert len(recs) == 8
    assert recs[("good", "prior")]["status"] == "ok"
    assert recs[("no_refs", "baseline")]["status"] == "ok"
    assert "reference" in recs[("no_refs", "prior")]["error"]
    assert "unreadable" in recs[("unreadable", "baseline")]["error"]
    assert "size" in recs[("wrong_mask", "prior")]["error"]
    pasted = tmp_path / "run" / recs[("good", "prior")]["pasted"]
    assert Image.open(pasted).size == Image.open(good).size


@pytest.mark.slow
def test_align_and_paste_back_on_an_unaligned_photo(tiny_bundle, tmp_path):
    """--align FFHQ-aligns target, mask and references; --paste-back composites the restoration
    into the original photo, leaving pixels far from the mask untouched."""
    pytest.importorskip("dlib")
    from occjax.faces.align import align_face

    photo = need(DATA / "unaligned" / "obama.jpg")
    quad = align_face(photo, output_size=64).quad  # [4, 2] corners of the aligned crop
    centre, side = quad.mean(0), np.linalg.norm(quad[3] - quad[0])
    original = Image.open(photo).convert("RGB")
    mask = np.zeros((original.size[1], original.size[0]), np.uint8)
    (x0, y0), (x1, y1) = (centre - 0.12 * side).astype(int), (centre + 0.12 * side).astype(int)
    mask[y0:y1, x0:x1] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    refs = (DATA / "unaligned" / "obama2.jpg", DATA / "unaligned" / "obama3.jpg")
    cfg = InvertCLI(
        models=tiny_bundle,
        target=photo,
        mask=tmp_path / "mask.png",
        refs=refs,
        align=True,
        paste_back=True,
        steps=2,
        reference_steps=2,
        approach=("prior",),
        out=tmp_path / "run",
        progress=False,
    )
    assert main(cfg) == 0
    (rec,) = read_records(tmp_path / "run/results.jsonl")
    assert rec["status"] == "ok" and rec["n_refs"] == 2
    # the square covers (0.24 side)^2 of the aligned crop: about 5.8 % of the image after warping
    assert 3.0 < rec["occluded_pct"]["image"] < 9.0
    pasted = np.asarray(Image.open(tmp_path / "run" / rec["pasted"]).convert("RGB"))
    orig = np.asarray(original)
    assert pasted.shape == orig.shape
    assert np.array_equal(pasted[:40, :40], orig[:40, :40])  # a corner far from the mask
    assert np.abs(pasted[y0:y1, x0:x1].astype(int) - orig[y0:y1, x0:x1]).mean() > 5  # restored


@pytest.mark.slow
def test_resume_adds_approaches_keeps_figures_and_masks(tiny_bundle, tmp_path, capsys):
    """A run resumed with another approach draws every approach of the case; other settings are
    refused until --overwrite; --mask auto saves the mask the restoration used, and a merged
    auto-mask run evaluates."""
    need(LFW)
    person = LFW / "Al_Gore"
    target = person / "occluded_img" / "Al_Gore_0008_01_medium.png"
    kw = dict(models=tiny_bundle, target=target, refs_dir=person / "reference_imgs", steps=2,
              reference_steps=2, progress=False)  # fmt: skip
    run_a = tmp_path / "a"
    assert main(InvertCLI(**kw, mask=str(person / "occlusion_mask" / target.name), out=run_a,
                          approach=("enc", "baseline"))) == 0  # fmt: skip
    case = run_a / "cases" / "Al_Gore_0008_01_medium"
    rows_2 = Image.open(case / "side_by_side.png").size[1]
    assert main(InvertCLI(**kw, mask=str(person / "occlusion_mask" / target.name), out=run_a,
                          approach=("prior",))) == 0  # fmt: skip
    recs = read_records(run_a / "results.jsonl")
    assert [r["approach"] for r in recs] == ["enc", "baseline", "prior"]
    # the side-by-side shows every approach, one row each: one more row than before the resume
    assert Image.open(case / "side_by_side.png").size[1] == rows_2 * 3 // 2
    info = json.loads((run_a / "run.json").read_text())
    assert set(info["settings"]["approaches"]) == {"enc", "baseline", "prior"}
    assert len(info["history"]) == 2
    used = load_mask(run_a / recs[2]["mask"], 64)
    assert recs[2]["mask_file"] == str(person / "occlusion_mask" / target.name)
    assert used.sum() > 0 and (run_a / recs[2]["input"]).is_file()
    # other settings: refused, then replaced with --overwrite
    changed = dict(kw, steps=3)
    mask = str(person / "occlusion_mask" / target.name)
    assert main(InvertCLI(**changed, mask=mask, out=run_a, approach=("prior",))) == 2
    assert "steps 2 -> 3" in capsys.readouterr().err
    assert main(InvertCLI(**changed, mask=mask, out=run_a, approach=("prior",), overwrite=True)) == 0  # fmt: skip
    assert [r["approach"] for r in read_records(run_a / "results.jsonl")] == ["prior"]
    # --mask auto: the restoration's mask (estimate + margin) is saved and recorded
    run_b = tmp_path / "b"
    assert main(InvertCLI(**kw, mask="auto", out=run_b, approach=("baseline",))) == 0
    (rec,) = read_records(run_b / "results.jsonl")
    est, used = load_mask(run_b / rec["mask_estimate"], 64), load_mask(run_b / rec["mask"], 64)
    assert rec["mask_source"] == "auto" and np.all(used >= est)  # the margin only adds pixels
    merged = tmp_path / "elsewhere" / "merged"
    assert main(InvertCLI(merge=(run_b,), out=merged)) == 0
    report = _check_report(merged, tmp_path / "report", "--landmarks", "none")
    assert "visible" in report.lower()


# ---- personal ----------------------------------------------------------------------------------


def _personal_cases(folder: Path) -> Path:
    """A manifest of three 64 px cases made with faces64: `good` (a face and a noise picture as
    references: the screening drops the noise, 10 dB), `dropped` (the noise alone), `no_refs`."""
    from occjax.io import save_image

    models = occjax.load_models(bundle="faces64")
    z = np.random.default_rng(0).standard_normal((2, models.z_dim)).astype(np.float32)
    target, ref = np.asarray(models.generate(z))
    mask = np.zeros((1, 64, 64), np.float32)
    mask[0, 34:52, 18:46] = 1
    save_image(folder / "target.png", np.where(mask > 0, 0.3, target))
    save_image(folder / "mask.png", mask)
    save_image(folder / "face.png", ref)
    noise = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(folder / "noise.png")
    rows = ["good,target.png,mask.png,face.png;noise.png", "dropped,target.png,mask.png,noise.png"]
    rows.append("no_refs,target.png,mask.png,")
    (folder / "m.csv").write_text("case,target,mask,refs\n" + "\n".join(rows) + "\n")
    return folder / "m.csv"


def _fake_screening(models, references, min_quality=None, **kw):
    """occjax.screen_references without its inversions (compiling them is most of a run on this
    CPU): the last of each problem's references is dropped, as the real screening drops the noise
    picture of `_personal_cases` (the slow test below screens for real)."""
    out = []
    for r in references:
        n = len(r)
        kept = np.arange(n) < n - 1
        reasons = ["" if k else "reconstructs at 10.0 dB < 12 dB" for k in kept]
        z = np.zeros((n, *models.code_shape), np.float32)
        scores = (np.full(n, 20.0), np.full(n, 0.1), np.full(n, np.nan))
        out.append(occjax.Screening(z, *scores, kept, np.zeros(n, bool), reasons))
    return out


def test_personal_runs_on_kept_reference_photos_and_resumes(tmp_path, monkeypatch, capsys):
    """--approach personal (opt-in): the kept reference PHOTOS (not codes) reach occjax.personal
    with --steps and --reference-steps; no references is a recorded failure as for prior, all
    dropped is personal's target-only fallback, recorded; its loss trace is written and drawn;
    the same command resumes without tuning again, a changed setting is refused. (Screening and
    tuning are faked here, the rest is real: tests/test_personal.py tests the tuning, and the slow
    test below runs everything.)"""
    from occjax.cli.plan import check_approach_names, select_approaches
    from occjax.personal import TERMS, PersonalConfig

    faces64 = occjax.load_models(bundle="faces64")
    assert select_approaches((), faces64) == ("enc", "baseline", "prior")  # not by default
    check_approach_names(("baseline", "personal"))
    with pytest.raises(SystemExit):
        tyro.cli(InvertCLI, args=["--help"])
    assert "personal" in capsys.readouterr().out
    calls: list = []
    monkeypatch.setattr("occjax.personal.invert_personal", fake_invert_personal(calls))
    monkeypatch.setattr(occjax, "screen_references", _fake_screening)
    man = _personal_cases(tmp_path)
    kw = dict(manifest=man, out=tmp_path / "run", approach=("personal",), steps=2,
              reference_steps=2, progress=False)  # fmt: skip
    assert main(InvertCLI(**kw)) == 1  # no_refs failed
    err = capsys.readouterr().err
    assert "dropped [personal]: no usable references" in err and "on the target alone" in err
    (call,) = calls
    cfg = call["config"][0]
    assert isinstance(cfg, PersonalConfig) and (cfg.steps, cfg.reference_steps) == (2, 2)
    assert cfg.init_steps == faces64.info["personal"]["init_steps"]  # the model's value
    good, dropped = call["references"]
    assert dropped is None and good.shape == (1, 3, 64, 64)  # the face only: the noise dropped
    np.testing.assert_allclose(good[0], load_image(tmp_path / "face.png", 64), atol=1e-6)
    recs = {r["case"]: r for r in read_records(tmp_path / "run")}
    assert recs["good"]["status"] == "ok" and recs["good"]["n_refs"] == 1
    assert [s["kept"] for s in recs["good"]["screening"]] == [True, False]
    assert set(recs["good"]["losses"]) == set(TERMS) and "fallback" not in recs["good"]
    assert recs["dropped"]["fallback"].startswith("target only: no usable references")
    assert recs["no_refs"]["status"] == "failed" and "no reference photos" in recs["no_refs"]["error"]  # fmt: skip
    case = tmp_path / "run" / "cases" / "good"
    csv = (case / "personal_losses.csv").read_text().splitlines()
    assert csv[0] == "step," + ",".join(sorted(TERMS)) and len(csv) == 3
    assert (case / "losses.png").is_file() and (case / "side_by_side.png").is_file()
    # the restoration blended into the photo (--blend poisson): the photo's own pixels outside
    blended = load_image(tmp_path / "run" / recs["good"]["blended"], 64)
    photo, m = load_image(case / "input.png", 64), load_image(case / "mask.png", 64)[:1] > 0
    outside = np.broadcast_to(~m, photo.shape)
    assert np.abs(blended - photo)[outside].max() < 2.5 / 127.5  # one uint8 step of rounding
    assert np.abs(blended - photo)[~outside].mean() > 0.01
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["settings"]["approaches"]["personal"]["weight_lr"] == cfg.weight_lr
    assert info["settings"]["common"]["blend"] == "poisson"
    # the same command: nothing tuned again, no new line
    lines = (tmp_path / "run" / "results.jsonl").read_text()
    assert main(InvertCLI(**kw)) == 0 and len(calls) == 1
    assert (tmp_path / "run" / "results.jsonl").read_text() == lines
    # another personal setting: refused, nothing written
    assert main(InvertCLI(**{**kw, "steps": 3})) == 2
    assert "personal.steps 2 -> 3" in capsys.readouterr().err
    assert len(calls) == 1 and (tmp_path / "run" / "results.jsonl").read_text() == lines


@pytest.mark.slow
def test_personal_end_to_end_with_baseline_and_auto_mask(tmp_path, monkeypatch):
    """For real: --approach baseline personal with --mask auto on one case whose noise reference
    the screening drops; both restorations, personal's loss terms, curves and rows in the figures;
    the same command then resumes without tuning."""
    from occjax.personal import TERMS

    _personal_cases(tmp_path)
    kw = dict(target=tmp_path / "target.png", mask="auto", refs=(tmp_path / "face.png",
              tmp_path / "noise.png"), out=tmp_path / "run", approach=("baseline", "personal"),
              steps=2, reference_steps=2, progress=False)  # fmt: skip
    assert main(InvertCLI(**kw)) == 0
    recs = {r["approach"]: r for r in read_records(tmp_path / "run")}
    assert set(recs) == {"baseline", "personal"}
    rec = recs["personal"]
    assert rec["status"] == "ok" and rec["n_refs"] == 1 and rec["mask_source"] == "auto"
    assert [s["kept"] for s in rec["screening"]] == [True, False]  # the noise dropped
    assert set(rec["losses"]) == set(TERMS) and all(np.isfinite(list(rec["losses"].values())))
    case = tmp_path / "run" / "cases" / "target"
    csv = (case / "personal_losses.csv").read_text().splitlines()
    assert csv[0] == "step," + ",".join(sorted(TERMS)) and len(csv) == 3
    for name in ("baseline_losses.csv", "losses.png", "mask_auto.png", "personal.png"):
        assert (case / name).is_file(), name
    a, b = (load_image(case / f"{x}.png", 64) for x in ("baseline", "personal"))
    assert np.abs(a - b).max() > 0.05
    rows = Image.open(case / "side_by_side.png").size[1]

    def no_tuning(*a, **k):
        raise AssertionError("resume tuned again")

    monkeypatch.setattr("occjax.personal.invert_personal", no_tuning)
    assert main(InvertCLI(**kw)) == 0
    assert len(read_records(tmp_path / "run")) == 2
    assert Image.open(case / "side_by_side.png").size[1] == rows
