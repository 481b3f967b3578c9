"""The tracker state machine: official crop geometry, Hann window, decoding, clipping and bad input."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from ckd.errors import CKDError
from ckd.model.config import preset
from ckd.model.network import CKDNet
from ckd.track.crop import crop_into, normalize_into
from ckd.track.torch_backend import TorchBackend
from ckd.track.tracker import Tracker, clip_box, hann2d


def official_sample_target(im: np.ndarray, box, factor: float, size: int) -> np.ndarray:
    """The release's crop written out literally (slice, copyMakeBorder, cv2.resize) as the reference."""
    x, y, w, h = box
    side = math.ceil(math.sqrt(w * h) * factor)
    x1 = round(x + 0.5 * w - side * 0.5)
    y1 = round(y + 0.5 * h - side * 0.5)
    x2, y2 = x1 + side, y1 + side
    x1p, y1p = max(0, -x1), max(0, -y1)
    x2p, y2p = max(x2 - im.shape[1] + 1, 0), max(y2 - im.shape[0] + 1, 0)
    crop = im[y1 + y1p : y2 - y2p, x1 + x1p : x2 - x2p]
    crop = cv2.copyMakeBorder(crop, y1p, y2p, x1p, x2p, cv2.BORDER_CONSTANT)
    return cv2.resize(crop, (size, size))


@pytest.mark.parametrize(
    "box", [(100, 80, 40, 30), (0, 0, 50, 60), (290, 200, 30, 40), (10.3, 5.7, 77.1, 20.2), (150, 100, 200, 150)]
)
def test_crop_matches_official_sample_target(box):
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8), (5, 5), 2)
    out = np.empty((128, 128, 3), np.uint8)
    resize = crop_into(img, np.array(box, float), 4.0, out)
    ref = official_sample_target(img, box, 4.0, 128)
    assert resize == pytest.approx(128 / math.ceil(math.sqrt(box[2] * box[3]) * 4.0))
    diff = np.abs(out.astype(int) - ref.astype(int))
    assert diff.max() <= 1  # same geometry and padding; bilinear rounding may differ by one grey level
    assert diff.mean() < 0.2


def test_normalisation_is_imagenet_on_both_modalities():
    crop = np.full((4, 4, 3), 255, np.uint8)
    out = np.empty((1, 3, 4, 4), np.float32)
    normalize_into(crop, out)
    np.testing.assert_allclose(
        out[0, :, 0, 0], (1 - np.array([0.485, 0.456, 0.406])) / [0.229, 0.224, 0.225], rtol=1e-6
    )
    gray = np.zeros((4, 4), np.uint8)
    normalize_into(gray, out)  # thermal as 3 channels
    np.testing.assert_allclose(out[0, :, 0, 0], -np.array([0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225], rtol=1e-6)


def test_hann_window_and_clip_box():
    w = hann2d(16)
    assert w.shape == (16, 16)
    k = np.arange(1, 17)
    np.testing.assert_allclose(
        w[7], 0.5 * (1 - np.cos(2 * np.pi * 8 / 17)) * 0.5 * (1 - np.cos(2 * np.pi * k / 17)), rtol=1e-6
    )
    assert w.argmax() in (7 * 16 + 7, 7 * 16 + 8, 8 * 16 + 7, 8 * 16 + 8)
    np.testing.assert_allclose(clip_box(np.array([-20.0, 5, 50, 40]), 100, 200), [0, 5, 30, 40])
    np.testing.assert_allclose(clip_box(np.array([195.0, 98, 50, 40]), 100, 200), [190, 90, 10, 10])


@pytest.fixture(scope="module")
def tracker() -> Tracker:
    torch.manual_seed(0)
    return Tracker(TorchBackend(CKDNet(preset("nano"))))


def test_tracker_runs_and_reports_timing(tracker):
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    tir = rng.integers(0, 255, (120, 160), dtype=np.uint8)
    tracker.init(rgb, tir, [60, 40, 20, 16])
    inputs = tracker.backend.input_buffers()
    template = inputs["template_rgb"].copy()
    for _ in range(3):
        box, score = tracker.update(rgb, tir)
        assert box.shape == (4,) and np.isfinite(box).all()
        assert 0 <= box[0] <= 150 and 0 <= box[1] <= 110 and box[2] >= 10 and box[3] >= 10
        assert 0.0 < score < 1.0
        assert set(tracker.last_timing) >= {"preprocess_ms", "model_ms", "decode_ms"}
    assert np.array_equal(template, inputs["template_rgb"])  # template fixed after init
    assert tracker.backend.input_buffers() is inputs  # crops go straight into the backend's buffers


def test_tracker_decodes_the_windowed_peak():
    """A backend whose score map peaks off-centre: the box moves there, mapped back to the image."""

    class Peak:
        name, template_size, search_size, keep_ratios = "peak", 64, 128, (1.0,)

        def __init__(self):
            self.buf = {
                k: np.zeros(s, np.float32)
                for k, s in {
                    "template_rgb": (1, 3, 64, 64),
                    "template_tir": (1, 3, 64, 64),
                    "search_rgb": (1, 3, 128, 128),
                    "search_tir": (1, 3, 128, 128),
                }.items()
            }

        def input_buffers(self):
            return self.buf

        def run(self, inputs, keep_ratio=None):
            score = np.full((1, 1, 8, 8), 0.1, np.float32)
            score[0, 0, 5, 6] = 0.9
            size = np.full((1, 2, 8, 8), 0.25, np.float32)
            offset = np.full((1, 2, 8, 8), 0.5, np.float32)
            return {"score_map": score, "size_map": size, "offset_map": offset, "pred_boxes": np.zeros((1, 1, 4))}

    tr = Tracker(Peak())
    img = np.zeros((400, 400, 3), np.uint8)
    tr.init(img, img, [180, 180, 40, 40])  # search crop side 160 px centred at (200, 200)
    box, score = tr.update(img, img)
    assert score == pytest.approx(0.9)
    # centre = (6.5/8, 5.5/8) of the 160 px crop starting at 120; size 0.25*160 = 40
    np.testing.assert_allclose(box, [120 + 6.5 / 8 * 160 - 20, 120 + 5.5 / 8 * 160 - 20, 40, 40], atol=1e-6)


def test_bad_input_is_explained(tracker):
    rgb = np.zeros((120, 160, 3), np.uint8)
    with pytest.raises(CKDError, match="differ in size"):
        tracker.init(rgb, np.zeros((100, 160), np.uint8), [10, 10, 20, 20])
    with pytest.raises(CKDError, match="empty"):
        tracker.init(rgb, rgb, [10, 10, 0, 20])
    with pytest.raises(CKDError, match="outside"):
        tracker.init(rgb, rgb, [500, 10, 20, 20])
    tracker.init(rgb, rgb, [60, 40, 20, 16])
    nan = np.full((120, 160, 3), np.nan, np.float32)
    before = tracker.state.copy()
    box, score = tracker.update(nan, nan)  # documented recovery: keep the box, score 0
    assert score == 0.0 and np.array_equal(box, before) and tracker.last_timing["recovered"]
