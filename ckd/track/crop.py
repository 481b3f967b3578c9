"""Official OSTrack crop (`sample_target`) written straight into preallocated buffers.

Geometry is the official one: side = ceil(sqrt(w*h) * factor) centred on the box (Python `round` of the
corner), zero padding outside the image, including the release's off-by-one that pads the last image
row/column when the crop reaches the right/bottom edge. Sampling is bilinear with cv2.resize's pixel
mapping, done by one cv2.warpAffine into the caller's buffer (no allocation per frame).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from ckd.errors import CKDError

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def crop_window(box: np.ndarray, factor: float) -> tuple[int, int, int]:
    """(x1, y1, side) of the square crop around an x,y,w,h box, as the official code computes it."""
    x, y, w, h = (float(v) for v in box)
    side = math.ceil(math.sqrt(w * h) * factor)
    if side < 1:
        raise CKDError(f"box {box.tolist()} is too small to crop")
    x1 = round(x + 0.5 * w - side * 0.5)
    y1 = round(y + 0.5 * h - side * 0.5)
    return x1, y1, side


def crop_into(image: np.ndarray, box: np.ndarray, factor: float, out: np.ndarray) -> float:
    """Crop `image` (HxWxC or HxW uint8) around `box` into `out` (SxSxC or SxS uint8); return resize factor S/side."""
    size = out.shape[0]
    x1, y1, side = crop_window(box, factor)
    h, w = image.shape[:2]
    # The release slices im[y1:y2 - pad] with pad = max(y2 - H + 1, 0): the last row/column is never
    # sampled once the crop reaches it. Restricting the source view reproduces that exactly.
    src = image[: h - 1 if y1 + side >= h else h, : w - 1 if x1 + side >= w else w]
    scale = side / size
    # cv2.resize maps dst pixel d to src (d + 0.5) * scale - 0.5, offset by the crop corner.
    m = np.array([[scale, 0.0, x1 + 0.5 * scale - 0.5], [0.0, scale, y1 + 0.5 * scale - 0.5]])
    cv2.warpAffine(
        src,
        m,
        (size, size),
        dst=out,
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    return size / side


def normalize_into(crop: np.ndarray, out: np.ndarray) -> None:
    """uint8 HxWx3 (or HxW, replicated to 3 channels) -> ImageNet-normalised float32 1x3xHxW, in place."""
    for c in range(3):
        channel = crop if crop.ndim == 2 else crop[:, :, c]
        np.multiply(channel, np.float32(1.0 / (255.0 * IMAGENET_STD[c])), out=out[0, c])
        out[0, c] -= np.float32(IMAGENET_MEAN[c] / IMAGENET_STD[c])
