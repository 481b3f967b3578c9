"""The model's products shape by shape: they add up to the roofline's count, and each probe computes its product."""

from __future__ import annotations

import numpy as np
import pytest

from ckd.model.config import preset
from edge.bench.gemm_floor import Gemm, _bound, _session, gemm_shapes, policy_floor
from edge.bench.roofline import count_macs
from quantize.cpu_target import host_format


@pytest.mark.parametrize("name", ["base", "small", "tiny", "nano"])
@pytest.mark.parametrize("keep", [1.0, 0.7, 0.5])
def test_shapes_add_up_to_the_gemm_count(name, keep):
    cfg = preset(name)
    shapes, macs = gemm_shapes(cfg, keep), count_macs(cfg, keep)
    assert sum(g.macs * n for g, n in shapes.items()) == macs.gemm_macs
    fp32 = sum(g.macs * n for g, n in shapes.items() if g.precision == "fp32")
    outputs = 5 * cfg.feat_size**2 * (cfg.head_channels // 8)  # head output 1x1 convs: 1 + 2 + 2 channels
    assert fp32 == macs.attention + outputs


def test_base_first_block_shapes():
    shapes = gemm_shapes(preset("base"), 1.0)
    assert shapes[Gemm(1, 320, 768, 2304, "int8")] == 2 * 12  # qkv, 12 blocks x 2 branches
    assert shapes[Gemm(12, 320, 64, 320, "fp32")] == 2 * 12  # q @ k^T per head


def test_probes_compute_their_products():
    rng = np.random.default_rng(0)
    g = Gemm(2, 5, 7, 3, "fp32")
    sess, feeds = _session(g, threads=1)
    run, y = _bound(sess, feeds, g)
    run()
    np.testing.assert_allclose(y, feeds["A"] @ feeds["B"], rtol=1e-5)
    g = Gemm(1, 4, 8, 6, "int8")
    sess, feeds = _session(g, threads=1)
    run, y = _bound(sess, feeds, g)
    run()
    w = host_format().weight_max  # the probe draws weights in this CPU's INT8 format (7-bit without VNNI)
    weights = rng.integers(-w, w + 1, (8, 6), dtype=np.int8)  # same seed and order as the probe
    scales = rng.uniform(0.001, 0.01, 6).astype(np.float32)
    bias = rng.integers(-1000, 1000, 6, dtype=np.int32)
    acc = (feeds["A"].astype(np.int32) - 128) @ weights.astype(np.int32) + bias
    assert y.dtype == np.float32 and np.abs(acc).max() > 1000  # a product, not just the bias
    np.testing.assert_allclose(y, acc * 0.02 * scales, rtol=1e-5)


def test_policy_floor_sums_its_parts():
    f = policy_floor(preset("nano"), 0.7, threads=1, seconds=0.01)
    assert f["int8_ms"] > 0 and f["fp32_ms"] > 0
    assert f["total_ms"] == pytest.approx(f["int8_ms"] + f["fp32_ms"])
