"""The Webcam tab in a real browser: Chromium's fake camera plays a blurred face video made here (each frame
stamped with its number), the tab sends its frames over its WebSocket through the real-time student, and the
frames that come back are the model's sharpened versions of the very frames the browser sent; the page draws
them and shows its status line."""
from __future__ import annotations

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
STATUS = re.compile(r"(\d+\.\d) frames/s \| latency \d+ ms \| student \d+ ms per 640x480 frame \((.+), (onnx|torch|openvino)[-a-z0-9]*\)")

pytestmark = pytest.mark.timeout(300)


def _face_video():
    spec = importlib.util.spec_from_file_location("face_video", REPO_ROOT / "scripts" / "face_video.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _decode(jpeg: bytes) -> np.ndarray:
    bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert bgr is not None, f"not a JPEG: {jpeg[:16]!r}"
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
    from sharpkd.app.ui import WEBCAM_PATH, webcam_sharpener
    from sharpkd.inference.live import DEFAULT_MODEL

    fv = _face_video()
    sent: dict[int, bytes] = {}  # frame number -> the JPEG the browser sent
    received: dict[int, bytes] = {}  # frame number -> the sharpened JPEG the server sent back
    sockets = []

    def keep(frames: dict[int, bytes]):
        def on_frame(payload):
            if isinstance(payload, bytes):  # JPEG frames are binary; the server's JSON messages are text
                frames.setdefault(fv.read_stamp(_decode(payload)), payload)
        return on_frame

    def on_socket(ws):
        sockets.append(ws.url)
        ws.on("framesent", keep(sent))
        ws.on("framereceived", keep(received))

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM),
                                     args=CHROMIUM_ARGS + [f"--use-file-for-fake-video-capture={camera_file}"])
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 1000}, permissions=["camera"]).new_page()
            page.set_default_timeout(120_000)
            page.on("websocket", on_socket)
            page.goto(sharpkd_app_server)
            page.get_by_role("tab", name="Webcam").click()
            page.locator("#webcam-toggle").click()  # Start
            for _ in range(600):
                if len(set(received) & set(sent)) >= FRAMES_WANTED:
                    break
                page.wait_for_timeout(100)
            page.wait_for_function("() => /frames\\/s \\| latency \\d+ ms \\| student/"
                                   ".test(document.querySelector('#webcam-status').textContent)")
            line = page.inner_text("#webcam-status")
            drawn = page.evaluate("() => { const c = document.querySelector('#webcam-output');"
                                  " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
                                  " let s = 0; for (let i = 0; i < d.length; i += 4) s += d[i];"
                                  " return [c.width, c.height, s / (d.length / 4)]; }")
            page.locator("#webcam-toggle").click()  # Stop
            page.wait_for_function("() => document.querySelector('#webcam-status').textContent"
                                   ".startsWith('stopped after')")
            stopped = page.evaluate("() => [document.querySelector('#webcam-preview').srcObject,"
                                    " document.querySelector('#webcam-toggle').textContent]")
        finally:
            browser.close()

    assert sockets and all(url.endswith(WEBCAM_PATH) for url in sockets), sockets  # the tab's own transport
    both = sorted(set(received) & set(sent))
    assert len(both) >= FRAMES_WANTED, f"got {len(received)} output frames, {len(sent)} sent, {len(both)} matched"
    match = STATUS.match(line)
    assert match and match.group(2) == DEFAULT_MODEL, line
    assert drawn[:2] == list(SIZE) and drawn[2] > 10, drawn  # the output canvas shows a frame, not black
    assert stopped == [None, "Start"]  # Stop closed the camera
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
