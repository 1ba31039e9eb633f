"""The shipped models, described from their sidecars (`sharpkd models`): what each is for, its size, its speed
at 1280x720, its quality and the command that trained it. Nothing here is a hand-kept list: a model is shipped
when its weights and sidecar are in the weights folder, and everything said about it is in its sidecar."""
from __future__ import annotations

from .weights import read_sidecar, shipped_names

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


def _suite(meta: dict) -> dict | None:
    """The sidecar's `suite`: the benchmark suite's SSIM/PSNR of this model, of the input and of an unsharp mask,
    per data set and family, and the command that measured them (`scripts/zoo_suite.py`)."""
    suite = meta.get("suite")
    return suite if isinstance(suite, dict) and isinstance(suite.get("datasets"), dict) else None


def list_models() -> list[dict]:
    """One dict per shipped model, in name order: name, role (what it is for, in a few words), purpose, arch,
    parameters, speed (or None), speed_class, suite (or None), recipe, command (the one that rebuilds it where
    its sidecar names none), data, stages (their names) and finishing."""
    metas = {name: read_sidecar(name) for name in shipped_names()}  # a damaged one is a one-line error
    out = []
    for name, meta in metas.items():
        speed = _speed(meta, {n: m for n, m in metas.items() if n != name})
        fps = speed.get("fps") or (1000.0 / speed["ms_720p"] if speed.get("ms_720p") else None) if speed else None
        out.append({"name": name, "role": meta.get("role"), "purpose": meta.get("purpose"), "arch": meta.get("arch"),
                    "parameters": meta.get("parameters"), "speed": speed,
                    "speed_class": speed_class(fps) if fps else "not measured", "suite": _suite(meta),
                    "recipe": meta.get("recipe"), "data": meta.get("data"), "command": meta.get("command")
                    or (meta.get("recipe") and f"sharpkd train {meta['recipe']} --data DATA"),
                    "stages": [s.get("name") for s in meta.get("stages") or []],
                    "finishing": meta.get("finishing") or {}})
    return out


def finishing_text(m: dict) -> str:
    """'residual cored at 4/255, stored float16': the steps after training ('' where none)."""
    f = m["finishing"]
    return ", ".join(([f"residual cored at {f['core']:g}/255"] if f.get("core") else [])
                     + ([f"stored {f['dtype']}"] if f.get("dtype", "float32") != "float32" else []))


def speed_text(m: dict) -> str:
    """'real time: MS ms (BACKEND, N threads, CPU)', or 'not measured'."""
    s = m["speed"]
    if not s:
        return "not measured"
    where = ", ".join(str(x) for x in (s.get("backend"), f"{s['threads']} threads" if s.get("threads") else None,
                                       s.get("cpu")) if x)
    same = f"; measured on {s['measured_on']}, same architecture" if s.get("measured_on") else ""
    return f"{m['speed_class']}: {s['ms_720p']:.1f} ms ({where}{same})" if s.get("ms_720p") else m["speed_class"]


HEADLINE = ("faces", "call")  # the figure a one-line summary gives: validation faces, the whole call mixture


def cell(row: dict | None) -> str:
    return f"{row['ssim']:.4f} / {row['psnr']:.2f}" if row else "-"


def quality_text(m: dict, dataset: str = HEADLINE[0], family: str = HEADLINE[1]) -> str:
    """'SSIM / PSNR S / P on faces, call crops (input S0 / P0)', or 'not evaluated'."""
    row = ((m["suite"] or {}).get("datasets", {}).get(dataset) or {}).get(family)
    if not row:
        return "not evaluated"
    return f"SSIM / PSNR {cell(row)} on {dataset}, {family} (input {cell(row['input'])})"


def gain_share(model: dict, reference: dict, dataset: str, family: str) -> float | None:
    """How much of `reference`'s PSNR gain over the input `model` keeps, on one family (None where unknown or the
    reference does not gain)."""
    a = ((model["suite"] or {}).get("datasets", {}).get(dataset) or {}).get(family)
    b = ((reference["suite"] or {}).get("datasets", {}).get(dataset) or {}).get(family)
    if not a or not b or b["psnr"] - b["input"]["psnr"] <= 0:
        return None
    return (a["psnr"] - a["input"]["psnr"]) / (b["psnr"] - b["input"]["psnr"])


