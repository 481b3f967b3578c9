"""`ckd bench` end to end on the nano model: schema, outputs, and fewer tokens not slower beyond noise."""

from __future__ import annotations

import json

import pytest

from ckd_cli.main import main
from edge.bench.clip import synthetic_clip
from edge.bench.peers import nanotrack_files, track_nanotrack

ROW_KEYS = {"backend", "precision", "keep_ratio", "model", "p50_ms", "p95_ms", "p99_ms", "fps"}


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """One small run shared by the checks: nano, torch + ONNX Runtime FP32, rungs 1.0 and 0.5, 40 timed frames."""
    out = tmp_path_factory.mktemp("bench")
    argv = ["bench", "--model", "nano", "--backends", "torch,onnxruntime", "--precisions", "fp32"]
    argv += ["--keep-ratios", "1.0,0.5", "--frames", "41", "--warmup", "3", "--threads", "1", "--quiet"]
    argv += ["--roofline-seconds", "0.05", "--cache-dir", str(out / "cache")]
    argv += ["--json", str(out / "b.json"), "--markdown", str(out / "b.md"), "--plot", str(out / "b.png")]
    assert main(argv) == 0
    return out, json.loads((out / "b.json").read_text())


def test_json_schema_and_outputs(bench):
    out, doc = bench
    assert {"environment", "rows", "roofline", "clip", "notes"} <= set(doc)
    rows = doc["rows"]
    assert {(r["backend"], r["keep_ratio"]) for r in rows} == {
        ("torch", 1.0),
        ("torch", 0.5),
        ("onnxruntime", 1.0),
        ("onnxruntime", 0.5),
    }
    for r in rows:
        assert ROW_KEYS <= set(r)
        assert r["model"] == "nano" and r["precision"] == "fp32" and r["frames"] == 40
        assert 0 < r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"]
        assert r["model_p50_ms"] < r["p50_ms"]  # the model step is part of the end-to-end step
        assert r["fps"] > 0 and r["peak_rss_mb"] > 50
        assert 0.0 <= r["success_auc"] <= 1.0
        assert r["achieved_gops"] > 0 and r["ceiling_fraction"] > 0
    base = next(r for r in rows if r["backend"] == "torch" and r["keep_ratio"] == 1.0)
    assert base["speedup"] == 1.0 and base["baseline"] == "nano torch fp32 k1.00"
    assert doc["environment"]["models"]["nano"] and doc["environment"]["threads"]["requested"] == 1
    assert doc["roofline"]["gmacs_thop"]["nano"]["0.50"] < doc["roofline"]["gmacs_thop"]["nano"]["1.00"]
    table = (out / "b.md").read_text()
    assert table.count("| nano |") == 4 and "GEMM ceiling" in table
    assert (out / "b.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fewer_tokens_count_fewer_operations(bench):
    _, doc = bench
    for backend in ("torch", "onnxruntime"):
        full, half = (
            next(r for r in doc["rows"] if r["backend"] == backend and r["keep_ratio"] == k) for k in (1.0, 0.5)
        )
        assert half["gemm_gops"] < full["gemm_gops"]


@pytest.mark.timing
def test_fewer_tokens_not_slower_beyond_noise(bench):
    """Model-step medians: rung 0.5 (fewer tokens) may not be slower than 1.0 by more than the measured noise.

    Noise is taken from the run itself: the larger p95 - p50 spread of the two rungs (other jobs on a shared
    2-core machine stretch some frames), but at least 25 % of the 1.0 median + 0.5 ms. A rung that is really
    slower shifts its whole distribution and still fails on a quiet machine.
    """
    _, doc = bench
    for backend in ("torch", "onnxruntime"):
        full, half = (
            next(r for r in doc["rows"] if r["backend"] == backend and r["keep_ratio"] == k) for k in (1.0, 0.5)
        )
        spread = max(r["model_p95_ms"] - r["model_p50_ms"] for r in (full, half))
        noise = max(spread, 0.25 * full["model_p50_ms"]) + 0.5
        assert half["model_p50_ms"] <= full["model_p50_ms"] + noise, (backend, full, half)


def test_unknown_model_is_a_clean_error(capsys):
    assert main(["bench", "--model", "huge", "--quiet"]) == 2
    assert "--model 'huge'" in capsys.readouterr().err


def test_model_dir_measures_the_folders_rungs_unless_told(tmp_path, monkeypatch):
    """`--model-dir` without `--keep-ratios` passes None (the folder's own rungs), not the PyTorch rows' default."""
    import edge.trt.bench as trt_bench

    seen = []
    monkeypatch.setattr(trt_bench, "bench_tensorrt", lambda _dir, **kw: seen.append(kw["keep_ratios"]) or {})
    monkeypatch.setattr(trt_bench, "markdown", lambda doc: "")
    monkeypatch.setattr(trt_bench, "write_reports", lambda *a: None)
    argv = ["bench", "--backends", "tensorrt", "--model-dir", str(tmp_path)]
    assert main(argv) == 0 and main([*argv, "--keep-ratios", "0.7,1.0,0.7"]) == 0
    assert seen == [None, [0.7, 1.0]]


def test_nanotrack_peer_on_the_same_frames(shared_dir):
    folder = shared_dir / "peers" / "nanotrack_v2"
    if nanotrack_files(folder) is None:
        pytest.skip("NanoTrack v2 ONNX files absent")
    clip = synthetic_clip(8)
    run = track_nanotrack(folder, clip, warmup=1, threads=1)
    assert len(run.times["total"]) == 7 and min(run.times["total"]) > 0
    assert run.boxes.shape == (8, 4) and (run.boxes[1:, 2:] > 0).all()


def test_int8_rows_quantize_once_into_the_cache(tmp_path):
    pytest.importorskip("edge.int8")
    cache = tmp_path / "cache"
    argv = ["bench", "--model", "nano", "--backends", "onnxruntime", "--precisions", "fp32,int8"]
    argv += ["--keep-ratios", "0.7", "--frames", "6", "--warmup", "1", "--threads", "1", "--quiet"]
    argv += ["--roofline-seconds", "0.05", "--cache-dir", str(cache), "--json", str(tmp_path / "b.json")]
    assert main(argv) == 0
    doc = json.loads((tmp_path / "b.json").read_text())
    assert [(r["precision"], r["keep_ratio"]) for r in doc["rows"]] == [("fp32", 0.7), ("int8", 0.7)]
    assert doc["rows"][1]["ceiling_gops_adjacent"] > 0  # the INT8 row is set against the INT8 GEMM probe
    (manifest,) = cache.glob("nano-*/int8/manifest.json")
    assert json.loads(manifest.read_text())["rungs"][0]["precision"] == "int8"
    stamp = manifest.stat().st_mtime_ns
    assert main(argv) == 0
    assert manifest.stat().st_mtime_ns == stamp  # reused, not quantized again
