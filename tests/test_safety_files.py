"""Files on disk: sharpen replaces no file it did not write, a dataset is replaced whole or not at all, a truncated
video is no success, an empty input folder is an error, and a killed run's temporary files are swept."""
from __future__ import annotations

import importlib
import json
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from sharpkd.cli import main
from sharpkd.data.datasets import find_pair_folders, paired_files
from sharpkd.errors import SharpkdError

from util import make_image_folder


def _png(path: Path, seed: int = 0, size: int = 24) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
    return path


def _errors(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


# ------------------------------------------------------------------- sharpen: no file of the user's replaced
def test_sharpen_replaces_no_file_it_did_not_write_in_this_run(tmp_path, weights, capsys):
    photo = _png(tmp_path / "a.jpg")
    theirs = _png(tmp_path / "a.png", seed=1)
    before = theirs.read_bytes()
    assert main(["sharpen", str(photo), "-o", str(tmp_path), "--model", str(weights)]) == 2
    [err] = _errors(capsys)
    assert err.startswith("sharpkd: error:") and str(theirs) in err and "--overwrite" in err
    assert theirs.read_bytes() == before
    # A second run into the folder of a first one: its outputs are files this run did not write.
    out = tmp_path / "out"
    assert main(["sharpen", str(photo), "-o", str(out), "--model", str(weights)]) == 0
    first = (out / "a.png").read_bytes()
    assert main(["sharpen", str(photo), "-o", str(out), "--model", str(weights)]) == 2
    assert "exists" in _errors(capsys)[-1] and (out / "a.png").read_bytes() == first
    # Two inputs of one run that map to one output name: refused, even with --overwrite.
    other = _png(tmp_path / "b" / "a.png", seed=2)
    assert main(["sharpen", str(photo), str(other), "-o", str(tmp_path / "two"), "--model", str(weights),
                 "--overwrite"]) == 2
    assert "would both be written" in _errors(capsys)[-1] and not (tmp_path / "two").exists()
    # Asked for, the file is replaced.
    assert main(["sharpen", str(photo), "-o", str(tmp_path), "--model", str(weights), "--overwrite"]) == 0
    assert theirs.read_bytes() != before and Image.open(theirs).size == (24, 24)


# ------------------------------------------------------------ make-pairs: a dataset replaced whole or not at all
def test_make_pairs_replaces_a_dataset_only_when_asked_and_whole(tmp_path, capsys, monkeypatch):
    mp = importlib.import_module("sharpkd.data.make_pairs")  # the module (the package exports its function)
    src = make_image_folder(tmp_path / "src", n=10, size=24)
    out = tmp_path / "pairs"
    args = ["make-pairs", str(src), str(out), "--size", "16"]
    assert main([*args, "--count", "10"]) == 0
    old = _snapshot(out)
    assert main([*args, "--count", "10", "--seed", "1"]) == 2
    [err] = _errors(capsys)
    assert str(out) in err and "--overwrite" in err and _snapshot(out) == old
    # Interrupted half way through the new dataset: the old one is there as it was, no leftover beside it.
    real, calls = mp.write_image, []

    def write_then_stop(*a, **k):
        calls.append(1)
        if len(calls) == 7:
            raise KeyboardInterrupt
        real(*a, **k)

    monkeypatch.setattr(mp, "write_image", write_then_stop)
    assert main([*args, "--count", "10", "--seed", "1", "--overwrite"]) == 130
    assert _snapshot(out) == old and sorted(p.name for p in tmp_path.iterdir()) == ["pairs", "src"]
    monkeypatch.setattr(mp, "write_image", real)
    # Completed, the new dataset replaces the old one whole: no pair of the old one is left.
    assert main([*args, "--count", "5", "--seed", "1", "--overwrite"]) == 0
    assert json.loads((out / "manifest.json").read_text())["seed"] == 1
    assert len(list(out.rglob("*.png"))) == 10 and sorted(p.name for p in tmp_path.iterdir()) == ["pairs", "src"]
    # --overwrite replaces a dataset, not a folder of other files.
    (tmp_path / "mine").mkdir()
    _png(tmp_path / "mine" / "photo.png")
    assert main(["make-pairs", str(src), str(tmp_path / "mine"), "--count", "5", "--overwrite"]) == 2
    assert "photo.png" in _errors(capsys)[-1] and (tmp_path / "mine" / "photo.png").is_file()


def test_a_killed_build_is_swept_and_never_read_as_data(tmp_path):
    src = make_image_folder(tmp_path / "src", n=10, size=24)
    data = tmp_path / "data"
    left = data / f".pairs.{_dead_pid()}-0123abcd.tmp"  # what `kill -9` during make-pairs leaves
    _png(left / "train" / "blur" / "00000.png")
    _png(left / "train" / "sharp" / "00000.png")
    keep = data / ".pairs.notes.tmp"
    keep.mkdir()
    assert find_pair_folders(data) == []
    assert main(["make-pairs", str(src), str(data / "pairs"), "--count", "5", "--size", "16"]) == 0
    assert sorted(p.name for p in data.iterdir()) == [".pairs.notes.tmp", "pairs"]
    # Killed between the two renames of the swap: the dataset set aside is put back, and kept.
    (data / "pairs").rename(data / f".again.{_dead_pid()}-0123abcd.old")
    assert main(["make-pairs", str(src), str(data / "again"), "--count", "5", "--size", "16"]) == 2
    assert len(paired_files(data / "again", "train")) == 4 and sorted(p.name for p in data.iterdir()) == \
        [".pairs.notes.tmp", "again"]


def test_a_pairs_layout_without_its_manifest_is_refused(tmp_path, capsys):
    src = make_image_folder(tmp_path / "src", n=10, size=24)
    out = tmp_path / "pairs"
    assert main(["make-pairs", str(src), str(out), "--count", "5", "--size", "16"]) == 0
    manifest = (out / "manifest.json").read_text()
    _png(out / "train" / "blur" / "00099.png")  # a pair that the manifest does not list (a mixed-up dataset)
    _png(out / "train" / "sharp" / "00099.png")
    with pytest.raises(SharpkdError, match="manifest.json"):
        paired_files(out, "train")
    (out / "manifest.json").unlink()  # an interrupted make-pairs of an earlier version
    with pytest.raises(SharpkdError, match="no manifest.json"):
        paired_files(out, "val")
    assert main(["train-teacher", "--data", str(out), "--out", str(tmp_path / "run"), "--max-epochs", "1",
                 "--num-workers", "0"]) == 2
    [err] = _errors(capsys)
    assert "manifest.json" in err
    (out / "manifest.json").write_text(manifest)
    (out / "train" / "blur" / "00099.png").unlink()
    (out / "train" / "sharp" / "00099.png").unlink()
    assert len(paired_files(out, "train")) == 4


# ------------------------------------------------------------------------------ video: a stream that ends early
def test_a_truncated_video_is_an_error_and_leaves_no_output(tmp_path, weights, capsys):
    clip = tmp_path / "clip.mp4"
    with av.open(str(clip), "w", options={"movflags": "faststart"}) as c:  # the index first: it still opens
        vs = c.add_stream("libx264", rate=12)
        vs.width, vs.height, vs.pix_fmt = 48, 32, "yuv420p"
        for i in range(12):
            f = av.VideoFrame.from_ndarray(np.random.default_rng(i).integers(0, 256, (32, 48, 3), dtype=np.uint8),
                                           format="rgb24")
            f.pts, f.time_base = i, Fraction(1, 12)
            for p in vs.encode(f):
                c.mux(p)
        for p in vs.encode(None):
            c.mux(p)
    data = clip.read_bytes()
    clip.write_bytes(data[:len(data) * 85 // 100])
    out = tmp_path / "out.mp4"
    assert main(["video", str(clip), "-o", str(out), "--model", str(weights), "--backend", "torch"]) == 2
    err = _errors(capsys)[-1]  # after the progress bar
    assert err.startswith("sharpkd: error:") and "of the 12 frames" in err and str(out) in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


# --------------------------------------------------------------------- sharpen: an input folder with no image
@pytest.mark.parametrize("content", [None, "notes.txt"])
def test_sharpen_a_folder_without_images_is_an_error_before_the_model_loads(tmp_path, capsys, content):
    folder = tmp_path / "in"
    folder.mkdir()
    if content:
        (folder / content).write_text("not an image")
    missing = str(tmp_path / "none.safetensors")  # weights that would fail to load: the folder fails first
    assert main(["sharpen", str(folder), "-o", str(tmp_path / "out"), "--model", missing]) == 2
    [err] = _errors(capsys)
    assert err == f"sharpkd: error: {folder}: no image files in this folder"
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------- sharpen: a killed run's temporary files
def test_sharpen_sweeps_the_temporary_files_of_a_killed_run(tmp_path, weights):
    photos = make_image_folder(tmp_path / "photos", n=2, size=24)
    out = tmp_path / "out"
    dead = _dead_pid()
    stale = [out / f".img00.{dead}-0123abcd.tmp.png", out / f".img01.{dead}-89abcdef.tmp.png"]
    kept = [out / f".img00.{dead}-0123abcd.tmp.txt.keep", out / ".img00.tmp.png",  # not the pattern
            out / f".other.{dead}-0123abcd.tmp.png", out / ".img01.1-0123abcd.tmp.png"]  # another target, a live PID
    out.mkdir()
    stale[0].write_bytes(b"")
    stale[1].write_bytes(b"\x89PNG partial")
    for p in kept:
        p.write_bytes(b"user")
    assert main(["sharpen", str(photos), "-o", str(out), "--model", str(weights)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(["img00.png", "img01.png"] + [p.name for p in kept])
