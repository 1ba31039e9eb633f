"""`sharpkd live`: a webcam (or a video file, looped) -> a model -> a virtual camera, a window or a file, in real
time.

The loop keeps latency at one or two frames by dropping frames at the source, never queueing them: a reader
thread takes every frame the camera delivers (a file is paced at its own frame rate, like a camera) and keeps
only the newest in a one-frame slot; the model takes whatever is newest when it is free, and a frame that is
replaced before the model gets to it is counted as dropped. Latency is measured per frame from the moment the
source delivered it to the moment the sink has it.

Sinks: a virtual camera through `pyvirtualcam` (v4l2loopback on Linux, the OBS Virtual Camera on Windows and
macOS) that Zoom, Meet or Teams can select; a preview window (Tk); an H.264 file (PyAV, written atomically);
and `null` / `MemorySink` for benchmarks and tests."""
from __future__ import annotations

import logging
import math
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import SharpkdError
from ..fileio import check_writable_file

log = logging.getLogger("sharpkd")

DEFAULT_MODEL = "student"  # the shipped real-time student: what `live` runs
DEFAULT_BACKEND = "auto"  # the fastest here, timed at start: which one wins changes with the CPU (docs/speed.md)
VIEWS = ("output", "side-by-side", "split")
SINKS = ("virtualcam", "window", "file", "null")
LOOPBACK_HINT = "sudo modprobe v4l2loopback devices=1 exclusive_caps=1"
HISTORY = 108_000  # per-frame figures kept for the summary: the last hour at 30 fps
CAMERA_RETRIES = 5  # failed reads in a row before a camera counts as gone
FPS_WINDOW_S = 1.0  # the overlay's and status line's frames/s: over this last stretch


def parse_size(text: str | None) -> tuple[int, int] | None:
    """'1280x720' -> (1280, 720); None -> None. A one-line error for anything else."""
    if text is None or text == "":
        return None
    w, sep, h = str(text).lower().partition("x")
    try:
        size = (int(w), int(h)) if sep else None
    except ValueError:
        size = None
    if size is None or size[0] < 2 or size[1] < 2 or max(size) > 16384:
        raise SharpkdError(f"--size must be WIDTHxHEIGHT with sides of 2 to 16384 pixels, like 1280x720; got {text!r}")
    return size


def even_size(size: tuple[int, int]) -> tuple[int, int]:
    """Round each side down to an even number (4:2:0 video needs even sides)."""
    return size[0] - size[0] % 2, size[1] - size[1] % 2


# ------------------------------------------------------------------------------------------------ sources
class CameraSource:
    """A webcam through OpenCV: an index (0, 1, ...) or a device path (/dev/video0). The camera paces itself."""

    paced_by_itself = True

    def __init__(self, device: int | str, size: tuple[int, int] | None = None, fps: float | None = None):
        import cv2

        self.label = f"/dev/video{device}" if isinstance(device, int) and sys.platform.startswith("linux") \
            else str(device)
        if isinstance(device, str) and not os.path.exists(device):
            raise SharpkdError(f"no camera at {device}: no such device{_camera_hint()}")
        if isinstance(device, int) and sys.platform.startswith("linux") and not os.path.exists(self.label):
            raise SharpkdError(f"no camera: {self.label} does not exist{_camera_hint()}")
        api = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
        self.cap = cv2.VideoCapture(device, api)
        if not self.cap.isOpened():
            self.cap.release()
            raise SharpkdError(f"cannot open the camera {self.label}: it may be busy (another program using it) "
                               "or not a capture device")
        self.cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the newest frame, not an old one from a queue
        self.cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))  # 720p at 30 fps on most webcams
        if size:
            self.cap.set(cv2.CAP_PROP_FRAME_WIDTH, size[0])
            self.cap.set(cv2.CAP_PROP_FRAME_HEIGHT, size[1])
        if fps:
            self.cap.set(cv2.CAP_PROP_FPS, fps)
        self.size = size
        reported = self.cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps or (reported if reported and 1 <= reported <= 240 else 30.0))
        self._cv2 = cv2

    def read(self) -> np.ndarray:
        for _ in range(CAMERA_RETRIES):
            ok, bgr = self.cap.read()
            if ok and bgr is not None:
                break
        else:
            raise SharpkdError(f"the camera {self.label} delivers no frames: it may be busy (another program "
                               "using it) or unplugged")
        rgb = self._cv2.cvtColor(bgr, self._cv2.COLOR_BGR2RGB)
        if self.size and rgb.shape[1::-1] != tuple(self.size):
            rgb = _resize(rgb, self.size)
        return rgb

    def close(self) -> None:
        self.cap.release()


