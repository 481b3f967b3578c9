"""Timing statistics, peak memory, accuracy and the environment record."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from edge.bench.clip import accuracy
from edge.bench.env import cpu_info, environment
from edge.bench.measure import peak_rss_mb, reset_peak_rss
from edge.trt.bench import latency_stats


def test_percentiles_of_known_values():
    s = latency_stats(np.arange(1, 101, dtype=float))
    assert s["p50"] == 50.5 and abs(s["p95"] - 95.05) < 1e-9 and abs(s["p99"] - 99.01) < 1e-9
    assert s["mean"] == 50.5
    assert np.isnan(latency_stats([])["p50"])


def test_peak_rss_sees_a_large_allocation():
    reset_peak_rss()
    before = peak_rss_mb()
    block = np.ones(64 * 1024 * 1024 // 8)  # 64 MiB, touched
    assert peak_rss_mb() >= before + 60
    del block


def test_accuracy_perfect_shifted_and_absent_frames():
    gt = np.array([[10, 10, 40, 40], [50, 50, 40, 40], [np.nan] * 4, [0, 0, 20, 20]], dtype=float)
    perfect = accuracy(np.nan_to_num(gt), gt)
    assert perfect == {"success_auc": 20 / 21, "precision_20px": 1.0}  # IoU 1 beats every threshold but 1.0
    far = gt + [100, 0, 0, 0]
    assert accuracy(np.nan_to_num(far), gt) == {"success_auc": 0.0, "precision_20px": 0.0}


def test_cpu_info_reads_model_and_flags(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\nmodel name\t: Test CPU 9000\nflags\t\t: fpu sse4_2 avx2 avx512_vnni foo\n")
    info = cpu_info(f)
    assert info["model"] == "Test CPU 9000"
    assert info["flags"] == ["sse4_2", "avx2", "avx512_vnni"]
    assert info["usable_cores"] >= 1


def test_cpu_info_reads_the_cpuinfo_the_int8_target_comes_from(tmp_path):
    """Under QEMU user mode /proc/cpuinfo is the host's: CKD_CPUINFO names the emulated CPU's, for both."""
    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\nmodel name\t: Emulated AVX2\nflags\t\t: fpu sse4_2 avx avx2 fma\n")
    code = "import json; from edge.bench.env import cpu_info; from quantize.cpu_target import host_target; "
    code += "print(json.dumps([cpu_info(), host_target()]))"
    env = dict(os.environ, CKD_CPUINFO=str(f))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    info, target = json.loads(done.stdout)
    assert info["model"] == "Emulated AVX2" and info["flags"] == ["sse4_2", "avx", "avx2", "fma"]
    assert target == "avx2"


def test_environment_records_versions_threads_and_hashes():
    env = environment({"nano": "ab" * 32}, threads=1)
    assert env["libraries"]["torch"].startswith("2.13")
    assert env["libraries"]["onnxruntime"]
    assert env["threads"]["requested"] == 1 and env["threads"]["torch_intra_op"] >= 1
    assert env["models"] == {"nano": "ab" * 32}
    assert (env["jetson"] is None) == (not Path("/etc/nv_tegra_release").exists())
