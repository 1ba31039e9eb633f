"""Frames per second and latency of the web app's Webcam tab, in a real browser: Debian's Chromium (driven by
Playwright) with a fake camera that plays a face video made at run time (a slow pan and zoom over a CelebA-HQ
face, slightly blurred, each frame stamped with its number), against a real `sharpkd serve`. The tab sends each
camera frame as a JPEG over its WebSocket (/webcam/ws) and draws each sharpened frame on a canvas.

    python scripts/bench_webcam.py                      # 640x480, 5 s warm-up, 20 s measured
    python scripts/bench_webcam.py --seconds 30 --json webcam.json
    python scripts/bench_webcam.py --url http://127.0.0.1:7860/   # a server that is already running
    python scripts/bench_webcam.py --serve-args "--threads 2"

What it reports:
- received: sharpened frames drawn by the page per second (distinct frame numbers read back from the output
  canvas), and how many frames the browser sent (binary WebSocket messages);
- latency: from the moment a camera frame is shown in the page's camera preview (requestVideoFrameCallback) to
  the moment its sharpened version is drawn on the output canvas, p50 and p95 (ms); and the page's own round
  trip (frame grabbed -> its result drawn);
- the tab's own status line (frames/s, latency, model ms);
- where the time goes on the server, per frame: decoding the browser's JPEG, the model, encoding the output
  (medians of the timings the server sends with each frame during the measured seconds).
Measure on an idle machine: the browser, the server and the model share its cores."""
from __future__ import annotations

import argparse
import json
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import face_video  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path(os.environ.get("SHARPKD_CHROMIUM", "/usr/bin/chromium"))
START_TIMEOUT_S = 300
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--use-fake-device-for-media-stream",
                 "--use-fake-ui-for-media-stream", "--autoplay-policy=no-user-gesture-required"]

