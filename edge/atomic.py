"""Atomic file output: write beside the target, then `os.replace`, so no reader sees half a file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path`, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_bytes_atomic(path: str | Path, data: bytes, mode: int = 0o644) -> None:
    """Write `data` to `path` atomically with permission bits `mode` (mkstemp would leave 0600)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
        tmp.chmod(mode)


def write_text_atomic(path: str | Path, text: str, mode: int = 0o644) -> None:
    write_bytes_atomic(path, text.encode("utf-8"), mode)
