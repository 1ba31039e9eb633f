"""The Gradio page: an Image tab (teacher and student side by side), a Webcam tab (the student live) and a
Models tab; every event is also a named HTTP endpoint. Thin: the work is in `service.AppService`."""
from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import logging  # noqa: E402
import stat  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402

from ..errors import SharpkdError  # noqa: E402
from .service import BLUR_KINDS, MODEL_ROLES, STRENGTH_RANGE, AppService, describe_value, example_images  # noqa: E402

log = logging.getLogger("sharpkd")

DEFAULT_CONCURRENCY = 2  # image requests run at the same time (2 CPU cores); the rest wait in the queue
WEBCAM_CONCURRENCY = 4  # webcam sessions served at once (the student is small)
QUEUE_SIZE = 64
# Files the server writes (uploads, results) are deleted KEEP_FILES_S after they were written, checked every
# DELETE_EVERY_S (and all of them when it stops); no session keeps images in memory, and at most SESSIONS
# sessions are remembered: the server's disk and memory stay bounded however long it runs.
DELETE_EVERY_S, KEEP_FILES_S = 300, 900
EMPTY_FOLDER_S = 60  # an emptied folder of Gradio's cache is removed this long after its last change
SESSIONS = 256
STOP_WAIT_S = 30  # on Ctrl-C or SIGTERM, images in hand get this long to finish before the process ends
WEBCAM_SECONDS = 600  # a webcam stream stops after this long; press record again to go on
WEBCAM_SIZE = (640, 480)  # asked of the camera: a video call's frame, and real time on a laptop CPU
# The browser sends the newest camera frame this often, whether or not the last result is back (Gradio's
# client does not wait); the server takes the newest frame when it is free. At the camera's rate: a longer
# interval caps the frame rate (0.1 s capped it at 10), a shorter one only spends the browser's CPU.
WEBCAM_STREAM_EVERY = 1 / 30
WEBCAM_JPEG_QUALITY = 85
FPS_WINDOW_S = 2.0

# The before/after slider stretches its images to the container's width and crops them; show them whole.
CSS = "#slider img { object-fit: contain !important; } #live img { width: 100%; height: auto; display: block; }"

INTRO = """# sharpkd: deblurring video-call frames
A 469K-parameter **teacher** U-Net and the ~20K-parameter **student** distilled from it, side by side.
Images are processed at full resolution on this machine; nothing leaves it."""


def _fail(exc: Exception):
    """A user mistake becomes a message in the page (and an error for API clients); the server goes on."""
    raise gr.Error(str(exc), duration=20, title="Cannot use this image", print_exception=False)


def _upload_path(file) -> str | None:
    if file is None:
        return None
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
    rows = ["| model | status | parameters | MACs / pixel | GMACs / 720p frame | training data | validation metrics |",
            "|---|---|---|---|---|---|---|"]
    for m in info:
        params = f"{m['parameters']:,}" if m["parameters"] is not None else "-"
        macs = f"{m['macs_per_pixel']:,.0f}" if m["macs_per_pixel"] else "-"
        rows.append(f"| {m['model']} ({m['arch']}) | {m['status']} | {params} | {macs} "
                    f"| {describe_value(m['gmacs_720p'])} | {describe_value(m['data'])} "
                    f"| {describe_value(m['val_metrics'])} |")
    rows.append("")
    for m in info:
        rows.append(f"- **{m['model']}** weights: `{m['weights']}`")
    return "\n".join(rows)


def webcam_sharpener(model: str | os.PathLike | None = None, threads: int | None = None):
    """The Webcam tab's model: the shipped real-time student on the fastest backend, as `sharpkd live` runs it."""
    from ..inference import load
    from ..inference.live import DEFAULT_BACKEND, DEFAULT_MODEL

    return load(model or DEFAULT_MODEL, backend=DEFAULT_BACKEND, threads=threads)


def encode_webcam_frame(rgb: np.ndarray) -> bytes:
    """A sharpened frame as JPEG bytes (what the Webcam tab sends back, inline)."""
    import cv2

    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, WEBCAM_JPEG_QUALITY])
    if not ok:
        raise SharpkdError("could not encode the frame as JPEG")
    return buf.tobytes()


