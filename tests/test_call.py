"""The camera-to-call degradation model (`call` preset), its codec step, the benchmark suite, and training on it."""
import csv
import json

import numpy as np
import pytest
import torch

from sharpkd.cli import main
from sharpkd.errors import SharpkdError
from sharpkd.data import build_degradation
from sharpkd.data.datasets import to_tensor
from sharpkd.data.degradations import JPEG, SensorNoise, Transmit, h264_roundtrip
from sharpkd.evaluation.suite import CROP_FAMILIES, FAMILIES, FRAME_FAMILIES, fixed_frames, frame_view, parse_family

from util import make_image_folder, real_faces

BLURS = {"GaussianBlur", "MotionBlur", "CameraShakeBlur", "DefocusBlur"}


def test_call_preset_samples_its_steps_in_the_camera_to_call_order():
    pipeline, rng = build_degradation("call"), np.random.default_rng(0)
    samples = [pipeline.sample(rng) for _ in range(2000)]
    assert all(samples)  # never an exact copy of the original (a frame no step degraded gets a good frame's JPEG)
    rank = {**{b: 0 for b in BLURS}, "SensorNoise": 1, "Transmit": 2}
    clean = [ops for ops in samples if [o["op"] for o in ops] == ["JPEG"]]
    degraded = [ops for ops in samples if ops not in clean]
    assert 0.15 < len(clean) / len(samples) < 0.35  # a share of good frames (25% by design)
    assert all(85 <= ops[0]["quality"] <= 95 for ops in clean)
    for ops in degraded:
        order = [rank[o["op"]] for o in ops]
        assert order == sorted(order) and len(set(order)) == len(order)
    seen = {o["op"] for ops in degraded for o in ops}
    assert BLURS | {"SensorNoise", "Transmit"} <= seen
    assert {o["codec"] for ops in degraded for o in ops if o["op"] == "Transmit"} == {"jpeg", "h264"}


def test_call_preset_applies_the_steps_in_order_and_is_reproducible_from_its_manifest():
    sharp = to_tensor(np.stack([f[:64, :64] for f in real_faces(2)]))
    noise = {"op": "SensorNoise", "shot": 2e-3, "read": 0.01, "correlation": 0.5, "seed": 3}
    send = {"op": "Transmit", "factor": 2.5, "upscale": "bicubic", "codec": "h264", "crf": 36, "frames": 3}
    pipeline = build_degradation("call")
    out = pipeline.apply(sharp, [[noise, send]] * 2)
    by_hand = Transmit().apply(SensorNoise().apply(sharp, [noise] * 2), [send] * 2)
    assert torch.equal(out, by_hand)
    assert not torch.equal(out, SensorNoise().apply(Transmit().apply(sharp, [send] * 2), [noise] * 2))
    # A manifest entry (JSON) rebuilds the same pair, codec included.
    blurry, ops = pipeline(sharp, np.random.default_rng(5))
    again = build_degradation("call").apply(sharp, json.loads(json.dumps(ops)))
    assert torch.equal(again, blurry)


def test_a_mixed_preset_draws_each_sample_from_one_of_its_presets_and_rebuilds_from_its_manifest():
    pipeline, rng = build_degradation("call+seed"), np.random.default_rng(0)
    samples = [pipeline.sample(rng) for _ in range(1000)]
    seed_like = [ops for ops in samples if len(ops) == 1 and ops[0]["op"] in ("GaussianBlur", "MotionBlur")]
    assert 0.4 < len(seed_like) / len(samples) < 0.6  # the seed's blur (and the call model's blur-only frames)
    assert {o["op"] for ops in samples for o in ops} >= BLURS | {"SensorNoise", "Transmit", "JPEG"}
    sharp = to_tensor(np.stack([f[:64, :64] for f in real_faces(2)]))
    blurry, ops = pipeline(sharp, np.random.default_rng(3))
    assert torch.equal(build_degradation("call+seed").apply(sharp, json.loads(json.dumps(ops))), blurry)
    assert pipeline.name == "call+seed"


