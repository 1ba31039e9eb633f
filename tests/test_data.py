import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from sharpkd.cli import main
from sharpkd.data import (FixedPairs, PairedFolder, SharpCrops, DegradeCollate, build_degradation, kernel_from_params,
                          load_split_images, paired_files, read_celeba_partition, split_folder, split_of)
from sharpkd.data.degradations import CameraShakeBlur, DefocusBlur, GaussianBlur, MotionBlur, Pipeline
from sharpkd.data.datasets import to_tensor
from sharpkd.errors import SharpkdError

from util import make_image_folder, real_faces

BLURS = [GaussianBlur(), MotionBlur(), CameraShakeBlur(), DefocusBlur()]


def high_frequency_energy(x: torch.Tensor) -> float:
    lap = x[..., 1:-1, 1:-1] * 4 - x[..., :-2, 1:-1] - x[..., 2:, 1:-1] - x[..., 1:-1, :-2] - x[..., 1:-1, 2:]
    return lap.pow(2).mean().item()


@pytest.mark.parametrize("blur", BLURS, ids=lambda b: b.name)
def test_kernels_sum_to_one_and_are_rebuilt_from_params(blur):
    rng = np.random.default_rng(0)
    for _ in range(20):
        params = blur.sample(rng)
        k = kernel_from_params(params)
        assert k.ndim == 2 and k.shape[0] == k.shape[1] and k.shape[0] % 2 == 1
        assert k.sum() == pytest.approx(1.0, abs=1e-5) and (k >= 0).all()
        assert np.array_equal(k, kernel_from_params(json.loads(json.dumps(params))))


def test_motion_kernel_has_its_length_and_angle():
    k = kernel_from_params({"op": "MotionBlur", "length": 11.0, "angle": 0.0})
    rows = np.nonzero(k.sum(1) > 1e-3)[0]
    cols = np.nonzero(k.sum(0) > 1e-3)[0]
    assert len(rows) <= 2 and 10 <= len(cols) <= 13  # a horizontal streak about 11 px long
    vertical = kernel_from_params({"op": "MotionBlur", "length": 11.0, "angle": 90.0})
    assert np.allclose(vertical, k.T, atol=1e-6)


@pytest.mark.parametrize("kind", ["seed", *BLURS], ids=lambda k: k if isinstance(k, str) else type(k).__name__)
def test_the_seed_preset_and_each_blur_lower_high_frequency_energy_of_real_faces(kind):
    pipeline = build_degradation(kind) if kind == "seed" else Pipeline(kind)
    sharp = to_tensor(np.stack([f[:96, :96] for f in real_faces(4)]))
    blurry, ops = pipeline(sharp, np.random.default_rng(1))
    assert blurry.shape == sharp.shape and blurry.min() >= 0 and blurry.max() <= 1
    assert high_frequency_energy(blurry) < high_frequency_energy(sharp)
    assert all(o and o[0]["op"].endswith("Blur") for o in ops)
    # Same parameters, same result: validation pairs are reproducible.
    assert torch.allclose(pipeline.apply(sharp, ops), blurry, atol=1e-6)


def test_blur_reflects_at_borders_and_preserves_a_flat_image():
    flat = torch.full((2, 3, 40, 40), 0.3)
    blurry, _ = build_degradation("seed")(flat, np.random.default_rng(0))
    assert torch.allclose(blurry, flat, atol=1e-5)


def test_unknown_preset_is_a_user_error():
    with pytest.raises(SharpkdError, match="unknown degradation preset"):
        build_degradation("nope")
    with pytest.raises(SharpkdError, match="unknown degradation preset 'nope'"):
        build_degradation("call+nope")


def test_split_is_deterministic_seeded_and_stable_when_files_are_added(tmp_path):
    make_image_folder(tmp_path / "a", n=40, size=16)
    first = split_folder(tmp_path, seed=0)
    again = split_folder(tmp_path, seed=0)
    assert first.splits == again.splits
    n_val = len(first.files("val"))
    assert 3 <= n_val <= 16  # about 20% of 40
    make_image_folder(tmp_path / "b", n=10, size=16, seed=5)
    (tmp_path / "b" / "img00.png").rename(tmp_path / "b" / "extra.png")
    grown = split_folder(tmp_path, seed=0)
    assert set(first.files("val")) <= set(grown.files("val"))
    assert set(first.files("train")) <= set(grown.files("train"))
    assert split_folder(tmp_path, seed=1).splits != first.splits
    # The split follows the file, not the folder the command was pointed at.
    assert split_of("faces/celeba_hq/x.jpg") == split_of("celeba_hq/x.jpg")


def test_celeba_partition_is_honoured(tmp_path):
    root = tmp_path / "celeba"
    make_image_folder(root / "img_align_celeba", n=6, size=16)
    names = sorted(p.name for p in (root / "img_align_celeba").iterdir())
    (root / "list_eval_partition.txt").write_text(
        "\n".join(f"{n} {s}" for n, s in zip(names, [0, 0, 0, 1, 1, 2])) + "\n")
    assert read_celeba_partition(root / "list_eval_partition.txt")[names[3]] == "val"
    for where in (root, root / "img_align_celeba"):
        files = split_folder(where)
        assert files.layout == "celeba"
        assert [p.name for p in files.files("train")] == names[:3]
        assert [p.name for p in files.files("val")] == names[3:5]
        assert [p.name for p in files.files("test")] == names[5:]
    (root / "list_eval_partition.txt").write_text("broken line here\n")
    with pytest.raises(SharpkdError, match="expected"):
        split_folder(root)


