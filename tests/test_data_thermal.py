"""The one thermal mapping: exact stretch, percentile limits, stateless per frame, every stored kind recognised,
speed (timing)."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from ckd.data.thermal import (
    FALSE_COLOUR,
    GRAY8,
    GRAY8_AS_RGB,
    GRAY16,
    agc,
    describe_thermal,
    percentiles,
    thermal_kind,
    thermal_to_8bit,
)


def test_agc_linear_stretch_and_clipping():
    frame = np.array([[0, 1000, 1100, 1200, 65535]], dtype=np.uint16)
    out = agc(frame, 1000, 1200)
    np.testing.assert_array_equal(out, [[0, 0, 128, 255, 255]])  # 127.5 rounds up
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(agc(frame, 500, 500), [[0, 255, 255, 255, 255]])  # hi forced to lo + 1
    with pytest.raises(TypeError):
        agc(frame.astype(np.float32), 0, 1)


def test_16_bit_maps_by_its_own_percentiles_to_0_and_255():
    rng = np.random.default_rng(0)
    frame = rng.integers(20000, 30000, (512, 640)).astype(np.uint16)
    lo, hi = percentiles(frame, 1.0, 99.0)
    full_lo, full_hi = np.percentile(frame, [1.0, 99.0])
    assert abs(lo - full_lo) < 60 and abs(hi - full_hi) < 60  # subsampled estimate, 10000-count range
    assert thermal_kind(frame) == GRAY16
    out = thermal_to_8bit(frame)
    np.testing.assert_array_equal(out, agc(frame, lo, hi))
    assert out[frame <= lo].max() == 0 and out[frame >= hi].min() == 255
    assert 0.005 < (out == 0).mean() < 0.02 and 0.005 < (out == 255).mean() < 0.02
    assert 100 < out.mean() < 155


def test_stateless_a_frame_maps_the_same_alone_or_after_others():
    ramp = np.tile(np.arange(640, dtype=np.uint16) * 10 + 20000, (480, 1))
    alone = thermal_to_8bit(ramp + 1000)
    thermal_to_8bit(ramp)  # a colder frame before it changes nothing
    np.testing.assert_array_equal(thermal_to_8bit(ramp + 1000), alone)
    np.testing.assert_array_equal(alone, thermal_to_8bit(ramp))  # a uniform warm-up shifts nothing
    out = np.empty((480, 640), np.uint8)
    assert thermal_to_8bit(ramp, out=out) is out
    np.testing.assert_array_equal(out, alone)


def test_8_bit_grey_is_used_as_is():
    grey = np.random.default_rng(2).integers(0, 256, (48, 64), dtype=np.uint8)
    assert thermal_kind(grey) == GRAY8
    assert thermal_to_8bit(grey) is grey
    out = np.zeros_like(grey)
    assert thermal_to_8bit(grey, out=out) is out and np.array_equal(out, grey)


def test_grey_saved_as_3_channel_jpeg_is_its_first_channel(tmp_path):
    grey = cv2.GaussianBlur(np.random.default_rng(3).integers(0, 256, (96, 128), dtype=np.uint8), (0, 0), 2.0)
    cv2.imwrite(str(tmp_path / "t.jpg"), cv2.merge([grey, grey, grey]), [cv2.IMWRITE_JPEG_QUALITY, 90])
    stored = cv2.imread(str(tmp_path / "t.jpg"), cv2.IMREAD_UNCHANGED)
    assert stored.shape == (96, 128, 3)
    assert thermal_kind(stored) == GRAY8_AS_RGB
    out = thermal_to_8bit(stored)
    assert out.shape == (96, 128) and np.array_equal(out, stored[..., 0])
    assert np.abs(out.astype(int) - grey).mean() < 2  # only the JPEG error


def test_false_colour_becomes_luminance_and_odd_frames_are_refused():
    grey = np.tile(np.arange(256, dtype=np.uint8), (8, 1))
    palette = cv2.cvtColor(cv2.applyColorMap(grey, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    assert thermal_kind(palette) == FALSE_COLOUR
    np.testing.assert_array_equal(thermal_to_8bit(palette), cv2.cvtColor(palette, cv2.COLOR_RGB2GRAY))
    for bad in (grey.astype(np.float32), np.zeros((8, 8, 3), np.uint16), np.zeros((8, 8, 4), np.uint8)):
        with pytest.raises(TypeError):
            thermal_kind(bad)
    assert all(describe_thermal(k).startswith("thermal: ") for k in (GRAY16, GRAY8, GRAY8_AS_RGB, FALSE_COLOUR))


@pytest.mark.timing
def test_16_bit_mapping_is_fast():
    frame = np.random.default_rng(1).normal(29000, 300, (512, 640)).clip(0, 65535).astype(np.uint16)
    out = np.empty((512, 640), np.uint8)
    times = []
    for _ in range(20):
        t0 = time.perf_counter()
        thermal_to_8bit(frame, out=out)
        times.append(time.perf_counter() - t0)
    assert np.median(times) < 0.005  # ~0.5 ms measured; loose for a shared machine
