"""The web app through its HTTP API: a real `sharpkd serve` process (see conftest.py) and gradio_client."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from sharpkd.app.service import blur, load_model, quality  # noqa: E402
from sharpkd.models.weights import read_sidecar  # noqa: E402

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def client(sharpkd_app_server):
    return Client(sharpkd_app_server, verbose=False)


def _size(path) -> tuple[int, int]:
    with Image.open(path) as im:
        return im.size


def _rgb(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def test_compare_sharpens_a_real_photo_at_full_resolution(client, sharpkd_app_face):
    size = _size(sharpkd_app_face)
    inp, teacher, student, (before, after), report, summary = client.predict(
        handle_file(str(sharpkd_app_face)), False, "Gaussian", 4.0, "student", api_name="/compare")
    for path in (inp, teacher, student, before, after):
        assert _size(path) == size
    assert np.array_equal(_rgb(inp), _rgb(sharpkd_app_face))  # PNG out: the input comes back unchanged
    assert (report["width"], report["height"]) == size and report["blur"] is None
    for role in ("teacher", "student"):
        assert report[role]["latency_ms"] > 0 and report[role]["trained"] is True
    assert f"{size[0]}x{size[1]}" in summary and "ms" in summary


def test_compare_with_simulated_blur_scores_each_output(client, tmp_path):
    import skimage.data

    path = tmp_path / "coffee.webp"
    Image.fromarray(skimage.data.coffee()).save(path, lossless=True)
    *_, report, summary = client.predict(handle_file(str(path)), True, "Motion", 6.0, "teacher", api_name="/compare")
    assert report["blur"] == {"op": "MotionBlur", "length": 9.0, "angle": 0.0}
    for key in ("input", "teacher", "student"):
        assert 0 < report[key]["ssim"] <= 1 and report[key]["psnr"] > 0
    assert report["input"]["ssim"] < 0.95  # the blur really happened
    assert "SSIM" in summary and "PSNR" in summary


def _truncated_jpeg(tmp_path: Path) -> Path:
    good = tmp_path / "whole.jpg"
    Image.fromarray(np.full((200, 300, 3), 128, np.uint8)).save(good, quality=90)
    bad = tmp_path / "truncated.jpg"
    bad.write_bytes(good.read_bytes()[:400])
    return bad


def _corrupt_png(tmp_path: Path) -> Path:
    """A PNG whose header is fine and whose pixel data is garbage."""
    path = tmp_path / "corrupt.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
    data = bytearray(path.read_bytes())
    data[100:400] = bytes(300)
    path.write_bytes(bytes(data))
    return path


BAD_UPLOADS = {
    "not an image": (lambda d: (d / "notes.txt").write_text("hello, not a picture") and d / "notes.txt",
                     "not an image file"),
    "corrupt": (_corrupt_png, "corrupt or truncated"),
    "truncated": (_truncated_jpeg, "corrupt or truncated"),
    "empty": (lambda d: (d / "empty.png").write_bytes(b"") or d / "empty.png", "empty file"),
    "too large": (lambda d: Image.new("RGB", (1600, 1600)).save(d / "big.png") or d / "big.png",
                  "above the limit of 2"),
}


@pytest.mark.parametrize("kind", list(BAD_UPLOADS))
def test_bad_upload_gives_a_clear_error_and_the_server_goes_on(client, tmp_path, kind, sharpkd_app_face):
    make, message = BAD_UPLOADS[kind]
    bad = make(tmp_path)
    for api_name, args in (("/compare", (False, "Gaussian", 4.0, "student")), ("/sharpen", ("student",))):
        with pytest.raises(AppError, match=message):
            client.predict(handle_file(str(bad)), *args, api_name=api_name)
    out, info = client.predict(handle_file(str(sharpkd_app_face)), "student", api_name="/sharpen")
    assert _size(out) == _size(sharpkd_app_face) == (info["width"], info["height"])


def test_twenty_simultaneous_requests_are_all_answered_correctly(sharpkd_app_server, sharpkd_app_weights, tmp_path):
    """Each request has its own image size and content; every answer must be that image, sharpened. One client
    per request, as twenty users would be (one gradio_client shared by 20 threads once lost a job client-side)."""
    from sharpkd.inference import load

    rng = np.random.default_rng(0)
    images = []
    for i in range(20):
        arr = rng.integers(0, 256, (48 + 4 * i, 64 + 2 * i, 3), dtype=np.uint8)
        path = tmp_path / f"img{i:02d}.png"
        Image.fromarray(arr).save(path)
        images.append((path, arr))
    with ThreadPoolExecutor(20) as pool:
        jobs = [pool.submit(lambda p: Client(sharpkd_app_server, verbose=False).predict(
            handle_file(str(p)), "student", api_name="/sharpen"), p) for p, _ in images]
        results = [j.result(timeout=240) for j in jobs]
    student = load(str(sharpkd_app_weights["student"]), backend="torch")
    for (path, arr), (out, info) in zip(images, results):
        got = _rgb(out)
        assert got.shape == arr.shape and (info["height"], info["width"]) == arr.shape[:2]
        expected = student.sharpen(arr)
        assert np.abs(got.astype(int) - expected.astype(int)).max() <= 2


def test_models_endpoint_reads_the_sidecars(client):
    models = {m["model"]: m for m in client.predict(api_name="/models")}
    assert set(models) == {"teacher", "student"}
    assert models["student"]["parameters"] * 10 < models["teacher"]["parameters"]
    assert all(m["arch"] == read_sidecar(name)["arch"] for name, m in models.items())  # the shipped architectures
    for m in models.values():
        assert m["status"] == "trained"
        assert m["data"]["dataset"] == "celeba_hq"
        assert m["suite"] == read_sidecar(m["model"])["suite"]  # the figures of docs/models.md and the README
        assert m["macs_per_pixel"] > 0 and m["gmacs_720p"] > 0
    assert models["student"]["macs_per_pixel"] < models["teacher"]["macs_per_pixel"] / 5
    assert models["student"]["curves"].endswith("student_curves.png")


# ------------------------------------------------------------------------------- the service, in process
def test_blur_uses_the_library_kernels_and_metrics():
    import skimage.data

    sharp = np.ascontiguousarray(skimage.data.chelsea())
    soft, op = blur(sharp, "Gaussian", 2.0)
    harder, _ = blur(sharp, "Gaussian", 8.0)
    assert op == {"op": "GaussianBlur", "sigma": 0.6} and soft.shape == sharp.shape and soft.dtype == np.uint8
    assert 1 > quality(soft, sharp)["ssim"] > quality(harder, sharp)["ssim"]
    assert quality(sharp, sharp)["ssim"] == pytest.approx(1.0)


def test_without_shipped_weights_the_app_falls_back_to_untrained():
    from sharpkd.models.weights import shipped_weights_path

    m = load_model("student")
    assert m.trained == shipped_weights_path("student").is_file()
    assert m.sharpen(np.zeros((20, 30, 3), np.uint8))[0].shape == (20, 30, 3)
