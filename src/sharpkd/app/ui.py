"""The Gradio page: an Image tab (teacher and student side by side), a Webcam tab (the student live, over a
WebSocket of its own: `WebcamSocket`) and a Models tab; every event is also a named HTTP endpoint. Thin: the
work is in `service.AppService`."""
from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import errno  # noqa: E402
import importlib.util  # noqa: E402
import io  # noqa: E402
import ipaddress  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import socket  # noqa: E402
import stat  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

import anyio  # noqa: E402
import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
from fastapi import WebSocket, WebSocketDisconnect  # noqa: E402

from ..errors import BadImageError, SharpkdError  # noqa: E402
from ..models.zoo import cell  # noqa: E402
from .service import (BLUR_KINDS, MODEL_ROLES, STRENGTH_RANGE, AppService, check_role, describe_value,  # noqa: E402
                      example_images)

log = logging.getLogger("sharpkd")

DEFAULT_CONCURRENCY = 2  # image requests run at the same time (2 CPU cores); the rest wait in the queue
WEBCAM_CONCURRENCY = 4  # webcam streams served at once (the student is small); more are refused
QUEUE_SIZE = 64
# Files the server writes (uploads, results) are deleted KEEP_FILES_S after they were written, checked every
# DELETE_EVERY_S (and all of them when it stops); no session keeps images in memory, and at most SESSIONS
# sessions are remembered: the server's disk and memory stay bounded however long it runs.
DELETE_EVERY_S, KEEP_FILES_S = 300, 900
EMPTY_FOLDER_S = 60  # an emptied folder of Gradio's cache is removed this long after its last change
SESSIONS = 256
STOP_WAIT_S = 30  # on Ctrl-C or SIGTERM, images in hand get this long to finish before the process ends
WEBCAM_SECONDS = 600  # a webcam stream stops after this long; press Start again to go on
WEBCAM_SIZE = (640, 480)  # asked of the camera: a video call's frame, and real time on a laptop CPU
WEBCAM_PATH = "/webcam/ws"  # the Webcam tab's WebSocket (`WebcamSocket`), on the app's own host and port
WEBCAM_MAX_PIXELS = 3840 * 2160  # a larger frame is refused before it is decoded
WEBCAM_JPEG_QUALITY = 85  # the sharpened frames the server sends
WEBCAM_SEND_QUALITY = 0.8  # the camera frames the page sends (canvas.toBlob)
WEBCAM_IN_FLIGHT = 2  # frames on their way at once: one at the server, the next already sent

# The before/after slider stretches its images to the container's width and crops them; show them whole.
CSS = "#slider img { object-fit: contain !important; }"

INTRO = """# sharpkd: deblurring video-call frames
A 2.15M-parameter **teacher** U-Net and the 59K-parameter real-time **student** distilled from it, side by side.
Images are processed at full resolution on this machine; nothing leaves it."""


def _fail(exc: Exception):
    """A user mistake becomes a message in the page (and an error for API clients) and one line in the log; the
    server goes on."""
    log.info("request refused: %s", exc)
    raise gr.Error(str(exc), duration=20, title="Cannot use this image", print_exception=False)


def _upload_path(file) -> str | None:
    """An upload as the handlers get it (they take the request's values as sent, `preprocess=False`: a FileData
    dict), or a path."""
    if file is None:
        return None
    if isinstance(file, dict):
        return file.get("path")
    return file if isinstance(file, str) else getattr(file, "name", None) or getattr(file, "path", None)


def _metrics_markdown(report: dict) -> str:
    w, h = report["width"], report["height"]
    lines = [f"**{w}x{h}** ({w * h / 1e6:.2f} MP)"]
    if report.get("blur"):
        op = report["blur"]
        desc = f"Gaussian, sigma {op['sigma']:g} px" if op["op"] == "GaussianBlur" else \
            f"motion, {op['length']:g} px at {op['angle']:g} deg"
        lines.append(f"Simulated blur: {desc}. Scores against the original sharp image:")
        lines.append("\n| | SSIM | PSNR (dB) | latency (ms) |\n|---|---|---|---|")
        lines.append(f"| blurry input | {_score(report['input']['ssim'])} | {report['input']['psnr']:.2f} | |")
        for role in MODEL_ROLES:
            r = report[role]
            lines.append(f"| {role} | {_score(r['ssim'])} | {r['psnr']:.2f} | {r['latency_ms']:.0f} |")
    else:
        lines.append(" | ".join(f"{role}: {report[role]['latency_ms']:.0f} ms" for role in MODEL_ROLES) +
                     " (no reference: switch on *simulate blur* with a sharp photo to score the outputs)")
    if not all(report[role]["trained"] for role in MODEL_ROLES):
        lines.append("\n*Untrained weights are being served: outputs are not meaningful yet (see the Models tab).*")
    return "\n".join(lines)


