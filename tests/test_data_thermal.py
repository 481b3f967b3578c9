"""Thermal AGC: exact stretch, percentile limits, temporal smoothing, in-place output and speed."""

from __future__ import annotations

import time

import numpy as np
import pytest

from ckd.data.thermal import ThermalAGC, agc, percentiles


def test_agc_linear_stretch_and_clipping():
    frame = np.array([[0, 1000, 1100, 1200, 65535]], dtype=np.uint16)
    out = agc(frame, 1000, 1200)
    np.testing.assert_array_equal(out, [[0, 0, 128, 255, 255]])  # 127.5 rounds up
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(agc(frame, 500, 500), [[0, 255, 255, 255, 255]])  # hi forced to lo + 1
    with pytest.raises(TypeError):
        agc(frame.astype(np.float32), 0, 1)


def test_percentiles_map_to_0_and_255():
    rng = np.random.default_rng(0)
    frame = rng.integers(20000, 30000, (512, 640)).astype(np.uint16)
    lo, hi = percentiles(frame, 1.0, 99.0)
    full_lo, full_hi = np.percentile(frame, [1.0, 99.0])
    assert abs(lo - full_lo) < 60 and abs(hi - full_hi) < 60  # subsampled estimate, 10000-count range
    out = ThermalAGC()(frame)
    assert out[frame <= lo].max() == 0 and out[frame >= hi].min() == 255
    assert 0.005 < (out == 0).mean() < 0.02 and 0.005 < (out == 255).mean() < 0.02
    assert 100 < out.mean() < 155


def test_temporal_smoothing_and_reset():
    ramp = np.tile(np.arange(640, dtype=np.uint16) * 10 + 20000, (480, 1))
    a = ThermalAGC(low_pct=0.0, high_pct=100.0, smoothing=0.9)
    lo0, hi0 = a.update(ramp)
    lo1, hi1 = a.update(ramp + 1000)  # the scene warms by 10 K in one frame
    assert lo1 == pytest.approx(lo0 + 100.0) and hi1 == pytest.approx(hi0 + 100.0)
    a.reset()
    assert a.update(ramp + 1000) == (lo0 + 1000, hi0 + 1000)
    b = ThermalAGC(smoothing=0.0)
    b(ramp)
    assert b.update(ramp + 1000) == percentiles(ramp + 1000, 1.0, 99.0)
    with pytest.raises(ValueError):
        ThermalAGC(low_pct=50, high_pct=10)


def _frame16() -> np.ndarray:
    return np.random.default_rng(1).normal(29000, 300, (512, 640)).clip(0, 65535).astype(np.uint16)


def test_writes_into_out():
    frame = _frame16()
    a, out = ThermalAGC(), np.empty((512, 640), np.uint8)
    assert a(frame, out=out) is out
    np.testing.assert_array_equal(out, agc(frame, a.lo, a.hi))


@pytest.mark.timing
def test_is_fast():
    frame = _frame16()
    a, out = ThermalAGC(), np.empty((512, 640), np.uint8)
    times = []
    for _ in range(20):
        t0 = time.perf_counter()
        a(frame, out=out)
        times.append(time.perf_counter() - t0)
    assert np.median(times) < 0.005  # ~0.5 ms measured; loose for a shared machine
