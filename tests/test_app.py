"""The web page (scripts/app.py): its callbacks without a browser, then the page in headless Chromium.

The callback tests are plain Python (no gradio): bad uploads give a one-line message, never a
traceback. The browser test starts the page on a free port with the built-in model, uploads a
generated face with a hand pasted on, proposes the mask, adds references, runs a few steps and
checks the result; it skips when gradio, selenium, chromium or chromedriver is missing. Set
OCCJAX_SCREENSHOT=path.png to keep its screenshot (always saved under pytest's tmp_path), and
OCCJAX_APP_STEPS=N for N steps everywhere instead of 5 (docs/app.png: N=100, the model's default):

    OCCJAX_APP_STEPS=100 OCCJAX_SCREENSHOT=docs/app.png python -m pytest tests/test_app.py -k browser
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import occjax
from occjax.app.editor import display_size, editor_value, mask_from_editor
from occjax.app.handlers import KEEP, Handlers
from occjax.app.inputs import alignment_unavailable
from occjax.app.session import Session
from occjax.deps import available
from occjax.masks import MaskConfig, mask_steps
from tests.conftest import fake_invert_personal

CHROME_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1800",
]


@pytest.fixture(scope="module")
def models():
    return occjax.load_models(bundle="faces64")


@pytest.fixture
def handlers(models):
    return Handlers(models)


def save(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array).save(path)
    return path


def face_png(models, folder: Path, size: int | None = None) -> Path:
    """A generated face (optionally enlarged to size x size) as a PNG."""
    from occjax.io import to_uint8

    z = np.random.default_rng(0).standard_normal((1, models.z_dim)).astype(np.float32)
    face = to_uint8(np.asarray(models.generate(z))[0])
    if size:
        face = np.asarray(Image.fromarray(face).resize((size, size), Image.LANCZOS))
    return save(folder / "face.png", face)


def no_traceback(message: str) -> None:
    assert message.startswith("**⚠") and "Traceback" not in message and "\n" not in message


# ---- the callbacks, without a browser -------------------------------------------------------------


def test_not_an_image_gives_a_message(handlers, tmp_path):
    s = Session()
    bad = tmp_path / "holiday.png"
    bad.write_bytes(b"this is not a picture")
    editor, msg, _ = handlers.photo(s, str(bad), False)
    assert editor is None and s.photo is None
    no_traceback(msg)
    assert "holiday.png: not an image" in msg
    gallery, table = handlers.references(s, [str(bad)], False, 5)
    assert gallery == [] and "holiday.png: not an image" in table and "skipped" in table


def test_mask_of_another_size_gives_a_message(handlers, models, tmp_path):
    s = Session()
    editor, msg, _ = handlers.photo(s, str(face_png(models, tmp_path, 96)), False)
    assert editor["background"].shape[:2] == (display_size(64),) * 2 and "96x96" in msg
    small = save(tmp_path / "mask.png", np.zeros((40, 30), np.uint8))
    editor2, msg = handlers.mask_file(s, str(small))
    assert editor2 is KEEP
    no_traceback(msg)
    assert "30x40 but the photo face.png is 96x96" in msg
    # a mask layer of another size in the editor (what Run reads)
    bad = dict(editor, layers=[np.zeros((100, 100, 4), np.uint8)])
    out = handlers.run(s, bad, ("baseline", 5, True, 1.0, 5), None, False)
    no_traceback(out[0])
    assert "the mask is 100x100" in out[0] and all(v is KEEP for v in out[1:])


def test_no_face_with_align_gives_a_message(handlers, tmp_path):
    if why := alignment_unavailable():
        pytest.skip(why)
    noise = np.random.default_rng(1).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    editor, msg, _ = handlers.photo(Session(), str(save(tmp_path / "wall.png", noise)), True)
    assert editor is None
    no_traceback(msg)
    assert "wall.png: cannot align the face" in msg and "no face" in msg


@pytest.mark.slow
def test_aligned_photo_is_restored_and_pasted_back(handlers, models, tmp_path):
    if why := alignment_unavailable():
        pytest.skip(why)
    face = np.asarray(Image.open(face_png(models, tmp_path, 256)))
    photo = np.full((336, 460, 3), 128, np.uint8)
    photo[40:296, 40:296] = face  # dlib needs a face of ~80 px or more
    s = Session()
    editor, msg, _ = handlers.photo(s, str(save(tmp_path / "wide.png", photo)), True)
    assert "face aligned" in msg and s.photo.aligned is not None
    mask = np.zeros((336, 460), np.uint8)
    mask[190:260, 110:230] = 255  # the lower face
    editor, msg = handlers.mask_file(s, str(save(tmp_path / "wide_mask.png", mask)))
    assert msg.startswith("Mask loaded")
    assert 0 < mask_from_editor(editor, 64).mean() < 0.5
    out = handlers.run(s, editor, ("baseline", 5, True, 1.0, 5), None, True)
    assert out[0].startswith("Restored: **baseline**, 5 steps"), out[0]
    before, after = out[1]
    assert before.shape == after.shape == photo.shape  # the whole photo, restored face pasted back
    names = sorted(Path(f).name for f in out[4])
    assert names == ["wide_codes.npz", "wide_mask.png", "wide_pasted_back.png", "wide_restored.png"]
    with np.load(next(f for f in out[4] if f.endswith(".npz"))) as z:
        assert z["codes"].shape == (1, *models.code_shape) and z["mask"].shape == (1, 64, 64)


def test_align_without_dlib_says_how_to_install(handlers, models, tmp_path, monkeypatch):
    why = "the 'dlib' landmark backend needs dlib (face boxes): pip install 'occjax[faces]'"
    monkeypatch.setattr("occjax.app.inputs.alignment_unavailable", lambda: why)
    editor, msg, _ = handlers.photo(Session(), str(face_png(models, tmp_path)), True)
    assert editor is None and "align face:" in msg and "pip install 'occjax[faces]'" in msg


def test_photo_is_centre_cropped_without_align(handlers, tmp_path):
    s = Session()
    photo = np.zeros((60, 100, 3), np.uint8)
    photo[:, 20:80] = 200  # the centred 60x60 square is bright, the sides dark
    editor, msg, _ = handlers.photo(s, str(save(tmp_path / "wide.png", photo)), False)
    assert "centre-cropped to 60x60" in msg and s.photo.crop == (20, 0, 80, 60)
    assert s.photo.image.shape == (3, 64, 64) and s.photo.image.min() > 0.5


def test_editor_mask_round_trip():
    image = np.zeros((3, 64, 64), np.float32)
    mask = np.zeros((1, 64, 64), np.float32)
    mask[0, 10:30, 20:50] = 1
    value = editor_value(image, mask)
    assert value["layers"][0].shape == (512, 512, 4)
    np.testing.assert_array_equal(mask_from_editor(value, 64), mask)
    with pytest.raises(ValueError, match="upload a photo first"):
        mask_from_editor(None, 64)


def test_run_messages_and_cancel(handlers, models, tmp_path):
    s = Session()
    out = handlers.run(s, None, ("baseline", 5, True, 1.0, 5), None, False)
    assert "upload a photo first" in out[0]
    editor, _, _ = handlers.photo(s, str(face_png(models, tmp_path)), False)
    out = handlers.run(s, editor, ("baseline", 5, True, 1.0, 5), None, False)
    assert "the mask is empty" in out[0]
    mask = np.zeros((1, 64, 64), np.float32)
    mask[0, 30:50, 20:44] = 1
    out = handlers.run(s, editor_value(s.photo.image, mask), ("prior", 5, True, 1.0, 5), [], False)
    assert "prior needs reference photos" in out[0]
    for bad in (None, 0):
        out = handlers.run(s, editor, ("baseline", bad, True, 1.0, 5), None, False)
        no_traceback(out[0])

    def press_cancel(fraction, text):  # Cancel pressed while the first steps run
        s.cancel = s.cancel or "step" in text

    editor = editor_value(s.photo.image, mask)
    out = handlers.run(s, editor, ("baseline", 10, True, 1.0, 5), None, False, press_cancel)
    assert out[0] == "Cancelled after 1 of 10 steps." and s.result is None


def _screened(models, paths: list[Path], kept: list[bool]):
    """The page's References for these uploads as the screening would leave them (`kept`)."""
    from occjax.app.inputs import load_photo
    from occjax.app.session import References

    photos = [load_photo(str(p), models.resolution, False) for p in paths]
    n = len(photos)
    z = np.zeros((n, *models.code_shape), np.float32)
    scores = (np.full(n, 20.0), np.full(n, 0.1), np.full(n, np.nan))
    sc = occjax.Screening(z, *scores, np.asarray(kept), np.zeros(n, bool), [""] * n)
    return References(photos, sc, [], (tuple(map(str, paths)), False, 2))