def _blockiness(img: np.ndarray, block: int = 8) -> float:
    """Mean jump across block boundaries over the mean jump inside blocks (1 for an image without blocks)."""
    d = np.abs(np.diff(img.astype(np.float64).mean(-1), axis=1))
    at_edge = (np.arange(d.shape[1]) % block) == block - 1
    return d[:, at_edge].mean() / d[:, ~at_edge].mean()


def test_the_codec_step_makes_blocks_at_the_senders_size_and_keeps_the_frame_size():
    yy, xx = np.mgrid[0:96, 0:120]
    smooth = np.stack([xx * 2, yy * 2, (xx + yy)], -1).astype(np.uint8)
    jpeg = Transmit.one(smooth, {"factor": 1.0, "upscale": "bilinear", "codec": "jpeg", "quality": 10})
    assert jpeg.shape == smooth.shape and jpeg.dtype == np.uint8
    assert _blockiness(jpeg) > 1.5 * _blockiness(smooth)
    # Sent at half size, the 8x8 blocks arrive 16 px wide.
    half = Transmit.one(smooth, {"factor": 2.0, "upscale": "bilinear", "codec": "jpeg", "quality": 10})
    assert _blockiness(half, 16) > _blockiness(half, 8)
    # H.264 on an odd-sized frame: the size is kept, and the codec throws detail away.
    rng = np.random.default_rng(0)
    busy = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    for frames in (1, 3):
        out = Transmit.one(busy, {"factor": 1.3, "upscale": "bicubic", "codec": "h264", "crf": 40, "frames": frames})
        assert out.shape == busy.shape
        assert np.abs(np.diff(out.astype(float), axis=1)).mean() < np.abs(np.diff(busy.astype(float), axis=1)).mean()
    assert np.array_equal(h264_roundtrip(busy[:36, :52], 30), h264_roundtrip(busy[:36, :52], 30))


def test_sensor_noise_grows_with_brightness():
    dark, bright = torch.full((1, 3, 64, 64), 0.1), torch.full((1, 3, 64, 64), 0.8)
    p = [{"op": "SensorNoise", "shot": 4e-3, "read": 0.002, "correlation": 0.0, "seed": 1}]
    assert SensorNoise().apply(bright, p).std() > 2 * SensorNoise().apply(dark, p).std()


def test_clean_family_is_mild_compression_only():
    ops = build_degradation("clean").sample(np.random.default_rng(0))
    assert [o["op"] for o in ops] == ["JPEG"] and isinstance(build_degradation("clean").steps[0], JPEG)


def test_suite_writes_both_reports_with_every_family_and_baseline(tmp_path, weights):
    make_image_folder(tmp_path / "data" / "faces", n=10, size=40, seed=1)
    make_image_folder(tmp_path / "data" / "scenes", n=10, size=40, seed=2)
    out = tmp_path / "suite"
    families = [*CROP_FAMILIES, "call@32x18", "clean@32x18", "call@640x360"]  # no image is as large as 640x360
    assert main(["evaluate", "--suite", "--data", str(tmp_path / "data"), "--models", f"a={weights},b={weights}",
                 "--compare", "a:b", "--count", "6", "--size", "32", "--families", ",".join(families),
                 "--out", str(out)]) == 0
    report = json.loads((out / "suite.json").read_text())
    assert list(report["datasets"]) == ["faces", "all"] and report["families"] == families
    # crops on both data sets; whole frames (FAMILY@WxH) on the first, one per validation image large enough
    assert list(report["datasets"]["faces"]["families"]) == families[:-1]
    assert list(report["datasets"]["all"]["families"]) == list(CROP_FAMILIES)
    for ds in report["datasets"].values():
        for family, f in ds["families"].items():
            pairs = 6 if family in CROP_FAMILIES else report["datasets"]["faces"]["val_images"]
            assert f["pairs"] == pairs and set(f["rows"]) == {"input", "unsharp mask", "a", "b"}
            assert f["rows"]["a"] == f["rows"]["b"]  # the same weights score the same
            for name, row in f["rows"].items():  # every pair's scores, whose means are the row
                assert len(f["per_pair"][name]["psnr"]) == pairs
                assert abs(np.mean(f["per_pair"][name]["psnr"]) - row["psnr"]) < 1e-4
            assert f["comparisons"][0]["ssim"] == {"mean": 0.0, "ci95": [0.0, 0.0]}
            low, high = f["rows"]["a"]["vs_input"]["psnr"]["ci95"]
            assert low <= f["rows"]["a"]["vs_input"]["psnr"]["mean"] <= high
    md = (out / "suite.md").read_text()
    assert all(f" {fam} |" in md for fam in families[:-1]) and "above the input everywhere" in md
    assert len(list(out.glob("grid_*.png"))) == 2 * len(CROP_FAMILIES) + 2
    assert set(FAMILIES) == set(CROP_FAMILIES) | set(FRAME_FAMILIES)


