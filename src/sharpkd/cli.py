"""The `sharpkd` command: parse, call the library, print. User mistakes are one line and a non-zero exit."""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading

from . import __version__
from .errors import SharpkdError

log = logging.getLogger("sharpkd")

# commands that undo their work in hand on SIGTERM as on Ctrl-C (serve: Gradio closes and deletes its files;
# training: the best epoch so far is written)
SIGTERM_AS_INTERRUPT = ("sharpen", "video", "make-pairs", "live", "serve", "train-teacher", "distill", "train", "core")
PRECISION_HELP = ("fp32 or bf16 (torch and openvino); default fp32, and with --backend auto both where the CPU "
                  "computes bf16 natively")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is: the command in hand cleans up (temporary files) as for Ctrl-C."""


@contextlib.contextmanager
def _sigterm_as_interrupt():
    if threading.current_thread() is not threading.main_thread():  # signal handlers live in the main thread
        yield
        return

    def terminated(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# ----------------------------------------------------------------------------------------------- commands
def cmd_demo(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from .evaluation.demo import run_demo

    rows = run_demo(args.out, preset=args.preset, seed=args.seed, teacher=args.teacher, student=args.student)
    table = Table(title=f"sharpkd demo: {args.preset} blur on bundled sample images (full resolution)")
    for col in ("image", "method", "SSIM", "PSNR dB", "MAE", "weights"):
        table.add_column(col, justify="left" if col in ("image", "method", "weights") else "right")
    for r in rows:
        table.add_row(r["image"], r["method"], f"{r['ssim']:.4f}", f"{r['psnr']:.2f}", f"{r['mae']:.4f}", r["weights"])
    Console().print(table)
    for method in ("teacher", "student"):
        print(f"{method}: model {next(r['model'] for r in rows if r['method'] == method)}")
    print(f"side by side (blurry | teacher | student | sharp): {args.out}")
    return 0


def cmd_make_pairs(args) -> int:
    from .data import make_pairs

    m = make_pairs(args.src, args.out, count=args.count, preset=args.preset, size=args.size, seed=args.seed,
                   whole_image=args.whole_image, overwrite=args.overwrite,
                   progress=lambda done, n, split: print(f"\r{split}: {done}/{n} pairs", end="", flush=True))
    print(f"\nwrote {len(m['pairs'])} pairs ({m['train_images']} train / {m['val_images']} val source images) "
          f"and manifest.json to {args.out}")
    return 0


def _no_advert(record: logging.LogRecord) -> bool:
    """Drop Lightning's tips for its cloud services and blank lines; trim the newlines it puts around a message
    (its "Detected KeyboardInterrupt" line), which would print an empty "sharpkd: " line."""
    if isinstance(record.msg, str):
        record.msg = record.msg.strip("\n")
    message = record.getMessage()
    return bool(message.strip()) and not message.startswith("💡")


def _lightning_logs() -> None:
    """Lightning's lines once, through our handler (its import gives its loggers console handlers of their own,
    besides ours), without its adverts. Called once Lightning is imported."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    for handler in logging.getLogger().handlers:
        handler.addFilter(_no_advert)


def _train(recipe: str, args) -> int:
    import shlex

    from .training import TrainOptions, run_training
    from .training.config import OVERRIDABLE

    _lightning_logs()
    run_training(recipe, TrainOptions(
        data=args.data, out=args.out, config=args.config, overrides={k: getattr(args, k, None) for k in OVERRIDABLE},
        teacher=getattr(args, "teacher", "teacher"), resume=args.resume, overwrite=args.overwrite,
        init_weights=args.init_weights, cache_dir=args.cache_dir, accelerator=args.accelerator, devices=args.devices,
        strategy=args.strategy, max_time=args.max_time, command="sharpkd " + shlex.join(args.argv)))
    return 0


def cmd_train_teacher(args) -> int:
    return _train("teacher", args)


def cmd_distill(args) -> int:
    return _train("student_nokd" if args.no_kd else "student_kd", args)


def cmd_train(args) -> int:
    import shlex
    from pathlib import Path

    from .training import TrainOptions
    from .training.recipes import train_recipe

    _lightning_logs()
    out = train_recipe(args.recipe, TrainOptions(
        data=args.data, out=args.out or f"runs/{Path(args.recipe).stem}", overrides={"num_workers": args.num_workers},
        resume=args.resume, overwrite=args.overwrite, accelerator=args.accelerator, devices=args.devices,
        strategy=args.strategy, max_time=args.max_time, command="sharpkd " + shlex.join(args.argv)), quick=args.quick)
    print(f"wrote {out}")
    return 0