def _score(ssim: float | None) -> str:
    return "-" if ssim is None else f"{ssim:.4f}"  # an image under 6 pixels on a side has no SSIM


def _models_markdown(info: list[dict]) -> str:
    """The Models tab's table: every figure from the sidecars, as docs/models.md and `sharpkd models` give it."""
    rows = ["| model | status | parameters | GMACs / 720p frame | faces, `call` crops | faces, `call@1280x720` frames "
            "| training data |", "|---|---|---|---|---|---|---|"]
    for m in info:
        params = f"{m['parameters']:,}" if m["parameters"] is not None else "-"
        faces = ((m["suite"] or {}).get("datasets") or {}).get("faces") or {}
        rows.append(f"| {m['model']} ({m['arch']}) | {m['status']} | {params} | {describe_value(m['gmacs_720p'])} "
                    f"| {cell(faces.get('call'))} | {cell(faces.get('call@1280x720'))} | {describe_value(m['data'])} |")
    base = next((f for m in info if (f := ((m["suite"] or {}).get("datasets") or {}).get("faces"))), {})
    if base:
        rows.append(f"| input | | | | {cell(base.get('call', {}).get('input'))} "
                    f"| {cell(base.get('call@1280x720', {}).get('input'))} | |")
    rows += ["", "SSIM / PSNR (dB) against the sharp original on validation faces (the benchmark suite; every family "
             "in the project's docs/models.md and `sharpkd models`).", ""]
    for m in info:
        rows.append(f"- **{m['model']}** weights: `{m['weights']}`")
    return "\n".join(rows)


def webcam_sharpener(model: str | os.PathLike | None = None, threads: int | None = None):
    """The Webcam tab's model: the shipped real-time student on the fastest backend, as `sharpkd live` runs it."""
    from ..inference import load
    from ..inference.live import DEFAULT_BACKEND, DEFAULT_MODEL

    return load(model or DEFAULT_MODEL, backend=DEFAULT_BACKEND, threads=threads, size=WEBCAM_SIZE)


def encode_webcam_frame(rgb: np.ndarray) -> bytes:
    """A sharpened frame as JPEG bytes (what the Webcam tab's socket sends back)."""
    import cv2

    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, WEBCAM_JPEG_QUALITY])
    if not ok:
        raise SharpkdError("could not encode the frame as JPEG")
    return buf.tobytes()


