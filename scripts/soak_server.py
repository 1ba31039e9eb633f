"""Soak test of `sharpkd serve`: memory and temporary-disk use of the server under a long run of mixed requests.

Starts `sharpkd serve` on 127.0.0.1 (a free port, loopback only) with its own Gradio temporary folder, then sends
a bounded loop of requests for --minutes: bursts of small /compare requests from new clients (new sessions),
/sharpen on a Full-HD frame, a large image with simulated blur now and then, tiny images and a corrupt upload.
Every request sends an image of its own (other content, hence other result files on the server, as from other
users).
Every --sample-s seconds it records the server's resident memory (RSS, from /proc) and the size of Gradio's
temporary folder. It stops by itself (--minutes, --max-requests), stops the server, prints a table and writes JSON.

    nice -n 10 python scripts/soak_server.py --minutes 30 --json reports/soak.json

Linux only (/proc). The figures are memory and disk, which CPU load does not change much; request counts and
latencies do depend on the machine and its load (recorded in the JSON)."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> tuple[float, float]:
    """Resident memory now and at its peak (VmRSS, VmHWM), in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields.get("VmRSS", 0.0), fields.get("VmHWM", 0.0)


def folder_use(folder: Path) -> tuple[float, int, int]:
    """Disk used under `folder` (MB, from allocated blocks: directories count too), files, folders."""
    used, files, dirs = 0, 0, 0
    for root, dirnames, filenames in os.walk(folder):
        dirs += len(dirnames)
        for name in [*filenames, *dirnames]:
            try:
                used += os.lstat(os.path.join(root, name)).st_blocks * 512
            except FileNotFoundError:  # deleted while walking
                pass
        files += len(filenames)
    return used / 1e6, files, dirs


