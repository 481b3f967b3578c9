"""tegrastats / nvpmodel / jetson_clocks parsing on sample output from Orin and Xavier."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from edge.trt.tegra import TegraStats, parse_jetson_clocks, parse_nvpmodel, parse_tegrastats, summarize_tegrastats

SAMPLES = Path(__file__).parent / "data" / "jetson"


def lines(name: str) -> list[str]:
    return (SAMPLES / name).read_text().splitlines()


def test_orin_tegrastats_with_mw_units():
    first = parse_tegrastats(lines("tegrastats_orin_nano.txt")[0])
    assert first["rails_mw"] == {"VDD_IN": 7120, "VDD_CPU_GPU_CV": 2402, "VDD_SOC": 2164}
    assert (first["total_mw"], first["total_source"]) == (7120, "VDD_IN")
    assert (first["gpu_load_pct"], first["gpu_mhz"], first["ram_used_mb"]) == (61, 624, 2373)
    summary = summarize_tegrastats(lines("tegrastats_orin_nano.txt"))
    assert summary["samples"] == 2
    assert summary["total_mw_mean"] == pytest.approx((7120 + 7480) / 2)
    assert summary["rails_mw_mean"]["VDD_CPU_GPU_CV"] == pytest.approx((2402 + 2642) / 2)
    assert summary["gpu_load_pct_mean"] == pytest.approx(68.0)


def test_xavier_formats():
    nx = parse_tegrastats(lines("tegrastats_xavier_nx.txt")[0])
    assert (nx["total_mw"], nx["gpu_load_pct"], nx["gpu_mhz"]) == (5012, 40, None)
    agx = parse_tegrastats(lines("tegrastats_agx_xavier_jp4.txt")[0])
    assert agx["rails_mw"] == {"GPU": 3102, "CPU": 621, "SOC": 1552, "CV": 0, "VDDRQ": 310, "SYS5V": 1814}
    assert agx["total_source"] == "sum of rails" and agx["total_mw"] == 7399
    assert "RAM" not in agx["rails_mw"] and "SWAP" not in agx["rails_mw"]


def test_nvpmodel_and_clocks():
    assert parse_nvpmodel((SAMPLES / "nvpmodel_q.txt").read_text()) == {"mode": "15W", "id": 0}
    assert parse_nvpmodel("nvpmodel: command not found") is None
    locked = parse_jetson_clocks((SAMPLES / "jetson_clocks_show_locked.txt").read_text())
    assert locked == {"locked": True, "gpu_mhz": 624, "gpu_max_mhz": 624}
    default = parse_jetson_clocks((SAMPLES / "jetson_clocks_show_default.txt").read_text())
    assert default == {"locked": False, "gpu_mhz": 306, "gpu_max_mhz": 624}


def test_sampler_without_tegrastats_is_inert(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with TegraStats() as stats:
        pass
    assert stats.lines == [] and stats.summary() is None


def test_sampler_runs_tegrastats_and_stops_it(tmp_path, monkeypatch):
    """A stand-in `tegrastats` executable printing recorded Orin lines: the sampler's process and thread plumbing."""
    sample = SAMPLES / "tegrastats_orin_nano.txt"
    exe = tmp_path / "tegrastats"
    exe.write_text(f'#!/bin/sh\n[ "$1" = --interval ] || exit 3\nwhile true; do cat "{sample}"; sleep 0.05; done\n')
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    with TegraStats(interval_ms=50) as stats:
        deadline = time.monotonic() + 5
        while len(stats.lines) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert stats._proc.poll() is not None  # terminated on exit
    summary = stats.summary()
    assert summary["samples"] >= 4
    assert 7120 <= summary["total_mw_mean"] <= 7480