def decode_webcam_frame(data: bytes, max_pixels: int = WEBCAM_MAX_PIXELS) -> np.ndarray:
    """A camera frame sent by the page (JPEG bytes) as uint8 RGB; BadImageError with one line for anything else.
    The size is checked in the header, before any pixel is decoded."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise BadImageError("empty message: send each camera frame as JPEG bytes")
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.format != "JPEG":
                raise BadImageError(f"a {im.format} image: send each camera frame as JPEG bytes")
            if im.width * im.height > max_pixels:
                raise BadImageError(f"a {im.width}x{im.height} frame is above the limit of "
                                    f"{max_pixels / 1e6:.1f} megapixels")
            im.load()
            return np.asarray(im if im.mode == "RGB" else im.convert("RGB"))
    except UnidentifiedImageError:
        raise BadImageError("not a JPEG image: send each camera frame as JPEG bytes") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise BadImageError(f"corrupt or truncated JPEG ({exc})") from None


class WebcamSocket:
    """The Webcam tab's transport: a WebSocket on the app's own server (WEBCAM_PATH). The page sends each camera
    frame as one binary message (JPEG); for each, the server answers a JSON text message with the frame's size
    and its time per stage, then the sharpened frame as a binary message (JPEG), or one JSON error message for a
    frame it cannot use, and goes on. One frame at a time per stream, its work in a worker thread (the event loop
    stays free); at most `limit` streams at once, each closed after `seconds`. (A Gradio streaming event would put
    a JSON/base64 message, an HTTP POST and an SSE reply around every frame.)

    Messages from the server: {"type": "ready", "model", "backend", "max_side", "seconds"} once; per frame
    {"type": "frame", "width", "height", "decode_ms", "model_ms", "encode_ms"} and the JPEG, or {"type": "error",
    "message", "frame": true}; {"type": "error", "message"} before refusing a stream; {"type": "end", "message"}
    before closing one that ran for `seconds`."""

    def __init__(self, sharpener, max_pixels: int | None = None, limit: int = WEBCAM_CONCURRENCY,
                 seconds: float = WEBCAM_SECONDS):
        self.sharpener, self.limit, self.seconds = sharpener, limit, seconds
        self.max_pixels = min(max_pixels or WEBCAM_MAX_PIXELS, WEBCAM_MAX_PIXELS)
        self.streams = 0  # open streams: changed on the event loop only
        self._busy, self._idle = 0, threading.Condition()  # frames in a worker thread, for `wait_idle`

    def frame(self, data: bytes) -> tuple[bytes, dict]:
        """One camera frame: JPEG bytes -> (the sharpened frame as JPEG bytes, its "frame" message)."""
        with self._idle:
            self._busy += 1
        try:
            t0 = time.perf_counter()
            rgb = AppService.fit_frame(decode_webcam_frame(data, self.max_pixels), max(WEBCAM_SIZE))
            t1 = time.perf_counter()
            out = self.sharpener.sharpen(rgb)
            t2 = time.perf_counter()
            jpeg = encode_webcam_frame(out)
            t3 = time.perf_counter()
        finally:
            with self._idle:
                self._busy -= 1
                self._idle.notify_all()
        h, w = out.shape[:2]
        return jpeg, {"type": "frame", "width": w, "height": h, "decode_ms": round((t1 - t0) * 1000, 2),
                      "model_ms": round((t2 - t1) * 1000, 2), "encode_ms": round((t3 - t2) * 1000, 2)}

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no frame is in a worker thread (at most `timeout_s` seconds); False if one still is."""
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout_s)

    async def serve(self, websocket: WebSocket) -> None:
        """One stream, until the page closes it or `seconds` have passed."""
        origin = websocket.headers.get("origin")
        if origin and urlsplit(origin).netloc != websocket.headers.get("host"):
            await websocket.close(code=1008)  # another site's page (browsers send Origin): refused (HTTP 403)
            return
        await websocket.accept()
        if self.streams >= self.limit:
            await websocket.send_text(json.dumps({"type": "error", "message": "this server already runs its "
                                                  f"{self.limit} webcam stream(s) at once: try again later"}))
            await websocket.close(code=1013)  # "try again later"
            return
        self.streams += 1
        try:
            await websocket.send_text(json.dumps({
                "type": "ready", "model": self.sharpener.name, "backend": getattr(self.sharpener, "backend_label", "?"),
                "max_side": max(WEBCAM_SIZE), "seconds": self.seconds}))
            deadline = time.monotonic() + self.seconds
            while True:
                with anyio.move_on_after(deadline - time.monotonic()) as timer:
                    message = await websocket.receive()
                if timer.cancelled_caught:
                    minutes = f"{self.seconds / 60:g} minutes" if self.seconds >= 60 else f"{self.seconds:g} s"
                    await websocket.send_text(json.dumps({"type": "end", "message": f"a stream stops after "
                                                          f"{minutes}: press Start to go on"}))
                    await websocket.close(code=1000)
                    return
                if message["type"] == "websocket.disconnect":
                    return
                if message.get("bytes") is None:
                    await websocket.send_text(json.dumps({"type": "error", "frame": True, "message":
                                                          "a text message: send each camera frame as JPEG bytes"}))
                    continue
                try:
                    jpeg, info = await anyio.to_thread.run_sync(self.frame, message["bytes"])
                except BadImageError as exc:
                    await websocket.send_text(json.dumps({"type": "error", "frame": True, "message": str(exc)}))
                    continue
                except Exception as exc:  # not the page's fault: log it whole, tell the page in one line, stop
                    log.exception("webcam frame failed")
                    await websocket.send_text(json.dumps({"type": "error", "frame": True, "message":
                                                          f"the server could not sharpen the frame ({exc})"}))
                    await websocket.close(code=1011)
                    return
                await websocket.send_text(json.dumps(info))
                await websocket.send_bytes(jpeg)
        except WebSocketDisconnect:  # the page went away while an answer was being sent
            pass
        finally:
            self.streams -= 1