def webcam_html(rgb: np.ndarray) -> str:
    """The frame as an <img> with a JPEG data URL: it travels in the event's own message. (A gr.Image output is
    written to a file in Gradio's cache and fetched by the browser in a second request, one file per frame.)"""
    import base64

    data = base64.b64encode(encode_webcam_frame(rgb)).decode("ascii")
    h, w = rgb.shape[:2]
    return f'<img src="data:image/jpeg;base64,{data}" width="{w}" height="{h}" alt="sharpened frame">'


def build_app(service: AppService, examples_dir: str | os.PathLike | None = None, webcam=None,
              threads: int | None = None) -> gr.Blocks:
    """The gr.Blocks of the app (not launched). API endpoints: /compare, /sharpen, /models (and /webcam, the
    streaming event of the Webcam tab, which gradio_client cannot call: scripts send frames to /sharpen).
    `webcam`: the Webcam tab's sharpener (default: `webcam_sharpener()`, the real-time student on `threads`
    threads, or the app's student if that cannot load)."""
    examples = example_images(examples_dir)
    if webcam is None:
        try:
            webcam = webcam_sharpener(threads=threads)
        except SharpkdError as exc:
            log.warning("the Webcam tab runs the app's student: the real-time student did not load (%s)", exc)
            webcam = service.models["student"].sharpener

    def compare(file, simulate_blur, blur_kind, strength, slider_role):
        try:
            res = service.compare(_upload_path(file), bool(simulate_blur), blur_kind or "Gaussian",
                                  float(strength or 4.0), name=Path(_upload_path(file) or "upload").name)
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
            rgb = service.decode(_upload_path(file), name=Path(_upload_path(file) or "upload").name)
            with service.job(rgb):
                out, ms = service.sharpen(rgb, role or "student")
        except SharpkdError as exc:
            _fail(exc)
        h, w = out.shape[:2]
        return out, {"model": role or "student", "width": w, "height": h, "latency_ms": round(ms, 1),
                     "trained": service.models[role or "student"].trained}

    def webcam_frame(frame, times):
        if frame is None:
            return gr.skip(), gr.skip(), times
        frame = service.fit_frame(np.ascontiguousarray(frame[..., :3]), max(WEBCAM_SIZE))
        t0 = time.perf_counter()
        out = webcam.sharpen(frame)
        ms = (time.perf_counter() - t0) * 1000
        now = time.perf_counter()
        times = [t for t in (times or []) if now - t <= FPS_WINDOW_S] + [now]
        fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
        h, w = frame.shape[:2]
        line = f"{fps:.1f} frames/s | student {ms:.0f} ms per {w}x{h} frame ({webcam.name}, {webcam.backend_name})"
        return webcam_html(out), line, times

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
                    simulate = gr.Checkbox(label="Simulate blur (start from a sharp photo)", value=False)
                    kind = gr.Radio(list(BLUR_KINDS), value="Gaussian", label="Blur")
                    strength = gr.Slider(*STRENGTH_RANGE, value=4.0, step=0.5, label="Blur strength",
                                         info="Gaussian sigma 0.3 x strength px; motion 1.5 x strength px")
                    run_btn = gr.Button("Sharpen", variant="primary", elem_id="run")
                    gr.Examples(examples=[[p] for p in examples], inputs=[upload], label="Bundled examples",
                                example_labels=[Path(p).stem for p in examples])
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
            run_btn.click(compare, ins, outs, api_name="compare",
                          api_description="Sharpen an image with teacher and student (optionally blurring it "
                                          "first); returns input, teacher, student, slider pair, report, summary"
                          ).success(relabel, [report], [in_img, t_img, s_img], api_visibility="private", queue=False)
            # An upload or a click on an example runs at once (clearing the file does nothing).
            upload.change(lambda f, *rest: compare(f, *rest) if f else (gr.skip(),) * len(outs), ins, outs,
                          api_visibility="private"
                          ).success(relabel, [report], [in_img, t_img, s_img], api_visibility="private", queue=False)
            slider_role.change(reslide, [slider_role, in_img, t_img, s_img], [slider], api_visibility="private")

        with gr.Tab("Webcam", id="webcam"):
            gr.Markdown("Allow the camera and press **record**: frames go through the student as they arrive "
                        f"(frames larger than {max(WEBCAM_SIZE)} px are scaled down first; a stream stops after "
                        f"{WEBCAM_SECONDS // 60} minutes: press record again).")
            with gr.Row():
                cam = gr.Image(sources=["webcam"], streaming=True, type="numpy", label="Camera", elem_id="cam",
                               webcam_options=gr.WebcamOptions(mirror=True, constraints={"video": {
                                   "width": {"ideal": WEBCAM_SIZE[0]}, "height": {"ideal": WEBCAM_SIZE[1]}}}))
                live = gr.HTML(label=f"Student ({webcam.name}), live", show_label=True, container=True,
                               js_on_load=None, elem_id="live")
            fps = gr.Textbox(label="Frames per second", interactive=False, elem_id="fps")
            times = gr.State([])
            cam.stream(webcam_frame, [cam, times], [live, fps, times], stream_every=WEBCAM_STREAM_EVERY,
                       time_limit=WEBCAM_SECONDS,
                       concurrency_limit=WEBCAM_CONCURRENCY, concurrency_id="webcam", api_name="webcam",
                       api_visibility="undocumented", show_progress="hidden")  # clients: /sharpen, student

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
        api_btn.click(sharpen_one, [api_file, api_role], [api_out, api_info], api_name="sharpen",
                      api_description="Sharpen an image with one model ('student' or 'teacher')")
        api_models_btn.click(models, None, api_models, api_name="models",
                             api_description="Parameters, MACs, training data and validation metrics of each model")
    demo.queue(default_concurrency_limit=DEFAULT_CONCURRENCY, max_size=QUEUE_SIZE)
    demo.sharpkd_allowed_paths = [str(Path(examples[0]).parent)] + [str(Path(p).parent) for p, _ in curves]
    return demo


