"""One RGB-thermal sequence on disk: frame paths in order plus ground truth in kit convention."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ckd.errors import CKDError


def read_image_rgb(path: Path) -> np.ndarray:
    """Read an image file as HxWx3 uint8 in RGB order (grayscale files are replicated to 3 channels)."""
    import cv2

    try:
        data = np.fromfile(path, dtype=np.uint8)  # also works for names cv2.imread cannot open
    except OSError as exc:
        raise CKDError(f"cannot read {path}: {exc.strerror or exc}") from None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise CKDError(f"{path} is not a readable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


@dataclass
class Sequence:
    """One RGBT sequence.

    `gt` is N x 4 float64 x, y, w, h in 0-based pixels with NaN rows where the target is absent or the frame is
    not annotated; for RGBT234 it is the visible ground truth and `gt_tir` the infrared one.
    """

    name: str
    rgb_frames: list[Path]
    tir_frames: list[Path]
    gt: np.ndarray
    gt_tir: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.rgb_frames)

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Frame pair `i` as (rgb, tir), both HxWx3 uint8 in RGB channel order."""
        return read_image_rgb(self.rgb_frames[i]), read_image_rgb(self.tir_frames[i])