def test_personal_is_listed_and_runs_with_a_progress_bar(handlers, models, tmp_path, monkeypatch):
    """personal is in the approach list (opt-in: never preselected), needs references as prior
    does, and runs on the KEPT reference photos with the page's steps, reporting each step to the
    progress bar; its loss curve and downloads come back. (The tuning is faked: test_personal.py
    tests it; the slow test below runs it for real.)"""
    from occjax.app import actions
    from occjax.personal import PersonalConfig

    assert actions.approaches(models)[-1] == "personal"
    assert actions.default_settings(models).approach == "prior"
    # the page's auto-mask steps start where estimate_mask's default does (75 on faces64)
    assert actions.default_mask_steps(models) == mask_steps(models, MaskConfig()) == 75
    assert actions.default_settings(models, "personal").steps == models.info["personal"]["steps"]
    s = Session()
    editor, _, _ = handlers.photo(s, str(face_png(models, tmp_path)), False)
    mask = np.zeros((1, 64, 64), np.float32)
    mask[0, 30:50, 20:44] = 1
    editor = editor_value(s.photo.image, mask)
    widgets = ("personal", 2, True, 1.0, 2)
    out = handlers.run(s, editor, widgets, None, False)
    assert "personal needs reference photos" in out[0]
    calls: list = []
    monkeypatch.setattr("occjax.personal.invert_personal", fake_invert_personal(calls))
    refs = [tmp_path / "face.png", save(tmp_path / "black.png", np.zeros((64, 64, 3), np.uint8))]
    s.references = _screened(models, refs, [True, False])
    reports = []
    out = handlers.run(s, editor, widgets, None, False, lambda f, t: reports.append((f, t)))
    assert out[0].startswith("Restored: **personal**, 2 steps"), out[0]
    assert "generator tuned on 1 reference(s)" in out[0]
    assert [f for f, _ in reports] == [0.0, 0.5, 1.0] and reports[1][1] == "personal: step 1/2"
    (call,) = calls
    assert isinstance(call["config"], PersonalConfig) and call["config"].reference_steps == 2
    (photos,) = call["references"]
    np.testing.assert_array_equal(photos, s.references.photos[0].image[None])  # the kept one
    assert out[3] is not None  # the loss curve
    with np.load(next(f for f in out[4] if f.endswith(".npz"))) as z:
        assert '"weight_lr"' in str(z["config"])