def _families(models: list[dict], dataset: str) -> list[str]:
    fams = []
    for m in models:
        for f in ((m["suite"] or {}).get("datasets", {}).get(dataset) or {}):
            if f not in fams:
                fams.append(f)
    return fams


def suite_table(models: list[dict], dataset: str) -> list[str]:
    """Markdown rows: the input, an unsharp mask and every model, SSIM / PSNR on each family of `dataset`."""
    fams = _families(models, dataset)
    first = next((m for m in models if (m["suite"] or {}).get("datasets", {}).get(dataset)), None)
    if not first:
        return []
    base = first["suite"]["datasets"][dataset]
    lines = ["| model | " + " | ".join(f"`{f}`" for f in fams) + " |", "|---|" + "---|" * len(fams),
             "| pairs | " + " | ".join(str(base.get(f, {}).get("pairs", "-")) for f in fams) + " |",
             "| input | " + " | ".join(cell(base.get(f, {}).get("input")) for f in fams) + " |",
             "| unsharp mask | " + " | ".join(cell(base.get(f, {}).get("unsharp")) for f in fams) + " |"]
    for m in models:
        rows = (m["suite"] or {}).get("datasets", {}).get(dataset) or {}
        lines.append(f"| `{m['name']}` | " + " | ".join(cell(rows.get(f)) for f in fams) + " |")
    return lines


def _degraded(family: str) -> bool:
    return family.partition("@")[0] != "clean"


def share_table(models: list[dict], reference: str, dataset: str) -> list[str]:
    """Markdown rows: the share of `reference`'s PSNR gain over the input that each other model keeps, on the
    degraded families of `dataset`."""
    ref = next((m for m in models if m["name"] == reference), None)
    if not ref:
        return []
    fams = [f for f in _families([ref], dataset) if _degraded(f)]
    lines = ["| model | " + " | ".join(f"`{f}`" for f in fams) + " |", "|---|" + "---|" * len(fams)]
    for m in models:
        if m is not ref and m["suite"]:
            shares = [gain_share(m, ref, dataset, f) for f in fams]
            lines.append(f"| `{m['name']}` | " + " | ".join("-" if s is None else f"{s:.0%}" for s in shares) + " |")
    return lines


def good_frame_table(models: list[dict], dataset: str) -> list[str]:
    """Markdown rows: each model's PSNR change against the input on the good-frame (`clean`) families."""
    fams = [f for f in _families(models, dataset) if not _degraded(f)]
    lines = ["| model | " + " | ".join(f"`{f}`" for f in fams) + " |", "|---|" + "---|" * len(fams)]
    for m in models:
        rows = (m["suite"] or {}).get("datasets", {}).get(dataset) or {}
        lines.append(f"| `{m['name']}` | " + " | ".join(
            f"{rows[f]['psnr'] - rows[f]['input']['psnr']:+.2f} dB" if f in rows else "-" for f in fams) + " |")
    return lines if fams else []


def readme_table(models: list[dict]) -> str:
    """The README's table of the shipped models (every figure from the sidecars, as `docs/models.md`)."""
    lines = ["| name | for | parameters | 1280x720 | faces, `call` crops | faces, `call@1280x720` frames |",
             "|---|---|---|---|---|---|"]
    for m in models:
        rows = (m["suite"] or {}).get("datasets", {}).get("faces") or {}
        speed = f"{m['speed']['ms_720p']:.1f} ms" if m["speed"] and m["speed"].get("ms_720p") else "-"
        lines.append(f"| `{m['name']}` | {m['role'] or '-'} | {m['parameters']:,} | {speed} | "
                     f"{cell(rows.get('call'))} | {cell(rows.get('call@1280x720'))} |")
    base = next((m["suite"]["datasets"]["faces"] for m in models if (m["suite"] or {}).get("datasets", {}).get("faces")),
                {})
    lines.append(f"| input | | | | {cell(base.get('call', {}).get('input'))} | "
                 f"{cell(base.get('call@1280x720', {}).get('input'))} |")
    return "\n".join(lines)


