"""`sharpkd video`: a round trip on a clip generated here (frames, size, duration and audio preserved)."""
from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

import sharpkd
from sharpkd import cli
from sharpkd.inference.video import sharpen_video

FPS, N, W, H = 12, 18, 96, 64


def make_clip(path, audio=True, n=N, w=W, h=H):
    out = av.open(str(path), "w")
    vs = out.add_stream("libx264", rate=FPS)
    vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
    if audio:
        aus = out.add_stream("aac", rate=16000)
        aus.layout = "mono"
    for i in range(n):
        img = np.zeros((h, w, 3), np.uint8)
        img[:, (i * 5) % w:(i * 5) % w + 10] = 255
        img[..., 1] = i * 10
        f = av.VideoFrame.from_ndarray(img, format="rgb24")
        f.pts, f.time_base = i, Fraction(1, FPS)
        for p in vs.encode(f):
            out.mux(p)
    for p in vs.encode(None):
        out.mux(p)
    if audio:
        sr, total = 16000, int(16000 * n / FPS)
        pcm = (0.3 * np.sin(2 * np.pi * 440 * np.arange(total) / sr)).astype(np.float32)
        for k in range(0, total, 1024):
            af = av.AudioFrame.from_ndarray(pcm[k:k + 1024][None], format="fltp", layout="mono")
            af.sample_rate, af.pts, af.time_base = sr, k, Fraction(1, sr)
            for p in aus.encode(af):
                out.mux(p)
        for p in aus.encode(None):
            out.mux(p)
    out.close()


def probe(path):
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        info = {"codec": v.codec_context.name, "w": v.codec_context.width, "h": v.codec_context.height,
                "rate": float(v.average_rate), "audio": [a.codec_context.name for a in c.streams.audio],
                "duration": c.duration / 1e6}
        info["frames"] = sum(1 for _ in c.decode(video=0))
    return info


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "in.mp4"
    make_clip(path)
    return path


def test_round_trip_keeps_frames_size_duration_audio(clip, weights, tmp_path):
    src = probe(clip)
    assert src["frames"] == N and src["audio"] == ["aac"]
    out = tmp_path / "out.mp4"
    assert cli.main(["video", str(clip), "-o", str(out), "--model", str(weights)]) == 0
    got = probe(out)
    assert got["codec"] == "h264" and (got["w"], got["h"]) == (W, H) and got["frames"] == N
    assert got["rate"] == pytest.approx(FPS) and got["audio"] == ["aac"]
    assert got["duration"] == pytest.approx(src["duration"], abs=1.5 / FPS)
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]  # no temporary file left


def test_frames_are_the_sharpened_frames(clip, weights, tmp_path):
    sh = sharpkd.load(str(weights))
    sharpen_video(sh, clip, tmp_path / "o.mp4", progress=False)
    with av.open(str(clip)) as a, av.open(str(tmp_path / "o.mp4")) as b:
        fa = [f.to_ndarray(format="rgb24") for f in a.decode(video=0)]
        fb = [f.to_ndarray(format="rgb24") for f in b.decode(video=0)]
    diff = np.mean([np.abs(sh.sharpen(x).astype(int) - y.astype(int)).mean() for x, y in zip(fa, fb)])
    assert diff < 4  # H.264 at crf 18 is close to, not equal to, the sharpened frames


def test_compare_is_side_by_side(clip, weights, tmp_path):
    sh = sharpkd.load(str(weights))
    r = sharpen_video(sh, clip, tmp_path / "c.mp4", compare=True, progress=False)
    got = probe(tmp_path / "c.mp4")
    assert (got["w"], got["h"]) == (2 * W, H) and got["frames"] == N and r["frames"] == N


def test_no_audio_mkv_onnx_backend(weights, tmp_path):
    make_clip(tmp_path / "silent.mkv", audio=False, n=5, w=50, h=34)
    sh = sharpkd.load(str(weights), backend="onnx")
    sharpen_video(sh, tmp_path / "silent.mkv", tmp_path / "o.mkv", progress=False)
    got = probe(tmp_path / "o.mkv")
    assert got["audio"] == [] and got["frames"] == 5 and (got["w"], got["h"]) == (50, 34)


def test_bad_inputs_are_one_line_errors(tmp_path, weights, capsys):
    assert cli.main(["video", str(tmp_path / "none.mp4"), "-o", str(tmp_path / "o.mp4"),
                     "--model", str(weights)]) == 2
    (tmp_path / "junk.mp4").write_bytes(b"not a video at all")
    assert cli.main(["video", str(tmp_path / "junk.mp4"), "-o", str(tmp_path / "o.mp4"),
                     "--model", str(weights)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 2
    assert not (tmp_path / "o.mp4").exists()


def test_h264_writer_keeps_frames_and_timestamps_and_refuses_a_file_it_cannot_write(tmp_path):
    """The one H.264 writer of `sharpkd video` and of `live`'s file sink."""
    from sharpkd.errors import SharpkdError
    from sharpkd.inference.video import H264Writer

    ms = Fraction(1, 1000)
    writer = H264Writer(tmp_path / "w.mp4", 64, 48, Fraction(25), ms, label="w.mp4")
    for i, pts in enumerate((0, 40, 120)):  # a dropped frame at 80 ms
        writer.write(np.full((48, 64, 3), 60 * i, np.uint8), pts, ms)
    writer.finish()
    with av.open(str(tmp_path / "w.mp4")) as c:
        frames = list(c.decode(video=0))
    assert [(f.width, f.height) for f in frames] == [(64, 48)] * 3
    assert [round(float(f.pts * f.time_base) * 1000) for f in frames] == [0, 40, 120]
    levels = [float(np.median(f.to_ndarray(format="rgb24"))) for f in frames]
    assert all(abs(level - 60 * i) <= 4 for i, level in enumerate(levels))  # through limited-range YUV
    with pytest.raises(SharpkdError, match=r"^w\.xyz: cannot write a video there \(.*\)$"):  # no such format
        H264Writer(tmp_path / "w.xyz", 64, 48, Fraction(25), ms, label="w.xyz")