@pytest.mark.slow
def test_personal_runs_for_real_from_the_page(handlers, models, tmp_path):
    """personal from the page on screened uploads: a restoration, step by step."""
    s = Session()
    editor, _, _ = handlers.photo(s, str(face_png(models, tmp_path)), False)
    mask = np.zeros((1, 64, 64), np.float32)
    mask[0, 30:50, 20:44] = 1
    z = np.random.default_rng(5).standard_normal((1, models.z_dim)).astype(np.float32)
    from occjax.io import to_uint8

    ref = save(tmp_path / "ref.png", to_uint8(np.asarray(models.generate(z))[0]))
    reports = []
    widgets = ("personal", 2, True, 1.0, 2)
    out = handlers.run(
        s, editor_value(s.photo.image, mask), widgets, [str(ref)], False,
        lambda f, t: reports.append((f, t)),
    )  # fmt: skip
    assert out[0].startswith("Restored: **personal**, 2 steps"), out[0]
    assert [f for f, t in reports if "step" in t] == [0.5, 1.0]
    restored = s.result.restored.astype(float)
    assert np.abs(restored - to_uint8(s.photo.image))[30:50, 20:44].mean() > 1


def test_sessions_keep_their_own_photo(handlers, models, tmp_path):
    a, b = Session(), Session()
    handlers.photo(a, str(face_png(models, tmp_path)), False)
    assert a.photo is not None and b.photo is None
    assert "upload a photo first" in handlers.auto_mask(b, 5)[1]


def test_missing_gradio_is_one_line(monkeypatch, capsys):
    from occjax.app import AppCLI, main

    monkeypatch.setattr("occjax.app.serve.available", lambda name: name != "gradio")
    assert main(AppCLI()) == 1
    err = capsys.readouterr().err
    assert err.strip() == 'The web page needs gradio: pip install -e ".[app]"'


# ---- the page in a real browser -------------------------------------------------------------------


def browser_or_skip() -> tuple[str, str]:
    """(chromium, chromedriver) paths, or skip saying what is missing."""
    for module, extra in (("gradio", "app"), ("selenium", "test")):
        if not available(module):
            pytest.skip(f"the browser test needs {module}: pip install -e '.[{extra}]'")
    chromium = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.skip(
            "the browser test needs chromium and chromedriver: "
            "apt-get install -y chromium chromium-driver"
        )
    return chromium, driver


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fetch_png(url: str) -> np.ndarray:
    with urllib.request.urlopen(url, timeout=30) as r:
        return np.asarray(Image.open(io.BytesIO(r.read())).convert("RGB"))


