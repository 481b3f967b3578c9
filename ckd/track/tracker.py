"""The one tracker state machine (crop, normalise, run, Hann window, decode, clip) for every backend.

OpenCV-style API: `init(rgb, tir, box)`, `update(rgb, tir) -> (box, score)`. Frames are HxWx3 uint8 in RGB
order (thermal may also be HxW uint8 and is replicated to 3 channels); boxes are x, y, w, h in 0-based pixels.
The template is fixed after init (official test-time behaviour). Crops are written straight into the
backend's preallocated input buffers: no allocation per frame in steady state.

Recovery: a frame with non-finite values (float input) or a non-finite network output keeps the previous
box and reports score 0.0 (`last_timing["recovered"]` is True for that frame).
"""

from __future__ import annotations

import time

import numpy as np

from ckd.errors import CKDError
from ckd.track.backend import Backend
from ckd.track.crop import crop_into, normalize_into


def hann2d(size: int) -> np.ndarray:
    """OSTrack's centred 2-D Hann window: outer product of 0.5 * (1 - cos(2*pi*k / (size + 1))), k = 1..size."""
    w = 0.5 * (1.0 - np.cos(2.0 * np.pi / (size + 1) * np.arange(1, size + 1)))
    return np.outer(w, w).astype(np.float32)


def clip_box(box: np.ndarray, height: int, width: int, margin: int = 10) -> np.ndarray:
    """Official `clip_box`: keep the box inside the image with at least `margin` pixels of extent."""
    x1, y1, w, h = box
    x2, y2 = x1 + w, y1 + h
    x1 = min(max(0.0, x1), width - margin)
    x2 = min(max(float(margin), x2), width)
    y1 = min(max(0.0, y1), height - margin)
    y2 = min(max(float(margin), y2), height)
    return np.array([x1, y1, max(margin, x2 - x1), max(margin, y2 - y1)], dtype=np.float64)


def _check_pair(rgb: np.ndarray, tir: np.ndarray) -> None:
    for name, im in (("rgb", rgb), ("thermal", tir)):
        if not isinstance(im, np.ndarray) or im.ndim not in (2, 3) or im.size == 0:
            raise CKDError(f"{name} frame must be a non-empty HxW or HxWx3 array")
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise CKDError(f"rgb frame must be HxWx3, got shape {rgb.shape}")
    if rgb.shape[:2] != tir.shape[:2]:
        raise CKDError(
            f"rgb frame {rgb.shape[1]}x{rgb.shape[0]} and thermal frame {tir.shape[1]}x{tir.shape[0]} differ in size; "
            "register or resize them first"
        )


def _as_uint8(im: np.ndarray) -> np.ndarray | None:
    """uint8 frames pass through; float frames are checked for NaN/inf (None) and converted."""
    if im.dtype == np.uint8:
        return im
    if not np.isfinite(im).all():
        return None
    return np.clip(im, 0, 255).astype(np.uint8)