def test_corrupt_files_are_skipped_with_a_warning_naming_each(tmp_path, caplog):
    make_image_folder(tmp_path, n=30, size=16)
    (tmp_path / "truncated.png").write_bytes((tmp_path / "img00.png").read_bytes()[:60])
    (tmp_path / "notes.jpg").write_text("not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    files = split_folder(tmp_path).files("all")
    with caplog.at_level(logging.WARNING, logger="sharpkd"):
        from sharpkd.data import load_images
        images = load_images(files, what="images")
    assert len(images) == 30
    text = caplog.text
    for bad in ("truncated.png", "notes.jpg", "empty.png"):
        assert bad in text
    assert "skipped 3 unreadable file(s) of 33" in text


def test_empty_folder_exits_2_with_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["make-pairs", str(tmp_path / "empty"), str(tmp_path / "out"), "--count", "10"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sharpkd: error:") and "\n" not in err and "Traceback" not in err
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.png").write_text("nope")
    with pytest.raises(SharpkdError, match="could be read"):
        load_split_images(tmp_path / "junk", "all")


def test_training_crops_and_degrade_collate(tmp_path):
    images = [np.asarray(Image.open(p)) for p in sorted(make_image_folder(tmp_path, n=4, size=64).iterdir())]
    ds = SharpCrops(images, size=32, epoch_size=10)
    assert len(ds) == 10 and ds[0].shape == (32, 32, 3) and ds[0].dtype == np.uint8
    blurry, sharp = DegradeCollate(build_degradation("seed"))([ds[i] for i in range(4)])
    assert blurry.shape == sharp.shape == (4, 3, 32, 32)
    assert high_frequency_energy(blurry) < high_frequency_energy(sharp)
    whole = SharpCrops(images, size=20, whole_image=True)
    assert whole[0].shape == (20, 20, 3)


def test_fixed_pairs_are_reproducible(tmp_path):
    images = [np.asarray(Image.open(p)) for p in sorted(make_image_folder(tmp_path, n=3, size=40).iterdir())]
    a = FixedPairs(images, build_degradation("call"), count=8, size=24, seed=3)
    b = FixedPairs(images, build_degradation("call"), count=8, size=24, seed=3)
    assert torch.equal(a.blurry, b.blurry) and torch.equal(a.sharp, b.sharp)
    assert [r.ops for r in a.records] == [r.ops for r in b.records]
    c = FixedPairs(images, build_degradation("call"), count=8, size=24, seed=4)
    assert not torch.equal(a.blurry, c.blurry)


def test_make_pairs_writes_layout_and_manifest_then_reads_back_as_pairs(tmp_path):
    src = make_image_folder(tmp_path / "src", n=20, size=48)
    out = tmp_path / "pairs"
    assert main(["make-pairs", str(src), str(out), "--count", "20", "--size", "32"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["pairs"]) == 20 and manifest["preset"] == "seed"
    assert len(list((out / "train" / "blur").glob("*.png"))) == 16
    assert len(list((out / "val" / "sharp").glob("*.png"))) == 4
    assert manifest["pairs"][0]["ops"][0]["op"] in ("GaussianBlur", "MotionBlur")
    assert manifest["pairs"][0]["source"].startswith("img")
    pairs = paired_files(out, "val")
    assert len(pairs) == 4 and all(b.name == s.name for b, s in pairs)
    ds = PairedFolder(paired_files(out, "train"), crop=16, epoch_size=5)
    b, s = ds[0]
    assert b.shape == s.shape == (3, 16, 16) and len(ds) == 5


def test_gopro_layout_pairs(tmp_path):
    for scene in ("GOPR0001", "GOPR0002"):
        make_image_folder(tmp_path / "train" / scene / "sharp", n=2, size=16)
        make_image_folder(tmp_path / "train" / scene / "blur", n=2, size=16)
    assert len(paired_files(tmp_path)) == 4
    with pytest.raises(SharpkdError, match="no blur/ and sharp/"):
        paired_files(tmp_path / "train" / "GOPR0001" / "sharp")


@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 9, 3), (7, 1, 3), (33, 47, 3)])
def test_planar_conversions_give_the_values_of_to_float_and_to_uint8(shape):
    from sharpkd.data.io import batch_to_rgb, rgb_to_batch, to_float, to_uint8

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, shape, dtype=np.uint8)
    # contiguous, flipped, strided and Fortran-ordered inputs (camera frames and crops are views)
    for view in (img, img[::-1, ::-1], img[:, ::2], np.asfortranarray(img)):
        for channels_last in (False, True):
            x = rgb_to_batch(view, channels_last=channels_last)
            assert x.dtype == np.float32 and np.array_equal(x, to_float(view.transpose(2, 0, 1)[None]))
    y = rng.uniform(-0.2, 1.2, (1,) + shape[2:] + shape[:2]).astype(np.float32)
    y.flat[0] = np.float32(100.5) / np.float32(255)  # a tie after scaling: rounds to even, as to_uint8 does
    expected = to_uint8(np.clip(y, 0, 1)[0].transpose(1, 2, 0))
    # planar, and laid out HxWx3 in memory (PyTorch's channels-last outputs)
    for layout in (y.copy(), np.ascontiguousarray(y.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)):
        out = batch_to_rgb(layout)
        assert out.shape == shape and out.dtype == np.uint8 and np.array_equal(out, expected)