def serve(host: str = "127.0.0.1", port: int = 7860, teacher: str | None = None, student: str | None = None,
          max_megapixels: float = 25.0, max_file_mb: float | None = None, threads: int | None = None,
          webcam_model: str | None = None) -> None:
    """Load the models once and serve until interrupted."""
    max_pixels = int(max_megapixels * 1e6) if max_megapixels and max_megapixels > 0 else None
    service = AppService(teacher, student, max_pixels=max_pixels, threads=threads)
    webcam = webcam_sharpener(webcam_model, threads=threads) if webcam_model else None  # a named one must load
    demo = build_app(service, webcam=webcam, threads=threads)
    if max_file_mb is None:  # room for an uncompressed 16-bit image at the pixel limit
        max_file_mb = max(50.0, 6 * (max_pixels or 25e6) / 1e6 * 1.1)
    log.info("serving on http://%s:%d (teacher: %s; student: %s; limit %s)", host, port,
             service.models["teacher"].source, service.models["student"].source,
             f"{max_pixels / 1e6:g} MP" if max_pixels else "none")
    demo.launch(server_name=host, server_port=port, show_error=True, max_file_size=f"{int(max_file_mb)}mb",
                allowed_paths=demo.sharpkd_allowed_paths, css=CSS, ssr_mode=False, quiet=False, inbrowser=False,
                state_session_capacity=SESSIONS, prevent_thread_lock=True)
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
        if not service.wait_idle(STOP_WAIT_S):
            log.warning("stopping with an image still in hand after %d s", STOP_WAIT_S)
        # Gradio deletes the files it served when its server thread shuts down, but that thread can be cut
        # short by the end of the process (requests still open): do it here.
        from gradio.route_utils import delete_files_created_by_app

        delete_files_created_by_app(demo, None)
        stop.set()
        sweep_leftovers(cache, file_age_s=0, folder_age_s=0)  # no request is open any more


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
