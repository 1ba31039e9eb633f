"""The shipped models, described from their sidecars (`sharpkd models`): what each is for, its size, its speed
at 1280x720, its quality and the command that trained it. Nothing here is a hand-kept list: a model is shipped
when its weights and sidecar are in the weights folder, and everything said about it is in its sidecar."""
from __future__ import annotations

import json

from .weights import shipped_names, shipped_weights_path, sidecar_path

# 720p frame rate -> speed class (the frame rate of a video call is 30 fps)
SPEED_CLASSES = ((30.0, "real time"), (10.0, "interactive"), (0.0, "offline"))


def speed_class(fps: float) -> str:
    return next(label for floor, label in SPEED_CLASSES if fps >= floor)


def _speed(meta: dict, others: dict[str, dict]) -> dict | None:
    """The sidecar's `speed` (a 1280x720 measurement), else that of a shipped model of the same architecture and
    arch_kwargs (speed depends on the architecture, not on the weights), marked with its name."""
    if isinstance(meta.get("speed"), dict):
        return dict(meta["speed"])
    for name, other in others.items():
        if isinstance(other.get("speed"), dict) and (other.get("arch"), other.get("arch_kwargs")) == \
                (meta.get("arch"), meta.get("arch_kwargs")):
            return {**other["speed"], "measured_on": name}
    return None


def _quality(meta: dict) -> dict | None:
    """The headline quality: `sharpkd evaluate` on validation pairs (the sidecar's `evaluation`, on its `family`
    where it names one, else on the training preset), else the best epoch's validation metrics."""
    preset = (meta.get("data") or {}).get("preset", "seed")
    ev = meta.get("evaluation")
    if isinstance(ev, dict) and "ssim" in ev:
        return {"ssim": ev["ssim"], "psnr": ev.get("psnr"), "preset": ev.get("family", preset), "source": "evaluate",
                "pairs": ev.get("pairs"), "blurry_input": ev.get("blurry_input")}
    val = meta.get("val_metrics")
    if isinstance(val, dict) and "ssim" in val:
        return {"ssim": val["ssim"], "psnr": val.get("psnr"), "preset": preset, "source": "validation"}
    return None


def list_models() -> list[dict]:
    """One dict per shipped model, in name order: name, purpose, arch, parameters, speed (or None), speed_class,
    quality (or None), recipe, command, data."""
    metas = {name: json.loads(sidecar_path(shipped_weights_path(name)).read_text()) for name in shipped_names()}
    out = []
    for name, meta in metas.items():
        speed = _speed(meta, {n: m for n, m in metas.items() if n != name})
        fps = speed.get("fps") or (1000.0 / speed["ms_720p"] if speed.get("ms_720p") else None) if speed else None
        out.append({"name": name, "purpose": meta.get("purpose"), "arch": meta.get("arch"),
                    "parameters": meta.get("parameters"), "speed": speed,
                    "speed_class": speed_class(fps) if fps else "not measured", "quality": _quality(meta),
                    "recipe": meta.get("recipe"), "command": meta.get("command"), "data": meta.get("data"),
                    "init_weights": (meta.get("init_weights") or {}).get("weights"),
                    "then": (meta.get("shrink") or {}).get("command")})
    return out


def speed_text(m: dict) -> str:
    """'real time: 16.8 ms (onnx, 2 threads, AMD EPYC)', or 'not measured'."""
    s = m["speed"]
    if not s:
        return "not measured"
    where = ", ".join(str(x) for x in (s.get("backend"), f"{s['threads']} threads" if s.get("threads") else None,
                                       s.get("cpu")) if x)
    same = f"; measured on {s['measured_on']}, same architecture" if s.get("measured_on") else ""
    return f"{m['speed_class']}: {s['ms_720p']:.1f} ms ({where}{same})" if s.get("ms_720p") else m["speed_class"]


def quality_text(m: dict) -> str:
    """'SSIM 0.8938, 30.23 dB (sharpkd evaluate on validation pairs, seed blur; blurry input 0.8547)', or 'not
    evaluated'."""
    q = m["quality"]
    if not q:
        return "not evaluated"
    psnr = f", {q['psnr']:.2f} dB" if q.get("psnr") is not None else ""
    blurry = q.get("blurry_input") or {}
    base = f"; blurry input {blurry['ssim']:.4f}" if "ssim" in blurry else ""
    where = "sharpkd evaluate on validation pairs" if q["source"] == "evaluate" else "best validation epoch"
    return f"SSIM {q['ssim']:.4f}{psnr} ({where}, {q['preset']} blur{base})"