def textured(h: int, w: int, seed: int) -> np.ndarray:
    """A photo-like test image: gradients, edges and noise (compresses like a photo, not like a flat colour)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([(xx * rng.uniform(0.2, 1) + yy * rng.uniform(0.2, 1)) % 256 for _ in range(3)], -1)
    for _ in range(40):
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        img[y0:y0 + h // 8, x0:x0 + w // 8] = rng.integers(0, 256, 3)
    img += rng.normal(0, 6, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def interrupt(signum, frame):
    raise KeyboardInterrupt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--sample-s", type=float, default=60.0, help="seconds between memory/disk samples")
    ap.add_argument("--max-requests", type=int, default=20000, help="stop after this many requests in all")
    ap.add_argument("--burst", type=int, default=4, help="small requests sent at once in each round")
    ap.add_argument("--large", default="4000x3000", help="the large image, WxH (sent every --large-every rounds)")
    ap.add_argument("--large-every", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2, help="the server's torch threads")
    ap.add_argument("--teacher", help="teacher weights (default: shipped)")
    ap.add_argument("--student", help="student weights (default: shipped)")
    ap.add_argument("--timeout-s", type=float, default=900.0, help="give up on one request after this long")
    ap.add_argument("--start-timeout-s", type=float, default=900.0, help="give up if the server is not up by then")
    ap.add_argument("--json", default="soak.json", help="where to write the samples and the summary")
    args = ap.parse_args()
    # Ctrl-C, or SIGTERM, stops the soak (and the server) cleanly, also when started in the background from a
    # shell (which starts background jobs with SIGINT ignored, and so would the server be).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupt)

    from gradio_client import Client, handle_file

    work = Path(tempfile.mkdtemp(prefix="sharpkd-soak-"))
    gradio_tmp, downloads, images = work / "gradio", work / "downloads", work / "images"
    for d in (gradio_tmp, downloads, images):
        d.mkdir()
    lw, lh = (int(v) for v in args.large.lower().split("x"))
    sizes = {"small": (480, 640), "hd": (1080, 1920), "large": (lh, lw), "tiny": (2, 2)}
    # Each kind's image, its content changed per request by a few pixels (cheap: the picture is made once).
    bases = {kind: textured(h, w, i) for i, (kind, (h, w)) in enumerate(sizes.items())}
    serial = iter(range(10**9))

    def image_file(kind: str) -> Path:
        n = next(serial)
        img = bases[kind].copy()
        img.reshape(-1)[:8] = np.frombuffer(n.to_bytes(8, "little"), np.uint8)  # unique content per request
        path = images / f"{kind}-{n}.{'jpg' if kind in ('hd', 'large') else 'png'}"
        Image.fromarray(img).save(path, quality=92)
        return path

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    cmd = [sys.executable, "-m", "sharpkd.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--threads", str(args.threads)]
    for role in ("teacher", "student"):
        if getattr(args, role):
            cmd += [f"--{role}", getattr(args, role)]
    env = {**os.environ, "GRADIO_TEMP_DIR": str(gradio_tmp), "GRADIO_ANALYTICS_ENABLED": "False",
           "PYTHONUNBUFFERED": "1"}
    server_log = open(work / "serve.log", "w")
    # The server's own SIGINT is restored too (it would inherit an ignored one from a background job).
    server = subprocess.Popen(cmd, stdout=server_log, stderr=subprocess.STDOUT, env=env,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def serve_log_tail(n: int = 40) -> str:
        server_log.flush()
        return "\n".join((work / "serve.log").read_text(errors="replace").splitlines()[-n:])

    counts = {"requests": 0, "errors": 0, "expected_errors": 0, "by_kind": {}}
    samples: list[dict] = []
    lock = threading.Lock()
    stop = threading.Event()
    t_start = time.monotonic()
    try:
        started = time.monotonic()
        while True:  # the server's start (loading the models)
            if server.poll() is not None:
                raise SystemExit(f"sharpkd serve exited with {server.returncode}:\n" + serve_log_tail())
            try:
                with urllib.request.urlopen(url + "config", timeout=5):
                    break
            except OSError:
                if time.monotonic() - started > args.start_timeout_s:
                    raise SystemExit(f"sharpkd serve did not start in {args.start_timeout_s:.0f} s:\n"
                                     + serve_log_tail()) from None
                time.sleep(0.5)
        t_start = time.monotonic()  # the soak's clock starts with a running server
        print(f"server started in {t_start - started:.0f} s", flush=True)
        print(f"server pid {server.pid} on {url}; Gradio temporary folder {gradio_tmp}", flush=True)

        def sample():
            rss, hwm = rss_mb(server.pid)
            mb, nfiles, ndirs = folder_use(gradio_tmp)
            with lock:
                rec = {"minute": round((time.monotonic() - t_start) / 60, 2), "rss_mb": round(rss, 1),
                       "peak_rss_mb": round(hwm, 1), "temp_mb": round(mb, 2), "temp_files": nfiles,
                       "temp_dirs": ndirs, "requests": counts["requests"], "errors": counts["errors"]}
            samples.append(rec)
            print(f"{rec['minute']:7.1f} min  RSS {rec['rss_mb']:7.1f} MB (peak {rec['peak_rss_mb']:7.1f})  temp "
                  f"{rec['temp_mb']:7.2f} MB in {rec['temp_files']:5d} files, {rec['temp_dirs']:5d} folders  "
                  f"requests {rec['requests']:5d}  errors {rec['errors']}", flush=True)

        def sampler():
            while not stop.wait(args.sample_s):
                sample()

        sample()
        threading.Thread(target=sampler, daemon=True).start()
        deadline = t_start + args.minutes * 60

        def call(kind: str, expect_error: bool = False):
            client = Client(url, verbose=False, download_files=str(downloads))  # a new session, as a new tab
            t0 = time.perf_counter()
            try:
                if kind in ("small", "small-blur", "tiny", "corrupt", "large"):
                    path = image_file("small" if kind == "corrupt" else kind.split("-")[0])
                    if kind == "corrupt":
                        path.write_bytes(path.read_bytes()[:2000])
                    blur = kind.endswith("blur") or kind in ("tiny", "large")
                    job = client.submit(handle_file(str(path)), blur, "Gaussian", 5.0, "student", api_name="/compare")
                else:  # "hd": one model on a Full-HD frame
                    path = image_file("hd")
                    job = client.submit(handle_file(str(path)), "teacher", api_name="/sharpen")
                try:
                    job.result(timeout=args.timeout_s)
                finally:
                    path.unlink(missing_ok=True)
                ok = True
            except Exception as exc:  # a server error comes back as an exception of gradio_client's
                ok = False
                if not expect_error:
                    print(f"  {kind}: {type(exc).__name__}: {str(exc)[:200]}", flush=True)
            with lock:
                counts["requests"] += 1
                stats = counts["by_kind"].setdefault(kind, {"n": 0, "failed": 0, "seconds": 0.0})
                stats["n"] += 1
                stats["seconds"] += time.perf_counter() - t0
                if ok == expect_error:
                    counts["errors"] += 1
                    stats["failed"] += 1
                elif expect_error:
                    counts["expected_errors"] += 1

        rounds = 0
        pool = ThreadPoolExecutor(args.burst + 4)
        try:
            while time.monotonic() < deadline and counts["requests"] < args.max_requests:
                kinds = ["small", "small-blur"] * (args.burst // 2) + ["small"] * (args.burst % 2)
                futures = [pool.submit(call, k) for k in kinds]
                futures += [pool.submit(call, "hd"), pool.submit(call, "tiny"), pool.submit(call, "corrupt", True)]
                if rounds % args.large_every == 0:
                    futures.append(pool.submit(call, "large"))
                for f in futures:
                    f.result()
                rounds += 1
                shutil.rmtree(downloads, ignore_errors=True)  # the client's copies: not the server's disk
                downloads.mkdir(exist_ok=True)
        finally:  # on Ctrl-C too: requests in flight end when the server stops below
            pool.shutdown(wait=False, cancel_futures=True)
        remaining = deadline - time.monotonic()
        if remaining > 0:  # the request budget ran out first: keep sampling the idle server until the end
            time.sleep(remaining)
        stop.set()
        sample()
    finally:
        stop.set()
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)  # `sharpkd serve` stops on SIGTERM as on Ctrl-C
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        log_tail = serve_log_tail().splitlines()
        server_log_text = (work / "serve.log").read_text(errors="replace")
        server_log.close()
        after_stop = folder_use(gradio_tmp)
        shutil.rmtree(work, ignore_errors=True)

    summary = {
        "minutes": round((time.monotonic() - t_start) / 60, 1), "requests": counts["requests"],
        "unexpected_errors": counts["errors"], "expected_errors": counts["expected_errors"],
        "rss_mb": {"start": samples[0]["rss_mb"], "max": max(s["rss_mb"] for s in samples),
                   "end": samples[-1]["rss_mb"], "peak": max(s["peak_rss_mb"] for s in samples)},
        "temp_mb": {"max": max(s["temp_mb"] for s in samples), "end": samples[-1]["temp_mb"],
                    "after_stop": round(after_stop[0], 2)},
        "temp_files": {"max": max(s["temp_files"] for s in samples), "end": samples[-1]["temp_files"],
                       "after_stop": after_stop[1]},
        "by_kind": {k: {"n": v["n"], "failed": v["failed"], "mean_s": round(v["seconds"] / max(1, v["n"]), 2)}
                    for k, v in counts["by_kind"].items()},
        "server_exit_code": server.returncode, "server_log_tracebacks": server_log_text.count("Traceback"),
        "large_image": args.large, "server_threads": args.threads, "cpus": os.cpu_count(),
        "load_average_end": os.getloadavg(),
    }
    print(json.dumps(summary, indent=1))
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"summary": summary, "samples": samples, "command": sys.argv,
                               "server_log_tail": log_tail}, indent=1) + "\n")
    print(f"wrote {out}")
    return 1 if counts["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
