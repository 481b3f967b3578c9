"""Box text files as the RGBT benchmarks ship them, and box conventions.

Files hold one box per line, separated by commas, tabs or spaces (mixed allowed), CRLF or LF line ends,
blank lines ignored. Inside the kit boxes are x, y, w, h in 0-based pixels; files are 1-based.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ckd.atomic import atomic_path
from ckd.errors import CKDError

_SPLIT = re.compile(r"[,\s]+")


def read_boxes(path: str | Path, columns: int = 4, *, strict: bool = True) -> np.ndarray:
    """Read an N x columns float64 array from a box file.

    Unparsable rows raise CKDError naming file and line when `strict`, else become NaN rows.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as exc:
        raise CKDError(f"cannot read {path}: {exc.strerror or exc}") from None
    rows: list[list[float]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        parts = [p for p in _SPLIT.split(line) if p]
        try:
            values = [float(p) for p in parts]
            if len(values) < columns:
                raise ValueError
        except ValueError:
            if strict:
                raise CKDError(f"{path}:{lineno}: expected {columns} numbers, got {line[:60]!r}") from None
            values = [float("nan")] * columns
        rows.append(values[:columns])
    return np.asarray(rows, dtype=np.float64).reshape(-1, columns)


def corners_to_xywh(corners: np.ndarray) -> np.ndarray:
    """x1, y1, x2, y2 -> x, y, w, h with w = x2 - x1 (GTOT convention)."""
    c = np.asarray(corners, dtype=np.float64)
    return np.stack([c[:, 0], c[:, 1], c[:, 2] - c[:, 0], c[:, 3] - c[:, 1]], axis=1)


def to_one_based(boxes: np.ndarray) -> np.ndarray:
    out = np.array(boxes, dtype=np.float64, copy=True)
    out[:, :2] += 1.0
    return out


def to_zero_based(boxes: np.ndarray) -> np.ndarray:
    out = np.array(boxes, dtype=np.float64, copy=True)
    out[:, :2] -= 1.0
    return out


def write_boxes(path: str | Path, boxes: np.ndarray, delimiter: str = ",", fmt: str = "%.4f") -> None:
    """Write boxes atomically (temp file in the same folder, then rename): never a partial file."""
    with atomic_path(path) as tmp:
        np.savetxt(tmp, np.asarray(boxes, dtype=np.float64).reshape(-1, 4), delimiter=delimiter, fmt=fmt)
