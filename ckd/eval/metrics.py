"""Per-frame errors and threshold curves, vectorised, in the conventions of the MATLAB toolkits.

Boxes are N x 4 arrays of x, y, w, h. Every toolkit measures overlap with `calcRectInt.m`, which treats a box as
the inclusive pixel range x .. x+w-1 (so the intersection gets +1) while the areas stay w*h: no +1 on w or h.
"""

from __future__ import annotations

import numpy as np


def matlab_range(start: float, step: float, stop: float) -> np.ndarray:
    """MATLAB's `start:step:stop`, bit for bit: the first half counts up from start, the second down from stop.

    This matters when an IoU lands exactly on a threshold such as 0.55 (`0:0.05:1` has 1-9*0.05, not 11*0.05).
    """
    n = int(np.floor((stop - start) / step + 1e-10))
    k = np.arange(n + 1, dtype=np.float64)
    half = n // 2
    out = start + k * step
    out[half + 1 :] = stop - (n - k[half + 1 :]) * step
    if n % 2 == 0:
        out[half] = (start + stop) / 2 if n else start
    return out


def centers(boxes: np.ndarray) -> np.ndarray:
    """Box centres x + w/2, y + h/2.

    LasHeR's `calcSeqErrRobust.m` uses x + (w-1)/2 and the GTOT/RGBT234/VTUAV scripts x + w/2; both give the same
    distances, because only differences of centres (and, for NPR, ratios of those to the truth's w, h) are used.
    """
    return boxes[:, :2] + boxes[:, 2:4] / 2.0


def center_error(boxes: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Euclidean distance between the centres of `boxes` and `gt`, row by row."""
    return np.hypot(*(centers(boxes) - centers(gt)).T)


def normalized_center_error(boxes: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Centre distance after dividing the x offset by the truth's width and the y offset by its height (NPR)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        d = (centers(boxes) - centers(gt)) / gt[:, 2:4]
    return np.hypot(*d.T)


def overlap(boxes: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU as `calcRectInt.m`: inclusive pixel ranges for the intersection, w*h for the areas."""
    lo = np.maximum(boxes[:, :2], gt[:, :2])
    hi = np.minimum(boxes[:, :2] + boxes[:, 2:4], gt[:, :2] + gt[:, 2:4])  # (x+w-1) + 1
    inter = np.prod(np.maximum(0.0, hi - lo), axis=1)
    union = np.prod(boxes[:, 2:4], axis=1) + np.prod(gt[:, 2:4], axis=1) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / union


def count_at_most(values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """How many values are <= each threshold (NaN never counts)."""
    return (values[:, None] <= thresholds[None, :]).sum(axis=0)


def count_below(values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """How many values are < each threshold (NaN never counts)."""
    return (values[:, None] < thresholds[None, :]).sum(axis=0)


def count_above(values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """How many values are > each threshold (NaN never counts)."""
    return (values[:, None] > thresholds[None, :]).sum(axis=0)


def trapezoid_area(x: np.ndarray, y: np.ndarray) -> float:
    """Area under y(x) by the trapezoid rule, as MATLAB `trapz` (used by the GTOT toolkit's `auc.m`)."""
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2.0)
