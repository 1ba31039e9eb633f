"""The Webcam tab's WebSocket without a browser: a real `sharpkd serve` (see conftest.py) through the `websockets`
client, and `WebcamSocket`'s limits in this process (Starlette's TestClient, a stand-in model)."""
from __future__ import annotations

import io
import json
import urllib.request

import numpy as np
import pytest
from PIL import Image

from sharpkd.app.ui import WEBCAM_PATH, WEBCAM_SIZE, WebcamSocket

pytestmark = pytest.mark.timeout(300)


def _jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _face(path, size: tuple[int, int]) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB").resize(size, Image.LANCZOS))


def _ws_url(http_url: str) -> str:
    return http_url.replace("http://", "ws://").rstrip("/") + WEBCAM_PATH


def _answer(ws) -> tuple[dict, bytes | None]:
    """One frame's answer: its JSON message, and the sharpened JPEG (None after an error)."""
    msg = json.loads(ws.recv(timeout=120))
    return msg, (ws.recv(timeout=120) if msg["type"] == "frame" else None)


def test_served_socket_sharpens_face_frames_and_survives_bad_messages(sharpkd_app_server, sharpkd_app_face):
    from websockets.sync.client import connect

    frame = _face(sharpkd_app_face, WEBCAM_SIZE)
    with connect(_ws_url(sharpkd_app_server), open_timeout=60) as ws:
        ready = json.loads(ws.recv(timeout=60))
        assert ready["type"] == "ready" and ready["max_side"] == max(WEBCAM_SIZE)
        assert ready["backend"].split("-")[0] in ("onnx", "torch", "openvino")  # the fastest here, timed at start
        ws.send(_jpeg(frame))
        info, jpeg = _answer(ws)
        assert info["type"] == "frame" and (info["width"], info["height"]) == WEBCAM_SIZE
        assert all(info[k] >= 0 for k in ("decode_ms", "model_ms", "encode_ms"))
        with Image.open(io.BytesIO(jpeg)) as out:
            assert out.format == "JPEG" and out.size == WEBCAM_SIZE
            out_rgb = np.asarray(out.convert("RGB"))
        assert np.abs(out_rgb.astype(int) - frame.astype(int)).mean() > 0.5  # the model's output, not an echo

        # Anything else than a JPEG: one line for the page, and the stream goes on.
        for bad in (b"not an image", _jpeg(frame)[:2000], "a text message"):
            ws.send(bad)
            info, jpeg = _answer(ws)
            assert info["type"] == "error" and info["frame"] is True and jpeg is None
            assert "\n" not in info["message"] and "Traceback" not in info["message"]
        # A frame larger than the tab's size comes back scaled to it (longer side 640).
        ws.send(_jpeg(_face(sharpkd_app_face, (1024, 768))))
        info, jpeg = _answer(ws)
        assert (info["width"], info["height"]) == WEBCAM_SIZE
        with Image.open(io.BytesIO(jpeg)) as out:
            assert out.size == WEBCAM_SIZE
    with urllib.request.urlopen(sharpkd_app_server + "config", timeout=30) as r:  # the server is still up
        assert r.status == 200


def test_served_socket_refuses_another_sites_page(sharpkd_app_server):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    with pytest.raises(InvalidStatus) as err:
        connect(_ws_url(sharpkd_app_server), origin="http://elsewhere.example", open_timeout=60)
    assert err.value.response.status_code == 403


class _Echo:
    """A stand-in model: the frame back, unchanged."""

    name, backend_label = "echo", "numpy"

    def sharpen(self, rgb: np.ndarray) -> np.ndarray:
        return rgb.copy()


def _client(socket: WebcamSocket):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    app = FastAPI()
    app.add_api_websocket_route(WEBCAM_PATH, socket.serve)
    return TestClient(app)


def test_socket_limits_streams_and_their_length():
    from starlette.websockets import WebSocketDisconnect

    frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    socket = WebcamSocket(_Echo(), limit=1, seconds=2)
    with _client(socket) as client, client.websocket_connect(WEBCAM_PATH) as ws:
        assert ws.receive_json()["type"] == "ready"
        ws.send_bytes(_jpeg(frame))
        assert ws.receive_json()["type"] == "frame" and len(ws.receive_bytes()) > 0
        with client.websocket_connect(WEBCAM_PATH) as second:  # one stream already runs: refused, in one line
            refused = second.receive_json()
            assert refused["type"] == "error" and "try again later" in refused["message"]
            with pytest.raises(WebSocketDisconnect) as closed:
                second.receive_json()
            assert closed.value.code == 1013
        end = ws.receive_json()  # after `seconds`, the server ends the stream
        assert end["type"] == "end" and "press Start" in end["message"]
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == 1000
    assert socket.streams == 0 and socket.wait_idle(0)


def test_socket_refuses_an_oversized_frame_before_decoding_it():
    socket = WebcamSocket(_Echo(), max_pixels=100 * 100)
    with _client(socket) as client, client.websocket_connect(WEBCAM_PATH) as ws:
        ws.receive_json()
        ws.send_bytes(_jpeg(np.zeros((200, 200, 3), np.uint8)))
        msg = ws.receive_json()
        assert msg["type"] == "error" and "200x200" in msg["message"] and "megapixels" in msg["message"]
        ws.send_bytes(_jpeg(np.zeros((64, 80, 3), np.uint8)))  # and the stream goes on
        assert ws.receive_json()["type"] == "frame"
        with Image.open(io.BytesIO(ws.receive_bytes())) as out:
            assert out.size == (80, 64)