def webcam_block(webcam) -> gr.HTML:
    """The Webcam tab's page: camera preview, output canvas, Start/Stop and a status line, driven by webcam.js
    (which talks to `WebcamSocket`)."""
    html = f"""<div class="sk-webcam">
  <div class="sk-views">
    <figure><figcaption>Camera</figcaption><video id="webcam-preview" autoplay muted playsinline></video></figure>
    <figure><figcaption>Student ({webcam.name}), live</figcaption>
      <canvas id="webcam-output" width="{WEBCAM_SIZE[0]}" height="{WEBCAM_SIZE[1]}"></canvas></figure>
  </div>
  <button id="webcam-toggle" type="button">Start</button>
  <div id="webcam-status" role="status">Press Start and allow the camera.</div>
</div>"""
    css = """
.sk-views { display: flex; gap: 12px; flex-wrap: wrap; }
.sk-views figure { flex: 1 1 300px; margin: 0; }
.sk-views figcaption { font-size: var(--block-label-text-size); color: var(--block-label-text-color); margin-bottom: 4px; }
.sk-views video, .sk-views canvas { width: 100%; height: auto; display: block; background: #111;
  border-radius: var(--block-radius); transform: scaleX(-1); }
#webcam-toggle { margin: 12px 0 8px; padding: 8px 28px; border: none; border-radius: var(--button-large-radius);
  background: var(--button-primary-background-fill); color: var(--button-primary-text-color);
  font-weight: var(--button-large-text-weight); cursor: pointer; }
#webcam-toggle:disabled { opacity: 0.6; cursor: default; }
#webcam-status { font-family: var(--font-mono); font-size: var(--text-sm); }
"""
    return gr.HTML(value="", html_template=html, css_template=css,
                   js_on_load=(Path(__file__).with_name("webcam.js")).read_text(encoding="utf-8"),
                   elem_id="webcam", ws_path=WEBCAM_PATH.lstrip("/"), width=WEBCAM_SIZE[0], height=WEBCAM_SIZE[1],
                   quality=WEBCAM_SEND_QUALITY, max_in_flight=WEBCAM_IN_FLIGHT)