def _camera_hint() -> str:
    if sys.platform.startswith("linux"):
        found = sorted(str(p) for p in Path("/dev").glob("video*"))
        return f" (video devices here: {', '.join(found)})" if found else " (no /dev/video* devices here)"
    return ""


class FileSource:
    """A video file decoded with PyAV, looped (a stand-in for a camera in tests and demos). The loop paces it
    at its frame rate (or `fps`), as a camera would deliver it, unless told not to (`run_live(pace=False)`)."""

    paced_by_itself = False

    def __init__(self, path: str | os.PathLike, size: tuple[int, int] | None = None, fps: float | None = None,
                 loop: bool = True):
        import av

        self.path, self.size, self.loop = str(path), size, loop
        self.label = self.path
        if not Path(self.path).is_file():
            raise SharpkdError(f"{self.path}: no such file (a camera is a number like 0 or a device like /dev/video0)")
        self._av = av
        self._open()
        rate = self.stream.average_rate or self.stream.guessed_rate or Fraction(30)
        self.fps = float(fps or rate)
        self._frames_this_pass = 0

    def _open(self) -> None:
        try:
            self.container = self._av.open(self.path)
        except (self._av.FFmpegError, ValueError) as exc:
            raise SharpkdError(f"{self.path}: cannot open as a video ({str(exc).splitlines()[0]})") from None
        if not self.container.streams.video:
            self.container.close()
            raise SharpkdError(f"{self.path}: no video stream")
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        self._decoder = self.container.decode(self.stream)

    def read(self) -> np.ndarray | None:
        """The next frame (RGB, at `size` if given); None at the end of a file that does not loop."""
        while True:
            try:
                frame = next(self._decoder)
            except StopIteration:
                if self._frames_this_pass == 0:
                    raise SharpkdError(f"{self.path}: no video frames decoded") from None
                if not self.loop:
                    return None
                self.container.close()
                self._open()
                self._frames_this_pass = 0
                continue
            except self._av.FFmpegError as exc:
                raise SharpkdError(f"{self.path}: decoding failed ({str(exc).splitlines()[0]})") from None
            self._frames_this_pass += 1
            if self.size:
                return frame.to_ndarray(width=self.size[0], height=self.size[1], format="rgb24",
                                        interpolation="AREA")
            return frame.to_ndarray(format="rgb24")

    def close(self) -> None:
        self.container.close()


def _resize(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    w, h = size
    interp = cv2.INTER_AREA if w < rgb.shape[1] else cv2.INTER_LINEAR
    return cv2.resize(rgb, (w, h), interpolation=interp)


def open_source(spec: str | int, size: tuple[int, int] | None = None, fps: float | None = None):
    """A camera index ('0'), a device path ('/dev/video0'), or a video file (looped)."""
    text = str(spec)
    if text.isdigit():
        return CameraSource(int(text), size, fps)
    if text.startswith("/dev/"):
        return CameraSource(text, size, fps)
    return FileSource(text, size, fps)


# --------------------------------------------------------------------------------------- newest-frame slot
class LatestFrame:
    """A reader thread that keeps only the newest source frame. `get` blocks until a frame newer than the
    last one taken arrives; a frame replaced before anyone took it counts in `dropped`."""

    def __init__(self, source, pace: bool = True):
        self.source, self.pace = source, pace and not getattr(source, "paced_by_itself", False)
        self.captured = self.dropped = 0
        self._slot: tuple[np.ndarray, float] | None = None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._ended = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="sharpkd-live-reader", daemon=True)

    def start(self) -> "LatestFrame":
        self._thread.start()
        return self

    def _run(self) -> None:
        period = 1.0 / self.source.fps if self.source.fps else 0.0
        t0, n = time.perf_counter(), 0
        try:
            while not self._stop.is_set():
                if self.pace and period:
                    due = t0 + n * period
                    delay = due - time.perf_counter()
                    if delay > 0:
                        if self._stop.wait(delay):
                            break
                    elif delay < -period:  # far behind (a slow decode): start the clock again
                        t0, n = time.perf_counter(), 0
                frame = self.source.read()
                n += 1
                if frame is None:
                    break
                now = time.perf_counter()
                with self._cond:
                    if self._slot is not None:
                        self.dropped += 1
                    self._slot = (frame, now)
                    self.captured += 1
                    self._cond.notify()
        except BaseException as exc:  # handed to the consumer thread
            self._error = exc
        finally:
            with self._cond:
                self._ended = True
                self._cond.notify_all()

    def get(self, timeout: float = 10.0) -> tuple[np.ndarray, float] | None:
        """(frame, time it arrived), or None when the source has ended."""
        deadline = time.perf_counter() + timeout
        with self._cond:
            while self._slot is None:
                if self._error is not None:
                    raise self._error
                if self._ended:
                    return None
                left = deadline - time.perf_counter()
                if left <= 0:
                    raise SharpkdError(f"{self.source.label}: no frame for {timeout:g} s")
                self._cond.wait(left)
            item, self._slot = self._slot, None
            return item

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


