"""The one path-safety rule for names the kit reads from a manifest, record or archive.

A listed name must be a plain file name inside its folder: no separator, not `.` or `..`, no control
character, no leading `-` (it would read as an option to a shell tool), and what it names, when it exists,
must be a regular file (not a symlink, FIFO, device or folder). Every reader goes through `file_in`.

Standard library only and Python 3.8 clean: the bundle verifier runs it with the device's system python3.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ckd.errors import CKDError

MAX_NAME_BYTES = 255


def plain_name(name: object, source: str) -> str:
    """`name` if it is a plain file name; else CKDError naming `source` (the file the name was read from)."""
    problem = None
    if not isinstance(name, str) or not name:
        problem = "is not a non-empty string"
    elif "/" in name or "\\" in name:
        problem = "contains a path separator"
    elif name in (".", ".."):
        problem = "names a folder"
    elif any(ord(c) < 32 or ord(c) == 127 for c in name):
        problem = "contains a control character"
    elif name.startswith("-"):
        problem = "starts with '-'"
    elif len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        problem = f"is longer than {MAX_NAME_BYTES} bytes"
    if problem:
        raise CKDError(f"{source}: file name {name!r} {problem}; only plain file names inside the folder are allowed")
    return name


def kind_of(mode: int) -> str:
    """A word for a file type from `st_mode` (for messages)."""
    for test, word in (
        (stat.S_ISREG, "regular file"),
        (stat.S_ISDIR, "folder"),
        (stat.S_ISLNK, "symlink"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    ):
        if test(mode):
            return word
    return "special file"


def file_in(directory: str | Path, name: object, source: str, must_exist: bool = True) -> Path:
    """`directory/name` for a name read from `source`, checked by the rule above (the entry itself is not followed).

    A missing entry is a CKDError unless `must_exist` is False (then the path is returned for the caller to write).
    """
    path = Path(directory) / plain_name(name, source)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        if must_exist:
            raise CKDError(f"{path}: listed in {source} but missing") from None
        return path
    if not stat.S_ISREG(mode):
        raise CKDError(f"{path}: listed in {source} but is a {kind_of(mode)}, not a regular file")
    return path