def build_app(service: AppService, examples_dir: str | os.PathLike | None = None, webcam=None,
              threads: int | None = None) -> gr.Blocks:
    """The gr.Blocks of the app (not launched). API endpoints: /compare, /sharpen, /models. The Webcam tab talks
    to `demo.sharpkd_webcam` (a `WebcamSocket`), which `serve` adds to the launched app at WEBCAM_PATH.
    `webcam`: the Webcam tab's sharpener (default: `webcam_sharpener()`, the real-time student on `threads`
    threads, or the app's student if that cannot load)."""
    examples = example_images(examples_dir)
    if webcam is None:
        try:
            webcam = webcam_sharpener(threads=threads)
        except SharpkdError as exc:
            log.warning("the Webcam tab runs the app's student: the real-time student did not load (%s)", exc)
            webcam = service.models["student"].sharpener

    # The API's handlers take the values as sent (`preprocess=False`) and check them here, so that a value out of
    # range is refused in one line (Gradio's own checks of a slider or radio log a traceback).
    def compare(file, simulate_blur, blur_kind, strength, slider_role):
        try:
            res = service.compare(_upload_path(file), bool(simulate_blur), blur_kind or "Gaussian",
                                  4.0 if strength is None else strength,
                                  name=Path(_upload_path(file) or "upload").name)
        except SharpkdError as exc:
            _fail(exc)
        rep = res["report"]
        role = slider_role if slider_role in MODEL_ROLES else "student"
        return (res["input"], res["teacher"], res["student"], (res["input"], res[role]), rep, _metrics_markdown(rep))

    def relabel(rep):
        """Latencies into the image labels (a UI-only step, so that API clients get plain images)."""
        if not rep:
            return gr.skip(), gr.skip(), gr.skip()
        return (gr.Image(label="Input (blurred)" if rep.get("blur") else "Input"),
                gr.Image(label=f"Teacher: {rep['teacher']['latency_ms']:.0f} ms"),
                gr.Image(label=f"Student: {rep['student']['latency_ms']:.0f} ms"))

    def reslide(role, inp, teacher, student):
        """The slider from the images on the page (read back from the server's files): no session state."""
        out = teacher if role == "teacher" else student
        if inp is None or out is None:
            return gr.skip()
        return (inp, out)

    def sharpen_one(file, role):
        try:
            check_role(role or "student")
            rgb = service.decode(_upload_path(file), name=Path(_upload_path(file) or "upload").name)
            with service.job(rgb):
                out, ms = service.sharpen(rgb, role or "student")
        except SharpkdError as exc:
            _fail(exc)
        h, w = out.shape[:2]
        return out, {"model": role or "student", "width": w, "height": h, "latency_ms": round(ms, 1),
                     "trained": service.models[role or "student"].trained}

    def models():
        return service.model_info()

    info = service.model_info()
    untrained = [m["model"] for m in info if m["status"] != "trained"]
    with gr.Blocks(title="sharpkd", delete_cache=(DELETE_EVERY_S, KEEP_FILES_S)) as demo:
        gr.Markdown(INTRO + (f"\n\n**Warning:** no trained weights for {' and '.join(untrained)}: serving "
                             "untrained models." if untrained else ""))
        with gr.Tab("Image", id="image"):
            with gr.Row():
                with gr.Column(scale=1, min_width=260):
                    upload = gr.File(label="Image (JPG, PNG or WebP)", type="filepath", elem_id="upload")
                    simulate = gr.Checkbox(label="Simulate blur (start from a sharp photo)", value=False,
                                           elem_id="simulate")
                    kind = gr.Radio(list(BLUR_KINDS), value="Gaussian", label="Blur")
                    strength = gr.Slider(*STRENGTH_RANGE, value=4.0, step=0.5, label="Blur strength",
                                         info="Gaussian sigma 0.3 x strength px; motion 1.5 x strength px")
                    run_btn = gr.Button("Sharpen", variant="primary", elem_id="run")
                    # frames as the models meet them, already degraded: Simulate blur goes off
                    gr.Examples(examples=[[p, False] for p in examples], inputs=[upload, simulate],
                                label="Bundled examples", example_labels=[Path(p).stem for p in examples])
                with gr.Column(scale=3):
                    with gr.Row(equal_height=True):
                        buttons = ["download", "fullscreen"]
                        in_img = gr.Image(label="Input", format="png", interactive=False, buttons=buttons,
                                          elem_id="out-input")
                        t_img = gr.Image(label="Teacher", format="png", interactive=False, buttons=buttons,
                                         elem_id="out-teacher")
                        s_img = gr.Image(label="Student", format="png", interactive=False, buttons=buttons,
                                         elem_id="out-student")
                    metrics_md = gr.Markdown(elem_id="metrics", label="summary")
                    slider_role = gr.Radio(list(MODEL_ROLES), value="student", label="Before/after slider: input vs")
                    slider = gr.ImageSlider(label="Before / after", format="png", interactive=False,
                                            elem_id="slider")
                    with gr.Accordion("Report (JSON)", open=False):
                        report = gr.JSON(label="report")
            ins = [upload, simulate, kind, strength, slider_role]
            outs = [in_img, t_img, s_img, slider, report, metrics_md]
            run_btn.click(compare, ins, outs, api_name="compare", preprocess=False,
                          api_description="Sharpen an image with teacher and student (optionally blurring it "
                                          "first); returns input, teacher, student, slider pair, report, summary"
                          ).success(relabel, [report], [in_img, t_img, s_img], api_visibility="private", queue=False)
            # An upload or a click on an example runs at once (clearing the file does nothing).
            upload.change(lambda f, *rest: compare(f, *rest) if f else (gr.skip(),) * len(outs), ins, outs,
                          api_visibility="private", preprocess=False
                          ).success(relabel, [report], [in_img, t_img, s_img], api_visibility="private", queue=False)
            slider_role.change(reslide, [slider_role, in_img, t_img, s_img], [slider], api_visibility="private")

        with gr.Tab("Webcam", id="webcam"):
            gr.Markdown("Press **Start** and allow the camera: its frames go through the student as fast as it "
                        "returns them, a new one as each result comes back (frames larger than "
                        f"{max(WEBCAM_SIZE)} px are scaled down first; a stream stops after "
                        f"{WEBCAM_SECONDS // 60} minutes: press Start again).")
            webcam_block(webcam)

        with gr.Tab("Models", id="models"):
            gr.Markdown(_models_markdown(info), elem_id="models-table")
            curves = [(m["curves"], f"{m['model']} training curves") for m in info if m["curves"]]
            if curves:
                for path, label in curves:
                    gr.Image(value=path, label=label, interactive=False, format="png")
            else:
                gr.Markdown("No training curves image found next to the weights "
                            "(`<weights>_curves.png`, `curves.png`, or the sidecar's `curves` entry).")
            with gr.Accordion("Sidecars (JSON)", open=False):
                gr.JSON(value={m["model"]: m["sidecar"] for m in info})

        # A single-model endpoint for scripts: no UI of its own.
        with gr.Row(visible=False):
            api_file = gr.File(label="image", type="filepath")
            api_role = gr.Radio(list(MODEL_ROLES), value="student", label="model")
            api_out = gr.Image(label="sharpened", format="png")
            api_info = gr.JSON(label="info")
            api_btn = gr.Button("sharpen")
            api_models_btn = gr.Button("models")
            api_models = gr.JSON(label="models")
        api_btn.click(sharpen_one, [api_file, api_role], [api_out, api_info], api_name="sharpen", preprocess=False,
                      api_description="Sharpen an image with one model ('student' or 'teacher')")
        api_models_btn.click(models, None, api_models, api_name="models",
                             api_description="Parameters, MACs, training data and benchmark figures of each model")
    demo.queue(default_concurrency_limit=DEFAULT_CONCURRENCY, max_size=QUEUE_SIZE)
    demo.sharpkd_webcam = WebcamSocket(webcam, max_pixels=service.max_pixels)
    return demo


