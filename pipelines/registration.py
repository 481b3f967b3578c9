"""Thermal -> RGB registration: a homography saved as JSON, applied into a preallocated buffer.

RGB and thermal cameras differ in field of view and resolution. `ckd calibrate-rig` estimates the 3x3 homography
H mapping thermal pixels onto RGB pixels (from point pairs, or a heated checkerboard seen by both cameras) and
saves `{"homography": H, "rgb_size": [w, h], "tir_size": [w, h], "rms_px": e, "points": n}`. Without a file the
thermal frame is only resized to the RGB frame's size (with a warning: boxes drift where the views differ).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ckd.atomic import write_json_atomic
from ckd.errors import CKDError


@dataclass(frozen=True)
class RigCalibration:
    homography: np.ndarray  # 3x3, thermal pixel -> RGB pixel
    rgb_size: tuple[int, int]  # (width, height)
    tir_size: tuple[int, int]
    rms_px: float = float("nan")
    points: int = 0

    @classmethod
    def load(cls, path: str | Path) -> RigCalibration:
        path = Path(path)
        try:
            d = json.loads(path.read_text())
            h = np.asarray(d["homography"], dtype=np.float64)
            rgb, tir = tuple(int(v) for v in d["rgb_size"]), tuple(int(v) for v in d["tir_size"])
        except OSError as exc:
            raise CKDError(f"cannot read rig calibration {path}: {exc.strerror or exc}") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise CKDError(f"{path}: not a rig calibration (need homography, rgb_size, tir_size): {exc}") from None
        if h.shape != (3, 3) or not np.isfinite(h).all() or abs(np.linalg.det(h)) < 1e-12:
            raise CKDError(f"{path}: homography must be an invertible 3x3 matrix of finite numbers")
        if len(rgb) != 2 or len(tir) != 2 or min(rgb + tir) <= 0:
            raise CKDError(f"{path}: rgb_size and tir_size must be [width, height] > 0")
        return cls(h, rgb, tir, float(d.get("rms_px", float("nan"))), int(d.get("points", 0)))

    def save(self, path: str | Path) -> Path:
        """Write atomically (temp file, then rename)."""
        path = Path(path)
        write_json_atomic(
            path,
            {
                "homography": self.homography.tolist(),
                "rgb_size": list(self.rgb_size),
                "tir_size": list(self.tir_size),
                "rms_px": round(self.rms_px, 4),
                "points": self.points,
            },
        )
        return path


def estimate(tir_pts: np.ndarray, rgb_pts: np.ndarray) -> tuple[np.ndarray, float]:
    """Homography from >= 4 thermal/RGB point pairs (RANSAC when more than 4) and its RMS reprojection error."""
    tir_pts = np.asarray(tir_pts, dtype=np.float64).reshape(-1, 2)
    rgb_pts = np.asarray(rgb_pts, dtype=np.float64).reshape(-1, 2)
    if len(tir_pts) < 4 or len(tir_pts) != len(rgb_pts):
        raise CKDError(f"need at least 4 matching point pairs, got {len(tir_pts)} thermal / {len(rgb_pts)} RGB")
    method = cv2.RANSAC if len(tir_pts) > 4 else 0
    h, _ = cv2.findHomography(tir_pts, rgb_pts, method, 3.0)
    if h is None:
        raise CKDError("the point pairs do not determine a homography (collinear or repeated points?)")
    proj = cv2.perspectiveTransform(tir_pts.reshape(-1, 1, 2), h).reshape(-1, 2)
    rms = float(np.sqrt(np.mean(np.sum((proj - rgb_pts) ** 2, axis=1))))
    return h, rms


def checkerboard_points(image: np.ndarray, pattern: tuple[int, int]) -> np.ndarray | None:
    """Inner corners of a checkerboard (tries the inverted image too: a heated board can be dark-on-light)."""
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    if gray.dtype != np.uint8:
        gray = cv2.normalize(gray, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    for candidate in (gray, 255 - gray):
        ok, corners = cv2.findChessboardCorners(candidate, pattern)
        if ok:
            return corners.reshape(-1, 2).astype(np.float64)
    return None


class Registrar:
    """Maps each thermal frame onto the RGB frame geometry, writing into one preallocated buffer."""

    def __init__(self, rgb_size: tuple[int, int], calibration: RigCalibration | None = None) -> None:
        self.rgb_size = rgb_size
        self.calibration = calibration
        self.warning: str | None = None
        if calibration is None:
            self.warning = "no rig calibration (--rig): thermal frames are only resized to the RGB size"
        elif calibration.rgb_size != tuple(rgb_size):
            raise CKDError(
                f"rig calibration is for a {calibration.rgb_size[0]}x{calibration.rgb_size[1]} RGB camera, "
                f"but the RGB source delivers {rgb_size[0]}x{rgb_size[1]}"
            )
        w, h = rgb_size
        self.out = np.zeros((h, w), dtype=np.uint8)
        self.writes = 0  # full-frame writes (warps/resizes) so far; aligned frames pass through

    def __call__(self, tir8: np.ndarray) -> np.ndarray:
        """Registered thermal frame: the preallocated buffer (valid until the next call), or `tir8` if aligned."""
        w, h = self.rgb_size
        if self.calibration is None and tir8.shape[:2] == (h, w):
            return tir8  # already aligned: no copy
        self.writes += 1
        if self.calibration is not None:
            cv2.warpPerspective(tir8, self.calibration.homography, (w, h), dst=self.out, flags=cv2.INTER_LINEAR)
        else:
            cv2.resize(tir8, (w, h), dst=self.out, interpolation=cv2.INTER_LINEAR)
        return self.out
