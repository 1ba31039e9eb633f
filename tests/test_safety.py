"""Nothing of the user's is lost: inputs are never overwritten unasked, runs are never deleted unasked, bad output
paths fail before any work, interrupted commands leave no temporary files, and the web app's memory and disk
stay bounded."""
from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sharpkd.cli import main
from sharpkd.models import build_model, save_weights

from util import REPO_ROOT, make_image_folder

TRAIN = ["--max-epochs", "1", "--epoch-size", "16", "--val-size", "8", "--crop", "32", "--batch-size", "8",
         "--num-workers", "0"]


def _png(path: Path, h: int = 40, w: int = 48, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def _errors(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def _hidden(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*")]


@pytest.fixture
def count_sharpens(monkeypatch):
    """How many images went through a model (to show that a failure came before any work)."""
    from sharpkd.inference.sharpener import Sharpener

    calls = []
    real = Sharpener.sharpen
    monkeypatch.setattr(Sharpener, "sharpen", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    return calls


# ------------------------------------------------------------------------------------ 1. inputs are kept
def test_sharpen_refuses_to_write_over_its_inputs(tmp_path, weights, capsys, count_sharpens):
    photo = _png(tmp_path / "photos" / "photo.png")
    _png(tmp_path / "photos" / "sub" / "other.png", seed=1)
    before = photo.read_bytes()
    for inputs, out in (([photo], photo.parent), ([photo.parent], photo.parent),
                        ([photo.parent / "sub"], photo.parent / "sub")):
        assert main(["sharpen", *map(str, inputs), "-o", str(out), "--model", str(weights)]) == 2
        [err] = _errors(capsys)
        assert err.startswith("sharpkd: error:") and "is an input" in err and "--overwrite" in err
    assert photo.read_bytes() == before and not count_sharpens and not _hidden(tmp_path)
    # Asked for explicitly, the original is replaced (atomically) by its sharpened self.
    assert main(["sharpen", str(photo), "-o", str(photo.parent), "--model", str(weights), "--overwrite"]) == 0
    assert photo.read_bytes() != before and Image.open(photo).size == (48, 40) and not _hidden(tmp_path)


def test_an_output_folder_inside_the_input_folder_is_not_read_as_input(tmp_path, weights):
    photos = make_image_folder(tmp_path / "photos", n=2, size=24)
    (photos / ".photo.123-ab.tmp.png").write_bytes(b"")  # a hidden leftover is no image of the user's
    for again in ([], ["--overwrite"]):  # a second run must not sharpen the first run's outputs
        assert main(["sharpen", str(photos), "-o", str(photos / "sharp"), "--model", str(weights), *again]) == 0
    assert sorted(p.relative_to(photos / "sharp").as_posix() for p in (photos / "sharp").rglob("*")) == \
        ["img00.png", "img01.png"]


def test_video_refuses_to_write_over_its_input(tmp_path, weights, capsys, count_sharpens):
    from test_video import make_clip

    clip = tmp_path / "clip.mp4"
    make_clip(clip, audio=False, n=4)
    before = clip.read_bytes()
    for out in (clip, tmp_path):  # the file itself, or its folder (which means tmp_path/clip.mp4)
        assert main(["video", str(clip), "-o", str(out), "--model", str(weights)]) == 2
        [err] = _errors(capsys)
        assert "is the input" in err and "--overwrite" in err
    assert clip.read_bytes() == before and not count_sharpens and not _hidden(tmp_path)


# ---------------------------------------------------------------------------------- 2. runs are kept
@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("tiny"), n=12, size=40)


@pytest.fixture(scope="module")
def finished_run(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "teacher"
    assert main(["train-teacher", "--data", str(tiny_data), "--out", str(out), *TRAIN]) == 0
    return out


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("state", ["unfinished", "finished"])
def test_training_refuses_a_folder_that_holds_a_run(state, finished_run, tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    if state == "unfinished":  # interrupted: checkpoints and logs, no final weights
        for name in ("model.safetensors", "model.json", "metrics.csv", "curves.png", "epochs.md"):
            (run / name).unlink()
    before = _snapshot(run)
    capsys.readouterr()
    for command in (["train-teacher"], ["distill", "--no-kd"]):
        assert main([*command, "--data", str(tiny_data), "--out", str(run), *TRAIN]) == 2
        [err] = _errors(capsys)
        assert err.startswith("sharpkd: error:") and f"{state} run" in err
        assert "--resume" in err and "--overwrite" in err
    assert _snapshot(run) == before
    # --overwrite means start over: the earlier run's files are gone, the new run's are there.
    assert main(["train-teacher", "--data", str(tiny_data), "--out", str(run), *TRAIN, "--overwrite", "--seed", "1"]) == 0
    assert len((run / "sittings.jsonl").read_text().splitlines()) == 1
    assert (run / "model.safetensors").read_bytes() != before.get("model.safetensors")
    assert main(["train-teacher", "--data", str(tiny_data), "--out", str(run), "--resume", "--overwrite"]) == 2


def test_resume_from_a_damaged_checkpoint_names_one_that_loads(finished_run, tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    last = run / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # cut off, as by a full disk
    [best] = [p.name for p in (run / "checkpoints").glob("best-*.ckpt")]
    capsys.readouterr()
    assert main(["train-teacher", "--data", str(tiny_data), "--out", str(run), "--resume", *TRAIN]) == 2
    [err] = _errors(capsys)
    assert "last.ckpt is damaged" in err and best in err and "after epoch 1" in err
    (run / "checkpoints" / best).write_bytes(b"")
    assert main(["train-teacher", "--data", str(tiny_data), "--out", str(run), "--resume", *TRAIN]) == 2
    [err] = _errors(capsys)
    assert "no other checkpoint" in err and "--overwrite" in err


def test_teacher_cache_is_computed_once_by_processes_that_need_it_together(tmp_path):
    """The processes of a multi-process run ask for the same cache file at the same time: one computes it."""
    from sharpkd.training.teacher_cache import cached_teacher_outputs

    class SlowTeacher(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.calls = torch.nn.Conv2d(3, 3, 1), 0

        def forward(self, x):
            self.calls += 1
            time.sleep(0.5)
            return self.conv(x)

    weights = tmp_path / "teacher.safetensors"
    weights.write_bytes(b"weights")
    blurry = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    teachers, results = [SlowTeacher(), SlowTeacher()], [None, None]

    def work(i):
        results[i] = cached_teacher_outputs(teachers[i], weights, blurry, tmp_path / "cache")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(t.calls for t in teachers) == 1 and torch.equal(results[0], results[1])
    assert len(list((tmp_path / "cache").glob("teacher-*.safetensors"))) == 1 and not _hidden(tmp_path / "cache")


# ------------------------------------------------------------------------- 3, 4. output paths, checked first
def test_video_into_a_folder_writes_the_input_name_there(tmp_path, weights):
    from test_video import make_clip, probe

    clip = tmp_path / "in" / "clip.mov"
    clip.parent.mkdir()
    make_clip(clip, audio=False, n=4)
    (tmp_path / "out").mkdir()
    assert main(["video", str(clip), "-o", str(tmp_path / "out"), "--model", str(weights)]) == 0
    assert probe(tmp_path / "out" / "clip.mp4")["frames"] == 4 and not _hidden(tmp_path)


def test_bad_output_paths_fail_once_before_any_work(tmp_path, weights, capsys, count_sharpens):
    from test_video import make_clip

    a, b = _png(tmp_path / "a.png"), _png(tmp_path / "b.png", seed=1)
    existing = tmp_path / "existing_file"
    existing.write_text("keep me")
    clip = tmp_path / "clip.mp4"
    make_clip(clip, audio=False, n=4)
    cases = [["sharpen", str(a), str(b), "-o", str(existing)],
             ["sharpen", str(a), str(b), "-o", str(existing / "sub")],
             ["video", str(clip), "-o", str(existing / "out.mp4")]]
    for args in cases:
        assert main([*args, "--model", str(weights)]) == 2
        [err] = _errors(capsys)
        assert err.startswith("sharpkd: error:") and "existing_file" in err and "Error" not in err
    assert existing.read_text() == "keep me" and not count_sharpens


# ------------------------------------------------------------------------------------ 5. the server stays small
@pytest.fixture(scope="module")
def service(weights):
    from sharpkd.app import AppService

    return AppService(teacher=str(weights), student=str(weights), max_pixels=None)


def test_app_sharpens_large_images_in_tiles_as_the_cli_does(service, monkeypatch):
    from sharpkd.app import service as svc

    monkeypatch.setattr(svc, "APP_TILE", 96)
    monkeypatch.setattr(svc, "APP_TILE_PIXELS", 20_000)
    sharpener = service.models["student"].sharpener
    seen = []
    backend = sharpener.backend
    monkeypatch.setattr(sharpener, "backend", lambda x: seen.append(x.shape[-2:]) or backend(x))
    rgb = np.random.default_rng(0).integers(0, 256, (230, 250, 3), dtype=np.uint8)
    out, _ = service.sharpen(rgb, "student")
    assert max(max(s) for s in seen) <= 96 + 2 * 32 and len(seen) == 9  # 3 x 3 tiles, each with its context
    assert np.array_equal(out, sharpener.sharpen(rgb, tile=96, tile_overlap=32))  # the CLI's tiled pixels
    small = rgb[:100, :100]
    expected = sharpener.sharpen(small)
    seen.clear()
    assert np.array_equal(service.sharpen(small, "student")[0], expected) and len(seen) == 1  # one pass


def test_app_blurs_and_scores_in_strips_with_the_one_pass_numbers(monkeypatch):
    from sharpkd.app import service as svc

    yy, xx = np.mgrid[0:150, 0:120]
    img = ((xx[..., None] * [1, 2, 3] + yy[..., None] * [3, 1, 2]) % 256).astype(np.uint8)
    img[::7, ::5] = 255
    whole = {kind: svc.blur(img, kind, 10.0)[0] for kind in svc.BLUR_KINDS}
    score = svc.quality(whole["Gaussian"], img)
    monkeypatch.setattr(svc, "STRIP_PIXELS", 32 * 120)  # 5 strips of 32 rows
    for kind in svc.BLUR_KINDS:
        assert np.array_equal(svc.blur(img, kind, 10.0)[0], whole[kind]), kind
    assert svc.quality(whole["Gaussian"], img) == score


def test_app_runs_one_large_image_at_a_time(service, monkeypatch):
    from sharpkd.app import service as svc

    monkeypatch.setattr(svc, "LARGE_PIXELS", 50 * 50)
    active, peak = [0], [0]
    lock = threading.Lock()

    class Slow:
        def sharpen(self, rgb):
            with lock:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
            time.sleep(0.2)
            with lock:
                active[0] -= 1
            return rgb

    for role in ("teacher", "student"):
        monkeypatch.setattr(service.models[role], "sharpener", Slow())
    buf = io.BytesIO()
    Image.fromarray(np.zeros((60, 60, 3), np.uint8)).save(buf, format="PNG")
    threads = [threading.Thread(target=service.compare, args=(buf.getvalue(),)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 1
    monkeypatch.setattr(svc, "LARGE_PIXELS", 100 * 100)  # small images still run side by side
    threads = [threading.Thread(target=service.compare, args=(buf.getvalue(),)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] > 1


def test_app_says_when_no_image_is_in_hand(service, monkeypatch):
    """What the server waits for when it is stopped (a model cut off by the end of the process aborts it)."""
    class Slow:
        def sharpen(self, rgb):
            time.sleep(0.5)
            return rgb

    for role in ("teacher", "student"):
        monkeypatch.setattr(service.models[role], "sharpener", Slow())
    assert service.wait_idle(0)
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buf, format="PNG")
    worker = threading.Thread(target=service.compare, args=(buf.getvalue(),))
    worker.start()
    time.sleep(0.2)
    assert not service.wait_idle(0.01)
    assert service.wait_idle(30)
    worker.join(5)
    assert not worker.is_alive()


def test_app_deletes_served_files_and_keeps_no_images_per_session(service):
    import gradio as gr

    from sharpkd.app import build_app
    from sharpkd.app import ui

    import inspect

    # (the Webcam tab's own model is not what this test is about: the service's student stands in for it)
    webcam = {"webcam": service.models["student"].sharpener} if "webcam" in inspect.signature(build_app).parameters else {}
    demo = build_app(service, **webcam)
    assert demo.delete_cache == (ui.DELETE_EVERY_S, ui.KEEP_FILES_S) and ui.KEEP_FILES_S <= 3600
    # No session keeps a result's images in server memory (the slider reads them back from the page).
    for fn in demo.fns.values():
        if fn.api_name in ("compare", "sharpen"):
            assert not any(isinstance(b, gr.State) for b in fn.outputs), fn.api_name


def test_server_sweeps_what_gradio_leaves_in_its_folder(tmp_path):
    from sharpkd.app.ui import sweep_leftovers

    old, recent = time.time() - 3600, time.time() - 120
    (tmp_path / "emptied").mkdir()  # the folder of a result file Gradio deleted two minutes ago
    (tmp_path / "tmpupload").write_bytes(b"")  # an upload's empty temporary file, an hour old
    (tmp_path / "tmprecent").write_bytes(b"")  # ... two minutes old: maybe an upload under way
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "example.png").write_bytes(b"png")
    (tmp_path / "tmpbusy").write_bytes(b"data")
    for path in tmp_path.iterdir():
        os.utime(path, (old, old))
    for name in ("emptied", "tmprecent"):
        os.utime(tmp_path / name, (recent, recent))
    (tmp_path / "fresh").mkdir()  # just made: about to be written
    sweep_leftovers(tmp_path, file_age_s=600, folder_age_s=60)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh", "kept", "tmpbusy", "tmprecent"]
    sweep_leftovers(tmp_path, file_age_s=0, folder_age_s=0)  # when the server stops
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept", "tmpbusy"]


# -------------------------------------------------------------------------------------- 6. tiny images
@pytest.mark.parametrize("size", [(1, 1), (2, 2), (5, 3), (1, 40)])
@pytest.mark.parametrize("kind", ["Gaussian", "Motion"])
def test_tiny_images_with_simulated_blur(service, size, kind):
    from sharpkd.app.ui import _metrics_markdown

    buf = io.BytesIO()
    Image.fromarray(np.full((*size, 3), 128, np.uint8)).save(buf, format="PNG")
    res = service.compare(buf.getvalue(), simulate_blur=True, blur_kind=kind, strength=10.0)
    rep = res["report"]
    assert res["student"].shape == (*size, 3) and rep["student"]["ssim"] is None  # no 11x11 window fits
    assert np.isfinite(rep["student"]["psnr"]) and "| student | - |" in _metrics_markdown(rep)


def test_tiny_and_corrupt_images_through_the_apps_compare(service, tmp_path, caplog):
    """The page's /compare handler: a 1x1 or 2x2 image with simulated blur gives its results, a corrupt one a
    one-line message for the page (gr.Error, no traceback printed); nothing is logged as an error."""
    import logging

    import gradio as gr

    from sharpkd.app import build_app

    demo = build_app(service, webcam=service.models["student"].sharpener)
    [compare] = [fn.fn for fn in demo.fns.values() if fn.api_name == "compare"]
    with caplog.at_level(logging.INFO):
        for size in ((1, 1), (2, 2)):
            path = _png(tmp_path / f"tiny{size[0]}.png", *size)
            for kind in ("Gaussian", "Motion"):
                inp, teacher, student, pair, rep, summary = compare(str(path), True, kind, 10.0, "student")
                assert inp.shape == teacher.shape == student.shape == (*size, 3) and pair[1] is student
                assert rep["blur"] and rep["student"]["ssim"] is None and "| student | - |" in summary
        corrupt = tmp_path / "corrupt.png"
        corrupt.write_bytes(_png(tmp_path / "whole.png").read_bytes()[:200])
        with pytest.raises(gr.Error) as err:
            compare(str(corrupt), True, "Gaussian", 10.0, "student")
    assert "corrupt.png" in err.value.message and "\n" not in err.value.message
    assert err.value.print_exception is False
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]


# ---------------------------------------------------------------------------------------- 7. the rest
def test_sigterm_during_sharpen_leaves_no_temporary_file(tmp_path):
    torch.manual_seed(0)
    model = save_weights(build_model("unet"), tmp_path / "teacher.safetensors")
    photos = make_image_folder(tmp_path / "photos", n=12, size=320)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "sharpkd.cli", "sharpen", str(photos), "-o", str(out),
                             "--model", str(model), "--threads", "1"], cwd=REPO_ROOT, stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 240
    while proc.poll() is None and not list(out.glob("*.png")) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # into the next image
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "sharpkd: terminated" in err, err[-2000:]
    written = list(out.glob("*.png"))
    assert 1 <= len(written) < 12 and not _hidden(out)
    assert all(Image.open(p).size == (320, 320) for p in written)  # every file there is whole


def test_make_pairs_with_too_few_images_says_so_and_writes_nothing(tmp_path, capsys):
    src = make_image_folder(tmp_path / "one", n=1, size=40)
    out = tmp_path / "pairs"
    assert main(["make-pairs", str(src), str(out), "--count", "10", "--size", "32"]) == 2
    [err] = _errors(capsys)
    assert "1 image file(s) in all" in err and "both train and val" in err and "readable" not in err
    assert not out.exists()
