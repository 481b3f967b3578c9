"""The one thermal mapping, from any stored thermal frame to the 8-bit image the network sees.

Training, calibration, benchmarks, `ckd synth`, evaluation and the run-time loop all call `thermal_to_8bit`, so the
network sees the same pixels for the same input everywhere. What a frame is comes from the data (`thermal_kind`):

- 16-bit radiometric counts: per-frame percentiles, `low_pct`/`high_pct` = 1st and 99th of a fixed subsampled
  grid (every 4th pixel in each direction from (2, 2); about 20 k samples at 640x512), found with `np.partition`
  (exact order statistics, nearest rank), then the linear stretch `agc`: `round((v - lo) * 255 / (hi - lo))`
  clipped to 0..255, with `hi` at least `lo + 1`, as a 65536-entry lookup table (well under 1 ms at 640x512).
  Stateless: a frame maps the same whether read in order, at random or alone.
- 8-bit grey: as is. 8-bit grey saved as 3 channels (VTUAV, LLVIP JPEGs): channel 0. False colour: luminance.
"""

from __future__ import annotations

import numpy as np

_STEP = 4  # subsampling stride for the percentile estimate
_LEVELS = np.arange(65536, dtype=np.float32)


def _lut(lo: float, hi: float) -> np.ndarray:
    hi = max(float(hi), float(lo) + 1.0)
    v = (_LEVELS - np.float32(lo)) * np.float32(255.0 / (hi - float(lo)))
    np.clip(v, 0.0, 255.0, out=v)
    v += 0.5
    return v.astype(np.uint8)


def agc(frame16: np.ndarray, lo: float, hi: float, out: np.ndarray | None = None) -> np.ndarray:
    """Linear stretch of uint16 counts: `lo` -> 0, `hi` -> 255, clipped outside; returns uint8 of the same shape."""
    frame16 = np.asarray(frame16)
    if frame16.dtype != np.uint16:
        raise TypeError(f"agc expects uint16 counts, got {frame16.dtype}")
    if out is None:
        out = np.empty(frame16.shape, dtype=np.uint8)
    return np.take(_lut(lo, hi), frame16, out=out)


def percentiles(frame16: np.ndarray, low_pct: float, high_pct: float) -> tuple[float, float]:
    """Nearest-rank `low_pct`/`high_pct` percentiles of the subsampled grid (the AGC's estimate)."""
    sample = np.asarray(frame16)[_STEP // 2 :: _STEP, _STEP // 2 :: _STEP].ravel()
    if sample.size == 0:
        sample = np.asarray(frame16).ravel()
    n = sample.size
    k_lo = int(round(low_pct / 100.0 * (n - 1)))
    k_hi = int(round(high_pct / 100.0 * (n - 1)))
    part = np.partition(sample, [k_lo, k_hi])
    return float(part[k_lo]), float(part[k_hi])


GRAY16, GRAY8, GRAY8_AS_RGB, FALSE_COLOUR = "gray16", "gray8", "gray8-as-3-channel", "false-colour"
_KIND_TEXT = {
    GRAY16: "16-bit radiometric counts (per-frame 1-99 % percentile stretch to 8 bits)",
    GRAY8: "8-bit grey (used as is)",
    GRAY8_AS_RGB: "8-bit grey stored as 3 equal channels (first channel used)",
    FALSE_COLOUR: "3-channel false colour (converted to luminance; a palette loses radiometry)",
}


def thermal_kind(frame: np.ndarray) -> str:
    """What a stored thermal frame is, read from the data: 16-bit, 8-bit grey, 8-bit grey saved as 3 channels
    (JPEG chroma rounding tolerated: channels within 2 grey levels on a pixel grid), or false colour."""
    frame = np.asarray(frame)
    if frame.dtype == np.uint16 and frame.ndim == 2:
        return GRAY16
    if frame.dtype == np.uint8 and frame.ndim == 2:
        return GRAY8
    if frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3:
        grid = frame[_STEP // 2 :: _STEP, _STEP // 2 :: _STEP].astype(np.int16)
        spread = np.abs(grid[..., 1:] - grid[..., :1]).max() if grid.size else 0
        return GRAY8_AS_RGB if spread <= 2 else FALSE_COLOUR
    raise TypeError(f"unsupported thermal frame: dtype {frame.dtype}, shape {frame.shape}")


def describe_thermal(kind: str) -> str:
    """One line naming a `thermal_kind` and what the mapping does with it."""
    return f"thermal: {_KIND_TEXT[kind]}"


def thermal_to_8bit(frame: np.ndarray, out: np.ndarray | None = None, kind: str | None = None) -> np.ndarray:
    """Any stored thermal frame -> HxW uint8, the pixels the network sees (training, calibration, run time).

    16-bit: per-frame nearest-rank 1st/99th percentiles of the subsampled grid, stretched by `agc` (stateless,
    so any frame maps the same whether read in order or at random). 8-bit grey: the frame itself (or copied
    into `out`). Grey saved as 3 channels: channel 0. False colour: luminance (`cv2.COLOR_RGB2GRAY`).
    """
    kind = kind or thermal_kind(frame)
    if kind == GRAY16:
        return agc(frame, *percentiles(frame, 1.0, 99.0), out=out)
    if kind == GRAY8:
        if out is None:
            return frame
        np.copyto(out, frame)
        return out
    if kind == GRAY8_AS_RGB:
        if out is None:
            out = np.empty(frame.shape[:2], np.uint8)
        np.copyto(out, frame[..., 0])
        return out
    if kind == FALSE_COLOUR:
        import cv2

        return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY, dst=out)
    raise ValueError(f"unknown thermal kind {kind!r}")