# Page instrumentation: the frame number of each camera frame as the preview shows it, and of each sharpened
# frame as the page draws it (the output canvas's "sharpkd-frame" event, fired right after drawing). Stamps: 8
# cells in the left half of a top band (see face_video.stamp).
INSTRUMENT_JS = """
() => {
  const B = {seen: {}, recs: [], shown: 0};
  window.__bench = B;
  const canvas = document.createElement('canvas');
  const ctx = canvas.getContext('2d', {willReadFrequently: true});
  B.read = (el, w, h) => {
    const cell = Math.floor(Math.floor(w / 2) / 8), band = Math.max(8, Math.floor(h / 30));
    canvas.width = w; canvas.height = band;
    ctx.drawImage(el, 0, 0, w, band, 0, 0, w, band);
    const px = ctx.getImageData(0, 0, w, band).data;
    let idx = 0;
    for (let bit = 0; bit < 8; bit++) {
      let sum = 0, n = 0;
      for (let y = Math.floor(band / 4); y < band - Math.floor(band / 4); y++)
        for (let x = bit * cell + Math.floor(cell / 4); x < (bit + 1) * cell - Math.floor(cell / 4); x++) {
          const o = (y * w + x) * 4; sum += px[o] + px[o + 1] + px[o + 2]; n += 3;
        }
      if (sum / n > 127.5) idx |= 1 << bit;
    }
    return idx;
  };
  const video = document.querySelector('#webcam-preview');
  let last = -1;
  const onFrame = () => {
    if (video.videoWidth) {
      const idx = B.read(video, video.videoWidth, video.videoHeight);
      if (idx !== last) { B.seen[idx] = performance.now(); last = idx; B.shown++; }
    }
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
  const out = document.querySelector('#webcam-output');
  out.addEventListener('sharpkd-frame', (ev) => {
    const t = performance.now();
    const idx = B.read(out, out.width, out.height);
    const t0 = B.seen[idx];
    B.recs.push([t, idx, t0 === undefined ? null : t - t0, out.width, out.height, ev.detail.latency_ms]);
  });
  return true;
}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, extra: list[str], log_path: Path, timeout: float = START_TIMEOUT_S) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "sharpkd.cli", "serve", "--host", "127.0.0.1", "--port", str(port), *extra]
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"sharpkd serve exited with {proc.returncode}:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.terminate()
            raise SystemExit(f"sharpkd serve did not start in {timeout:g} s:\n{log_path.read_text()}")
        time.sleep(0.5)


def start_webcam(page) -> None:
    """Open the Webcam tab, press Start (the fake camera is allowed) and wait for the first sharpened frame."""
    page.get_by_role("tab", name="Webcam").wait_for()
    page.get_by_role("tab", name="Webcam").click()
    page.locator("#webcam-toggle").click()
    page.wait_for_function("() => { const v = document.querySelector('#webcam-preview');"
                           " return v && v.videoWidth > 0; }")
    page.wait_for_function("() => /frames\\/s/.test(document.querySelector('#webcam-status').textContent)")


def _percentiles(values) -> tuple[float | None, float | None]:
    arr = np.array([v for v in values if v is not None], dtype=np.float64)
    if not arr.size:
        return None, None
    return round(float(np.percentile(arr, 50)), 1), round(float(np.percentile(arr, 95)), 1)


def measure(url: str, y4m: Path, warmup: float, seconds: float, loop_seconds: float, headless: bool = True) -> dict:
    """Stream for `warmup` + `seconds` and measure the last `seconds`. Frame numbers repeat every
    `loop_seconds` (the camera file loops): a latency longer than half of that cannot be told from a frame the
    preview skipped, and is counted as unmatched instead."""
    from playwright.sync_api import sync_playwright

    sends: list[float] = []  # when each camera frame went out (binary messages)
    stages: list[tuple[float, dict]] = []  # when each frame's timings came back, and the timings

    def on_socket(ws) -> None:
        ws.on("framesent", lambda payload: sends.append(time.perf_counter()) if isinstance(payload, bytes) else None)
        ws.on("framereceived", lambda payload: on_message(payload))

    def on_message(payload) -> None:
        if isinstance(payload, str):
            msg = json.loads(payload)
            if msg.get("type") == "frame":
                stages.append((time.perf_counter(), msg))

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=headless,
                                     args=CHROMIUM_ARGS + [f"--use-file-for-fake-video-capture={y4m}"])
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000}, permissions=["camera"])
            page = context.new_page()
            page.set_default_timeout(120_000)
            page.on("websocket", on_socket)
            page.goto(url)
            start_webcam(page)
            page.evaluate(INSTRUMENT_JS)
            page.wait_for_timeout(int(warmup * 1000))
            page.evaluate("() => { window.__bench.recs = []; window.__bench.shown = 0; }")
            t0 = time.perf_counter()
            page.wait_for_timeout(int(seconds * 1000))
            recs = page.evaluate("() => window.__bench.recs")
            shown = page.evaluate("() => window.__bench.shown")
            elapsed = time.perf_counter() - t0
            tab_line = page.inner_text("#webcam-status")
            page.locator("#webcam-toggle").click()  # Stop
        finally:
            browser.close()
    sent = len([t for t in sends if t0 <= t <= t0 + elapsed])
    timings = [m for t, m in stages if t0 <= t <= t0 + elapsed]
    distinct = [r for i, r in enumerate(recs) if i == 0 or r[1] != recs[i - 1][1]]
    matched = [r[2] for r in distinct if r[2] is not None and r[2] < loop_seconds * 500]
    p50, p95 = _percentiles(matched)
    rt50, rt95 = _percentiles(r[5] for r in recs)
    sizes = sorted({(r[3], r[4]) for r in recs})
    server = {f"{k}_p50": round(float(np.median([m[k] for m in timings])), 2) if timings else None
              for k in ("decode_ms", "model_ms", "encode_ms")}
    return {"seconds": round(elapsed, 2), "received_frames": len(distinct),
            "received_fps": round(len(distinct) / elapsed, 2), "sent_frames": sent,
            "sent_fps": round(sent / elapsed, 2),
            "camera_fps": round(shown / elapsed, 2),
            "latency_unmatched": len(distinct) - len(matched),
            "latency_ms_p50": p50, "latency_ms_p95": p95,
            "round_trip_ms_p50": rt50, "round_trip_ms_p95": rt95,
            "output_sizes": [f"{w}x{h}" for w, h in sizes], "tab_line": tab_line,
            "server": {"frames": len(timings), **server}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="640x480", help="camera frame size WxH (default 640x480)")
    p.add_argument("--fps", type=float, default=30.0, help="camera frame rate (default 30)")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds streamed before measuring (default 5)")
    p.add_argument("--seconds", type=float, default=20.0, help="seconds measured (default 20)")
    p.add_argument("--blur", type=float, default=1.5, help="Gaussian blur of the camera video, px (default 1.5)")
    p.add_argument("--url", help="a running sharpkd serve (default: start one on a free port)")
    p.add_argument("--serve-args", default="", help="extra `sharpkd serve` options, quoted")
    p.add_argument("--start-timeout", type=float, default=START_TIMEOUT_S, help="seconds to wait for the server")
    p.add_argument("--headed", action="store_true", help="show the browser (needs a display)")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()
    if not CHROMIUM.is_file():
        raise SystemExit(f"Chromium not found at {CHROMIUM} (apt-get install chromium, or set SHARPKD_CHROMIUM)")
    size = face_video.parse_size(args.size)
    with tempfile.TemporaryDirectory(prefix="sharpkd-bench-webcam-") as tmp:
        y4m = Path(tmp) / "camera.y4m"
        face = face_video.read_rgb(face_video.default_face())
        n = face_video.write_y4m(y4m, face_video.face_frames(face, size, int(6 * args.fps), args.fps, args.blur,
                                                             stamped=True), args.fps)
        print(f"camera: {y4m.name}, {n} frames {size[0]}x{size[1]} at {args.fps:g} fps (looped)", flush=True)
        proc = None
        url = args.url
        if not url:
            port = free_port()
            proc = start_server(port, shlex.split(args.serve_args), Path(tmp) / "serve.log", args.start_timeout)
            url = f"http://127.0.0.1:{port}/"
        try:
            result = measure(url, y4m, args.warmup, args.seconds, loop_seconds=n / args.fps, headless=not args.headed)
        finally:
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
    result = {"size": args.size, "camera_fps_file": args.fps, **result}
    print(f"received {result['received_fps']:.1f} sharpened frames/s ({result['received_frames']} in "
          f"{result['seconds']:.1f} s; browser sent {result['sent_fps']:.1f} frames/s, camera preview "
          f"{result['camera_fps']:.1f} frames/s)")
    print(f"latency camera preview -> sharpened frame shown: p50 {result['latency_ms_p50']} ms, "
          f"p95 {result['latency_ms_p95']} ms ({result['latency_unmatched']} frames unmatched); page round trip "
          f"(frame grabbed -> drawn) p50 {result['round_trip_ms_p50']} ms, p95 {result['round_trip_ms_p95']} ms; "
          f"output sizes {', '.join(result['output_sizes'])}")
    print(f"the tab says: {result['tab_line']}")
    s = result["server"]
    print(f"server, per frame (median of {s['frames']} frames, from its messages): decode the browser's JPEG "
          f"{s['decode_ms_p50']} ms, model {s['model_ms_p50']} ms, encode the output {s['encode_ms_p50']} ms")
    try:
        load1 = os.getloadavg()[0]
        result["load_average_1min"] = round(load1, 2)
        print(f"load average (1 min) at the end: {load1:.2f} on {os.cpu_count()} logical CPUs")
    except OSError:
        pass
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
