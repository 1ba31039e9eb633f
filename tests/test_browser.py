"""The web app in a real browser: Playwright drives Debian's Chromium (with a fake camera) against a real
`sharpkd serve` (see conftest.py). Screenshots of each tab go to test-artifacts/ at the repo root."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("SHARPKD_CHROMIUM", "/usr/bin/chromium"))
if not CHROMIUM.is_file():
    pytest.skip(f"browser tests need Chromium at {CHROMIUM} (apt-get install chromium; .ci/run installs it)",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="browser tests need playwright (pip install playwright)")

from PIL import Image  # noqa: E402

from sharpkd.models.weights import read_sidecar
from sharpkd.models.zoo import cell  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--use-fake-device-for-media-stream",
                 "--use-fake-ui-for-media-stream"]
TIMEOUT_MS = 60_000

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def photo(sharpkd_app_face, tmp_path_factory) -> Path:
    """The test photo at 512x512: the teacher runs on one CPU thread here, keep it quick."""
    path = tmp_path_factory.mktemp("browser") / "face.png"
    with Image.open(sharpkd_app_face) as im:
        im.convert("RGB").resize((512, 512), Image.LANCZOS).save(path)
    return path


@pytest.fixture
def page(browser, sharpkd_app_server):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, permissions=["camera"])
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    pg.goto(sharpkd_app_server)
    pg.wait_for_selector("#run")
    yield pg
    context.close()


def _screenshot(pg, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / name), full_page=True)


def _natural_size(pg, selector: str) -> tuple[int, int]:
    return tuple(pg.eval_on_selector(selector, "e => [e.naturalWidth, e.naturalHeight]"))


def test_image_tab_shows_input_teacher_and_student(page, photo):
    size = Image.open(photo).size
    page.set_input_files("#upload input[type=file]", str(photo))  # an upload runs both models
    for elem in ("out-input", "out-teacher", "out-student"):
        page.wait_for_function(f"() => {{ const i = document.querySelector('#{elem} img');"
                               f" return i && i.complete && i.naturalWidth === {size[0]}; }}")
        assert _natural_size(page, f"#{elem} img") == size  # full resolution, not a preview
    assert re.search(r"Teacher: \d+ ms", page.inner_text("#out-teacher"))
    assert re.search(r"Student: \d+ ms", page.inner_text("#out-student"))
    page.wait_for_function("() => document.querySelectorAll('#slider img').length === 2")
    assert page.locator("#out-student a[download]").count() == 1  # a download button on each output

    page.get_by_label("Simulate blur").check()
    page.get_by_label("Motion").check()
    page.click("#run")
    page.wait_for_function("() => document.querySelector('#metrics').innerText.includes('PSNR')")
    metrics = page.inner_text("#metrics")
    assert "blurry input" in metrics and "motion" in metrics
    page.wait_for_timeout(500)
    _screenshot(page, "app-image-tab.png")


def test_bad_upload_shows_a_message_and_the_page_keeps_working(page, tmp_path, photo):
    bad = tmp_path / "notes.txt"
    bad.write_text("not a picture")
    page.set_input_files("#upload input[type=file]", str(bad))
    page.get_by_text("notes.txt: not an image file").first.wait_for(state="visible")
    page.wait_for_timeout(800)  # the message slides in
    _screenshot(page, "app-bad-upload.png")
    page.locator("#upload").get_by_label("Clear").click()
    page.set_input_files("#upload input[type=file]", str(photo))
    width = Image.open(photo).size[0]
    page.wait_for_function(f"() => {{ const i = document.querySelector('#out-student img');"
                           f" return i && i.complete && i.naturalWidth === {width}; }}")


def test_clicking_a_bundled_example_runs_it_as_it_is(page):
    page.locator("#simulate input").check()
    page.get_by_role("button", name="camera-shake").click()  # scikit-image's chelsea (451x300), camera-shaken
    page.wait_for_function("() => { const i = document.querySelector('#out-student img');"
                           " return i && i.complete && i.naturalWidth === 451 && i.naturalHeight === 300; }")
    assert not page.locator("#simulate input").is_checked()  # already degraded: not blurred again


def test_webcam_tab_streams_through_the_student(page):
    page.get_by_role("tab", name="Webcam").click()
    page.locator("#webcam-toggle").click()  # Start: the camera, then frames over the tab's WebSocket
    page.wait_for_function("() => parseFloat(document.querySelector('#webcam-status').textContent) > 0")
    line = page.inner_text("#webcam-status")
    assert re.match(r"\d+\.\d frames/s \| latency \d+ ms \| student \d+ ms per \d+x\d+ frame", line), line
    _screenshot(page, "app-webcam-tab.png")
    page.locator("#webcam-toggle").click()  # Stop
    page.wait_for_function("() => document.querySelector('#webcam-status').textContent.startsWith('stopped after')")
    assert page.inner_text("#webcam-toggle") == "Start"


def test_models_tab_reads_the_sidecars(page):
    page.get_by_role("tab", name="Models").click()
    table = page.locator("#models-table")
    table.wait_for()
    text = table.inner_text()
    assert "teacher" in text and "student" in text and "celeba_hq" in text
    assert re.search(rf"student \({read_sidecar('student')['arch']}\)\s+trained\s+[\d,]+", text)
    for name in ("teacher", "student"):  # the figures of docs/models.md, the README and `sharpkd models`
        assert cell(read_sidecar(name)["suite"]["datasets"]["faces"]["call"]) in text
    page.get_by_text("student training curves").first.wait_for()
    _screenshot(page, "app-models-tab.png")
