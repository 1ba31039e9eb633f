"""A test video from a real face photo: a slow pan and zoom over a CelebA-HQ face, optionally blurred (a soft
webcam) and stamped with its frame number (a barcode that survives mirroring, JPEG and sharpening), written as
Y4M (what Chromium's fake camera plays) or as an H.264 MP4 (a `sharpkd live --source` file).

    python scripts/face_video.py /tmp/face720.mp4 --size 1280x720 --fps 30 --seconds 10
    python scripts/face_video.py /tmp/face480.y4m --size 640x480 --blur 1.5 --stamp

The face comes from SHARPKD_SHARED_DATA (../shared/data beside the repository) unless --face says otherwise.
Frames are made at run time; nothing is downloaded."""
from __future__ import annotations

import argparse
import math
import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
STAMP_BITS = 8  # frame numbers modulo 256


def default_face() -> Path:
    shared = Path(os.environ.get("SHARPKD_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
    faces = sorted((shared / "faces" / "celeba_hq").glob("*.jpg"))
    if not faces:
        raise SystemExit(f"no faces under {shared / 'faces' / 'celeba_hq'} (set SHARPKD_SHARED_DATA or pass --face)")
    return faces[len(faces) // 2]


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SystemExit(f"{path}: not an image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def stamp_band(width: int, height: int) -> tuple[int, int]:
    """(cell width, band height) of the frame-number stamp at this frame size."""
    return (width // 2) // STAMP_BITS, max(8, height // 30)


def stamp(frame: np.ndarray, index: int) -> np.ndarray:
    """Write `index` (mod 256) into the top band: 8 black/white cells in the left half, mirrored in the right
    half, so that a mirrored frame reads the same."""
    h, w = frame.shape[:2]
    cell, band = stamp_band(w, h)
    for bit in range(STAMP_BITS):
        value = 255 if (index >> bit) & 1 else 0
        frame[:band, bit * cell:(bit + 1) * cell] = value
        frame[:band, w - (bit + 1) * cell:w - bit * cell] = value
    frame[:band, STAMP_BITS * cell:w - STAMP_BITS * cell] = 128
    return frame


def read_stamp(frame: np.ndarray) -> int:
    """The frame number written by `stamp` (mod 256), from the middle of each left-half cell."""
    h, w = frame.shape[:2]
    cell, band = stamp_band(w, h)
    grey = frame[band // 4:band - band // 4].astype(np.float32).mean(axis=-1) if frame.ndim == 3 else frame
    index = 0
    for bit in range(STAMP_BITS):
        if grey[:, bit * cell + cell // 4:(bit + 1) * cell - cell // 4].mean() > 127.5:
            index |= 1 << bit
    return index


def face_frames(face: np.ndarray, size: tuple[int, int], count: int, fps: float = 30.0, blur: float = 0.0,
                stamped: bool = False) -> Iterator[np.ndarray]:
    """`count` uint8 RGB frames of `size` (w, h): a crop of `face` with the frame's aspect ratio that zooms in
    and out (up to 1.25x) and drifts sideways, one cycle every 6 seconds, like a person moving in front of a
    camera. `blur`: Gaussian sigma in output pixels (0: none)."""
    w, h = size
    fh, fw = face.shape[:2]
    base = min(fw / w, fh / h)  # the largest crop of the frame's aspect ratio
    for i in range(count):
        phase = 2 * math.pi * i / (6 * fps)
        zoom = 1.125 - 0.125 * math.cos(phase)
        cw, ch = w * base / zoom, h * base / zoom
        cx = fw / 2 + (fw - cw) / 2 * 0.8 * math.sin(phase)
        cy = fh / 2 + (fh - ch) / 2 * 0.4 * math.sin(2 * phase)
        # crop [cx - cw/2, cx + cw/2] x [cy - ch/2, cy + ch/2] onto w x h
        m = np.array([[w / cw, 0, -(cx - cw / 2) * w / cw], [0, h / ch, -(cy - ch / 2) * h / ch]], np.float64)
        frame = cv2.warpAffine(face, m, (w, h), flags=cv2.INTER_AREA if zoom * w < fw else cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT)
        if blur > 0:
            frame = cv2.GaussianBlur(frame, (0, 0), blur)
        if stamped:
            stamp(frame, i)
        yield np.ascontiguousarray(frame)


def yuv420_roundtrip(frame: np.ndarray) -> np.ndarray:
    """What a frame looks like after the 4:2:0 subsampling of a Y4M file or a camera."""
    return cv2.cvtColor(cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420), cv2.COLOR_YUV2RGB_I420)


def write_y4m(path: str | os.PathLike, frames, fps: float = 30.0) -> int:
    """Raw 4:2:0 Y4M (Chromium's --use-file-for-fake-video-capture plays these, looped). Returns frames written."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    n = 0
    with open(tmp, "wb") as f:
        for frame in frames:
            h, w = frame.shape[:2]
            if n == 0:
                num, den = (int(round(fps * 1000)), 1000) if fps != int(fps) else (int(fps), 1)
                f.write(f"YUV4MPEG2 W{w} H{h} F{num}:{den} Ip A1:1 C420jpeg\n".encode())
            f.write(b"FRAME\n")
            f.write(cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420).tobytes())
            n += 1
    os.replace(tmp, path)
    return n


def write_mp4(path: str | os.PathLike, frames, fps: float = 30.0, crf: int = 16) -> int:
    """H.264 (yuv420p) with PyAV. Returns frames written."""
    import av
    from fractions import Fraction

    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    n = 0
    with av.open(str(tmp), "w") as out:
        stream = None
        for frame in frames:
            if stream is None:
                stream = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001),
                                        options={"crf": str(crf), "preset": "veryfast"})
                stream.width, stream.height, stream.pix_fmt = frame.shape[1], frame.shape[0], "yuv420p"
            for p in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(p)
            n += 1
        for p in stream.encode(None):
            out.mux(p)
    os.replace(tmp, path)
    return n


def parse_size(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    return int(w), int(h)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", help="OUT.y4m (raw, for Chromium's fake camera) or OUT.mp4 (H.264)")
    p.add_argument("--size", default="640x480", help="WxH (default 640x480; even sides)")
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--seconds", type=float, default=6.0, help="length (one zoom cycle: 6 s)")
    p.add_argument("--blur", type=float, default=0.0, help="Gaussian sigma in pixels (a soft webcam; default none)")
    p.add_argument("--stamp", action="store_true", help="frame numbers in the top band (for latency)")
    p.add_argument("--face", help="a face photo (default: a CelebA-HQ face from the shared data)")
    args = p.parse_args()
    size = parse_size(args.size)
    face = read_rgb(args.face or default_face())
    frames = face_frames(face, size, int(round(args.seconds * args.fps)), args.fps, args.blur, args.stamp)
    n = (write_y4m if args.out.endswith(".y4m") else write_mp4)(args.out, frames, args.fps)
    print(f"wrote {args.out}: {n} frames {size[0]}x{size[1]} at {args.fps:g} fps")


if __name__ == "__main__":
    main()
