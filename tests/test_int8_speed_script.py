"""benchmarks/int8_speed.py end to end on the nano preset: every tier and route timed and gated, floors printed and
written, the CPU's features and the INT8 format picked for it reported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from quantize.cpu_target import FORMAT_FOR_TARGET, host_target

ROOT = Path(__file__).resolve().parents[1]


def test_int8_speed_runs_on_nano(tmp_path):
    out = tmp_path / "speed.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "int8_speed.py"), "--preset", "nano", "--frames", "4"]
    cmd += ["--calib", "4", "--threads", "1", "--work", str(tmp_path / "work"), "--json", str(out)]
    cmd += ["--gate-clips", "1", "--gate-frames", "4"]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    d = json.loads(out.read_text())
    tiers = [f"ort int8 {t} @0.70" for t in ("aggressive", "balanced", "conservative", "dynamic", "int4")]
    assert set(d["rows"]) == {"torch fp32 @1.00", "ort fp32 @0.70", *tiers}
    assert all(r["frame_ms"] > 0 for r in d["rows"].values())
    assert all(d["rows"][t]["gate"] == "pass" or d["rows"][t]["gate"].startswith("FAIL k=") for t in tiers)
    pf = d["policy_floor"]
    assert pf["int8_ms"] > 0 and pf["fp32_ms"] > 0 and d["floor_ms"] > 0
    assert d["int8_format"] == FORMAT_FOR_TARGET[host_target()] and d["cpu"]["flags"]
    assert set(d["int8_gops_by_format"]) == {"u8s8", "u8s8-w7", "u8u8"}
    assert "INT8 floor @0.70" in run.stdout and "matrix products alone" in run.stdout
    assert "'QGemm'" in run.stdout or "'MatMulNBits'" in run.stdout or "'DynamicQuantizeMatMul'" in run.stdout