def serve(host: str = "127.0.0.1", port: int = 7860, teacher: str | None = None, student: str | None = None,
          max_megapixels: float = 25.0, max_file_mb: float | None = None, threads: int | None = None,
          webcam_model: str | None = None) -> None:
    """Load the models once and serve until interrupted. The address is checked first (SharpkdError)."""
    check_address(host, port)
    max_pixels = int(max_megapixels * 1e6) if max_megapixels and max_megapixels > 0 else None
    service = AppService(teacher, student, max_pixels=max_pixels, threads=threads)
    webcam = webcam_sharpener(webcam_model, threads=threads) if webcam_model else None  # a named one must load
    demo = build_app(service, webcam=webcam, threads=threads)
    if max_file_mb is None:  # room for an uncompressed 16-bit image at the pixel limit
        max_file_mb = max(50.0, 6 * (max_pixels or 25e6) / 1e6 * 1.1)
    if not any(importlib.util.find_spec(m) for m in ("websockets", "wsproto")):  # uvicorn's WebSocket support
        log.warning("the Webcam tab will not connect: install the websockets package (pip install websockets)")
    log.info("serving on http://%s:%d (teacher: %s; student: %s; limit %s)", host, port,
             service.models["teacher"].source, service.models["student"].source,
             f"{max_pixels / 1e6:g} MP" if max_pixels else "none")
    # No allowed_paths: the page's files (examples, training curves) are Gradio's copies in its cache, made when
    # the page was built; a request whose Host header names another host (DNS rebinding) is refused (400).
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    demo.launch(server_name=host, server_port=port, show_error=True, max_file_size=f"{int(max_file_mb)}mb",
                css=CSS, ssr_mode=False, quiet=False, inbrowser=False, state_session_capacity=SESSIONS,
                prevent_thread_lock=True,
                app_kwargs={"middleware": [Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(host))]})
    # The Webcam tab's WebSocket goes on the FastAPI app that launch() made and serves (`demo.app`): same host and
    # port, and launch() keeps doing everything else (queue, cache cleaning, stopping on Ctrl-C or SIGTERM).
    # Mounting the Blocks in an app of our own (gr.mount_gradio_app) would mean running uvicorn and redoing that.
    demo.app.add_api_websocket_route(WEBCAM_PATH, demo.sharpkd_webcam.serve)
    keep_launch_files(demo)
    stop, cache = threading.Event(), Path(demo.GRADIO_CACHE)

    def sweeper():
        while not stop.wait(DELETE_EVERY_S):
            sweep_leftovers(cache)

    threading.Thread(target=sweeper, daemon=True).start()
    try:
        demo.block_thread()  # until Ctrl-C or SIGTERM
    finally:
        # Gradio has stopped taking requests. An image still in a model finishes first (a model cut off by the
        # end of the process aborts it, "terminate called without an active exception").
        if not (service.wait_idle(STOP_WAIT_S) and demo.sharpkd_webcam.wait_idle(STOP_WAIT_S)):
            log.warning("stopping with an image still in hand after %d s", STOP_WAIT_S)
        # Gradio deletes the files it served when its server thread shuts down, but that thread can be cut
        # short by the end of the process (requests still open): do it here.
        from gradio.route_utils import delete_files_created_by_app

        delete_files_created_by_app(demo, None)
        stop.set()
        sweep_leftovers(cache, file_age_s=0, folder_age_s=0)  # no request is open any more