@pytest.mark.slow
def test_page_restores_a_photo_in_a_browser(models, tmp_path):
    chromium, driver_path = browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from occjax.app.serve import start
    from occjax.cli.demo import make_demo_case

    case = make_demo_case(models, 3, tmp_path / "case")
    junk = tmp_path / "notes.png"
    junk.write_text("not an image")
    steps = int(os.environ.get("OCCJAX_APP_STEPS", "5"))
    port = free_port()
    page = start(models, port, block=False)
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in [*CHROME_FLAGS, f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}"]:
        opts.add_argument(flag)
    browser = webdriver.Chrome(service=Service(driver_path), options=opts)
    wait = WebDriverWait(browser, 90 + 4 * steps, poll_frequency=0.2)

    def text(elem_id: str) -> str:
        return browser.find_element(By.ID, elem_id).text

    def wait_text(elem_id: str, *words: str) -> str:
        wait.until(lambda b: any(w in text(elem_id) for w in words))
        return text(elem_id)

    def upload(elem_id: str, *paths: Path) -> None:
        field = browser.find_element(By.CSS_SELECTOR, f"#{elem_id} input[type=file]")
        field.send_keys("\n".join(str(p) for p in paths))

    def set_number(elem_id: str, value: int) -> None:
        # an accordion's fields render a moment after its click: wait, do not assume
        css = f"#{elem_id} input[type=number]"
        wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, css))
        field = browser.find_element(By.CSS_SELECTOR, css)
        field.clear()
        field.send_keys(str(value))

    try:
        url = f"http://127.0.0.1:{port}/"
        browser.get(url)
        wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#photo-upload input[type=file]"))
        # a bad upload: a message on the page, then the real photo replaces it
        upload("photo-upload", junk)
        assert "notes.png: not an image" in wait_text("photo-msg", "⚠")
        browser.find_element(By.CSS_SELECTOR, "#photo-upload button[aria-label='Clear']").click()
        wait.until(lambda b: text("photo-msg") == "")
        upload("photo-upload", case.target)
        wait_text("photo-msg", "resized to 64x64")
        # short settings: a few steps everywhere
        browser.find_element(By.CSS_SELECTOR, "#more-settings button.label-wrap").click()
        for elem_id in ("mask-steps", "ref-steps", "steps"):
            set_number(elem_id, steps)
        browser.find_element(By.ID, "auto-mask").click()
        assert "Proposed mask" in wait_text("mask-msg", "Proposed mask", "⚠")
        upload("refs-upload", *case.refs)
        verdicts = wait_text("refs-verdicts", "reference(s) kept", "⚠")
        assert "dB" in verdicts and "kept" in verdicts
        browser.find_element(By.ID, "run").click()
        summary = wait_text("run-msg", "Restored", "⚠", "Cancelled")
        assert summary.startswith(f"Restored: prior, {steps} steps"), summary
        print("page run:", summary)  # its time, shown with -s

        # the result is shown, and differs from the photo inside the mask used
        # outputs render after the message: wait for them (a bounded wait, then the asserts)
        def loaded(b) -> bool:
            ims = b.find_elements(By.CSS_SELECTOR, "#before-after img")
            return bool(ims) and all(
                b.execute_script("return arguments[0].naturalWidth", im) > 0 for im in ims
            )

        wait.until(loaded)
        wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#downloads tr.file")) >= 3)
        links = {
            row.find_element(By.CSS_SELECTOR, "td.filename").get_attribute("aria-label"): (
                row.find_element(By.CSS_SELECTOR, "a").get_attribute("href")
            )
            for row in browser.find_elements(By.CSS_SELECTOR, "#downloads tr.file")
        }
        restored = fetch_png(links["target_restored.png"])
        mask = fetch_png(links["target_mask.png"])[..., 0] > 127
        target = np.asarray(Image.open(case.target).convert("RGB"))
        assert restored.shape == target.shape and mask.any()
        diff = np.abs(restored.astype(float) - target)[mask].mean()
        assert diff > 10, diff
        assert "target_codes.npz" in links
        # every resource came from this machine (no CDN, no web fonts, no analytics)
        loaded = browser.execute_script(
            "return window.performance.getEntriesByType('resource').map(e => e.name)"
        )
        assert loaded and all(u.startswith(url) for u in loaded), loaded
        height = browser.execute_script(
            "return Math.max(...[document.body, document.documentElement,"
            " document.querySelector('.gradio-container')].map(e => e ? e.scrollHeight : 0))"
        )
        browser.set_window_size(1400, height + 120)
        time.sleep(0.5)  # let the page lay itself out at the new size
        shot = tmp_path / "app.png"
        browser.save_screenshot(str(shot))
        if target_path := os.environ.get("OCCJAX_SCREENSHOT"):
            shutil.copyfile(shot, target_path)
        # a second tab has its own session: nothing of the first one
        browser.switch_to.new_window("tab")
        browser.get(url)
        wait.until(lambda b: b.find_elements(By.ID, "run"))
        browser.find_element(By.ID, "run").click()
        assert "upload a photo first" in wait_text("run-msg", "⚠")
        assert not browser.find_elements(By.CSS_SELECTOR, "#before-after img")
    finally:
        browser.quit()
        page.close()