# ------------------------------------------------------------------------------------------------- sinks
class NullSink:
    """Discards frames (benchmarks)."""

    needs_even = False
    label = "null"

    def open(self, width: int, height: int, fps: float) -> None:
        self.size = (width, height)

    def write(self, rgb: np.ndarray) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


class MemorySink(NullSink):
    """Keeps the frames it gets (tests): `frames`, the last `keep` of them (all if None)."""

    label = "memory"

    def __init__(self, keep: int | None = None, needs_even: bool = False):
        self.frames: deque[np.ndarray] = deque(maxlen=keep)
        self.count = 0
        self.needs_even = needs_even

    def write(self, rgb: np.ndarray) -> None:
        self.frames.append(rgb.copy())
        self.count += 1


MS = Fraction(1, 1000)  # the file sink's time base: milliseconds


class FileSink:
    """H.264 (yuv420p) with PyAV (`video.H264Writer`), timestamped by the wall clock in milliseconds (a live
    recording keeps its real timing, drops included). Written to a temporary file and renamed when closed; removed
    on an error."""

    needs_even = True

    def __init__(self, path: str | os.PathLike, crf: int = 20, preset: str = "superfast"):
        self.path = Path(path)
        self.label = str(self.path)
        self.crf, self.preset = crf, preset
        self.out = None
        self.tmp = self.path.with_name(f".{self.path.stem}.{os.getpid()}.tmp{self.path.suffix or '.mp4'}")

    def open(self, width: int, height: int, fps: float) -> None:
        from .video import H264Writer

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.out = H264Writer(self.tmp, width, height, Fraction(fps).limit_denominator(1001), MS, self.crf,
                              self.preset, label=str(self.path))
        self._t0, self._last_pts, self.frames = None, -1, 0

    def write(self, rgb: np.ndarray) -> None:
        now = time.perf_counter()
        if self._t0 is None:
            self._t0 = now
        self._last_pts = max(self._last_pts + 1, int(round((now - self._t0) * 1000)))
        self.out.write(rgb, self._last_pts, MS)
        self.frames += 1

    def close(self) -> None:
        if self.out is None:
            return
        try:
            self.out.finish()
            self.out = None
            if self.frames:
                os.replace(self.tmp, self.path)
        finally:
            self.abort()

    def abort(self) -> None:
        if self.out is not None:
            self.out.close()  # already failing; the temporary file goes below
            self.out = None
        if self.tmp.exists():
            self.tmp.unlink()


class VirtualCamSink:
    """A virtual camera that video-call apps can select: pyvirtualcam's v4l2loopback backend on Linux, the OBS
    Virtual Camera on Windows and macOS. Its 4:2:0 formats need even sides."""

    needs_even = True

    def __init__(self, device: str | None = None, backend: str | None = None):
        try:
            import pyvirtualcam
        except ImportError:
            raise SharpkdError("the virtualcam sink needs pyvirtualcam: pip install pyvirtualcam") from None
        self._pvc, self.device, self.backend = pyvirtualcam, device, backend
        self.cam = None
        self.label = device or "virtual camera"

    def open(self, width: int, height: int, fps: float) -> None:
        if self.device and not os.path.exists(self.device) and sys.platform.startswith("linux"):
            raise SharpkdError(f"no virtual camera at {self.device}: no such device (load a v4l2loopback device: "
                               f"{LOOPBACK_HINT})")
        try:
            self.cam = self._pvc.Camera(width, height, fps, fmt=self._pvc.PixelFormat.RGB, device=self.device,
                                        backend=self.backend, print_fps=False)
        except (RuntimeError, ValueError) as exc:
            raise SharpkdError(virtualcam_error(str(exc), self.device)) from None
        self.label = f"{self.cam.device} ({self.cam.backend})"

    def write(self, rgb: np.ndarray) -> None:
        self.cam.send(np.ascontiguousarray(rgb))

    def close(self) -> None:
        if self.cam is not None:
            self.cam.close()
            self.cam = None

    abort = close


