"""Writing files so that none is ever half-written: write to a hidden temporary file beside the target, then
rename it into place (atomic on one file system). Every layer of the package writes its files through here."""
from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from .errors import SharpkdError

# the hidden names written beside a target STEM.SUFFIX: .STEM.PID-XXXXXXXX.tmpSUFFIX (.old: a folder being replaced)
TEMP_NAME = re.compile(r"\.(?P<stem>.+)\.(?P<pid>\d+)-[0-9a-f]{8}\.(?P<kind>tmp|old)(?P<tail>.*)")


def _temp(path: Path, tail: str, kind: str = "tmp") -> Path:
    return path.with_name(f".{path.stem}.{os.getpid()}-{secrets.token_hex(4)}.{kind}{tail}")


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path` for the caller to write; when the block ends normally it replaces
    `path`, and whatever ends it otherwise (an error, Ctrl-C, SIGTERM turned into an exception) removes it.

    The temporary name is hidden, unique to the process and the call, and ends with `suffix` (default: the
    target's own suffix), so writers that pick a format from the file name (Pillow, PyAV, matplotlib) still
    can. The file is created by the writer, so it gets the usual permissions (not mkstemp's 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp(path, path.suffix if suffix is None else suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a new hidden folder beside `path` for the caller to fill; when the block ends normally it takes
    `path`'s place (a folder there is replaced whole), and whatever ends it otherwise removes it, `path` untouched.
    The swap is two renames with SIGINT and SIGTERM held back between them."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, old = _temp(path, path.suffix), _temp(path, path.suffix, "old")
    tmp.mkdir()
    try:
        yield tmp
        with _signals_held():
            if path.exists():
                os.rename(path, old)
            os.rename(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block ends (where the system can hold signals back)."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def remove_stale_temps(targets: Iterable[str | os.PathLike]) -> list[Path]:
    """Remove what a killed process (SIGKILL, a power cut) left of its writes to `targets`: the temporary files
    and folders that `atomic_path` and `atomic_folder` name beside each target, where their process is gone. A
    folder that a kill caught between the two renames of its swap is put back. Returns what was removed."""
    wanted: dict[Path, set[tuple[str, str]]] = {}
    for t in map(Path, targets):
        wanted.setdefault(t.parent, set()).add((t.stem, t.suffix))
    removed = []
    for folder, names in wanted.items():
        for p in folder.iterdir() if folder.is_dir() else ():
            m = TEMP_NAME.fullmatch(p.name)
            if not m or (m["stem"], m["tail"]) not in names or psutil.pid_exists(int(m["pid"])):
                continue
            target = folder / (m["stem"] + m["tail"])
            if m["kind"] == "old" and not target.exists():
                os.rename(p, target)
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
            removed.append(p)
    return removed


def write_text(path: str | os.PathLike, text: str) -> None:
    """`Path.write_text`, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """`Path.write_bytes`, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def check_writable_file(path: str | os.PathLike, option: str) -> Path:
    """A file a command writes, checked before the work starts so that the work is not lost to its path: not a
    folder, and inside a folder that exists or can be made, and can be written."""
    path = Path(path)
    if path.is_dir() or str(path).endswith(("/", os.sep)):
        raise SharpkdError(f"{option} {path}: is a folder; give a file name in it")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise SharpkdError(f"{option} {path}: cannot make its folder, {parent} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise SharpkdError(f"{option} {path}: {parent} is not writable")
    return path
