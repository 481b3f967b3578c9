"""benchmarks/int8_speed.py end to end on the nano preset: every row timed, floors printed and written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_int8_speed_runs_on_nano(tmp_path):
    out = tmp_path / "speed.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "int8_speed.py"), "--preset", "nano", "--frames", "4"]
    cmd += ["--calib", "4", "--threads", "1", "--work", str(tmp_path / "work"), "--json", str(out)]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    d = json.loads(out.read_text())
    names = {"torch fp32 @1.00", "ort fp32 @1.00", "ort fp32 @0.70", "ort int8 @1.00", "ort int8 @0.70"}
    assert names | {"ort int8 spin @0.70"} == set(d["rows"])
    assert all(r["frame_ms"] > 0 for r in d["rows"].values())
    pf = d["policy_floor"]
    assert pf["int8_ms"] > 0 and pf["fp32_ms"] > 0 and d["floor_ms"] > 0
    assert "INT8 floor @0.70" in run.stdout and "matrix products alone" in run.stdout
    assert "'QGemm'" in run.stdout  # the linear layers run as fused INT8 GEMMs
