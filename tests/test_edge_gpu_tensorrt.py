"""TensorRT on a real GPU (skipped without one). On a Jetson, from the checkout:

    .venv/bin/pytest -q tests/test_edge_gpu_tensorrt.py      # builds FP16 engines of the demo student (~minutes)

Exports the shipped demo student, builds engines with `build_all`, compares them with ONNX Runtime on the same
inputs, tracks a synthetic sequence with both backends and runs the on-device benchmark.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gpu

RATIOS = (1.0, 0.7)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from ckd.model.checkpoint import DEMO_STUDENT, file_sha256, load_model
    from edge import devices
    from edge.export import export_rungs
    from edge.trt.build import build_all
    from edge.trt.flags import detect, import_tensorrt
    from edge.trt.reference import make_reference

    out = tmp_path_factory.mktemp("trt") / "export"
    manifest, _ = export_rungs(load_model(None), out, RATIOS, file_sha256(DEMO_STUDENT))
    make_reference(manifest)
    trt = import_tensorrt()
    features, device = detect(trt), devices.detect()
    build_all(out, "fp16", device, trt, features)
    return out, device, trt, features


def test_fp16_engines_match_onnxruntime(built):
    from edge.backends.tensorrt import TensorRTBackend
    from edge.trt.plan import fidelity
    from edge.trt.reference import load_reference

    out, device, *_ = built
    backend = TensorRTBackend.from_export(out, device)
    try:
        assert backend.keep_ratios == tuple(sorted(RATIOS)) and backend.zero_copy == device.is_jetson
        for ratio in RATIOS:
            inputs, ref = load_reference(out, ratio)
            got = backend.run(inputs, keep_ratio=ratio)
            f = fidelity(got, ref)
            assert f.passed, f
            assert backend.last_gpu_ms > 0
    finally:
        backend.close()


def test_cache_hit_and_cuda_graph_replay(built):
    from edge.backends.tensorrt import TensorRTBackend
    from edge.trt.build import build_all
    from edge.trt.reference import load_reference

    out, device, trt, features = built
    messages: list[str] = []
    build_all(out, "fp16", device, trt, features, log=messages.append)
    assert not any("not built yet" in m or "rebuilding" in m for m in messages), messages
    plain = TensorRTBackend.from_export(out, device)
    graphs = TensorRTBackend.from_export(out, device, cuda_graphs=True)
    try:
        inputs, _ = load_reference(out, 0.7)
        a = plain.run(inputs, keep_ratio=0.7)
        for _ in range(3):  # capture once, then replay
            b = graphs.run(inputs, keep_ratio=0.7)
        np.testing.assert_allclose(b["pred_boxes"], a["pred_boxes"], atol=1e-5)
    finally:
        plain.close()
        graphs.close()


def test_tracker_on_synthetic_sequence_agrees_with_onnxruntime(built):
    from ckd.data.synthetic import SyntheticSequence
    from ckd.data.thermal import ThermalAGC
    from ckd.eval.metrics import overlap
    from ckd.track.tracker import Tracker
    from edge.backends.onnxruntime import OrtBackend
    from edge.backends.tensorrt import TensorRTBackend

    out, device, *_ = built
    seq, agc = SyntheticSequence(3, frames=40), ThermalAGC()
    frames = []
    for i in range(len(seq)):
        f = seq.frame(i)
        frames.append((f.rgb, np.repeat(agc(f.thermal16)[..., None], 3, axis=2), f.box))
    trt_backend = TensorRTBackend.from_export(out, device)
    boxes = {}
    try:
        for name, backend in (("trt", trt_backend), ("ort", OrtBackend(out))):
            tracker = Tracker(backend)
            tracker.init(frames[0][0], frames[0][1], frames[0][2])
            boxes[name] = np.array([tracker.update(rgb, tir, keep_ratio=0.7)[0] for rgb, tir, _ in frames[1:]])
    finally:
        trt_backend.close()
    agreement = overlap(boxes["trt"], boxes["ort"])
    assert np.median(agreement) > 0.95 and agreement.min() > 0.5


def test_bench_reports_every_rung(built, tmp_path):
    from edge.trt.bench import bench_tensorrt, write_reports

    out, *_ = built
    doc = bench_tensorrt(out, frames=20, warmup=5)
    assert [r["keep_ratio"] for r in doc["rows"]] == sorted(RATIOS)
    for row in doc["rows"]:
        assert 0 < row["gpu_ms"]["p50"] <= row["e2e_ms"]["p50"]
        assert row["precision"] == "fp16" and row["fps"] > 0
    write_reports(doc, tmp_path / "bench.json", tmp_path / "bench.md")
    assert "TensorRT benchmark on" in (tmp_path / "bench.md").read_text()
