"""Numbered image frames in a folder (a recorded clip, a dataset's `visible/`, `infrared/`, `rgb/`, `ir/`).

A frame's index is the number in its file name (`v000017.jpg` -> 17), never its position in the listing, so a
missing, empty or corrupt frame costs that frame only: the sensor's other frames keep their numbers and still
pair with the other sensor's frames of the same number. Frames are read as stored, by the dataset readers'
`ckd.data.sequence.read_frame` (RGB as RGB; thermal unchanged: 16-bit PNG/TIFF stay 16-bit, grey stays grey,
3-channel grey stays 3 channels), so the run-time loop recognises what the thermal frames are from the data. The
first readable frame fixes the clip's format and size; a later frame that differs is refused like a corrupt one.

`init_box()` is the first ground-truth box when the folder sits in a benchmark sequence (`<seq>/visible/` with
`<seq>/init.txt` (LasHeR), `<seq>/rgb/` with `<seq>/rgb.txt` (VTUAV), ...), so such a clip needs no `--init`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ckd.data.clip import FrameError
from ckd.data.sequence import IMAGE_SUFFIXES, frame_number, read_frame
from ckd.errors import CKDError

_FORMATS = {(np.dtype(np.uint8), 3): "RGB", (np.dtype(np.uint8), 2): "GRAY8", (np.dtype(np.uint16), 2): "GRAY16_LE"}
# folder name of a sensor -> ground-truth files beside it, first present wins (see ckd.data.readers.LAYOUTS)
_GT_BESIDE = {
    "visible": ("init.txt", "visible.txt", "groundtruth_rect.txt"),
    "rgb": ("rgb.txt",),
    "v": ("init.txt",),
}


class FrameProblem(CKDError):
    """One frame of one sensor cannot be used; `reason` is missing, empty, corrupt or mismatched."""

    def __init__(self, index: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.index, self.reason = index, reason


def _listing(location: Path) -> tuple[Path, dict[int, Path]]:
    """(folder, frame number -> file) of a folder or a printf pattern such as `/clip/v%06d.jpg`."""
    folder, pattern = (location, None) if location.is_dir() else (location.parent, location.name)
    if pattern is not None and "%" not in pattern:
        raise CKDError(f"{location} does not exist")
    if not folder.is_dir():
        raise CKDError(f"{folder} is not a folder")
    regex = None
    if pattern is not None:
        parts = re.split(r"%0?\d*d", pattern)
        regex = re.compile(r"\d+".join(re.escape(p) for p in parts) + r"$")
    frames: dict[int, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() not in IMAGE_SUFFIXES or p.name.startswith(".") or (regex and not regex.match(p.name)):
            continue
        k = frame_number(p)
        if k is None:
            continue
        if k in frames:
            raise CKDError(f"{folder}: {frames[k].name} and {p.name} both claim frame number {k}")
        frames[k] = p
    if not frames:
        raise CKDError(f"{location}: no numbered image frames ({', '.join(IMAGE_SUFFIXES)})")
    return folder, frames


@dataclass(frozen=True)
class FrameFormat:
    fmt: str  # GStreamer raw format: RGB, GRAY8, GRAY16_LE
    width: int
    height: int


class FolderFrames:
    """The numbered frames of one sensor's folder, read on demand (see the module docstring)."""

    def __init__(self, location: str | Path, role: str) -> None:
        self.role = role
        self.folder, self.files = _listing(Path(location))
        self.first, self.last = min(self.files), max(self.files)
        self.format = self._probe()

    def _probe(self) -> FrameFormat:
        problems = []
        for i in sorted(self.files):
            try:
                image = read_frame(self.files[i], self.role)
            except FrameError as exc:
                problems.append(str(exc))
                continue
            fmt = _FORMATS.get((image.dtype, image.ndim))
            if fmt is None:
                raise CKDError(f"{self.files[i]}: unsupported frame ({image.dtype}, {image.ndim} dimensions)")
            return FrameFormat(fmt, image.shape[1], image.shape[0])
        raise CKDError(f"{self.folder}: no readable frame ({problems[0]})")

    def __len__(self) -> int:
        return self.last - self.first + 1

    def name(self, index: int) -> str:
        """The file of frame `index`, for messages."""
        path = self.files.get(index)
        return str(path) if path is not None else f"{self.folder}/(no file numbered {index})"

    def read(self, index: int) -> np.ndarray:
        """Frame `index` as stored; FrameProblem (missing, empty, corrupt, mismatched) naming file and frame."""
        path = self.files.get(index)
        if path is None:
            message = f"{self.role} frame {index}: no file numbered {index} in {self.folder}"
            raise FrameProblem(index, "missing", message)
        try:
            image = read_frame(path, self.role)
        except FrameError as exc:
            raise FrameProblem(index, exc.reason, f"{self.role} frame {index}: {exc}") from None
        f = self.format
        if _FORMATS.get((image.dtype, image.ndim)) != f.fmt or image.shape[:2] != (f.height, f.width):
            raise FrameProblem(
                index,
                "mismatched",
                f"{self.role} frame {index}: {path} is {image.shape[1]}x{image.shape[0]} {image.dtype}, "
                f"the clip's frames are {f.width}x{f.height} {f.fmt}",
            )
        return image

    def init_box(self) -> tuple[tuple[float, float, float, float], str] | None:
        """(first ground-truth box, 0-based x, y, w, h; the file it came from) when the folder is in a sequence."""
        from ckd.data.boxes import read_boxes, to_zero_based

        for name in _GT_BESIDE.get(self.folder.name.lower(), ()):
            gt = self.folder.parent / name
            if gt.is_file():
                try:
                    box = to_zero_based(read_boxes(gt)[:1])
                except CKDError:
                    return None
                if len(box) and np.isfinite(box[0]).all() and box[0, 2] > 0 and box[0, 3] > 0:
                    return tuple(float(v) for v in box[0]), str(gt)
        return None