README_START, README_END = "<!-- models: written by scripts/zoo_page.py -->", "<!-- /models -->"


def with_readme_table(readme: str, table: str) -> str:
    """`readme` with the text between its models markers replaced by `table` (unchanged without markers)."""
    if README_START not in readme or README_END not in readme:
        return readme
    head, rest = readme.split(README_START, 1)
    return f"{head}{README_START}\n{table}\n{README_END}{rest.split(README_END, 1)[1]}"


def models_page(models: list[dict]) -> str:
    """docs/models.md: every shipped model on every family of the benchmark suite, its speed and its recipe, all
    read from the sidecars (`python scripts/zoo_page.py --write` writes it; a test checks it is current)."""
    suites = [m["suite"] for m in models if m["suite"]]
    speeds = [m["speed"] for m in models if m["speed"]]
    out = ["# Model zoo", "",
           "The shipped models, every figure read from their sidecars (`src/sharpkd/weights/*.json`); this page is "
           "written by `python scripts/zoo_page.py --write` and a test checks that it is current. Any command takes "
           "`--model NAME`.", ""]
    out += ["| name | for | architecture | parameters | recipe |", "|---|---|---|---|---|"]
    out += [f"| `{m['name']}` | {m['role'] or '-'} | `{m['arch']}` | {m['parameters']:,} | "
            f"{('`' + m['recipe'] + '`') if m['recipe'] else '-'} |" for m in models]
    if suites:
        s = suites[0]
        out += ["", "## Quality on every degradation family", "",
                "SSIM / PSNR (dB) against the sharp original, from the benchmark suite: "
                + "; ".join(f"`{c}`" for c in s["commands"]) + ". "
                f"Crops: {s['count']} fixed {s['size']}x{s['size']} crops per family from the validation split "
                f"(seed {s['seed']}); `FAMILY@WxH`: one whole call-sized frame per validation portrait, its "
                "background included. Families: `seed` (Gaussian or linear motion blur), `shake-noise` (camera "
                "shake and sensor noise), `low-bandwidth` (sent small, compressed, scaled up), `call` (the mixture "
                "of a call: blur, noise, transmission, and a quarter of good frames), `clean` (a good frame: mild "
                "JPEG only)."]
        for ds, title in (("faces", "Validation faces"), ("all", "Faces and natural scenes")):
            if any((m["suite"] or {}).get("datasets", {}).get(ds) for m in models):
                out += ["", f"### {title} (`{ds}`)", ""] + suite_table(models, ds)
        if shares := share_table(models, "teacher", "faces"):
            out += ["", "### Share of `teacher`'s PSNR gain over the input (faces, degraded families)", "",
                    "(model - input) / (teacher - input), in dB; `-` where the teacher does not gain.", ""] + shares
        if good := good_frame_table(models, "faces"):
            out += ["", "### Good frames: PSNR change against the input (faces)", ""] + good
    if speeds:
        out += ["", "## Speed", "", "One 1280x720 uint8 frame in and out, median over the run: "
                f"`{speeds[0]['command']}` on {speeds[0]['cpu']}, {speeds[0]['threads']} threads, "
                f"{speeds[0]['backend']}. Figures move from run to run and day to day on one CPU model; compare "
                "models within the run.", "", "| name | ms per frame | frames/s | class |", "|---|---|---|---|"]
        out += [f"| `{m['name']}` | {m['speed']['ms_720p']:.1f} | {m['speed']['fps']:.1f} | {m['speed_class']} |"
                for m in models if m["speed"]]
    out += ["", "## How each was trained", ""]
    for m in models:
        out += [f"- `{m['name']}`: {m['purpose'] or '-'} Trained by `{m['command'] or '-'}`"
                + (f" (stages {', '.join(m['stages'])})" if m["stages"] else "")
                + (f"; {finishing_text(m)}" if finishing_text(m) else "") + "."]
    return "\n".join(out) + "\n"
