"""On-device benchmark report: statistics and Markdown from known per-frame times (the GPU run is in test_edge_gpu)."""

from __future__ import annotations

import json

import pytest

from edge.trt.bench import latency_stats, markdown, summarize_rung, write_reports


def test_rung_row_numbers():
    e2e = [10.0] * 98 + [20.0, 40.0]
    gpu = [4.0] * 100
    power = {"total_mw_mean": 7300.0, "samples": 12}
    row = summarize_rung(0.7, "int8", e2e, gpu, power)
    assert row["e2e_ms"]["p50"] == 10.0
    assert row["e2e_ms"]["p99"] == pytest.approx(20.0 + 0.01 * 20.0)  # numpy linear interpolation
    assert row["e2e_ms"]["mean"] == pytest.approx(10.4)
    assert row["fps"] == pytest.approx(1000 / 10.4)
    assert row["gpu_ms"]["p95"] == 4.0
    assert row["power_w"] == pytest.approx(7.3)
    assert row["frames_per_joule"] == pytest.approx(1000 / 10.4 / 7.3)
    no_power = summarize_rung(1.0, "fp16", e2e, gpu, None)
    assert no_power["power_w"] is None and no_power["frames_per_joule"] is None
    assert all(v != v for v in latency_stats([]).values())  # NaN when nothing was timed


def test_markdown_states_conditions(tmp_path):
    doc = {
        "conditions": {
            "device": "Jetson Orin Nano",
            "jetpack": "6.1",
            "tensorrt": "10.3.0",
            "nvpmodel": {"mode": "15W", "id": 0},
            "clocks": {"locked": False, "gpu_mhz": 306, "gpu_max_mhz": 624},
            "cuda_graphs": True,
            "zero_copy": True,
            "frames": 100,
            "warmup": 10,
        },
        "rows": [summarize_rung(0.7, "int8", [10.0, 12.0], [4.0, 5.0], None)],
    }
    md = markdown(doc)
    assert "JetPack 6.1, TensorRT 10.3.0, nvpmodel 15W, clocks not locked (run `sudo jetson_clocks`)" in md
    assert "| 0.70 | int8 | 11.00 | 11.90 | 11.98 | 4.50 | 4.95 | 4.99 | 90.9 | – | – |" in md
    write_reports(doc, tmp_path / "b.json", tmp_path / "b.md")
    assert json.loads((tmp_path / "b.json").read_text())["rows"][0]["precision"] == "int8"
    assert (tmp_path / "b.md").read_text() == md
