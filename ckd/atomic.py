"""Atomic file output for the whole kit: write beside the target, then `os.replace`.

No reader ever sees half a file, an error leaves no temp file behind, and the result gets the usual
permissions (0666 minus the umask) rather than `mkstemp`'s 0600.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_UMASK = os.umask(0)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK


@contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp", mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path` (ending in `suffix`, for writers that pick a format by
    extension); on success it gets permission bits `mode` (default 0666 minus the umask) and replaces
    `path`, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, FILE_MODE if mode is None else mode)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_bytes_atomic(path: str | Path, data: bytes, mode: int | None = None) -> None:
    """Write `data` to `path` atomically (permission bits `mode`, default 0666 minus the umask)."""
    with atomic_path(path, mode=mode) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | Path, text: str, mode: int | None = None) -> None:
    write_bytes_atomic(path, text.encode("utf-8"), mode)


def write_json_atomic(path: str | Path, doc: dict) -> Path:
    write_text_atomic(path, json.dumps(doc, indent=2) + "\n")
    return Path(path)
