"""Full-resolution sharpening: API shapes and dtypes, image modes, tiling, the `sharpen` command's files."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

import sharpkd
from sharpkd import cli
from sharpkd.errors import SharpkdError
from sharpkd.models import shipped_weights_path


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SHARPKD_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="module")
def sharpener(weights):
    return sharpkd.load(str(weights))


def _photo(h, w):
    import skimage.data

    return np.asarray(Image.fromarray(skimage.data.astronaut()).resize((w, h), Image.BICUBIC))


@pytest.mark.parametrize("backend", ["torch", "onnx"])
@pytest.mark.parametrize("hw", [(1, 1), (7, 13), (37, 61), (2, 5)])
def test_any_size_shape_and_dtype(weights, backend, hw):
    sh = sharpkd.load(str(weights), backend=backend)
    img = np.random.default_rng(0).integers(0, 256, (*hw, 3), dtype=np.uint8)
    out = sh.sharpen(img)
    assert out.shape == img.shape and out.dtype == np.uint8


def test_api_name_meta_frames(sharpener, weights):
    assert sharpener.name == weights.stem and sharpener.meta["arch"] == "ds_unet"
    frames = [np.full((16, 24, 3), v, np.uint8) for v in (0, 128, 255)]
    outs = list(sharpener.sharpen_frames(iter(frames)))
    assert len(outs) == 3 and all(o.shape == (16, 24, 3) for o in outs)
    np.testing.assert_array_equal(outs[1], sharpener.sharpen(frames[1]))


def test_output_is_the_model_at_full_resolution(weights):
    """No resizing: the output equals the fp32 model applied to the frame as it is."""
    sh = sharpkd.load(str(weights))
    img = _photo(45, 70)
    net, _ = sharpkd.load_weights(weights)
    with torch.inference_mode():
        ref = net(torch.from_numpy(img.copy()).permute(2, 0, 1)[None].float() / 255)[0].permute(1, 2, 0).numpy()
    assert np.abs(sh.sharpen(img).astype(float) / 255 - ref).max() <= 0.5 / 255 + 1e-6


def test_bf16_close_to_fp32(weights):
    img = _photo(64, 96)
    a = sharpkd.inference.load(str(weights), precision="fp32").sharpen(img)
    b = sharpkd.inference.load(str(weights), precision="bf16").sharpen(img)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 6


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_self_ensemble_averages_flipped_and_transposed_passes(backend, tmp_path):
    """The shipped student (trained weights: not flip-equivariant) on a blurred photo (a sharp one it leaves as it
    is: its coring drops changes under 4/255)."""
    # not a multiple of the model's 4: each flip pads on another side
    img = np.asarray(Image.fromarray(_photo(37, 61)).filter(ImageFilter.GaussianBlur(1.5)))
    plain = sharpkd.load("student", backend=backend)
    x2 = sharpkd.load("student", backend=backend, self_ensemble=2).sharpen(img).astype(int)
    mirror = plain.sharpen(np.ascontiguousarray(img[:, ::-1]))[:, ::-1]
    assert np.abs(x2 - (plain.sharpen(img).astype(int) + mirror) / 2).max() <= 1
    x8 = sharpkd.load("student", backend=backend, self_ensemble=8)
    a = x8.sharpen(img).astype(int)
    b = x8.sharpen(np.ascontiguousarray(img.transpose(1, 0, 2)[::-1])).astype(int)[::-1].transpose(1, 0, 2)
    assert np.abs(a - b).max() <= 1 < np.abs(a - plain.sharpen(img)).max()  # x8 commutes; one pass does not
    if backend == "torch":
        Image.fromarray(img).save(tmp_path / "a.png")
        assert cli.main(["sharpen", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--model", "student",
                         "--backend", "torch", "--self-ensemble", "2"]) == 0
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out" / "a.png")), x2)
    with pytest.raises(SharpkdError):
        sharpkd.load("student", self_ensemble=4)


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 4), np.uint8),
                                 np.zeros((4, 4, 3), np.float32), np.zeros((0, 4, 3), np.uint8)])
def test_bad_arrays_are_user_errors(sharpener, bad):
    with pytest.raises(SharpkdError):
        sharpener.sharpen(bad)


def test_tiled_matches_untiled_2000x1500(sharpener):
    img = _photo(1500, 2000)
    whole = sharpener.sharpen(img, tile=0)
    tiled = sharpener.sharpen(img, tile=512, tile_overlap=32)
    assert tiled.shape == whole.shape == img.shape
    assert np.abs(whole.astype(int) - tiled.astype(int)).max() <= 1


def test_onnx_tiles_run_the_uint8_frames_graph_and_match_torch_tiles(monkeypatch):
    img = _photo(200, 300)
    ref = sharpkd.load("student").sharpen(img, tile=128)  # PyTorch: float tiles
    sh = sharpkd.load("student", backend="onnx")
    calls = []
    run = sh._sharpen_frame
    monkeypatch.setattr(sh, "_sharpen_frame", lambda backend, tile: calls.append(tile.shape) or run(backend, tile))
    out = sh.sharpen(img, tile=128)
    assert len(calls) == 6 and out.shape == img.shape and out.dtype == np.uint8  # 2 x 3 tiles of uint8
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1


def test_tiling_is_automatic_above_the_pixel_budget(weights, monkeypatch):
    from sharpkd.inference.sharpener import AUTO_TILE_PIXELS

    assert sharpkd.load("student").auto_tile_pixels == 4 * AUTO_TILE_PIXELS  # no layer at full resolution
    sh = sharpkd.load(str(weights))
    assert sh.auto_tile_pixels == AUTO_TILE_PIXELS
    sh.auto_tile_pixels = 100 * 100
    calls = []
    run = sh.run_array
    monkeypatch.setattr(sh, "run_array", lambda x: calls.append(x.shape) or run(x))
    sh.sharpen(_photo(130, 1100))
    assert len(calls) == 3 and max(s[-1] for s in calls) <= 512 + 2 * 32


# ------------------------------------------------------------------------------------------- the command
def _write_modes(folder):
    rng = np.random.default_rng(1)
    rgb = _photo(37, 61)
    Image.fromarray(rgb).save(folder / "rgb.jpg")
    Image.fromarray(rgb[..., 0]).save(folder / "gray.png")
    rgba = np.dstack([rgb, rng.integers(0, 256, rgb.shape[:2], dtype=np.uint8)])
    Image.fromarray(rgba, "RGBA").save(folder / "alpha.png")
    Image.fromarray((rgb[..., 1].astype(np.uint16) * 257)).save(folder / "deep.png")  # I;16
    Image.fromarray(rgb).convert("CMYK").save(folder / "cmyk.tif")
    Image.fromarray(rgb).convert("P").save(folder / "pal.png")
    (folder / "sub").mkdir()
    Image.fromarray(rgb[:7, :13]).save(folder / "sub" / "small.png")
    return rgba


def test_sharpen_modes_and_layout(tmp_path, weights, caplog):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    rgba = _write_modes(src)
    assert Image.open(src / "deep.png").mode.startswith("I;16")
    assert cli.main(["sharpen", str(src), "-o", str(out), "--model", str(weights)]) == 0
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert names == ["alpha.png", "cmyk.png", "deep.png", "gray.png", "pal.png", "rgb.png", "sub/small.png"]
    modes = {n: Image.open(out / n) for n in names}
    assert {n: im.size for n, im in modes.items()} == {**{n: (61, 37) for n in names}, "sub/small.png": (13, 7)}
    assert modes["gray.png"].mode == "L" and modes["deep.png"].mode == "L"
    assert modes["alpha.png"].mode == "RGBA" and modes["cmyk.png"].mode == "RGB" and modes["pal.png"].mode == "RGB"
    np.testing.assert_array_equal(np.asarray(modes["alpha.png"])[..., 3], rgba[..., 3])
    assert any("16-bit" in r.getMessage() for r in caplog.records)


def test_exif_orientation_applied(tmp_path, weights):
    img = Image.fromarray(_photo(20, 40))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90: displayed 20 wide, 40 high
    img.save(tmp_path / "rot.jpg", exif=exif)
    assert cli.main(["sharpen", str(tmp_path / "rot.jpg"), "-o", str(tmp_path / "o"), "--model", str(weights)]) == 0
    assert Image.open(tmp_path / "o" / "rot.png").size == (20, 40)


def test_folder_with_a_corrupt_file(tmp_path, weights, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for i in range(3):
        Image.fromarray(_photo(20 + i, 30)).save(src / f"ok{i}.png")
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    code = cli.main(["sharpen", str(src), "-o", str(out), "--model", str(weights)])
    assert code == 1
    assert sorted(p.name for p in out.iterdir()) == ["ok0.png", "ok1.png", "ok2.png"]
    err = capsys.readouterr().err
    assert "broken.jpg" in err and "Traceback" not in err


def test_usage_errors_exit_2(tmp_path, weights, capsys):
    assert cli.main(["sharpen", str(tmp_path / "missing.png"), "-o", str(tmp_path / "o"),
                     "--model", str(weights)]) == 2
    assert cli.main(["sharpen", str(tmp_path), "-o", str(tmp_path / "o"), "--model",
                     str(tmp_path / "nope.safetensors")]) == 2
    with pytest.raises(SystemExit) as e:
        cli.main(["sharpen", "-o", str(tmp_path / "o")])
    assert e.value.code == 2


def test_default_model_is_the_shipped_student(tmp_path):
    assert shipped_weights_path("student").is_file()
    Image.fromarray(_photo(21, 34)).save(tmp_path / "a.png")
    assert cli.main(["sharpen", str(tmp_path / "a.png"), "-o", str(tmp_path / "o")]) == 0
    assert Image.open(tmp_path / "o" / "a.png").size == (34, 21)


def test_interrupted_write_leaves_no_partial_file(tmp_path, weights, monkeypatch):
    """Ctrl-C while an output is being written: neither a half-written PNG nor a temporary file is left."""
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    Image.fromarray(_photo(40, 60)).save(src / "a.png")
    real_save = Image.Image.save

    def save_then_interrupt(self, fp, *a, **k):
        real_save(self, fp, *a, **k)
        with open(fp, "r+b") as f:  # a half-written file
            f.truncate(10)
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", save_then_interrupt)
    assert cli.main(["sharpen", str(src), "-o", str(out), "--model", str(weights)]) == 130
    assert not out.exists() or list(out.rglob("*")) == []


def test_interrupt_between_files_keeps_finished_outputs(tmp_path, weights, monkeypatch):
    from sharpkd.inference import files

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for n in ("a", "b", "c"):
        Image.fromarray(_photo(30, 40)).save(src / f"{n}.png")
    sh = sharpkd.load(str(weights))
    calls = {"n": 0}
    real = sh.sharpen

    def interrupt_second(img, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(img, **k)

    monkeypatch.setattr(sh, "sharpen", interrupt_second)
    with pytest.raises(KeyboardInterrupt):
        files.sharpen_files(sh, [src], out, progress=False)
    assert [p.name for p in out.iterdir()] == ["a.png"]
    Image.open(out / "a.png").load()


def test_bench_reports_latency_macs_and_ratios():
    from sharpkd.inference.bench import parse_sizes, run_bench

    r = run_bench(parse_sizes("32x24"), models=("teacher", "student"), backends=("torch",), frames=3,
                  max_seconds=5)
    rows = {x["model"]: x for x in r["rows"]}
    assert rows["teacher"]["gmacs"] > 10 * rows["student"]["gmacs"] > 0
    assert all(x["frames"] == 3 and x["median_ms"] > 0 and x["threads"] >= 1 for x in r["rows"])
    assert [q["kind"] for q in r["ratios"]] == ["student vs teacher"]
    with pytest.raises(SharpkdError):
        parse_sizes("12by3")
    assert all(x["steal"] is None or 0 <= x["steal"] <= 1 for x in r["rows"])


def test_steal_share_is_the_hypervisors_share_of_cpu_time_between_two_readings():
    from collections import namedtuple

    from sharpkd.sysinfo import steal_share

    Times = namedtuple("Times", "user system idle steal")
    assert steal_share(Times(10, 5, 80, 5), Times(40, 5, 120, 35)) == 0.3  # 30 of 100 ticks stolen
    assert steal_share(Times(1, 1, 1, 0), Times(1, 1, 1, 0)) is None  # no time passed
    assert steal_share(*[namedtuple("T", "user idle")(1, i) for i in (1, 2)]) is None  # an OS without steal


def test_auto_backend_keeps_the_fastest_candidate(weights, monkeypatch):
    """`auto` times every installed candidate on a frame of the asked size and keeps the fastest; its output is the
    model's (bf16 candidates only where the CPU has native bf16, and never where fp32 is asked for)."""
    from sharpkd.inference import sharpener as mod
    from sharpkd.inference.openvino_backend import version

    monkeypatch.setattr(mod, "native_bf16", lambda: True)
    both = mod.auto_candidates(weights)
    assert {("onnx", "fp32"), ("torch", "fp32"), ("torch", "bf16")} <= set(both) and ("onnx", "bf16") not in both
    assert (("openvino", "fp32") in both) == bool(version())
    assert all(p == "fp32" for _, p in mod.auto_candidates(weights, "fp32"))
    monkeypatch.setattr(mod, "native_bf16", lambda: False)
    fp32 = mod.auto_candidates(weights)
    assert fp32 == [c for c in both if c[1] == "fp32"]
    assert mod.auto_candidates("m.onnx") == [c for c in fp32 if c[0] != "torch"]

    sh = sharpkd.load(str(weights), backend="auto", size=(48, 32))
    labels = {b if p == "fp32" else f"{b}-{p}" for b, p in fp32}
    assert set(sh.timings) == labels and all(ms > 0 for ms in sh.timings.values())
    chosen = min(sh.timings, key=sh.timings.get)
    assert sh.backend_label == chosen
    assert "auto: " + chosen in sh.describe()
    img = _photo(45, 70)
    ref = sharpkd.load(str(weights)).sharpen(img)
    assert np.abs(sh.sharpen(img).astype(int) - ref.astype(int)).max() <= 1


