"""`sharpkd video`: decode with PyAV, sharpen every frame, encode H.264 at the input's frame rate, keep the audio.

Frame timestamps are carried over from the input, so the frame count and the duration are preserved. The
output path is checked before any frame is decoded (a folder means FOLDER/<input's stem>.mp4; the input itself
is refused unless asked for). The output is written to a temporary file and renamed at the end. A stream that
ends before the frames its container announces (a truncated file) is an error, and nothing is written. From a
live source (a webcam device), Ctrl-C stops the recording and the file is finished properly."""
from __future__ import annotations

import logging
import os
import stat
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import SharpkdError
from ..fileio import atomic_path, check_writable_file
from .sharpener import Sharpener

log = logging.getLogger("sharpkd")

# audio codecs an MP4/MOV file can carry as they are; others are re-encoded to AAC there
MP4_AUDIO = {"aac", "mp3", "alac", "ac3", "eac3", "opus", "flac"}


def is_device(path: str) -> bool:
    try:
        return stat.S_ISCHR(os.stat(path).st_mode)
    except OSError:
        return path.startswith("/dev/video")


def open_input(path: str):
    import av

    try:
        if is_device(path):
            return av.open(path, format="v4l2"), True
        if not Path(path).is_file():
            raise SharpkdError(f"{path}: no such file")
        return av.open(path), False
    except av.FFmpegError as exc:
        raise SharpkdError(f"{path}: cannot open as a video ({exc})") from None


def video_size(path: str) -> tuple[int, int] | None:
    """A video's frame size (W, H), or None where the stream does not say; a one-line error if it is no video."""
    inp, _ = open_input(str(path))
    try:
        if not inp.streams.video:
            raise SharpkdError(f"{path}: no video stream")
        cc = inp.streams.video[0].codec_context
        return (cc.width, cc.height) if cc.width and cc.height else None
    finally:
        inp.close()