class Tracker:
    """CKD single-object tracker over any `Backend`."""

    def __init__(self, backend: Backend, template_factor: float = 2.0, search_factor: float = 4.0) -> None:
        self.backend = backend
        self.template_factor = template_factor
        self.search_factor = search_factor
        self.inputs = backend.input_buffers()
        t, s = backend.template_size, backend.search_size
        self._crops = {
            "template": (np.empty((t, t, 3), np.uint8), np.empty((t, t), np.uint8)),
            "search": (np.empty((s, s, 3), np.uint8), np.empty((s, s), np.uint8)),
        }
        self._window: np.ndarray | None = None
        self.state: np.ndarray | None = None
        self.score = 0.0
        self.last_timing: dict[str, float | bool] = {}

    def _write(self, kind: str, rgb: np.ndarray, tir: np.ndarray, box: np.ndarray, factor: float) -> float:
        rgb_buf, gray_buf = self._crops[kind]
        tir_buf = gray_buf if tir.ndim == 2 else rgb_buf
        resize = crop_into(rgb, box, factor, rgb_buf)
        normalize_into(rgb_buf, self.inputs[f"{kind}_rgb"])
        crop_into(tir, box, factor, tir_buf)
        normalize_into(tir_buf, self.inputs[f"{kind}_tir"])
        return resize

    def init(self, rgb: np.ndarray, tir: np.ndarray, box) -> None:
        """Set the target from the first frame pair and its x,y,w,h box (0-based pixels)."""
        _check_pair(rgb, tir)
        box = np.asarray(box, dtype=np.float64).reshape(-1)
        h, w = rgb.shape[:2]
        if box.size != 4 or not np.isfinite(box).all():
            raise CKDError(f"init box must be 4 finite numbers x,y,w,h, got {box.tolist()}")
        if box[2] <= 0 or box[3] <= 0:
            raise CKDError(f"init box {box.tolist()} is empty (w and h must be > 0)")
        if box[0] >= w or box[1] >= h or box[0] + box[2] <= 0 or box[1] + box[3] <= 0:
            raise CKDError(f"init box {box.tolist()} lies outside the {w}x{h} frame")
        rgb8, tir8 = _as_uint8(rgb), _as_uint8(tir)
        if rgb8 is None or tir8 is None:
            raise CKDError("init frame contains NaN or infinite values")
        self._write("template", rgb8, tir8, box, self.template_factor)
        self.state = box
        self.score = 1.0

    def update(self, rgb: np.ndarray, tir: np.ndarray, keep_ratio: float | None = None) -> tuple[np.ndarray, float]:
        """Track one frame pair; returns (x,y,w,h box, score in [0, 1])."""
        if self.state is None:
            raise CKDError("update() called before init()")
        _check_pair(rgb, tir)
        t0 = time.perf_counter()
        rgb8, tir8 = _as_uint8(rgb), _as_uint8(tir)
        if rgb8 is None or tir8 is None:
            return self._recover(t0)
        resize = self._write("search", rgb8, tir8, self.state, self.search_factor)
        t1 = time.perf_counter()
        out = self.backend.run(self.inputs, keep_ratio=keep_ratio)
        t2 = time.perf_counter()
        score_map, size_map, offset_map = out["score_map"][0, 0], out["size_map"][0], out["offset_map"][0]
        if not (np.isfinite(score_map).all() and np.isfinite(size_map).all() and np.isfinite(offset_map).all()):
            return self._recover(t0)
        f = score_map.shape[0]
        if self._window is None or self._window.shape[0] != f:
            self._window = hann2d(f)
        iy, ix = divmod(int(np.argmax(score_map * self._window)), f)
        s = self.backend.search_size / resize  # search crop side in image pixels
        cx = (ix + offset_map[0, iy, ix]) / f * s
        cy = (iy + offset_map[1, iy, ix]) / f * s
        bw, bh = size_map[0, iy, ix] * s, size_map[1, iy, ix] * s
        prev_cx = self.state[0] + 0.5 * self.state[2]
        prev_cy = self.state[1] + 0.5 * self.state[3]
        cx_img = cx + prev_cx - 0.5 * s
        cy_img = cy + prev_cy - 0.5 * s
        box = np.array([cx_img - 0.5 * bw, cy_img - 0.5 * bh, bw, bh], dtype=np.float64)
        self.state = clip_box(box, rgb.shape[0], rgb.shape[1], margin=10)
        self.score = float(score_map[iy, ix])
        t3 = time.perf_counter()
        self.last_timing = {
            "preprocess_ms": (t1 - t0) * 1e3,
            "model_ms": (t2 - t1) * 1e3,
            "decode_ms": (t3 - t2) * 1e3,
            "recovered": False,
        }
        return self.state.copy(), self.score

    def _recover(self, t0: float) -> tuple[np.ndarray, float]:
        self.score = 0.0
        ms = (time.perf_counter() - t0) * 1e3
        self.last_timing = {"preprocess_ms": ms, "model_ms": 0.0, "decode_ms": 0.0, "recovered": True}
        return self.state.copy(), 0.0