def virtualcam_error(message: str, device: str | None = None) -> str:
    """pyvirtualcam's multi-line error as one line that says what to do."""
    low = message.lower()
    first = next((ln for ln in message.splitlines() if ln.strip()), message).strip()
    first = first.split("backend: ", 1)[-1]
    if "no v4l2 loopback device" in low:
        return f"no v4l2loopback device found: load one with `{LOOPBACK_HINT}` (Debian/Ubuntu: apt install " \
               "v4l2loopback-dkms), or use --sink window / --sink file"
    if "does not exist" in low:
        return f"no virtual camera at {device or 'that device'}: {first} (load a v4l2loopback device: " \
               f"{LOOPBACK_HINT})"
    if "busy" in low or "in use" in low:
        return f"the virtual camera {device or ''} is busy: another program is sending to it (stop it, or load " \
               "a second device: devices=2)".replace("  ", " ")
    if "permission" in low:
        return f"no permission to use the virtual camera {device or ''}: add yourself to the 'video' group " \
               "(sudo usermod -a -G video $USER, then log in again)".replace("  ", " ")
    if "obs" in low:
        return f"no virtual camera: {first} (install OBS Studio and start its Virtual Camera once)"
    return f"cannot open the virtual camera: {first}"


class WindowSink:
    """A preview window (Tk, from the standard library: works with the headless OpenCV the project installs).
    Closing it, or pressing q or Escape, ends the loop."""

    needs_even = False
    label = "window"

    def __init__(self, title: str = "sharpkd live"):
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise SharpkdError("the window sink needs a display (DISPLAY is not set): use --sink virtualcam or "
                               "--sink file")
        try:
            import tkinter

            from PIL import ImageTk  # noqa: F401
        except ImportError as exc:
            raise SharpkdError(f"the window sink needs Tk ({exc}): install python3-tk, or use --sink virtualcam") \
                from None
        self._tk, self.title, self.closed = tkinter, title, False
        self.root = None

    def open(self, width: int, height: int, fps: float) -> None:
        try:
            self.root = self._tk.Tk()
        except self._tk.TclError as exc:
            raise SharpkdError(f"cannot open a window: {exc}") from None
        self.root.title(self.title)
        self.root.protocol("WM_DELETE_WINDOW", self._close_clicked)
        self.root.bind("<Key>", lambda e: self._close_clicked() if e.keysym in ("q", "Escape") else None)
        self.view = self._tk.Label(self.root)
        self.view.pack()

    def _close_clicked(self) -> None:
        self.closed = True

    def write(self, rgb: np.ndarray) -> None:
        from PIL import Image, ImageTk

        if self.closed:
            raise StopLive("window closed")
        photo = ImageTk.PhotoImage(Image.fromarray(rgb))
        self.view.configure(image=photo)
        self.view.image = photo
        self.root.update()
        if self.closed:
            raise StopLive("window closed")

    def close(self) -> None:
        if self.root is not None:
            try:
                self.root.destroy()
            except self._tk.TclError:
                pass
            self.root = None

    abort = close


class StopLive(Exception):
    """A sink asks the loop to end (its window was closed)."""


def open_sink(kind: str, out: str | os.PathLike | None = None, device: str | None = None):
    if kind not in SINKS:
        raise SharpkdError(f"sink must be one of {', '.join(SINKS)}, not {kind!r}")
    if kind == "file":
        if not out:
            raise SharpkdError("--sink file needs --out FILE.mp4")
        return FileSink(check_writable_file(out, "--out"))
    if out:
        raise SharpkdError(f"--out is for --sink file, not --sink {kind}")
    if kind == "virtualcam":
        return VirtualCamSink(device)
    if kind == "window":
        return WindowSink()
    return NullSink()