def check_address(host: str, port: int) -> None:
    """SharpkdError, in one line, for an address the server cannot listen on: a port out of range, a host that is
    no address, a port in use, an address of another machine."""
    if not 1 <= port <= 65535:
        raise SharpkdError(f"--port {port} is not a port number (1-65535)")
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise SharpkdError(f"--host {host} is not an address or a known host name ({exc.strerror})") from None
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server's own socket
        try:
            s.bind(addr)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise SharpkdError(f"port {port} on {host} is in use: stop what uses it or choose another --port") \
                    from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise SharpkdError(f"--host {host} is not an address of this machine") from None
            raise SharpkdError(f"cannot listen on {host} port {port} ({exc.strerror})") from None


def allowed_hosts(host: str) -> list[str]:
    """The names a request's Host header may give: `host` itself, and localhost, 127.0.0.1 and [::1] when it is a
    loopback address; any name when the server listens on every address (0.0.0.0, ::)."""
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        ip = None
    if ip is not None and ip.is_unspecified:
        return ["*"]
    name = f"[{ip.compressed}]" if ip is not None and ip.version == 6 else host.lower()
    loopback = host.lower() == "localhost" or (ip is not None and ip.is_loopback)
    return list(dict.fromkeys([name] + (["localhost", "127.0.0.1", "[::1]"] if loopback else [])))


def sweep_leftovers(folder: Path, file_age_s: float = KEEP_FILES_S, folder_age_s: float = EMPTY_FOLDER_S) -> None:
    """What Gradio's cache cleaning leaves in its folder: the empty folder of each deleted file (4 KB each on
    most file systems), removed `folder_age_s` after it was emptied, and the empty temporary file of each upload,
    removed `file_age_s` after the upload began. Only empty ones: rmdir refuses a folder in use again."""
    now = time.time()
    for path in folder.iterdir() if folder.is_dir() else []:
        try:
            st = path.lstat()
            if stat.S_ISDIR(st.st_mode) and now - st.st_mtime >= folder_age_s:
                path.rmdir()
            elif (stat.S_ISREG(st.st_mode) and st.st_size == 0 and path.name.startswith("tmp")
                  and now - st.st_mtime >= file_age_s):
                path.unlink()
        except OSError:  # not empty, or gone already
            pass


def keep_launch_files(demo: gr.Blocks) -> None:
    """Gradio's cache cleaning (`delete_cache`) would also delete the copies it made at launch of the examples and
    the training curves, which the page goes on using: every file the app has written by now is kept."""
    for block in demo.blocks.values():
        if getattr(block, "temp_files", None):
            block.keep_in_cache.update(block.temp_files)
