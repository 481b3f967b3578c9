"""Roofline: analytic MACs against the published figures, and the measured GEMM probes computing real products."""

from __future__ import annotations

import numpy as np

from ckd.model.config import preset
from edge.bench.roofline import _ort_matmul_session, best_ceilings, count_macs, gemm_ceilings
from quantize.cpu_target import host_format


def test_base_macs_match_the_published_thop_figures():
    base = preset("base")
    assert round(count_macs(base, 1.0).thop_macs / 1e9, 3) == 57.802
    assert round(count_macs(base, 0.7).thop_macs / 1e9, 3) == 42.735


def test_gemm_count_adds_attention_matmuls_and_drops_norms():
    m = count_macs(preset("base"), 1.0)
    n = 64 + 256
    assert m.attention == 2 * 12 * 2 * n * n * 768  # two branches x 12 blocks x (QK^T + AV)
    assert m.gemm_macs - m.thop_macs == m.attention - m.norms
    assert round(m.gemm_macs / 1e9, 3) == 61.526


def test_fewer_tokens_fewer_macs_on_every_preset():
    for name in ("base", "small", "tiny", "nano"):
        cfg = preset(name)
        macs = [count_macs(cfg, r).gemm_macs for r in (1.0, 0.85, 0.7, 0.5)]
        assert macs == sorted(macs, reverse=True) and macs[0] > macs[-1], name


def test_int8_probe_graph_computes_the_integer_product():
    sess, a = _ort_matmul_session(8, 16, 4, int8=True, threads=1)
    y = sess.run(None, {"A": a})[0]
    assert y.dtype == np.int32 and y.shape == (8, 4)
    # recompute with the same seeded weights: A is uint8 with zero point 128, B int8 in this CPU's INT8 format
    # (full range saturates on x86 without VNNI: quantize/cpu_target.py)
    rng = np.random.default_rng(0)
    w = host_format().weight_max
    weights = rng.integers(-w, w + 1, (16, 4), dtype=np.int8)
    np.testing.assert_array_equal(y, (a.astype(np.int32) - 128) @ weights.astype(np.int32))


def test_ceilings_are_positive_and_best_of_probes():
    c = gemm_ceilings(seconds=0.05, threads=1)
    assert c["fp32_gops"] > 0.5 and c["int8_gops"] > 0.5
    assert c["fp32_gops"] == max(c["fp32_torch_gops"], c["fp32_ort_gops"])
    low = {k: v / 2 if isinstance(v, float) else v for k, v in c.items()}
    assert best_ceilings(low, c)["int8_gops"] == c["int8_gops"]
    assert best_ceilings(c, low)["fp32_gops"] == c["fp32_gops"]