def test_whole_frame_family_is_the_centred_view_at_call_size():
    portrait = np.zeros((300, 200, 3), np.uint8)
    portrait[100:200] = 255  # a band through the middle: the centred 16:9 view holds all of it
    frame = frame_view(portrait, (64, 36))
    assert frame.shape == (36, 64, 3) and frame[18].min() == 255 and frame[0].max() < 128 and frame[-1].max() < 128
    assert frame_view(portrait, (640, 360)) is None  # never enlarged: an enlarged photo is a soft original
    assert parse_family("call@1280x720") == ("call", (1280, 720)) and parse_family("clean") == ("clean", None)
    small = portrait[:20, :20]
    blurry, sharp = fixed_frames([portrait, small, portrait[::-1]], "call", (64, 36), count=5, seed=0)
    assert blurry.shape == sharp.shape == (2, 3, 36, 64)
    again, _ = fixed_frames([portrait, small, portrait[::-1]], "call", (64, 36), count=5, seed=0)
    assert torch.equal(blurry, again)  # fixed by the seed
    with pytest.raises(SharpkdError, match="as large as a 640x360 frame"):
        fixed_frames([portrait], "call", (640, 360), count=5, seed=0)


def test_suite_unknown_family_fails_before_work(tmp_path, weights, capsys):
    make_image_folder(tmp_path / "data", n=6, size=40)
    assert main(["evaluate", "--suite", "--data", str(tmp_path / "data"), "--models", f"a={weights}",
                 "--families", "seed,blurry", "--out", str(tmp_path / "o")]) == 2
    assert "unknown degradation preset 'blurry'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_few_training_steps_on_call_lower_the_loss(tmp_path):
    data = make_image_folder(tmp_path / "data", n=16, size=48)
    out = tmp_path / "run"
    assert main(["train-teacher", "--data", str(data), "--out", str(out), "--preset", "call", "--train-pairs", "64",
                 "--max-epochs", "2", "--epoch-size", "64", "--val-size", "16", "--crop", "32", "--batch-size", "8",
                 "--lr", "3e-3", "--num-workers", "0", "--precision", "32-true"]) == 0
    with open(out / "metrics.csv") as f:
        losses = [float(r["train_loss"]) for r in csv.DictReader(f)]
    assert len(losses) == 2 and losses[1] < losses[0]
    assert json.loads((out / "model.json").read_text())["data"]["preset"] == "call"


@pytest.mark.parametrize("family", ["low-bandwidth", "shake-noise"])
def test_the_shipped_call_teacher_scores_above_its_input(family):
    """On frames built here from real faces (4 faces, 2 seeded draws each), the shipped `teacher` (the call
    teacher) beats doing nothing on every pair, in SSIM and PSNR (measured margins: at least +0.029 SSIM and
    +0.87 dB per pair)."""
    from sharpkd.metrics import psnr, ssim
    from sharpkd.models.weights import load_weights

    sharp = to_tensor(np.stack([f[:128, :128] for f in real_faces(4)] * 2))
    blurry, _ = build_degradation(family)(sharp, np.random.default_rng(0))
    model, _ = load_weights("teacher")
    with torch.no_grad():
        out = model.eval()(blurry)
    assert (ssim(out, sharp, reduction=None) > ssim(blurry, sharp, reduction=None)).all()
    assert (psnr(out, sharp, reduction=None) > psnr(blurry, sharp, reduction=None)).all()