def cmd_core(args) -> int:
    import shlex
    from pathlib import Path

    from .models.weights import finish_weights

    if Path(args.out).exists() and not args.overwrite:
        raise SharpkdError(f"{args.out} exists: pass --overwrite to replace it")
    out = finish_weights(args.weights, args.out, core=args.threshold, command="sharpkd " + shlex.join(args.argv))
    print(f"wrote {out} (residual cored at {args.threshold:g}/255)")
    return 0


def cmd_evaluate(args) -> int:
    import shlex
    from pathlib import Path

    from .evaluation.report import EvalOptions, evaluate, parse_compare, parse_models, report_markdown, write_report

    models, compare = parse_models(args.models), parse_compare(args.compare)
    if args.suite:
        from .evaluation.suite import SuiteOptions, run_suite, suite_markdown, write_suite

        if not args.data:
            raise SharpkdError("--suite takes --data (a data root: its faces/ and all of it)")
        opts = SuiteOptions(data=Path(args.data), models=models, count=args.count or 800, size=args.size,
                            seed=args.seed, compare=compare, self_ensemble=args.self_ensemble,
                            families=tuple(f.strip() for f in args.families.split(",") if f.strip()))
        result = run_suite(opts, progress=lambda ds, fam, r: print(
            f"{ds:>6} {fam:<14} " + "  ".join(f"{m} {v['ssim']:.4f}/{v['psnr']:.2f}" for m, v in r["rows"].items()),
            flush=True))
        result["command"] = "sharpkd " + shlex.join(args.argv)
        written = write_suite(result, Path(args.out))
        print(suite_markdown(result))
    else:
        result = evaluate(EvalOptions(models=models, data=args.data, pairs=args.pairs, split=args.split,
                                      preset=args.preset, count=args.count or 1600, size=args.size, seed=args.seed,
                                      compare=compare, self_ensemble=args.self_ensemble))
        written = write_report(result, Path(args.out))
        print(report_markdown(result))
    print("wrote " + ", ".join(str(p) for p in written[:3]) + (f" and {len(written) - 3} more" if len(written) > 3 else ""))
    return 0


def cmd_sharpen(args) -> int:
    from .inference import load
    from .inference.files import plan, sharpen_files, timing_size

    jobs = plan(args.inputs, args.out, overwrite=args.overwrite)  # bad inputs and outputs fail before loading
    sharpener = load(args.model, backend=args.backend, threads=args.threads, precision=args.precision,
                     tile=args.tile, tile_overlap=args.tile_overlap, self_ensemble=args.self_ensemble,
                     size=timing_size(jobs))
    print(sharpener.describe(), flush=True)
    result = sharpen_files(sharpener, args.inputs, args.out, overwrite=args.overwrite,
                           on_error=lambda path, msg: print(f"sharpkd: error: {msg}", file=sys.stderr))
    print(f"sharpened {len(result.written)} image(s) into {args.out}"
          + (f"; {len(result.failed)} failed" if result.failed else ""))
    return 1 if result.failed else 0


def cmd_video(args) -> int:
    from .inference import load
    from .inference.video import output_path, sharpen_video, video_size

    output_path(args.input, args.out, args.overwrite)  # a bad input or output fails before the backends' timing
    size = video_size(args.input) if args.backend == "auto" else None
    sharpener = load(args.model, backend=args.backend, threads=args.threads, precision=args.precision,
                     self_ensemble=args.self_ensemble, size=size or (1280, 720))
    print(sharpener.describe(), flush=True)
    r = sharpen_video(sharpener, args.input, args.out, compare=args.compare, max_frames=args.max_frames,
                      overwrite=args.overwrite)
    audio = f", audio {r['audio']} kept" if r["audio"] else ", no audio"
    print(f"wrote {r['output']}: {r['frames']} frames {r['width']}x{r['height']} at {r['rate']:.3g} fps{audio} "
          f"(processed at {r['fps']:.1f} frames/s)")
    return 0


