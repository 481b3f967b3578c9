"""One clip type and one thermal mapping: training, calibration and run time cut identical network inputs."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

import ckd.data.clip as clip_module
from calibration.sampler import Tap, sample_crops
from ckd.data.clip import Clip
from ckd.data.synthetic import SyntheticSequence, synthetic_clip
from ckd.distill.config import Augment
from ckd.distill.data import SampleSpec, make_sample
from ckd.model.config import preset
from ckd.model.network import CKDNet
from ckd.track.backend import INPUT_NAMES
from ckd.track.torch_backend import TorchBackend
from ckd.track.tracker import Tracker

NO_AUGMENT = Augment(
    search_center_jitter=0.0, search_scale_jitter=0.0, grayscale_prob=0.0, flip_prob=0.0, brightness=0.0
)


@pytest.fixture(scope="module")
def backend():
    torch.manual_seed(0)
    return TorchBackend(CKDNet(preset("nano")).eval(), threads=1)


def _gst_sample(role: str, image: np.ndarray, fmt: str):
    """The frame as the run-time loop receives it: a real GStreamer sample around the sensor's bytes."""
    from pipelines.source import Sample, gst

    Gst, _, _ = gst()
    h, w = image.shape[:2]
    caps = Gst.Caps.from_string(f"video/x-raw,format={fmt},width={w},height={h}")
    sample = Gst.Sample.new(Gst.Buffer.new_wrapped(np.ascontiguousarray(image).tobytes()), caps, None, None)
    return Sample(role, 0, 0.0, 0.0, sample, w, h, fmt, image.strides[0])


def runtime_inputs(backend, rgb: np.ndarray, thermal: np.ndarray, box: np.ndarray) -> dict[str, np.ndarray]:
    """What the network is fed at run time for this frame pair: the loop's own frame preparation
    (`pipelines.prep.FramePrep`: GStreamer buffers mapped, 16-bit thermal to 8 bits, registration), then the
    tracker's template crop at init and its search crop on the next frame."""
    from pipelines.feed import Job
    from pipelines.prep import FramePrep

    seen: dict[str, np.ndarray] = {}
    tracker = Tracker(Tap(backend, lambda inputs, _out: seen.update({k: inputs[k].copy() for k in INPUT_NAMES})))
    job = Job(0, rgb=_gst_sample("rgb", rgb, "RGB"), tir=_gst_sample("tir", thermal, "GRAY16_LE"))
    prep = FramePrep(None, log=lambda _line: None)
    with prep.frame(job) as frame:
        tracker.init(frame.rgb, frame.tir8, box)
    with prep.frame(job) as frame:
        tracker.update(frame.rgb, frame.tir8)
    assert prep.kind == "gray16"
    return seen


@pytest.mark.parametrize("seed", [3, 11])
def test_training_calibration_and_run_time_crops_are_identical(backend, seed):
    f = SyntheticSequence(seed, frames=1, width=320, height=240).frame(0)
    # A 2-frame clip of the same pair: the tracker's search crop on frame 1 is cut around the init box.
    clip = Clip("one pair", 2, lambda i: (f.rgb, f.thermal16), f.box, gt=np.stack([f.box, f.box]))
    train = make_sample([clip], 0, 0, SampleSpec(64, 128, augment=NO_AUGMENT))
    calib = sample_crops(backend, [clip], 1)
    run = runtime_inputs(backend, f.rgb, f.thermal16, f.box)
    for name in INPUT_NAMES:
        assert calib[name].shape == run[name].shape == (1, *train[name].shape)
        assert np.array_equal(train[name], run[name][0]), name
        assert np.array_equal(calib[name], run[name]), name
    assert run["search_tir"].std() > 0.1 and run["template_tir"].std() > 0.1  # real thermal content
    # the target sits in the middle of the search crop, as the sample's box says
    np.testing.assert_allclose(train["box"][:2] + train["box"][2:] / 2, 0.5, atol=1 / 128)


def test_synthetic_clip_is_random_access_with_hidden_frames_nan():
    clip = synthetic_clip(5, 40, 160, 128, crossover=True)
    late = clip.load(30)
    first = clip.load(0)
    np.testing.assert_array_equal(clip.load(30)[1], late[1])  # stateless mapping: order does not matter
    assert first[1].shape == (128, 160) and first[1].dtype == np.uint8
    assert np.isnan(clip.gt).all(axis=1).any() and np.isfinite(clip.gt[0]).all()
    np.testing.assert_array_equal(clip.init_box, clip.gt[0])
    memory = clip.in_memory(10)
    assert len(memory) == 10 and memory.gt.shape == (10, 4)
    np.testing.assert_array_equal(memory.load(9)[1], clip.load(9)[1])
    with pytest.raises(IndexError):
        clip.read(40)


def test_thermal_kind_is_announced_once_and_a_change_is_reported(monkeypatch, caplog):
    monkeypatch.setattr(clip_module, "_announced", set())
    grey = np.full((32, 32), 90, np.uint8)
    frames = [grey, np.full((32, 32), 9000, np.uint16), grey]
    clip = Clip("mixed", 3, lambda i: (np.zeros((32, 32, 3), np.uint8), frames[i]), np.array([8.0, 8, 8, 8]))
    with caplog.at_level(logging.INFO, logger="ckd"):
        for i in range(3):
            clip.load(i)
        Clip("again", 1, lambda i: (np.zeros((32, 32, 3), np.uint8), grey)).load(0)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "thermal: 8-bit grey (used as is) (detected in mixed)"
    assert "frame 1 changes kind: thermal: 16-bit" in lines[1] and "frame 2 changes kind" in lines[2]
    assert len(lines) == 3  # the second clip of an announced kind says nothing
