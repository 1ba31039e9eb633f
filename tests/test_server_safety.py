"""What `sharpkd serve` gives to whoever reaches its address: exactly the files its page shows, only to requests
that name the host it was started for, and one-line refusals for a bad address or bad API parameters. One real
server for the module: a custom student beside a private file, the shipped teacher."""
from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from sharpkd.app.ui import WEBCAM_PATH
from sharpkd.models.weights import WEIGHTS_DIR
from util import stop_process  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 180

pytestmark = pytest.mark.timeout(600)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "sharpkd.cli", "serve", *args], env=env, cwd=REPO_ROOT, **kwargs)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    """DIR/models/my.safetensors with my_curves.png and private_notes.txt beside it; its sidecar's `curves` points
    at ../avatar.png, outside the model's folder."""
    from PIL import Image

    root = tmp_path_factory.mktemp("server-safety")
    weights = root / "models" / "my.safetensors"  # a copy of the shipped student, with a sidecar of its own
    weights.parent.mkdir()
    shutil.copyfile(WEIGHTS_DIR / "student.safetensors", weights)
    sidecar = json.loads((WEIGHTS_DIR / "student.json").read_text())
    weights.with_suffix(".json").write_text(json.dumps({**sidecar, "curves": "../avatar.png"}))
    Image.new("RGB", (64, 32), "white").save(weights.with_name("my_curves.png"))
    weights.with_name("private_notes.txt").write_text("not for the web")
    Image.new("RGB", (32, 32), "red").save(root / "avatar.png")
    return weights


@pytest.fixture(scope="module")
def server(models, tmp_path_factory):
    """`sharpkd serve --student DIR/my.safetensors` (the shipped teacher); yields (port, its log file)."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("server-safety-log") / "serve.log"
    with open(log_path, "w") as log:
        proc = _serve("--host", "127.0.0.1", "--port", str(port), "--student", str(models), "--threads", "1",
                      stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while _status(port, "/config") != 200:
                assert proc.poll() is None, f"sharpkd serve exited:\n{log_path.read_text()}"
                assert time.monotonic() < deadline, f"sharpkd serve did not start:\n{log_path.read_text()}"
                time.sleep(0.5)
            yield port, log_path
        finally:
            stop_process(proc, 60)


def _status(port: int, path: str, headers: dict | None = None) -> int | None:
    """The status of GET `path` (None if nothing answers); `headers` may set Host."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers=headers or {})
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


def _file(port: int, path: Path | str) -> int | None:
    return _status(port, f"/gradio_api/file={path}")


def _page_files(port: int) -> list[str]:
    """The local files the page links to (its images)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=30) as r:
        return re.findall(r"/gradio_api/file=([^\"?]+)", r.read().decode())


# ------------------------------------------------------------------------------------------------- files
def test_files_beside_the_weights_are_not_served(server, models):
    port, _ = server
    assert _file(port, models.with_name("private_notes.txt")) != 200
    for name in ("my.safetensors", "my.json"):
        assert _file(port, models.with_name(name)) != 200


def test_sidecar_curves_outside_the_model_folder_are_ignored(server, models):
    port, log_path = server
    avatar = models.parent.parent / "avatar.png"
    assert _file(port, avatar) != 200
    assert not [f for f in _page_files(port) if "avatar" in f]
    assert re.search(r"ignoring \S*avatar\.png: outside the folder", log_path.read_text())
    assert _status(port, "/") == 200  # the page works, with the curves beside the weights instead
    assert [f for f in _page_files(port) if f.endswith("/my_curves.png")]


def test_shipped_weights_folder_is_not_served(server):
    port, _ = server
    for name in ("teacher.safetensors", "teacher.json", "student.safetensors", "student_curves.png"):
        assert (WEIGHTS_DIR / name).is_file() and _file(port, WEIGHTS_DIR / name) != 200, name


def test_the_images_the_page_shows_are_served(server):
    port, _ = server
    files = _page_files(port)
    assert {Path(f).name for f in files} >= {"my_curves.png", "teacher_curves.png"}
    for f in files:
        assert _file(port, f) == 200, f


# ---------------------------------------------------------------------------------------- host names
def _upgrade(port: int, host: str) -> int | None:
    """The status of the Webcam socket's upgrade request from a page at `host` (Host and Origin both)."""
    return _status(port, WEBCAM_PATH, {"Host": host, "Origin": f"http://{host}", "Upgrade": "websocket",
                                       "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
                                       "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})


def test_requests_for_another_host_name_are_refused(server):
    port, _ = server
    assert _upgrade(port, f"rebind.example:{port}") == 400  # DNS rebinding: Host and Origin agree
    assert _status(port, "/config", {"Host": f"rebind.example:{port}"}) == 400
    assert _status(port, "/", {"Host": "rebind.example"}) == 400
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"):
        assert _status(port, "/config", {"Host": host}) == 200, host
    assert _upgrade(port, f"localhost:{port}") == 101


# ------------------------------------------------------------------------------------- bad parameters
def test_out_of_range_api_parameters_are_refused_in_one_line(server, tmp_path):
    from gradio_client import Client, handle_file
    from PIL import Image

    port, log_path = server
    image = tmp_path / "photo.png"
    Image.new("RGB", (48, 40), "gray").save(image)
    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
    for kind, strength, says in (("Gaussian", 0, "strength"), ("Gaussian", 1e9, "strength"),
                                 ("Bogus", 4.0, "Bogus"), ("Motion", "lots", "strength")):
        with pytest.raises(Exception) as err:
            client.predict(handle_file(str(image)), True, kind, strength, "student", api_name="/compare")
        assert says in str(err.value) and "\n" not in str(err.value).strip()
    with pytest.raises(Exception) as err:
        client.predict(handle_file(str(image)), "Bogus", api_name="/sharpen")
    assert "Bogus" in str(err.value)
    out, info = client.predict(handle_file(str(image)), "student", api_name="/sharpen")  # the server goes on
    assert (info["width"], info["height"]) == (48, 40)
    log = log_path.read_text()
    assert "Traceback" not in log
    assert log.count("request refused:") >= 5


# ------------------------------------------------------------------------------------------ addresses
@pytest.fixture
def busy_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.mark.parametrize("case", ["in use", "out of range", "no address"])
def test_an_address_the_server_cannot_use_is_one_line_before_the_models_load(case, busy_port):
    host, port, says = {"in use": ("127.0.0.1", busy_port, f"port {busy_port} on 127.0.0.1 is in use"),
                        "out of range": ("127.0.0.1", 99999, "--port 99999 is not a port number"),
                        "no address": ("256.1.1.1", 7860, "--host 256.1.1.1 is not an address")}[case]
    # a student that does not exist: the address must be refused before any model is looked for
    proc = _serve("--host", host, "--port", str(port), "--student", "/nonexistent/student.safetensors",
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert err.strip().splitlines() == [err.strip()] and err.startswith(f"sharpkd: error: {says}"), err