def cmd_export(args) -> int:
    from .inference.export import export_model

    r = export_model(args.model, args.out, quantize=args.quantize)
    int8 = r["quantize"] == "int8"
    kind = "int8 (static QDQ, calibrated on real images), " if int8 else ""
    print(f"wrote {r['onnx']}: model {r['described']}, {kind}opset {r['opset']}, dynamic height and width")
    print(f"parity: onnxruntime{' (the fp32 export before quantisation)' if int8 else ''} vs PyTorch fp32 on real "
          f"images, max abs diff {r['max_abs_diff']:.2e} <= {r['tolerance']:.0e}: OK")
    if int8:
        print(f"int8: SSIM {r['int8_ssim']:.4f} vs {r['int8_ssim_ref']:.4f} for PyTorch fp32 (loss "
              f"{r['int8_ssim_loss']:+.4f}), max diff {r['int8_max_diff_255']}/255")
    return 0


def cmd_bench(args) -> int:
    import json

    from .inference.bench import parse_sizes, run_bench

    described = set()

    def show(r):
        if r["described"] not in described:
            described.add(r["described"])
            print(r["described"] + ("" if r["trained_weights"] else " (untrained weights)"), flush=True)
        steal = f", CPU stolen {r['steal']:.0%}" if r.get("steal") else ""
        print(f"{r['model']:>13} {r['backend']:>10} {r['width']:>5}x{r['height']:<5} {r['median_ms']:9.1f} ms "
              f"{r['fps']:8.1f} FPS  {r['gmacs']:7.2f} GMACs  threads {r['threads']}  ({r['frames']} frames{steal})",
              flush=True)

    report = run_bench(parse_sizes(args.sizes), models=args.models.split(","),
                       backends=args.backends.split(",") if args.backends else None, frames=args.frames,
                       max_seconds=args.max_seconds, threads=args.threads, progress=show)
    for q in report["ratios"]:
        print(f"{q['kind']:>24} [{q.get('backend') or q.get('model')}] {q['size']:>10}: {q['speedup']:.2f}x")
    hw = report["hardware"]
    print(f"hardware: {hw['cpu']}, {hw['logical_cpus']} logical CPUs, load average {hw['load_average_1min']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
        print(f"wrote {args.json}")
    return 0


def cmd_models(args) -> int:
    import json

    from .models.zoo import finishing_text, list_models, quality_text, speed_text

    models = list_models()
    if args.json:
        print(json.dumps(models, indent=2))
        return 0
    if not models:
        print("no models shipped")
        return 0
    for m in models:
        params = f"{m['parameters']:,} parameters" if m["parameters"] else "parameters unknown"
        print(f"{m['name']}  ({m['arch']}, {params})")
        print(f"  for:      {m['role'] or '-'}")
        print(f"  720p:     {speed_text(m)}")
        print(f"  quality:  {quality_text(m)}")
        print(f"            {quality_text(m, family='call@1280x720')}")
        print(f"  recipe:   {m['recipe'] or '-'}: {m['command'] or '-'}")
        if m["stages"]:
            print(f"            stages {', '.join(m['stages'])}")
        if finishing_text(m):
            print(f"            then {finishing_text(m)}")
    print("use one with --model NAME (sharpen, video, export, bench), or give a .safetensors path")
    return 0


def cmd_serve(args) -> int:
    from .app import serve

    serve(host=args.host, port=args.port, teacher=args.teacher, student=args.student,
          max_megapixels=args.max_megapixels, max_file_mb=args.max_file_mb, threads=args.threads,
          webcam_model=args.webcam_model)
    return 0


def cmd_live(args) -> int:
    import json

    from .inference import load
    from .fileio import check_writable_file, write_text
    from .inference.live import (benchmark, check_sink, format_status, open_sink, open_source,
                                 parse_size, round_size_for, run_live)

    from pathlib import Path

    size = parse_size(args.size)
    benchmarking = args.benchmark is not None
    if benchmarking and args.benchmark < 1:
        raise SharpkdError(f"--benchmark needs a number of frames >= 1, not {args.benchmark}")
    if args.json and not benchmarking:
        raise SharpkdError("--json goes with --benchmark N")
    if args.json:
        check_writable_file(args.json, "--json")
    kind = args.sink or ("null" if benchmarking else "virtualcam")
    if args.out and Path(args.out).resolve() == Path(str(args.source)).resolve():
        raise SharpkdError(f"--out {args.out} is the source: choose another file")
    check_sink(kind, args.device)
    sink = open_sink(kind, args.out, args.device)
    size = round_size_for(size, sink)
    source = open_source(args.source, size, args.fps)  # a missing or busy camera fails before the model loads
    if benchmarking:
        source.close()  # the benchmark opens it for each of its runs
    sharpener = load(args.model, backend=args.backend, threads=args.threads, size=size or (1280, 720))

    def line(s) -> str:
        return (f"{s['frames']} frames, {s['fps']:.1f} FPS, latency p50 {s['latency_ms_p50']:.1f} ms, "
                f"p95 {s['latency_ms_p95']:.1f} ms, dropped {s['dropped']} of {s['captured']} "
                f"(model p50 {s['model_ms_p50']:.1f} ms)")

    if benchmarking:
        r = benchmark(sharpener, args.source, args.benchmark, size=size, view=args.view, fps=args.fps, sink=sink)
        p = r["paced"]
        print(f"live benchmark: {args.source} {p['width']}x{p['height']} -> {sharpener.name} "
              f"({sharpener.backend_label}, {sharpener.threads} threads) -> {args.view} "
              f"{p['out_width']}x{p['out_height']} -> {kind}")
        label = f"real time (source paced at {p['source_fps']:g} fps):"
        print(f"{label} {line(p)}")
        if r["unpaced"]:
            print(f"{'max throughput (unpaced):':<{len(label)}} {line(r['unpaced'])}")
        if args.json:
            write_text(args.json, json.dumps({"source": str(args.source), "model": sharpener.name, "backend":
                                              sharpener.backend_label, "threads": sharpener.threads, "view": args.view,
                                              "sink": kind, **r}, indent=2) + "\n")
            print(f"wrote {args.json}")
        return 0

    tty = sys.stderr.isatty()

    def status(stats, fps) -> None:
        if tty:
            print(f"\r{format_status(stats, fps)}  ", end="", file=sys.stderr, flush=True)
        else:
            print(format_status(stats, fps), file=sys.stderr, flush=True)

    log.info("live: %s at %.3g fps -> %s (%s) -> %s; Ctrl-C to stop", source.label, source.fps, sharpener.name,
             sharpener.backend_label, sink.label if kind != "virtualcam" else "virtual camera")
    stats = run_live(sharpener, source, sink, view=args.view, overlay=args.overlay, on_status=status,
                     status_every=0.5 if tty else 5.0)
    if tty:
        print(file=sys.stderr)
    s = stats.summary()
    print(f"{s['width']}x{s['height']} -> {sink.label}: {line(s)} in {s['seconds']:.1f} s")
    return 0


# ------------------------------------------------------------------------------------------------- parser
def _add_training_args(p: argparse.ArgumentParser, default_out: str) -> None:
    from pathlib import Path

    from .data.degradations import PRESETS
    from .models import MODELS

    recipes = ", ".join(sorted(f.stem for f in (Path(__file__).parent / "configs").glob("*.yaml")))
    p.add_argument("--data", required=True, help="folder of sharp images, or of blur/ + sharp/ pairs")
    p.add_argument("--out", default=default_out, help=f"run folder (default {default_out})")
    p.add_argument("--config", help=f"YAML recipe file, or a packaged recipe by name ({recipes}; default: the one "
                                    "for this command)")
    p.add_argument("--max-epochs", type=int)
    p.add_argument("--epoch-size", type=int, help="training samples per epoch (default 6400)")
    p.add_argument("--val-size", type=int, help="fixed validation pairs (default 1600)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--patience", type=int)
    p.add_argument("--limit-images", type=int, help="use at most this many source images per split")
    p.add_argument("--crop", type=int, help="training crop size (default 128)")
    p.add_argument("--preset", help=f"degradation preset: {', '.join(PRESETS)}, or several joined by + (each "
                                    "sample drawn from one of them); default: the recipe's")
    p.add_argument("--arch", help=f"architecture: {', '.join(sorted(MODELS))} (default: the recipe's)")
    p.add_argument("--seed", type=int, help="initialisation and sampling order (the data stay fixed by --split-seed)")
    p.add_argument("--split-seed", type=int, help="train/val split, fixed training and validation pairs (default 0)")
    p.add_argument("--train-pairs", type=int,
                   help="train on this many fixed pairs (0: fresh degradations every epoch); distill caches the "
                        "teacher's outputs on them")
    p.add_argument("--cache-dir", help="where distill keeps the teacher's outputs (default RUN/cache)")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    p.add_argument("--overwrite", action="store_true",
                   help="start over in a run folder that holds a run: its checkpoints, logs and weights are deleted")
    p.add_argument("--init-weights", metavar="WEIGHTS",
                   help="start from these weights (a .safetensors file or shipped name) with a fresh optimizer "
                        "and schedule: fine-tuning, or an annealing phase after a finished run")
    p.add_argument("--schedule", choices=("plateau", "cosine"),
                   help="LR schedule: plateau (the recipes': halve on a val SSIM plateau) or cosine (from --lr "
                        "to min_lr over --max-epochs)")
    p.add_argument("--precision", help="auto (the recipes': bf16-mixed where the hardware has native bf16, else 32-true), bf16-mixed, 32-true ...")
    p.add_argument("--accelerator", default="auto")
    p.add_argument("--devices", default="auto")
    p.add_argument("--strategy", default="auto")
    p.add_argument("--num-workers", type=int)
    p.add_argument("--max-time", help="stop after DD:HH:MM:SS (best weights still saved)")


def _add_self_ensemble(p: argparse.ArgumentParser) -> None:
    p.add_argument("--self-ensemble", type=int, default=1, choices=(1, 2, 8),
                   help="average 2 (horizontal flip) or 8 (flips and transposes) passes: a better picture at 2x or 8x "
                        "the time (figures in docs/results.md)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sharpkd", description=__doc__.splitlines()[0].rstrip("."))
    parser.add_argument("--version", action="version", version=f"sharpkd {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logs and tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from .evaluation.demo import DEFAULT_OUT as DEMO_OUT
    from .evaluation.suite import FAMILIES

    p = sub.add_parser("demo", help="blur bundled sample images, sharpen with teacher and student, print metrics")
    p.add_argument("-o", "--out", default=DEMO_OUT, help="side-by-side picture (default %(default)s)")
    p.add_argument("--preset", default="seed")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--teacher", help="teacher weights (default: shipped)")
    p.add_argument("--student", help="student weights (default: shipped)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("make-pairs", help="write a blurry/sharp dataset with a manifest")
    p.add_argument("src", help="folder of sharp images (CelebA layout recognised)")
    p.add_argument("out")
    p.add_argument("--count", type=int, default=8000)
    p.add_argument("--preset", default="seed")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--whole-image", action="store_true", help="centre square resized (the seed's mode)")
    p.add_argument("--overwrite", action="store_true", help="replace a dataset already at OUT (once the new one is complete)")
    p.set_defaults(func=cmd_make_pairs)

    p = sub.add_parser("train-teacher", help="train the teacher U-Net")
    _add_training_args(p, "runs/teacher")
    p.set_defaults(func=cmd_train_teacher)

    p = sub.add_parser("distill", help="distil the student from a trained teacher (or --no-kd)")
    _add_training_args(p, "runs/student")
    p.add_argument("--teacher", default="teacher", help="teacher weights (default: shipped)")
    p.add_argument("--no-kd", action="store_true", help="ablation: ground truth only, no teacher term")
    p.set_defaults(func=cmd_distill)

    from pathlib import Path

    recipes = ", ".join(sorted(f.stem for f in Path(__file__).with_name("recipes").glob("*.yaml")))
    p = sub.add_parser("train", help="rebuild a shipped model: every training stage of its recipe, then its "
                                     "finishing steps")
    p.add_argument("recipe", help=f"a shipped model's recipe ({recipes}) or a recipe .yaml")
    p.add_argument("--data", required=True, help="the data root (stages may read a folder inside it)")
    p.add_argument("--out", help="run folder: a folder per stage, then model.safetensors (default runs/RECIPE); "
                                 "recipes it builds on train beside it unless finished there")
    p.add_argument("--resume", action="store_true", help="continue an unfinished stage from its last checkpoint "
                                                         "(finished stages are always skipped)")
    p.add_argument("--overwrite", action="store_true", help="train every stage of the recipe over (the recipes it "
                                                            "builds on are kept)")
    p.add_argument("--max-time", help="stop each stage after DD:HH:MM:SS (a stage's own limit where shorter)")
    p.add_argument("--quick", action="store_true", help="a smoke test: every stage one step on a few 32-px crops, "
                                                        "then the finishing steps (the weights are not useful)")
    p.add_argument("--accelerator", default="auto")
    p.add_argument("--devices", default="auto")
    p.add_argument("--strategy", default="auto")
    p.add_argument("--num-workers", type=int, help="data-loading workers of every stage (default: the recipe's)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("core", help="core a model's residual: changes under THRESHOLD/255 dropped, larger ones "
                                    "shrunk by it (the shipped student's last step)")
    p.add_argument("weights", help="a .safetensors file, run folder or shipped name")
    p.add_argument("threshold", type=float, help="in 8-bit steps, e.g. 4")
    p.add_argument("-o", "--out", required=True, help="the cored weights (.safetensors; a sidecar beside it)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=cmd_core)

    p = sub.add_parser("evaluate", help="compare blurry, classical baselines, teacher and students")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="folder of sharp images (pairs made with --preset and --seed)")
    src.add_argument("--pairs", help="folder of blur/ + sharp/ pairs")
    p.add_argument("--split", default="val")
    p.add_argument("--preset", default="seed")
    p.add_argument("--count", type=int, help="pairs (default 1600; with --suite, 800 per family and data set)")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--suite", action="store_true",
                   help="the benchmark suite: every family (--families) on the validation split of --data's faces/ "
                        "and of all of --data; suite.md, suite.json, a grid per family")
    p.add_argument("--families", default=",".join(FAMILIES),
                   help="with --suite: comma list of degradation presets on square crops, and PRESET@WxH on whole "
                        "frames of that size (default: %(default)s)")
    p.add_argument("--models", default="teacher,student",
                   help="comma list of NAME or NAME=PATH (default: shipped teacher,student)")
    p.add_argument("--compare", help="paired differences to report, A:B,C:D (names from --models)")
    p.add_argument("--self-ensemble", type=int, default=1, choices=(1, 2, 8),
                   help="run every model as the mean of 2 or 8 flipped/transposed passes (MACs and latency too)")
    p.add_argument("--out", default="reports/eval")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("sharpen", help="sharpen image files and folders at full resolution")
    p.add_argument("inputs", nargs="+", metavar="INPUT")
    p.add_argument("-o", "--out", required=True, metavar="OUTDIR")
    p.add_argument("--model", default="student")
    p.add_argument("--backend", default="auto", choices=("torch", "onnx", "openvino", "auto"),
                   help="auto (the default): the fastest backend on this machine, timed on a few frames of the first "
                        "image's size (at most 1280x720) at start; or torch, onnx, openvino")
    p.add_argument("--precision", choices=("fp32", "bf16"), help=PRECISION_HELP)
    p.add_argument("--tile", type=int,
                   help="tile size in pixels (default: 512 tiles above 4.2 megapixels, 16.8 for student; 0: never)")
    p.add_argument("--tile-overlap", type=int, default=32)
    p.add_argument("--overwrite", action="store_true",
                   help="allow outputs that replace existing files (the inputs too)")
    _add_self_ensemble(p)
    p.add_argument("--threads", type=int)
    p.set_defaults(func=cmd_sharpen)

    p = sub.add_parser("video", help="sharpen a video file (or webcam device) frame by frame")
    p.add_argument("input", metavar="IN")
    p.add_argument("-o", "--out", required=True, metavar="OUT")
    p.add_argument("--model", default="student")
    p.add_argument("--backend", default="auto", choices=("torch", "onnx", "openvino", "auto"),
                   help="auto (the default): the fastest backend on this machine, timed on a few frames of the video's size at "
                        "start; or torch, onnx, openvino")
    p.add_argument("--compare", action="store_true", help="input and output side by side")
    p.add_argument("--precision", choices=("fp32", "bf16"), help=PRECISION_HELP)
    p.add_argument("--max-frames", type=int, help="stop after this many frames")
    p.add_argument("--overwrite", action="store_true", help="allow OUT to be the input file (it is replaced)")
    _add_self_ensemble(p)
    p.add_argument("--threads", type=int)
    p.set_defaults(func=cmd_video)

    p = sub.add_parser("export", help="export a model to ONNX")
    p.add_argument("--model", default="student")
    p.add_argument("-o", "--out", required=True)
    p.add_argument("--quantize", choices=("int8",), help="int8: -o is the int8 model (static QDQ, calibrated on real "
                                                        "images), quantised from the checked fp32 export")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("bench", help="latency and FPS of a model on every installed backend (default: the "
                                     "real-time student at 1280x720, about a minute)")
    p.add_argument("--sizes", default="1280x720", help="comma list of WxH (default %(default)s), e.g. "
                                                       "128x128,640x360,1280x720,1920x1080")
    p.add_argument("--json", metavar="FILE")
    p.add_argument("--models", default="student",
                   help="comma list of names or .safetensors paths (default %(default)s), e.g. teacher,student")
    p.add_argument("--backends", help="comma list of torch, torch-bf16, onnx, openvino, openvino-bf16 (default: "
                                      "every installed one: onnx, openvino, openvino-bf16 where the CPU computes "
                                      "bf16 natively, torch)")
    p.add_argument("--frames", type=int, default=100, help="timed frames per case (after 3 warm-up frames)")
    p.add_argument("--max-seconds", type=float, default=10.0,
                   help="stop timing a case after this long, once it has 5 frames (default %(default)g)")
    p.add_argument("--threads", type=int)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("models", help="the shipped models: what each is for, size, 720p speed, quality, recipe")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("serve", help="the local web app: teacher and student side by side, webcam, HTTP API")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1); requests must name "
                                                        "it, or localhost when it is a loopback address, as their Host")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--teacher", help="teacher weights (default: shipped; untrained with a warning if none)")
    p.add_argument("--student", help="student weights (default: shipped; untrained with a warning if none)")
    p.add_argument("--max-megapixels", type=float, default=25.0, help="largest image accepted (default 25; 0: none)")
    p.add_argument("--max-file-mb", type=float, help="largest upload in MB (default: enough for the pixel limit)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--webcam-model", help="the Webcam tab's model, run on onnxruntime (default: the shipped "
                                          "real-time student, as `sharpkd live`)")
    p.set_defaults(func=cmd_serve)

    from .inference.live import DEFAULT_BACKEND, DEFAULT_MODEL, SINKS, VIEWS

    p = sub.add_parser("live", help="webcam (or video file, looped) -> the real-time student -> a virtual camera, "
                                    "a window or a file, in real time")
    p.add_argument("--source", default="0", help="camera index (0), device (/dev/video0) or a video file, looped "
                                                 "(default 0)")
    p.add_argument("--sink", choices=SINKS, help="virtualcam (default; v4l2loopback / OBS Virtual Camera), window, "
                                                 "file (with --out) or null (default with --benchmark)")
    p.add_argument("-o", "--out", help="the video file of --sink file (.mp4, H.264)")
    p.add_argument("--device", help="virtual camera device, e.g. /dev/video10 (default: the first v4l2loopback one)")
    p.add_argument("--size", metavar="WxH", help="frame size asked of the camera, or a file scaled to it "
                                                 "(default: the source's)")
    p.add_argument("--fps", type=float, help="frame rate asked of the camera, or a file paced at it "
                                             "(default: the source's)")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"shipped name or weights file (default {DEFAULT_MODEL})")
    p.add_argument("--backend", default=DEFAULT_BACKEND, choices=("torch", "onnx", "openvino", "auto"),
                   help="auto (the default): the fastest backend on this machine, timed on a few frames of --size (1280x720 "
                        "unless given) at start; or torch, onnx, openvino")
    p.add_argument("--view", default="output", choices=VIEWS, help="output (default), side-by-side (input | output, "
                                                                   "twice as wide) or split (half and half)")
    p.add_argument("--overlay", action="store_true", help="draw frames/s, latency and drops onto the frames")
    p.add_argument("--benchmark", type=int, metavar="N", help="run N frames (paced, then unpaced for a file) and "
                                                               "print p50/p95 latency, FPS and drops")
    p.add_argument("--json", metavar="FILE", help="with --benchmark: write the figures here")
    p.add_argument("--threads", type=int, help="inference threads (default: one per physical core)")
    p.set_defaults(func=cmd_live)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s: %(message)s"
                        if args.verbose else "sharpkd: %(message)s", stream=sys.stderr)
    for noisy in ("PIL", "matplotlib", "httpx", "lightning", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        with _sigterm_as_interrupt() if args.command in SIGTERM_AS_INTERRUPT else contextlib.nullcontext():
            return args.func(args) or 0
    except SharpkdError as exc:
        if args.verbose:
            raise
        print(f"sharpkd: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Terminated:
        print("sharpkd: terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("sharpkd: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `sharpkd models | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
