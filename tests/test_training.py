"""End-to-end runs of the training commands on tiny generated data (seconds each)."""
import csv
import json

import numpy as np
import pytest
import torch

from sharpkd.cli import main
from sharpkd.errors import SharpkdError
from sharpkd.models import build_model, load_weights, save_weights

TINY = ["--max-epochs", "2", "--epoch-size", "64", "--val-size", "16", "--crop", "32", "--batch-size", "8",
        "--num-workers", "0"]


@pytest.fixture(scope="module")
def teacher_run(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "teacher"
    assert main(["train-teacher", "--data", str(tiny_data), "--out", str(out), "--lr", "3e-3", *TINY]) == 0
    # With this learning rate epoch 2 is not the best: last.ckpt must still be epoch 2 (for --resume).
    return out


def _losses(run):
    """Training loss per epoch from the run's merged metrics.csv (epochs numbered from 1)."""
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == list(range(1, len(rows) + 1))
    return [float(r["train_loss"]) for r in rows]


def test_teacher_run_writes_everything_and_its_loss_falls(teacher_run):
    for name in ("model.safetensors", "model.json", "metrics.csv", "curves.png", "epochs.md",
                 "checkpoints/last.ckpt"):
        assert (teacher_run / name).is_file(), name
    losses = _losses(teacher_run)
    assert len(losses) == 2 and losses[1] < losses[0]
    model, meta = load_weights(teacher_run / "model.safetensors")
    (stage,) = meta["stages"]  # the sidecar schema: one stage, this run
    assert meta["arch"] == "unet" and stage["epochs"] == 2 and stage["best_epoch"] in (1, 2)
    assert meta["data"] == stage["data"] and stage["data"]["train_images"] + stage["data"]["val_images"] == 16
    assert set(stage["val_metrics"]) >= {"ssim", "psnr", "mae"} and meta["command"].startswith("sharpkd train-teacher")
    assert stage["name"] == teacher_run.name and stage["config"] == "teacher" and meta["recipe"] is None
    from sharpkd.models.weights import sidecar_problems
    assert sidecar_problems(meta) == []
    ckpt = torch.load(teacher_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 1 and any(k.startswith("model.") for k in ckpt["state_dict"])
    assert "| 2" in (teacher_run / "epochs.md").read_text() and "3.0e-03" in (teacher_run / "epochs.md").read_text()
    with open(teacher_run / "metrics.csv") as f:
        assert [float(r["lr"]) for r in csv.DictReader(f)] == [3e-3, 3e-3]  # the LR of every epoch


def test_resume_continues_from_the_last_checkpoint(teacher_run, tiny_data):
    assert main(["train-teacher", "--data", str(tiny_data), "--out", str(teacher_run), "--resume",
                 *TINY[2:], "--max-epochs", "3", "--lr", "3e-3"]) == 0
    assert len(_losses(teacher_run)) == 3
    _, meta = load_weights(teacher_run / "model.safetensors")
    assert meta["stages"][-1]["epochs"] == 3
    # Resuming a run that already reached its max epochs trains nothing and rewrites the same results.
    assert main(["train-teacher", "--data", str(tiny_data), "--out", str(teacher_run), "--resume",
                 *TINY[2:], "--max-epochs", "3", "--lr", "3e-3"]) == 0
    (stage,) = load_weights(teacher_run / "model.safetensors")[1]["stages"]
    assert len(_losses(teacher_run)) == 3 and stage["epochs"] == 3
    # The stage's sittings: one per start or resume that trained (the no-op one is left out), in order.
    history = stage["sittings"]
    assert [h["epochs"] for h in history] == ["1-2", "3-3"]
    assert history[1]["command"].startswith("sharpkd train-teacher") and "--resume" in history[1]["command"]
    assert "--resume" not in history[0]["command"]
    assert all(h["wall_time_s"] > 0 for h in history)
    assert stage["wall_time_s"] == pytest.approx(sum(h["wall_time_s"] for h in history), abs=0.2)
    assert stage["command"] == history[0]["command"]  # the command that started it


def test_init_weights_with_a_cosine_schedule(teacher_run, tiny_data, tmp_path):
    """An annealing phase: a fresh run that starts from finished weights, its LR falling on a cosine to min_lr."""
    out = tmp_path / "anneal"
    start, start_meta = load_weights(teacher_run / "model.safetensors")
    assert main(["train-teacher", "--data", str(tiny_data), "--out", str(out), *TINY, "--max-epochs", "3",
                 "--lr", "1e-3", "--init-weights", str(teacher_run / "model.safetensors"), "--schedule", "cosine"]) == 0
    with open(out / "metrics.csv") as f:
        lrs = [float(r["lr"]) for r in csv.DictReader(f)]
    assert lrs == pytest.approx([1e-3, 1e-6 + (1e-3 - 1e-6) * 0.75, 1e-6 + (1e-3 - 1e-6) * 0.25])
    model, meta = load_weights(out / "model.safetensors")
    # its stages: those of the weights it started from, then its own
    assert meta["stages"][:-1] == start_meta["stages"] and len(meta["stages"][-1]["sittings"]) == 1
    assert meta["stages"][-1]["init_weights"]["weights"].endswith("model.safetensors")
    assert meta["stages"][-1]["training"]["schedule"] == "cosine"
    # Resuming it needs the same schedule: the saved scheduler state fits no other (a one-line error).
    assert main(["train-teacher", "--data", str(tiny_data), "--out", str(out), *TINY, "--resume"]) == 2
    # Resumed with it, the run still says what it started from (here: finished, so only its results are rewritten).
    assert main(["train-teacher", "--data", str(tiny_data), "--out", str(out), *TINY, "--max-epochs", "3",
                 "--resume", "--schedule", "cosine"]) == 0
    stages = load_weights(out / "model.safetensors")[1]["stages"]
    assert stages[:-1] == start_meta["stages"] and stages[-1]["init_weights"] == meta["stages"][-1]["init_weights"]
    assert any(not torch.equal(a, b) for a, b in zip(model.state_dict().values(), start.state_dict().values()))
    # It starts from the finished weights: with a vanishing LR, one epoch leaves every weight where it began
    # (Adam moves a weight by about lr per step), while the same run from scratch starts elsewhere.
    still = tmp_path / "still"
    assert main(["train-teacher", "--data", str(tiny_data), "--out", str(still), *TINY, "--max-epochs", "1",
                 "--lr", "1e-9", "--init-weights", str(teacher_run / "model.safetensors")]) == 0
    from sharpkd.training import TrainOptions, run_training

    scratch = tmp_path / "scratch"  # the library call the command makes
    tiny = {"max_epochs": 1, "epoch_size": 64, "val_size": 16, "crop": 32, "batch_size": 8, "num_workers": 0,
            "lr": 1e-9}
    assert run_training("teacher", TrainOptions(tiny_data, scratch, overrides=tiny)) == scratch / "model.safetensors"
    start_params = dict(start.named_parameters())
    for run, near in ((still, True), (scratch, False)):
        params = dict(load_weights(run / "model.safetensors")[0].named_parameters())
        assert all(torch.allclose(params[k], v, atol=1e-6) for k, v in start_params.items()) == near, run


def test_log_folders_are_ordered_by_sitting(tmp_path):
    from sharpkd.training.callbacks import log_folders

    for name in ("logs_resumed10", "logs", "logs_resumed2", "logs_resumed1", "tb"):
        (tmp_path / name).mkdir()
    assert [p.name for p in log_folders(tmp_path)] == ["logs", "logs_resumed1", "logs_resumed2", "logs_resumed10"]


def test_no_kd_drops_the_teacher_from_a_kd_config(teacher_run, tiny_data, tmp_path):
    out = tmp_path / "student"
    assert main(["distill", "--data", str(tiny_data), "--out", str(out), "--teacher", str(teacher_run / "model.safetensors"),
                 *TINY, "--train-pairs", "64", "--config", "student_kd", "--no-kd"]) == 0
    _, meta = load_weights(out / "model.safetensors")
    stage = meta["stages"][-1]
    assert stage["teacher"] is None and stage["training"]["loss"]["alpha"] == 0.0 and stage["config"] == "student_kd"


@pytest.mark.parametrize("kd,pairs", [(True, "64"), (True, "0"), (False, "64")], ids=["kd-cached", "kd-live", "nokd"])
def test_distill_and_ablation_runs(kd, pairs, teacher_run, tiny_data, tmp_path):
    out = tmp_path / "student"
    args = ["distill", "--data", str(tiny_data), "--out", str(out), "--teacher", str(teacher_run / "model.safetensors"),
            *TINY, "--train-pairs", pairs]
    assert main(args + ([] if kd else ["--no-kd"])) == 0
    losses = _losses(out)
    assert len(losses) == 2 and (pairs == "0" or losses[1] < losses[0])  # fixed pairs: the same ones every epoch
    model, meta = load_weights(out / "model.safetensors")
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert not torch.equal(model(x), x)  # trained away from the residual's identity start
    stage = meta["stages"][-1]
    assert meta["arch"] == "ds_unet" and stage["config"] == ("student_kd" if kd else "student_nokd")
    assert (stage["teacher"] is not None) == kd
    assert stage["training"]["loss"]["alpha"] == (0.7 if kd else 0.0)
    assert stage["training"]["train_pairs"] == int(pairs)
    assert len(list(out.glob("cache/teacher-*.safetensors"))) == (1 if kd and pairs != "0" else 0)
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["state_dict"] and all(k.startswith("model.") for k in ckpt["state_dict"])  # the student alone
    if kd and pairs == "64":  # a KD run branched into another recipe (here no teacher) resumes from its checkpoint
        assert main(["distill", "--data", str(tiny_data), "--out", str(out), *TINY[2:], "--max-epochs", "3",
                     "--train-pairs", pairs, "--no-kd", "--resume"]) == 0
        _, meta = load_weights(out / "model.safetensors")
        assert len(_losses(out)) == 3 and meta["stages"][-1]["teacher"] is None and meta["stages"][-1]["epochs"] == 3


def test_teacher_cache_matches_the_teacher_and_is_reused(teacher_run, tiny_data, caplog):
    from sharpkd.data import build_degradation, fixed_pair_tensors, load_split_images
    from sharpkd.training.teacher_cache import cached_teacher_outputs

    teacher, _ = load_weights(teacher_run / "model.safetensors")
    blurry, sharp = fixed_pair_tensors(load_split_images(tiny_data, "train"), build_degradation("seed"), 40,
                                       size=32, seed=3, chunk=16)
    assert blurry.shape == sharp.shape == (40, 3, 32, 32) and blurry.dtype == torch.uint8
    again, _ = fixed_pair_tensors(load_split_images(tiny_data, "train"), build_degradation("seed"), 40, size=32, seed=3)
    assert torch.equal(blurry, again)  # seeded: chunking does not change the pairs
    cache = teacher_run / "cache-test"
    with caplog.at_level("INFO", logger="sharpkd"):
        first = cached_teacher_outputs(teacher, teacher_run / "model.safetensors", blurry, cache)
        second = cached_teacher_outputs(teacher, teacher_run / "model.safetensors", blurry, cache)
    assert "computed" in caplog.text and "read 40" in caplog.text and torch.equal(first, second)
    with torch.no_grad():
        exact = teacher(blurry.float() / 255).clamp(0, 1) * 255
    assert (first.float() - exact).abs().mean() < 1.0  # bf16 + 8-bit: under one grey level on average
    other = cached_teacher_outputs(teacher, teacher_run / "model.safetensors", blurry.flip(-1).contiguous(), cache)
    assert len(list(cache.glob("teacher-*.safetensors"))) == 2 and not torch.equal(other, first)


def test_seed_keeps_the_data_and_split_seed_changes_it(tiny_data):
    from sharpkd.training.datamodule import DeblurDataModule

    dms = [DeblurDataModule(str(tiny_data), crop=32, val_size=8, seed=s, split_seed=d, train_pairs=16, num_workers=0)
           for s, d in ((0, 0), (1, 0), (0, 5))]
    for dm in dms:
        dm.setup()
    assert torch.equal(dms[0].val_set.blurry, dms[1].val_set.blurry)
    assert torch.equal(dms[0].train_set.tensors[0], dms[1].train_set.tensors[0])
    assert not torch.equal(dms[0].train_set.tensors[1], dms[2].train_set.tensors[1])


def test_epoch_rows_merge_lr_lines_and_leave_out_an_interrupted_epoch(tmp_path):
    from sharpkd.training.report import epoch_rows

    log = tmp_path / "metrics.csv"
    log.write_text("epoch,lr-Adam,step,train_loss_epoch,train_loss_step,val_ssim\n"
                   ",0.001,0,,,\n0,,9,,0.5,\n0,,19,0.4,,0.7\n"   # epoch 1: its LR, a step line, the epoch line
                   ",0.0005,20,,,\n1,,29,,0.3,\n")                # epoch 2 killed after one step line
    assert epoch_rows(log) == [{"epoch": 1, "lr": 0.001, "train_loss": 0.4, "val_ssim": 0.7}]


def test_every_packaged_recipe_builds_its_model_and_loss():
    """A typo in a recipe would otherwise surface hours into a run; no KD differs from the seed's student_kd only
    in dropping the teacher's term."""
    from sharpkd.models import build_model
    from sharpkd.training.config import CONFIG_DIR, load_recipe
    from sharpkd.training.module import RestorationModule

    names = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
    assert {"teacher", "student_kd", "student_nokd"} <= set(names)
    recipes = {n: load_recipe(n) for n in names}
    for name, r in recipes.items():
        net = build_model(r["arch"], residual=bool(r.get("residual")), **r["arch_kwargs"])
        module = RestorationModule(net, r["loss"], lr=r["lr"])
        assert module.loss_fn is not None and r["batch_size"] > 0 and r["max_epochs"] >= 1, name
    kd = recipes["student_kd"]
    assert kd["loss"] == {"name": "kd", "alpha": 0.7, "beta": 0.3, "gamma": 0.1}
    nokd = recipes["student_nokd"]
    assert nokd["loss"]["alpha"] == 0 and {k: v for k, v in nokd["loss"].items() if k != "alpha"} == \
        {k: v for k, v in kd["loss"].items() if k != "alpha"}
    assert {k: v for k, v in nokd.items() if k not in ("loss", "recipe")} == \
           {k: v for k, v in kd.items() if k not in ("loss", "recipe")}
    assert {recipes[n]["schedule"] for n in ("teacher", "student_kd", "student_nokd")} == {"plateau"}
    assert recipes["teacher_call"]["schedule"] == "cosine"  # one cosine from lr to min_lr
    call = recipes["student_call"]  # the seed's KD weights, guarded, on the call degradations
    assert call["loss"] == {**kd["loss"], "guard": True, "pixel": "relative"} and call["preset"] == "call"
    assert load_recipe("student_kd", "student_call") == call  # --config takes a packaged recipe's name


def test_resume_without_checkpoint_and_missing_teacher_are_one_line_errors(tiny_data, tmp_path, capsys):
    assert main(["train-teacher", "--data", str(tiny_data), "--out", str(tmp_path / "x"), "--resume"]) == 2
    assert main(["distill", "--data", str(tiny_data), "--out", str(tmp_path / "y"),
                 "--teacher", str(tmp_path / "missing.safetensors")]) == 2
    assert main(["distill", "--data", str(tiny_data), "--out", str(tmp_path / "z"), "--no-kd",  # wrong architecture
                 "--init-weights", "teacher_seed"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "--init-weights teacher_seed: a unet" in err[2] and not (tmp_path / "z" / "model.safetensors").exists()
    assert len(err) == 3 and all(line.startswith("sharpkd: error:") for line in err)


def _evaluate(data, out, models: str, *options: str, count: int = 4) -> dict:
    """`sharpkd evaluate` of `models` on `count` pairs (32 px) from all of `data`: its report.json."""
    assert main(["evaluate", "--data", str(data), "--split", "all", "--count", str(count), "--size", "32",
                 "--models", models, "--out", str(out), *options]) == 0
    return json.loads((out / "report.json").read_text())


def test_evaluate_compare_picks_the_paired_differences(teacher_run, tiny_data, tmp_path, capsys):
    w = teacher_run / "model.safetensors"
    models = f"student={w},student_nokd={w},student@1={w}"
    report = _evaluate(tiny_data, tmp_path / "eval", models, "--compare", "student@1:student_nokd,student:missing")
    assert [(c["a"], c["b"]) for c in report["comparisons"]] == [("student@1", "student_nokd")]
    assert main(["evaluate", "--data", str(tiny_data), "--models", models, "--compare", "student"]) == 2
    assert "--compare wants A:B pairs" in capsys.readouterr().err


def test_evaluate_compare_tests_the_gap_against_the_seed_to_seed_noise(teacher_run, tiny_data, tmp_path):
    # Two runs of each model (four different weights): the pair also gets Welch's t-test on the seed means.
    w = teacher_run / "model.safetensors"
    out = tmp_path / "eval"
    report = _evaluate(tiny_data, out, f"student={w},student@1=student_seed,student_nokd=student_lk,"
                       "student_nokd@1=student", "--compare", "student:student_nokd,student@1:student_nokd")
    ssim = {r["method"]: r["ssim"] for r in report["rows"]}
    a = [ssim["student"], ssim["student@1"]]
    b = [ssim["student_nokd"], ssim["student_nokd@1"]]
    seeds = report["comparisons"][0]["seeds"]
    assert seeds["runs"] == [2, 2] and seeds["ssim"]["difference"] == pytest.approx(np.mean(a) - np.mean(b))
    t = (np.mean(a) - np.mean(b)) / np.sqrt(np.var(a, ddof=1) / 2 + np.var(b, ddof=1) / 2)
    assert seeds["ssim"]["t"] == pytest.approx(t) and 1 <= seeds["ssim"]["df"] <= 2 and 0 < seeds["ssim"]["p"] < 1
    assert "seeds" not in report["comparisons"][1]  # a single run's pair: the per-pair bootstrap only
    assert f"Welch t {t:.1f}" in (out / "report.md").read_text()


def test_evaluate_writes_both_reports_with_every_row(teacher_run, tiny_data, tmp_path):
    out = tmp_path / "eval"
    w = teacher_run / "model.safetensors"
    report = _evaluate(tiny_data, out, f"teacher={w},student={w},student_nokd={w},student@1={w},student_kdstrong={w}",
                       "--compare", "student:student_nokd,student_kdstrong:student", count=12)
    methods = [r["method"] for r in report["rows"]]
    assert methods == ["Blurry input", "Unsharp mask", "Richardson-Lucy (true kernel, oracle)", "teacher",
                       "student", "student_nokd", "student@1", "student_kdstrong"]
    teacher_row = report["rows"][3]
    assert teacher_row["parameters"] > 400_000 and teacher_row["macs_720p"] > teacher_row["macs_128"] > 0
    assert teacher_row["latency_ms_128"] > 0
    md = (out / "report.md").read_text()
    assert all(m in md for m in methods) and (out / "grid.png").stat().st_size > 1000
    [seeds] = report["seeds"]  # the same weights twice: two runs, no spread
    assert seeds["model"] == "student" and seeds["runs"] == 2 and seeds["ssim"]["sd"] == 0
    assert seeds["ssim"]["mean"] == report["rows"][4]["ssim"] and "Across training seeds" in md
    # Paired comparisons of the same weights: zero difference, and an interval that is exactly zero.
    assert [(c["a"], c["b"]) for c in report["comparisons"]] == [("student", "student_nokd"),
                                                                 ("student_kdstrong", "student")]
    assert all(c["ssim"]["mean"] == 0 and c["ssim"]["ci95"] == [0, 0] for c in report["comparisons"])
    # The oracle deconvolution really deblurs: it beats the blurry input.
    assert report["rows"][2]["psnr"] > report["rows"][0]["psnr"]
    # The breakdown by blur kind covers every pair once, and its pair-weighted means are the overall means.
    groups = report["by_degradation"]
    assert {g["group"].split(",")[0] for g in groups} <= {"GaussianBlur", "MotionBlur"}
    assert sum(g["pairs"] for g in groups) == 12 and "SSIM by blur kind" in md
    for row in report["rows"]:
        mean = sum(g["pairs"] * g["ssim"][row["method"]] for g in groups) / 12
        assert mean == pytest.approx(row["ssim"], abs=1e-5)


def test_evaluate_self_ensemble_runs_every_model_as_the_mean_of_its_passes(teacher_run, tiny_data, tmp_path):
    w = teacher_run / "model.safetensors"
    reports = {passes: _evaluate(tiny_data, tmp_path / passes, f"teacher={w}", "--self-ensemble", passes, count=8)
               for passes in ("1", "2")}
    one, two = (r["rows"][3] for r in (reports["1"], reports["2"]))
    assert one["method"] == two["method"] == "teacher" and one["ssim"] != two["ssim"]
    assert two["macs_128"] == 2 * one["macs_128"] and two["parameters"] == one["parameters"]
    assert "mean of 2 flipped/transposed passes" in reports["2"]["pairs"]
    assert reports["1"]["rows"][0] == reports["2"]["rows"][0]  # the blurry input is not a model


def test_init_weights_may_change_options_without_weights_but_not_tensors(tmp_path):
    """Fine-tuning non-shrinking weights into a shrinking recipe is allowed (same tensors); another width is not."""
    from sharpkd.training.run import starting_weights

    save_weights(build_model("fast_unet", residual=True, scale=4), tmp_path / "s.safetensors")
    recipe = {"arch": "fast_unet", "residual": True, "arch_kwargs": {"scale": 4, "shrink": 2.0}}
    start, meta = starting_weights(recipe, tmp_path / "s.safetensors")
    assert start.arch_kwargs["shrink"] == 0.0 and meta["weights"].endswith("s.safetensors")
    with pytest.raises(SharpkdError, match="--init-weights"):
        starting_weights({**recipe, "arch_kwargs": {"scale": 4, "width": 24}}, tmp_path / "s.safetensors")


def test_init_weights_grow_a_unet_into_unet_deep_but_not_back(tmp_path):
    """unet_deep grows from unet (all of its tensors, same width and residual); the reverse, another width
    or another residual setting is refused before any work."""
    from sharpkd.training.run import starting_weights

    save_weights(build_model("unet", residual=True, width=8), tmp_path / "t.safetensors")
    save_weights(build_model("unet_deep", residual=True, width=8), tmp_path / "d.safetensors")
    deep = {"arch": "unet_deep", "residual": True, "arch_kwargs": {"width": 8, "dropout": 0.0}}
    start, _ = starting_weights(deep, tmp_path / "t.safetensors")
    assert start.arch_name == "unet"
    for recipe, source in [({"arch": "unet", "residual": True, "arch_kwargs": {"width": 8}}, "d"),
                           ({**deep, "arch_kwargs": {"width": 16}}, "t"), ({**deep, "residual": False}, "t")]:
        with pytest.raises(SharpkdError, match="--init-weights"):
            starting_weights(recipe, tmp_path / f"{source}.safetensors")
