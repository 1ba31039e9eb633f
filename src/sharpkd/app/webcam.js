// The Webcam tab's client (run by gr.HTML's js_on_load: `element` is the tab's HTML block, `props` its settings).
// camera (getUserMedia) -> <video> preview -> canvas -> JPEG -> WebSocket -> sharpened JPEG -> output canvas.
// Real time, not a queue: at most props.max_in_flight frames are on their way at once, a frame is sent only when
// the camera has shown a new one, and the next is sent as soon as a result comes back.
// Protocol (see WebcamSocket in ui.py): binary JPEG out; in, JSON text ({type: "ready" | "frame" | "error" |
// "end"}), each "frame" message followed by the sharpened frame as a binary JPEG.
// After each frame drawn, the output canvas fires a "sharpkd-frame" event (detail: latency_ms, timings).
(() => {
  const $ = (sel) => element.querySelector(sel);
  const video = $("#webcam-preview"), out = $("#webcam-output"), button = $("#webcam-toggle"),
        status = $("#webcam-status");
  const MAX_SIDE = Math.max(props.width, props.height), FPS_WINDOW_MS = 2000;
  const grab = document.createElement("canvas"), grabCtx = grab.getContext("2d"), outCtx = out.getContext("2d");
  let stream = null, ws = null, running = false, encoding = false, fresh = false, ticker = null;
  let inFlight = [];  // grab times (performance.now()) of the frames sent and not answered yet, oldest first
  let info = {}, timings = null, received = [], latency = null, sent = 0, shown = 0, drawnSeq = 0, seq = 0;
  let message = "";  // the last error or end message from the server, shown when the stream stops

  const say = (text) => { status.textContent = text; };

  function line() {
    const now = performance.now();
    received = received.filter((t) => now - t <= FPS_WINDOW_MS);
    const fps = received.length > 1 ? (received.length - 1) / ((received[received.length - 1] - received[0]) / 1000) : 0;
    let text = `${fps.toFixed(1)} frames/s | latency ${latency === null ? "-" : Math.round(latency)} ms`;
    if (timings) {
      text += ` | student ${Math.round(timings.model_ms)} ms per ${timings.width}x${timings.height} frame ` +
              `(${info.model}, ${info.backend})`;
    }
    return text;
  }

  function pump() {  // send the camera's newest frame if it is new and there is room in flight
    if (!running || encoding || !fresh || inFlight.length >= props.max_in_flight || !video.videoWidth ||
        !ws || ws.readyState !== WebSocket.OPEN) return;
    fresh = false;
    encoding = true;
    const scale = Math.min(1, MAX_SIDE / Math.max(video.videoWidth, video.videoHeight));
    const w = Math.round(video.videoWidth * scale), h = Math.round(video.videoHeight * scale);
    if (grab.width !== w || grab.height !== h) { grab.width = w; grab.height = h; }
    grabCtx.drawImage(video, 0, 0, w, h);
    const t0 = performance.now();
    grab.toBlob(async (blob) => {
      // sent as an ArrayBuffer, not the Blob: the same bytes, and visible to DevTools (and tests) as a frame
      const bytes = blob ? await blob.arrayBuffer() : null;
      encoding = false;
      if (!bytes || !running || !ws || ws.readyState !== WebSocket.OPEN) return;
      ws.send(bytes);
      inFlight.push(t0);
      sent++;
      pump();
    }, "image/jpeg", props.quality);
  }

  function onVideoFrame() {
    fresh = true;
    pump();
    if (running) video.requestVideoFrameCallback(onVideoFrame);
  }

  async function onResult(blob) {
    const t0 = inFlight.shift(), mine = ++seq, frameTimings = timings;
    pump();  // the next frame goes out while this one is decoded and drawn
    let bitmap;
    try {
      bitmap = await createImageBitmap(blob);
    } catch (e) {
      say(`cannot show a sharpened frame: ${e.message}`);
      return;
    }
    if (mine < drawnSeq) { bitmap.close(); return; }  // a later frame is already on screen
    drawnSeq = mine;
    if (out.width !== bitmap.width || out.height !== bitmap.height) {
      out.width = bitmap.width;
      out.height = bitmap.height;
    }
    outCtx.drawImage(bitmap, 0, 0);
    bitmap.close();
    const now = performance.now();
    latency = t0 === undefined ? null : now - t0;
    received.push(now);
    shown++;
    if (running) say(line());
    out.dispatchEvent(new CustomEvent("sharpkd-frame", {detail: {latency_ms: latency, timings: frameTimings}}));
  }

  function onText(text) {
    let msg;
    try { msg = JSON.parse(text); } catch (e) { return; }
    if (msg.type === "ready") {
      info = msg;
      say(`streaming through ${msg.model} (${msg.backend}); waiting for the first frame`);
    } else if (msg.type === "frame") {
      timings = msg;
    } else if (msg.type === "error") {
      message = msg.message;
      if (msg.frame) { inFlight.shift(); pump(); }  // that frame's answer: send the next
      say(`error: ${msg.message}`);
    } else if (msg.type === "end") {
      message = msg.message;
    }
  }

  function stop(text) {
    running = false;
    if (ticker) { clearInterval(ticker); ticker = null; }
    if (ws) {
      const s = ws;
      ws = null;
      s.onclose = null;
      if (s.readyState <= WebSocket.OPEN) s.close(1000);
    }
    if (stream) { stream.getTracks().forEach((t) => t.stop()); stream = null; }
    video.srcObject = null;
    inFlight = [];
    encoding = false;
    button.textContent = "Start";
    button.disabled = false;
    say(text || `stopped after ${shown} sharpened frames (${sent} sent)`);
  }

  async function start() {
    button.disabled = true;
    message = "";
    received = []; latency = null; timings = null; sent = 0; shown = 0; seq = 0; drawnSeq = 0;
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      stop("no camera access here: browsers allow the camera only on https or on localhost");
      return;
    }
    say("starting the camera");
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        video: {width: {ideal: props.width}, height: {ideal: props.height}}, audio: false});
    } catch (e) {
      stop(`cannot open the camera: ${e.name}${e.message ? ": " + e.message : ""}`);
      return;
    }
    video.srcObject = stream;
    try { await video.play(); } catch (e) { /* muted autoplay: plays anyway */ }
    const url = new URL(props.ws_path, window.location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    url.search = "";
    url.hash = "";
    ws = new WebSocket(url);
    ws.binaryType = "blob";
    ws.onopen = () => {
      running = true;
      button.textContent = "Stop";
      button.disabled = false;
      if ("requestVideoFrameCallback" in HTMLVideoElement.prototype) {
        video.requestVideoFrameCallback(onVideoFrame);
      } else {  // no frame callback (older browsers): poll at the camera's usual rate
        ticker = setInterval(() => { fresh = true; pump(); }, 1000 / 30);
      }
    };
    ws.onmessage = (ev) => { if (typeof ev.data === "string") onText(ev.data); else onResult(ev.data); };
    ws.onclose = (ev) => {
      ws = null;
      stop(message || (ev.code === 1001 || ev.code === 1012 ? "the server stopped" :
        ev.code === 1006 ? `no connection to the server's webcam socket (${url.pathname}), or it was lost` :
        `the server closed the stream (code ${ev.code}${ev.reason ? ": " + ev.reason : ""})`));
    };
  }

  button.addEventListener("click", () => { if (running || ws) stop(); else start(); });
})();
