"""TensorRT on a real GPU (skipped without one; failing, not skipping, on a Jetson whose Python cannot import
tensorrt). Runs unchanged on a Jetson's device profile (no torch / onnx / onnxruntime):

    make device-check-graphs                       # on the host; copy out/device-check/graphs to the device
    .venv-device/bin/python -m pytest -q tests/test_edge_gpu_tensorrt.py

Builds FP16 and INT8 engines (`best`) of the demo student at keep 0.7 from the shipped graphs, compares them with the
shipped reference outputs, checks the cache and CUDA-graph replay, tracks a synthetic clip and runs the benchmark.
On a GPU host with the host profile the graphs are made on the fly when missing.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.gpu

ROOT = Path(__file__).resolve().parents[1]
RATIO = 0.7


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from edge import devices
    from edge.trt import device_check
    from edge.trt.build import build_all
    from edge.trt.flags import detect, import_tensorrt

    graphs = Path(os.environ.get("CKD_DEVICE_GRAPHS", ROOT / "out" / "device-check" / "graphs"))
    if not (graphs / "demo" / "int8").is_dir():
        try:
            import torch  # noqa: F401 - the host profile can make them here
        except ImportError:
            pytest.fail(f"no graphs in {graphs}: run `make device-check-graphs` on the host and copy them here")
        device_check.prepare(graphs, models=("demo",))
    root = tmp_path_factory.mktemp("trt") / "demo"
    shutil.copytree(graphs / "demo", root)
    trt = import_tensorrt()
    features, device = detect(trt), devices.detect()
    build_all(root / "fp32", "best", device, trt, features, int8_dir=root / "int8")
    return root, device, trt, features


def test_fp16_and_int8_engines_match_the_reference(built):
    import json

    from edge.backends.tensorrt import TensorRTBackend
    from edge.trt.build import measure
    from edge.trt.reference import load_reference
    from edge.trt.targets import graphs_for
    from quantize.fidelity import check_outputs

    root, device, _, features = built
    selection = json.loads((root / "fp32" / "engines" / "selection.json").read_text())
    assert selection["failures"] == [], selection["failures"]
    with TensorRTBackend.from_export(root / "fp32", device) as backend:
        assert backend.keep_ratios == (RATIO,) and backend.zero_copy == device.is_jetson
        inputs, ref = load_reference(graphs_for(root / "fp32", features.version), RATIO)
        check = check_outputs(ref, backend.run(inputs, keep_ratio=RATIO), backend.search_size)
        assert check.passed and check.iou_agreement_median > 0.9, check
        assert backend.last_gpu_ms > 0
    from edge.manifest import Manifest
    from edge.trt import cache

    export = Manifest.load(graphs_for(root / "fp32", features.version))
    for item in selection["rungs"]:
        key = cache.EngineKey.from_record(item["key"], "selection.json")
        _, outputs = measure(cache.load(root / "fp32" / "engines", key), export, device, RATIO, inputs, runs=3)
        assert check_outputs(ref, outputs, export.ckd_config.search_size).passed


def test_cache_hit_and_cuda_graph_replay(built):
    from edge.backends.tensorrt import TensorRTBackend
    from edge.trt.build import build_all
    from edge.trt.reference import load_reference
    from edge.trt.targets import graphs_for

    root, device, trt, features = built
    messages: list[str] = []
    build_all(root / "fp32", "best", device, trt, features, int8_dir=root / "int8", log=messages.append)
    assert not any("not built yet" in m or "rebuilding" in m for m in messages), messages
    inputs, _ = load_reference(graphs_for(root / "fp32", features.version), RATIO)
    with (
        TensorRTBackend.from_export(root / "fp32", device) as plain,
        TensorRTBackend.from_export(root / "fp32", device, cuda_graphs=True) as graphs,
    ):
        a = plain.run(inputs, keep_ratio=RATIO)
        for _ in range(3):  # capture once, then replay
            b = graphs.run(inputs, keep_ratio=RATIO)
        assert graphs.graph_failures == {}
        np.testing.assert_allclose(b["pred_boxes"], a["pred_boxes"], atol=1e-5)


def test_tracker_on_synthetic_clip(built):
    from edge.trt import device_check

    root, device, *_ = built
    result = device_check.check_track(root, device)
    assert result["median_iou"] >= device_check.MIN_MEDIAN_IOU


def test_bench_reports_the_rung(built, tmp_path):
    from edge.trt.bench import bench_tensorrt, write_reports

    root, *_ = built
    doc = bench_tensorrt(root / "fp32", frames=20, warmup=5)
    assert [r["keep_ratio"] for r in doc["rows"]] == [RATIO]
    for row in doc["rows"]:
        assert 0 < row["gpu_ms"]["p50"] <= row["e2e_ms"]["p50"]
        assert row["precision"] in ("fp16", "int8") and row["fps"] > 0
    write_reports(doc, tmp_path / "bench.json", tmp_path / "bench.md")
    assert "TensorRT benchmark on" in (tmp_path / "bench.md").read_text()
