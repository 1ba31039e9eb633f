"""Writing files so that none is ever half-written: write to a hidden temporary file beside the target, then
rename it into place (atomic on one file system). Every layer of the package writes its files through here."""
from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path` for the caller to write; when the block ends normally it replaces
    `path`, and whatever ends it otherwise (an error, Ctrl-C, SIGTERM turned into an exception) removes it.

    The temporary name is hidden, unique to the process and the call, and ends with `suffix` (default: the
    target's own suffix), so writers that pick a format from the file name (Pillow, PyAV, matplotlib) still
    can. The file is created by the writer, so it gets the usual permissions (not mkstemp's 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tail = path.suffix if suffix is None else suffix
    tmp = path.with_name(f".{path.stem}.{os.getpid()}-{secrets.token_hex(4)}.tmp{tail}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    """`Path.write_text`, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """`Path.write_bytes`, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
