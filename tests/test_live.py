"""`sharpkd live`: the loop with a video file as the source and an in-memory sink, its drops and views, the file
and virtual-camera sinks, and the command's one-line errors."""
from __future__ import annotations

import logging
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from sharpkd import cli
from sharpkd.errors import SharpkdError
from sharpkd.inference import load
from sharpkd.inference.live import (FileSink, FileSource, LatestFrame, MemorySink, NullSink, VirtualCamSink,
                                    check_sink, compose, loopback_devices, open_sink, open_source, parse_size,
                                    run_live, virtualcam_error)

W, H, FPS = 64, 48, 30


def _write_video(path: Path, frames: int = 12, size: tuple[int, int] = (W, H), fps: int = FPS) -> Path:
    """A small H.264 file: a gradient that moves, and each frame's number in its brightest column."""
    import av

    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=Fraction(fps), options={"crf": "10", "preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(frames):
            rgb = np.stack([(xx * 4 + i * 8) % 256, (yy * 5) % 256, (xx + yy + i * 3) % 256], -1).astype(np.uint8)
            for p in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(p)
        for p in stream.encode(None):
            out.mux(p)
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return _write_video(tmp_path_factory.mktemp("live") / "clip.mp4")


@pytest.fixture(scope="module")
def sharpener(weights):
    return load(weights, backend="torch", threads=1)


class Negate:
    """A stand-in model whose output is easy to tell from its input."""

    def sharpen(self, rgb: np.ndarray) -> np.ndarray:
        return 255 - rgb


class Slow:
    """A model slowed down: frames keep arriving while it works."""

    def __init__(self, inner, seconds: float):
        self.inner, self.seconds = inner, seconds

    def sharpen(self, rgb: np.ndarray) -> np.ndarray:
        time.sleep(self.seconds)
        return self.inner.sharpen(rgb)


def test_every_frame_out_has_the_source_size(video, sharpener):
    sink = MemorySink()
    stats = run_live(sharpener, FileSource(video), sink, frames=20)  # 12-frame file: it loops
    assert stats.frames == sink.count == 20
    assert all(f.shape == (H, W, 3) and f.dtype == np.uint8 for f in sink.frames)
    assert stats.size == stats.out_size == (W, H)
    assert len(stats.latency_ms) == 20 and all(ms >= 0 for ms in stats.latency_ms)
    s = stats.summary()
    assert s["latency_ms_p95"] >= s["latency_ms_p50"] > 0 and s["fps"] > 0


def test_drops_are_counted_when_the_model_is_slow(video, sharpener):
    sink = MemorySink()
    sleep = 0.05
    # frames every 10 ms, the model takes 50: about four of every five frames must be dropped at the source
    stats = run_live(Slow(sharpener, sleep), FileSource(video, fps=100), sink, frames=15, warmup=0)
    assert stats.frames == sink.count == 15
    assert stats.dropped > 0
    # every frame delivered is either processed or dropped (one may still sit in the slot when the loop stops)
    assert stats.frames + stats.dropped <= stats.captured <= stats.frames + stats.dropped + 1


class Counter:
    """A source whose frames carry their number and are delivered only when the test releases them."""

    paced_by_itself, fps, label = True, 30.0, "counter"

    def __init__(self):
        self.gate = threading.Semaphore(0)
        self.n = 0
        self.closed = False

    def read(self) -> np.ndarray | None:
        while not self.gate.acquire(timeout=0.05):
            if self.closed:
                return None  # the end of the source: the reader stops
        frame = np.full((4, 4, 3), self.n, np.uint8)
        self.n += 1
        return frame

    def close(self) -> None:
        self.closed = True


def _deliver(source: Counter, slot: LatestFrame, frames: int) -> None:
    target = slot.captured + frames
    for _ in range(frames):
        source.gate.release()
    deadline = time.monotonic() + 60
    while slot.captured < target:
        assert time.monotonic() < deadline, "the reader thread did not take the frames"
        time.sleep(0.001)


def test_the_newest_frame_wins_and_the_others_are_dropped_not_queued():
    source = Counter()
    slot = LatestFrame(source).start()
    try:
        _deliver(source, slot, 5)  # five frames arrive while the model is busy
        frame, _ = slot.get()
        assert frame[0, 0, 0] == 4 and slot.dropped == 4  # it gets the newest; four were dropped
        _deliver(source, slot, 1)
        assert slot.get()[0][0, 0, 0] == 5 and slot.dropped == 4  # a model that keeps up drops nothing
        _deliver(source, slot, 3)
        assert slot.get()[0][0, 0, 0] == 8 and slot.dropped == 6
        assert slot.captured == 9
    finally:
        source.close()
        slot.stop()


def test_unpaced_runs_every_frame_without_drops(video):
    stats = run_live(Negate(), FileSource(video), MemorySink(), frames=30, pace=False)
    assert (stats.frames, stats.captured, stats.dropped, stats.paced) == (30, 30, 0, False)


def test_side_by_side_doubles_the_width_and_split_keeps_it(video):
    sink = MemorySink()
    stats = run_live(Negate(), FileSource(video), sink, frames=5, view="side-by-side", pace=False)
    assert stats.out_size == (2 * W, H)
    for f in sink.frames:
        assert f.shape == (H, 2 * W, 3)
        np.testing.assert_array_equal(f[:, W:], 255 - f[:, :W])  # input | output

    sink = MemorySink()
    run_live(Negate(), FileSource(video), sink, frames=5, view="split", pace=False)
    inp = np.arange(H * W * 3, dtype=np.uint8).reshape(H, W, 3)
    for f in sink.frames:
        assert f.shape == (H, W, 3)
    split = compose(inp, 255 - inp, "split")
    np.testing.assert_array_equal(split[:, :W // 2 - 1], inp[:, :W // 2 - 1])  # input on the left
    np.testing.assert_array_equal(split[:, W // 2 + 1:], 255 - inp[:, W // 2 + 1:])  # output on the right
    assert (split[:, W // 2 - 1:W // 2 + 1] == 255).all()  # the dividing line


def test_overlay_draws_the_figures(video):
    plain, drawn = MemorySink(), MemorySink()
    run_live(Negate(), FileSource(video), plain, frames=3, pace=False)
    run_live(Negate(), FileSource(video), drawn, frames=3, pace=False, overlay=True)
    assert any((a != b).any() for a, b in zip(plain.frames, drawn.frames))


def test_odd_frame_sizes_are_cropped_to_even_for_yuv420_sinks(video, caplog):
    sink = MemorySink(needs_even=True)
    with caplog.at_level(logging.WARNING, logger="sharpkd"):
        stats = run_live(Negate(), FileSource(video, size=(W + 1, H + 1)), sink, frames=3, pace=False)
    assert stats.out_size == (W, H) and all(f.shape == (H, W, 3) for f in sink.frames)
    assert "odd side" in caplog.text and f"{W}x{H}" in caplog.text
    sink = MemorySink()  # a sink that takes any size gets the frames as they are
    run_live(Negate(), FileSource(video, size=(W + 1, H + 1)), sink, frames=2, pace=False)
    assert sink.frames[0].shape == (H + 1, W + 1, 3)


def test_file_sink_writes_a_playable_video_atomically(video, tmp_path):
    import av

    out = tmp_path / "live.mp4"
    stats = run_live(Negate(), FileSource(video), FileSink(out), frames=10, view="side-by-side")
    assert out.is_file() and not list(tmp_path.glob(".*tmp*"))
    with av.open(str(out)) as f:
        frames = [fr.to_ndarray(format="rgb24") for fr in f.decode(video=0)]
    assert len(frames) == stats.frames == 10 and frames[0].shape == (H, 2 * W, 3)


def test_file_sink_leaves_nothing_behind_on_an_error(video, tmp_path):
    class Broken:
        def __init__(self):
            self.n = 0

        def sharpen(self, rgb):
            self.n += 1
            if self.n > 4:  # after the warm-up and a couple of frames
                raise RuntimeError("model failed")
            return rgb

    out = tmp_path / "live.mp4"
    with pytest.raises(RuntimeError):
        run_live(Broken(), FileSource(video), FileSink(out), frames=10, pace=False)
    assert list(tmp_path.iterdir()) == []


def test_a_file_that_does_not_loop_ends_the_loop(video):
    stats = run_live(Negate(), FileSource(video, loop=False), MemorySink(), pace=False)
    assert stats.frames == 12 - 1  # the first frame sizes the sink and warms the model up


def test_virtualcam_errors_are_one_line_with_the_fix():
    msg = virtualcam_error("'v4l2loopback' backend: No v4l2 loopback device found at /dev/video[0-99]. Did you "
                           "run 'modprobe v4l2loopback'? See also pyvirtualcam's documentation.")
    assert "\n" not in msg and "sudo modprobe v4l2loopback devices=1 exclusive_caps=1" in msg
    busy = virtualcam_error("'v4l2loopback' backend: Virtual camera device /dev/video10 is busy", "/dev/video10")
    assert "busy" in busy and "\n" not in busy
    with pytest.raises(SharpkdError, match="no virtual camera at /dev/video-none"):
        check_sink("virtualcam", "/dev/video-none")


@pytest.mark.skipif(bool(loopback_devices()), reason="a v4l2loopback device exists here")
def test_no_loopback_device_is_a_clear_error_before_anything_starts():
    with pytest.raises(SharpkdError, match="modprobe v4l2loopback"):
        check_sink("virtualcam")


@pytest.mark.skipif(not loopback_devices(), reason="no v4l2loopback device (sudo modprobe v4l2loopback)")
def test_virtualcam_sink_sends_frames(video):
    pytest.importorskip("pyvirtualcam")
    sink = VirtualCamSink(loopback_devices()[0])
    try:
        stats = run_live(Negate(), FileSource(video, size=(W + 1, H)), sink, frames=5)
    except SharpkdError as exc:
        if "busy" in str(exc):
            pytest.skip(str(exc))
        raise
    assert stats.frames == 5 and stats.out_size == (W, H)


def test_parse_size_and_sources():
    assert parse_size("1280x720") == (1280, 720) and parse_size(None) is None
    for bad in ("1280", "12x", "axb", "0x10", "1x1"):
        with pytest.raises(SharpkdError, match="WIDTHxHEIGHT"):
            parse_size(bad)
    with pytest.raises(SharpkdError, match="no such file"):
        open_source("/nonexistent/clip.mp4")
    assert isinstance(open_sink("null"), NullSink)
    with pytest.raises(SharpkdError, match="--out"):
        open_sink("file")


def test_window_sink_without_a_display_is_a_clear_error(monkeypatch):
    if not sys.platform.startswith("linux"):
        pytest.skip("the display check is for Linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(SharpkdError, match="needs a display"):
        open_sink("window")


@pytest.mark.parametrize("argv, expected", [
    (["--source", "/nonexistent/clip.mp4", "--sink", "null"], "no such file"),
    (["--size", "640by480", "--sink", "null"], "WIDTHxHEIGHT"),
    (["--sink", "file"], "--sink file needs --out"),
    (["--sink", "null", "--out", "x.mp4"], "--out is for --sink file"),
])
def test_cli_errors_are_one_line(argv, expected, capsys):
    assert cli.main(["live", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sharpkd: error:") and expected in err and "\n" not in err


def test_cli_refuses_to_write_over_its_source(video, capsys):
    assert cli.main(["live", "--source", str(video), "--sink", "file", "--out", str(video)]) == 2
    assert "is the source" in capsys.readouterr().err
    assert video.stat().st_size > 0


def test_cli_missing_camera_is_one_line(capsys):
    if Path("/dev/video63").exists():
        pytest.skip("/dev/video63 exists here")
    assert cli.main(["live", "--source", "63", "--sink", "null"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no camera" in err and "\n" not in err


def test_cli_benchmark_prints_latency_fps_and_drops(video, weights, tmp_path, capsys):
    report = tmp_path / "bench.json"
    rc = cli.main(["live", "--source", str(video), "--model", str(weights), "--backend", "torch", "--threads", "1",
                   "--benchmark", "6", "--view", "side-by-side", "--json", str(report)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "real time (source paced at 30 fps): 6 frames" in out and "max throughput (unpaced)" in out
    assert "p95" in out and "dropped" in out and f"{2 * W}x{H}" in out
    import json

    r = json.loads(report.read_text())
    assert r["paced"]["frames"] == r["unpaced"]["frames"] == 6 and r["unpaced"]["dropped"] == 0
