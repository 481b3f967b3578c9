"""One RGB-thermal sequence on disk: a `Clip` whose frames pair by the number in their file names.

Frames are read as stored: RGB as HxWx3 uint8 in RGB order; thermal unchanged (`cv2.IMREAD_UNCHANGED`: 16-bit
PNG/TIFF stay 16-bit, grey stays HxW, 3-channel files become RGB order), so `Clip.load` can recognise what the
thermal frames are. A frame that is missing (no file with that number), empty (0 bytes) or corrupt (undecodable, or
a JPEG/PNG cut short: no end-of-image marker) raises `FrameError` naming the file, counted and reported by
`Clip.load`.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from ckd.data.clip import Clip, FrameError
from ckd.errors import CKDError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
_TAIL = 64  # bytes searched for the end-of-image marker
_log = logging.getLogger(__name__)


def frame_number(path: Path) -> int | None:
    """The frame number in a file name: the last run of digits in its stem (`v000012` -> 12, `00012i` -> 12)."""
    digits = re.findall(r"\d+", Path(path).stem)
    return int(digits[-1]) if digits else None


def _cut_short(data: np.ndarray) -> bool:
    """A JPEG without its EOI marker or a PNG without its IEND chunk near the end: the file was cut short."""
    head, tail = data[:8].tobytes(), data[-_TAIL:].tobytes()
    if head.startswith(b"\xff\xd8"):
        return b"\xff\xd9" not in tail
    if head.startswith(b"\x89PNG"):
        return b"IEND" not in tail
    return False


def read_frame(path: Path, sensor: str = "rgb") -> np.ndarray:
    """One stored frame: `rgb` as HxWx3 uint8 RGB, `thermal` as stored (see the module docstring).

    Raises `FrameError` (missing, empty or corrupt) naming the file.
    """
    import cv2

    try:
        data = np.fromfile(path, dtype=np.uint8)  # also works for names cv2.imread cannot open
    except OSError as exc:
        raise FrameError(f"cannot read {path}: {exc.strerror or exc}", sensor, "missing") from None
    if data.size == 0:
        raise FrameError(f"{path} is empty (0 bytes)", sensor, "empty")
    if _cut_short(data):
        raise FrameError(f"{path} is truncated (no end-of-image marker)", sensor, "corrupt")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR if sensor == "rgb" else cv2.IMREAD_UNCHANGED)
    if image is None:
        raise FrameError(f"{path} is not a readable image", sensor, "corrupt")
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]  # alpha is not part of the picture
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    elif image.ndim == 3:
        image = image[:, :, 0]
    return image


def number_frames(folder: Path) -> dict[int, Path]:
    """Image files in `folder` by frame number; files without a number are skipped with a notice, two files with
    the same number are an error."""
    frames: dict[int, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() not in IMAGE_SUFFIXES or p.name.startswith("."):
            continue
        k = frame_number(p)
        if k is None:
            _log.warning("%s: no frame number in the name, skipped", p)
        elif k in frames:
            raise CKDError(f"{folder}: {frames[k].name} and {p.name} both claim frame number {k}")
        else:
            frames[k] = p
    return frames


class Sequence(Clip):
    """One RGBT sequence: position i holds the frames numbered `first + i` (None where that number is missing).

    `gt` is N x 4 float64 x, y, w, h in 0-based pixels with NaN rows where the target is absent or the frame is
    not annotated; for RGBT234 it is the visible ground truth and `gt_tir` the infrared one.
    """

    def __init__(
        self,
        name: str,
        rgb_frames: list[Path | None],
        tir_frames: list[Path | None],
        gt: np.ndarray,
        gt_tir: np.ndarray | None = None,
        first: int = 0,
    ) -> None:
        if len(rgb_frames) != len(tir_frames):
            raise ValueError("rgb_frames and tir_frames must be aligned by frame number")
        super().__init__(name, len(rgb_frames), self._read_pair, gt=gt)
        self.rgb_frames, self.tir_frames, self.gt_tir, self.first = rgb_frames, tir_frames, gt_tir, first

    def _read_pair(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self._frame(i, "rgb", self.rgb_frames), self._frame(i, "thermal", self.tir_frames)

    def _frame(self, i: int, sensor: str, paths: list[Path | None]) -> np.ndarray:
        path = paths[i]
        if path is None:
            folder = next((p.parent.name for p in paths if p is not None), sensor)
            raise FrameError(f"{self.name}: {folder}/ has no frame number {self.first + i}", sensor, "missing")
        return read_frame(path, sensor)
