"""The Webcam tab in a real browser: Chromium's fake camera plays a blurred face video made here (each frame
stamped with its number), the tab streams it through the real-time student, and the frames that come back are
the model's sharpened versions of the very frames the browser sent."""
from __future__ import annotations

import base64
import importlib.util
import os
import re
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = Path(os.environ.get("SHARPKD_CHROMIUM", "/usr/bin/chromium"))
if not CHROMIUM.is_file():
    pytest.skip(f"browser tests need Chromium at {CHROMIUM} (apt-get install chromium; .ci/run installs it)",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="browser tests need playwright (pip install playwright)")

import cv2  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--use-fake-device-for-media-stream",
                 "--use-fake-ui-for-media-stream"]
SIZE = (640, 480)
FRAMES_WANTED = 3
DATA_URL = re.compile(r"data:image/jpeg;base64,([A-Za-z0-9+/=]+)")

pytestmark = pytest.mark.timeout(300)


def _face_video():
    spec = importlib.util.spec_from_file_location("face_video", REPO_ROOT / "scripts" / "face_video.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _decode(b64: str) -> np.ndarray:
    bgr = cv2.imdecode(np.frombuffer(base64.b64decode(b64), np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _sharpness(rgb: np.ndarray, band: int) -> float:
    grey = cv2.cvtColor(rgb[band:], cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(cv2.Laplacian(grey, cv2.CV_32F).var())


def _mse(a: np.ndarray, b: np.ndarray, band: int) -> float:
    return float(((a[band:].astype(np.float64) - b[band:].astype(np.float64)) ** 2).mean())


@pytest.fixture(scope="module")
def camera_file(sharpkd_app_face, tmp_path_factory) -> Path:
    fv = _face_video()
    face = fv.read_rgb(sharpkd_app_face)
    path = tmp_path_factory.mktemp("webcam") / "camera.y4m"
    fv.write_y4m(path, fv.face_frames(face, SIZE, 60, fps=30, blur=1.5, stamped=True), fps=30)
    return path


def test_webcam_tab_returns_sharpened_frames_from_the_fake_camera(sharpkd_app_server, camera_file):
    from sharpkd.app.ui import webcam_sharpener
    from sharpkd.inference.live import DEFAULT_MODEL

    fv = _face_video()
    sent: dict[int, str] = {}  # frame number -> the JPEG the browser sent (base64)

    def on_request(request):
        if request.method != "POST" or "data:image/jpeg;base64," not in (request.post_data or ""):
            return
        for b64 in DATA_URL.findall(request.post_data):
            sent.setdefault(fv.read_stamp(_decode(b64)), b64)

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM),
                                     args=CHROMIUM_ARGS + [f"--use-file-for-fake-video-capture={camera_file}"])
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 1000}, permissions=["camera"]).new_page()
            page.set_default_timeout(120_000)
            page.on("request", on_request)
            page.goto(sharpkd_app_server)
            page.get_by_role("tab", name="Webcam").click()
            page.get_by_text("Click to Access Webcam").click()
            page.get_by_role("button", name="capture photo").click()  # "Record": starts the stream
            received: dict[int, str] = {}  # frame number -> the sharpened JPEG shown (base64)
            last = None
            for _ in range(600):
                src = page.evaluate("() => { const i = document.querySelector('#live img');"
                                    " return i ? i.getAttribute('src') : null; }")
                if src and src != last:
                    last = src
                    match = DATA_URL.search(src)
                    assert match, f"the output is not an inline JPEG: {src[:80]}"
                    received.setdefault(fv.read_stamp(_decode(match.group(1))), match.group(1))
                if len(set(received) & set(sent)) >= FRAMES_WANTED:
                    break
                page.wait_for_timeout(100)
            line = page.input_value("#fps textarea")
            page.get_by_role("button", name="stop recording").or_(page.get_by_text("Stop")).first.click()
        finally:
            browser.close()

    both = sorted(set(received) & set(sent))
    assert len(both) >= FRAMES_WANTED, f"got {len(received)} output frames, {len(sent)} sent, {len(both)} matched"
    assert re.match(rf"\d+\.\d frames/s \| student \d+ ms per 640x480 frame \({DEFAULT_MODEL}, onnx\)", line), line
    model = webcam_sharpener()  # the tab's model, here in this process
    band = fv.stamp_band(*SIZE)[1]
    for idx in both[:FRAMES_WANTED]:
        inp, out = _decode(sent[idx]), _decode(received[idx])
        assert out.shape == inp.shape == (SIZE[1], SIZE[0], 3)
        expected = model.sharpen(inp)
        # the frame that came back is the model's output for the frame that was sent (up to JPEG), not the input
        assert _mse(out, expected, band) < _mse(out, inp, band)
        # and it is sharper than what the camera gave: more detail at the finest scale
        assert _sharpness(out, band) > 1.2 * _sharpness(inp, band)