def _even(a: np.ndarray) -> np.ndarray:
    h, w = a.shape[:2]
    if h % 2 or w % 2:
        a = np.pad(a, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return a


class H264Writer:
    """A new video file of one H.264 (yuv420p) stream, written with PyAV: `write` RGB frames of the stream's (even)
    size at their timestamps, `finish` to flush and close; `close` alone after an error. Other streams (audio) may
    be added to `container` and muxed with `mux`."""

    def __init__(self, path: str | os.PathLike, width: int, height: int, rate: Fraction, time_base: Fraction,
                 crf: int = 18, preset: str = "veryfast", label: str | None = None):
        import av

        try:
            self.container = av.open(str(path), "w")
        except (av.FFmpegError, ValueError) as exc:
            raise SharpkdError(f"{label or path}: cannot write a video there ({str(exc).splitlines()[0]})") from None
        self.stream = self.container.add_stream("libx264", rate=rate, options={"crf": str(crf), "preset": preset})
        self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, "yuv420p"
        self.stream.codec_context.time_base = time_base
        self._frame = av.VideoFrame.from_ndarray

    def mux(self, packets) -> None:
        for p in packets:
            self.container.mux(p)

    def write(self, rgb: np.ndarray, pts: int, time_base: Fraction) -> None:
        vf = self._frame(np.ascontiguousarray(rgb), format="rgb24")
        vf.pts, vf.time_base = pts, time_base
        self.mux(self.stream.encode(vf))

    def finish(self, *others) -> None:
        """Flush this stream's encoder and those of `others` (a re-encoded audio stream), and close the file."""
        for stream in (self.stream, *others):
            self.mux(stream.encode(None))
        self.container.close()

    def close(self) -> None:
        try:
            self.container.close()
        except Exception:  # already failing: the caller removes the file
            pass


def output_path(src: str | os.PathLike, dst: str | os.PathLike, overwrite: bool = False) -> Path:
    """Where `sharpen_video` writes: `dst`, or `dst/<src's stem>.mp4` when `dst` is a folder (or ends with a
    slash). Checked before any frame is decoded: a path that cannot be written, or (unless `overwrite`) the
    input itself, is a one-line error."""
    folder = Path(dst).is_dir() or str(dst).endswith(("/", os.sep))
    out = Path(dst) / f"{Path(str(src)).stem or 'video'}.mp4" if folder else Path(dst)
    check_writable_file(out, "-o")
    if not overwrite and out.exists() and Path(str(src)).exists() and out.resolve() == Path(str(src)).resolve():
        raise SharpkdError(f"{out} is the input: writing there would replace the original; choose another -o, "
                           "or pass --overwrite to replace it")
    return out


def sharpen_video(sharpener: Sharpener, src: str | os.PathLike, dst: str | os.PathLike, compare: bool = False,
                  progress: bool = True, crf: int = 18, preset: str = "veryfast",
                  max_frames: int | None = None, overwrite: bool = False) -> dict:
    """Sharpen `src` into `dst` (H.264, same frame rate and timestamps, audio kept; a folder: `dst/<stem>.mp4`).
    The output is written to a temporary file beside it and renamed at the end; it may not be the input unless
    `overwrite`. Returns a summary: frames, size, fps of the processing, the audio codec kept, the output."""
    import av

    src, dst = str(src), output_path(src, dst, overwrite)
    inp, live = open_input(src)
    if not inp.streams.video:
        inp.close()
        raise SharpkdError(f"{src}: no video stream")
    vin = inp.streams.video[0]
    vin.thread_type = "AUTO"
    ain = inp.streams.audio[0] if inp.streams.audio else None
    rate = vin.average_rate or vin.guessed_rate or Fraction(30)
    writer = None
    frames, t0, interrupted = 0, time.perf_counter(), False
    bar = None
    try:
        with atomic_path(dst, suffix=f".tmp{dst.suffix or '.mp4'}") as tmp:  # in place at the end, else removed
            w_in, h_in = vin.codec_context.width, vin.codec_context.height
            if not (w_in and h_in):
                raise SharpkdError(f"{src}: the video stream has no frame size")
            w_out, h_out = w_in * (2 if compare else 1), h_in
            width, height = w_out + w_out % 2, h_out + h_out % 2
            if (width, height) != (w_out, h_out):
                log.warning("odd frame size %dx%d: padded to %dx%d for H.264", w_out, h_out, width, height)
            writer = H264Writer(tmp, width, height, rate, vin.time_base or Fraction(1, int(round(rate))), crf, preset,
                                label=str(dst))
            out = writer.container
            aout, atranscode = None, False
            if ain is not None:
                mp4 = out.format.name in ("mp4", "mov,mp4,m4a,3gp,3g2,mj2", "mov", "ipod")
                if mp4 and ain.codec_context.name not in MP4_AUDIO:
                    aout, atranscode = out.add_stream("aac", rate=ain.codec_context.sample_rate), True
                else:
                    aout = out.add_stream_from_template(ain)
            total = vin.frames or None
            if max_frames:
                total = min(total or max_frames, max_frames)
            if progress:
                from tqdm import tqdm

                bar = tqdm(total=total, unit="frame", desc="video", dynamic_ncols=True)
            streams = [vin] + ([ain] if ain is not None else [])
            try:
                for packet in inp.demux(streams):
                    if packet.stream is ain:
                        if atranscode:
                            for af in packet.decode():
                                af.pts = None
                                writer.mux(aout.encode(af))
                        elif packet.dts is not None:
                            packet.stream = aout
                            out.mux(packet)
                        continue
                    for frame in packet.decode():
                        rgb = frame.to_ndarray(format="rgb24")
                        sharp = sharpener.sharpen(rgb)
                        pic = np.concatenate([rgb, sharp], axis=1) if compare else sharp
                        pic = _even(pic)
                        if pic.shape[:2] != (height, width):
                            raise SharpkdError(f"{src}: frame size changed mid-stream to {rgb.shape[1]}x{rgb.shape[0]}")
                        writer.write(pic, frame.pts, frame.time_base)
                        frames += 1
                        if bar is not None:
                            bar.update(1)
                        if max_frames and frames >= max_frames:
                            raise StopIteration
            except StopIteration:
                pass
            except KeyboardInterrupt:
                if not live:
                    raise
                interrupted = True  # a webcam recording ends with Ctrl-C: finish the file
            except av.FFmpegError as exc:
                raise SharpkdError(f"{src}: decoding failed after {frames} frames ({exc})") from None
            if frames == 0:
                raise SharpkdError(f"{src}: no video frames decoded")
            if not live and vin.frames and frames < min(vin.frames, max_frames or vin.frames):
                raise SharpkdError(f"{src}: the video stream ended after {frames} of the {vin.frames} frames its "
                                   f"container announces (a truncated or damaged file); nothing written to {dst}")
            writer.finish(*([aout] if atranscode else []))
            writer = None
    finally:
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.close()  # already failing; atomic_path removes the temporary file
        inp.close()
    elapsed = time.perf_counter() - t0
    return {"frames": frames, "width": width, "height": height, "rate": float(rate),
            "audio": (ain.codec_context.name if ain is not None else None), "seconds": elapsed,
            "fps": frames / elapsed if elapsed > 0 else 0.0, "interrupted": interrupted, "output": str(dst)}