def test_auto_times_each_backend_back_to_back_not_right_after_another(monkeypatch):
    """A backend that has just run slows the next one's first frame (its threads still spin on the cores): `auto`
    must rank backends by their speed in a stream, so each turn's first frame is not timed."""
    import time as _time

    from sharpkd.inference import sharpener as mod

    calls = []

    class Fake:
        def __init__(self, label, steady_s, after_switch_s):
            self.backend_label, self.steady_s, self.after_switch_s = label, steady_s, after_switch_s

        def sharpen(self, frame):
            switched = bool(calls) and calls[-1] != self.backend_label
            calls.append(self.backend_label)
            _time.sleep(self.after_switch_s if switched else self.steady_s)

    fakes = {"onnx": Fake("onnx", 0.002, 0.1), "torch": Fake("torch", 0.03, 0.03)}
    monkeypatch.setattr(mod, "auto_candidates", lambda model, precision=None: [("onnx", "fp32"), ("torch", "fp32")])
    monkeypatch.setattr(mod, "load", lambda model, backend, **kw: fakes[backend])
    best = mod.fastest("student", size=(8, 8), frames=6)
    assert best.backend_label == "onnx"  # 2 ms a frame in a stream, though 100 ms right after another backend
    assert best.timings["onnx"] < 30 <= best.timings["torch"]
    # every timed frame followed a frame of the same backend
    assert calls.count("onnx") == calls.count("torch") >= 6
    # a slow model on large frames: one timed turn each once the turns have taken max_seconds
    calls.clear()
    mod.fastest("student", size=(8, 8), frames=6, max_seconds=0.0)
    assert calls.count("onnx") == calls.count("torch") == 6  # a warm-up turn and one timed turn of 1 + 2 frames


def test_sharpen_times_auto_on_the_size_of_its_first_image(tmp_path, monkeypatch):
    """`sharpen` runs the fastest backend (`auto`), timed on frames of its input's size: a small image costs
    little to time; a large one is timed at no more than 1280x720's pixels."""
    from sharpkd.inference import files, sharpener

    sizes = []
    real = sharpener.fastest
    monkeypatch.setattr(sharpener, "fastest", lambda model, size, **kw: sizes.append(size) or real(model, size, **kw))
    Image.fromarray(_photo(21, 34)).save(tmp_path / "a.png")
    assert cli.main(["sharpen", str(tmp_path / "a.png"), "-o", str(tmp_path / "o")]) == 0
    assert sizes == [(34, 21)]
    (tmp_path / "big.png").write_bytes(b"")  # unreadable: skipped
    Image.new("RGB", (4000, 3000)).save(tmp_path / "huge.png")
    jobs = files.plan([tmp_path / "big.png", tmp_path / "huge.png"], tmp_path / "o2")
    w, h = files.timing_size(jobs)
    assert w * h <= 1280 * 720 and abs(w / h - 4 / 3) < 0.01