# ------------------------------------------------------------------------------------------- views, stats
def compose(inp: np.ndarray, out: np.ndarray, view: str = "output") -> np.ndarray:
    """output: the sharpened frame; side-by-side: input | output (twice the width); split: the left half of the
    input and the right half of the output in one frame, with a thin line between them."""
    if view == "output":
        return out
    if view == "side-by-side":
        return np.concatenate([inp, out], axis=1)
    if view == "split":
        w = out.shape[1]
        res = out if out.flags.writeable else out.copy()
        res[:, :w // 2] = inp[:, :w // 2]
        res[:, max(0, w // 2 - 1):w // 2 + 1] = 255
        return res
    raise SharpkdError(f"view must be one of {', '.join(VIEWS)}, not {view!r}")


def composed_size(size: tuple[int, int], view: str) -> tuple[int, int]:
    return (size[0] * 2, size[1]) if view == "side-by-side" else size


def draw_overlay(frame: np.ndarray, text: str) -> np.ndarray:
    """`text` in the top-left corner, white on a dark outline, in place."""
    import cv2

    scale = max(0.4, frame.shape[0] / 720 * 0.8)
    org = (int(10 * scale / 0.8), int(28 * scale / 0.8))
    thick = max(1, int(round(2 * scale / 0.8)))
    cv2.putText(frame, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
    cv2.putText(frame, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return frame


@dataclass
class LiveStats:
    """What a run of the loop did. Latency: source delivered the frame -> the sink has it (per frame, the last
    `HISTORY` frames)."""

    frames: int = 0  # frames written to the sink
    captured: int = 0  # frames the source delivered
    dropped: int = 0  # delivered but replaced by a newer frame before the model took them
    seconds: float = 0.0
    latency_ms: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY))
    model_ms: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY))
    size: tuple[int, int] | None = None  # source frame size after any rounding (w, h)
    out_size: tuple[int, int] | None = None  # frames given to the sink (w, h)
    source_fps: float = 0.0
    paced: bool = True
    interrupted: bool = False

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @staticmethod
    def _pct(values, q: float) -> float:
        return float(np.percentile(np.fromiter(values, np.float64), q)) if values else math.nan

    def summary(self) -> dict:
        return {"frames": self.frames, "captured": self.captured, "dropped": self.dropped,
                "seconds": round(self.seconds, 3), "fps": round(self.fps, 2),
                "latency_ms_p50": round(self._pct(self.latency_ms, 50), 2),
                "latency_ms_p95": round(self._pct(self.latency_ms, 95), 2),
                "model_ms_p50": round(self._pct(self.model_ms, 50), 2),
                "model_ms_p95": round(self._pct(self.model_ms, 95), 2),
                "width": self.size[0] if self.size else None, "height": self.size[1] if self.size else None,
                "out_width": self.out_size[0] if self.out_size else None,
                "out_height": self.out_size[1] if self.out_size else None,
                "source_fps": round(self.source_fps, 3), "paced": self.paced, "interrupted": self.interrupted}


def format_status(stats: LiveStats, recent_fps: float) -> str:
    lat = stats.latency_ms[-1] if stats.latency_ms else math.nan
    return f"{recent_fps:5.1f} FPS | latency {lat:5.1f} ms | dropped {stats.dropped}"


# --------------------------------------------------------------------------------------------------- loop
def run_live(sharpener, source, sink, view: str = "output", frames: int | None = None, pace: bool = True,
             overlay: bool = False, warmup: int = 2, on_status: Callable[[LiveStats, float], None] | None = None,
             status_every: float = 0.5, stop: threading.Event | None = None) -> LiveStats:
    """Run source -> `sharpener.sharpen` -> `view` -> sink until `frames` frames are out, the source ends (a
    file that does not loop), `stop` is set, the sink's window is closed, or Ctrl-C (the sink is closed
    properly: a recording is finished). `pace`: the source delivers frames at its frame rate through the
    newest-frame slot (a camera always does); without it, frames are pulled one by one as fast as the loop
    goes (no drops: the pipeline's maximum throughput). `warmup`: model runs on the first frame before the
    clock starts. The source is closed at the end; `sink` is opened here with the first frame's size."""
    if view not in VIEWS:
        raise SharpkdError(f"view must be one of {', '.join(VIEWS)}, not {view!r}")
    paced = pace or getattr(source, "paced_by_itself", False)
    stats = LiveStats(source_fps=float(source.fps or 0.0), paced=paced)
    reader = None
    opened = False
    t0 = time.perf_counter()
    try:
        first = source.read()
        if first is None:
            raise SharpkdError(f"{source.label}: no video frames")
        size = (first.shape[1], first.shape[0])
        crop = even_size(size) if sink.needs_even else size
        if crop != size:
            log.warning("%dx%d frames have an odd side: cropped to %dx%d for the %s sink (4:2:0 video needs even "
                        "sides)", size[0], size[1], crop[0], crop[1], sink.label)
        stats.size = crop
        stats.out_size = composed_size(crop, view)
        first = first[:crop[1], :crop[0]]
        sink.open(stats.out_size[0], stats.out_size[1], float(source.fps or 30.0))
        opened = True
        for _ in range(max(0, warmup)):
            sharpener.sharpen(first)
        recent: deque[float] = deque()
        t_status = 0.0
        if paced:
            reader = LatestFrame(source, pace=True).start()
        t0 = time.perf_counter()
        while frames is None or stats.frames < frames:
            if stop is not None and stop.is_set():
                break
            if reader is not None:
                item = reader.get()
                if item is None:
                    break
                frame, t_in = item
            else:
                frame = source.read()
                t_in = time.perf_counter()
                if frame is None:
                    break
                stats.captured += 1
            frame = frame[:crop[1], :crop[0]] if (frame.shape[1], frame.shape[0]) != crop else frame
            t_model = time.perf_counter()
            out = sharpener.sharpen(frame)
            stats.model_ms.append((time.perf_counter() - t_model) * 1000)
            pic = compose(frame, out, view)
            now = time.perf_counter()
            recent.append(now)
            while recent and now - recent[0] > FPS_WINDOW_S:
                recent.popleft()
            recent_fps = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 1 else 0.0
            if reader is not None:
                stats.dropped, stats.captured = reader.dropped, reader.captured
            if overlay:
                draw_overlay(pic, format_status(stats, recent_fps))
            sink.write(pic)
            done = time.perf_counter()
            stats.latency_ms.append((done - t_in) * 1000)
            stats.frames += 1
            if on_status is not None and done - t_status >= status_every:
                t_status = done
                on_status(stats, recent_fps)
        stats.seconds = time.perf_counter() - t0
    except StopLive:
        stats.seconds = time.perf_counter() - t0
    except KeyboardInterrupt:
        stats.interrupted = True
        stats.seconds = time.perf_counter() - t0
    except BaseException:
        if reader is not None:
            reader.stop()
        if opened:
            sink.abort()
        source.close()
        raise
    if reader is not None:
        reader.stop()
        stats.dropped, stats.captured = reader.dropped, reader.captured
    source.close()
    if opened:
        sink.close()
    return stats


def check_sink(kind: str, device: str | None = None) -> None:
    """Errors that can be told before anything starts: on Linux, a virtual camera needs a video device."""
    if kind == "virtualcam" and sys.platform.startswith("linux"):
        if device:
            if not os.path.exists(device):
                raise SharpkdError(f"no virtual camera at {device}: no such device (load a v4l2loopback device: "
                                   f"{LOOPBACK_HINT})")
        elif not loopback_devices():
            raise SharpkdError(virtualcam_error("No v4l2 loopback device found"))


def loopback_devices() -> list[str]:
    """The v4l2loopback devices of this Linux machine (/dev/videoN whose driver is v4l2 loopback)."""
    return [f"/dev/{node.name}" for node in sorted(Path("/sys/devices/virtual/video4linux").glob("video*"))
            if Path(f"/dev/{node.name}").exists()]


def round_size_for(size: tuple[int, int] | None, sink) -> tuple[int, int] | None:
    """An asked-for size with an odd side, rounded down to even for a sink that needs it, with a notice."""
    if size is None or not sink.needs_even or even_size(size) == size:
        return size
    new = even_size(size)
    log.warning("--size %dx%d has an odd side: using %dx%d (the %s sink's 4:2:0 video needs even sides)",
                size[0], size[1], new[0], new[1], sink.label)
    return new


def benchmark(sharpener, source: str, frames: int, size: tuple[int, int] | None = None, view: str = "output",
              fps: float | None = None, sink=None) -> dict:
    """`frames` frames through the loop as a real pipeline (the source paced at its frame rate, newest frame
    wins), then, for a file, the same frames pulled as fast as the loop goes (maximum throughput, no drops).
    Returns {"paced": LiveStats.summary(), "unpaced": ... or None (a camera paces itself)}."""
    if frames < 1:
        raise SharpkdError(f"--benchmark needs a number of frames >= 1, not {frames}")
    sink = sink or NullSink()
    size = round_size_for(size, sink)
    src = open_source(source, size, fps)
    result = {"paced": run_live(sharpener, src, sink, view=view, frames=frames, pace=True, warmup=3).summary(),
              "unpaced": None}
    if not getattr(src, "paced_by_itself", False):
        src = open_source(source, size, fps)
        result["unpaced"] = run_live(sharpener, src, sink, view=view, frames=frames, pace=False, warmup=1).summary()
    return result
