"""INT8: Q/DQ graphs run in ONNX Runtime, the precision policy holds node by node, and the fidelity gate
passes on a tracker-sampled calibration set and fails on a constant-frame one.

The graph and policy tests use a random nano model. The gate test uses the shipped demo student (nano,
trained on synthetic sequences; skipped when not installed): measured, a random model's score map is
0.5 +- 0.01 everywhere (the Hann window alone picks the peak) and its size map 0.5 (the box doubles every
frame until clipped to the image), so FP32 and INT8 agree whatever the calibration. The gate runs on the
1.0 rung with the issue's default thresholds (median IoU agreement >= 0.9, success-AUC drop <= 1 point);
measured on 4 held-out clips x 30 frames: real set IoU agreement 0.998, AUC drop -0.1 point, score cosine
0.999; constant frames IoU 0.959, AUC drop 5.2 points (fails), score cosine 0.926.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from calibration.sampler import sample_crops
from calibration.sources import Clip, synthetic_clips
from calibration.store import write_calibration
from ckd.errors import CKDError
from ckd.model.checkpoint import DEMO_STUDENT, file_sha256, load_model
from ckd.model.config import preset
from ckd.model.network import CKDNet
from ckd_cli.main import main
from edge.backends.onnxruntime import OrtBackend
from edge.export import export_rungs, random_inputs
from edge.int8 import optimized_ops, quantize_export
from quantize.fidelity import Thresholds, cosine, rung_fidelity, worst_rung
from quantize.policy import KEEP_FLOAT, check_policy, keep_float, quantized_nodes

SOURCE = "random:nano:0"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("int8")
    torch.manual_seed(0)
    _calibrated(root, CKDNet(preset("nano")).eval(), SOURCE)
    quantize_export(root / "fp32", root / "calib", root / "int8")
    return root


def _calibrated(root, model, source: str) -> None:
    """Export the 1.0 rung of `model` into root/fp32 and write two calibration sets sampled by the tracker:
    root/calib (held-in synthetic sequences) and root/calib_const (constant gray frames: deliberately broken)."""
    export_rungs(model, root / "fp32", (1.0,), source, verify=False)
    backend = OrtBackend(root / "fp32", precision="fp32")
    identity = {"name": model.cfg.name, "checkpoint_sha256": source}
    crops = sample_crops(backend, synthetic_clips(8, 33, seed=1), 128, every=2)  # 32 failed the AUC check
    write_calibration(root / "calib", crops, "synthetic", 1, identity)
    gray = np.full((240, 320, 3), 128, np.uint8)
    flat = Clip("constant", 33, lambda i: (gray, gray[..., 0]), np.array([140.0, 100, 40, 40]))
    write_calibration(root / "calib_const", sample_crops(backend, [flat], 32), "constant", 0, identity)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    if not DEMO_STUDENT.is_file():
        pytest.skip("demo student not installed")
    root = tmp_path_factory.mktemp("demo")
    _calibrated(root, load_model(None), file_sha256(DEMO_STUDENT))
    return root


def test_quantized_graph_runs_and_uses_int8_kernels(setup):
    q = OrtBackend(setup / "int8")
    f = OrtBackend(setup / "fp32", precision="fp32")
    assert q.precision == "int8" and q.keep_ratios == (1.0,)
    for b in (q, f):
        for k, v in random_inputs(preset("nano"), 2).items():
            b.input_buffers()[k][...] = v
    out = {k: v.copy() for k, v in q.run(q.input_buffers(), 1.0).items()}
    ref = f.run(f.input_buffers(), 1.0)
    assert all(np.isfinite(v).all() for v in out.values())
    assert not np.array_equal(out["score_map"], ref["score_map"])  # really a different (quantized) graph
    ops = optimized_ops(setup / "int8" / "ckd_k1.00_int8.onnx")
    assert ops.get("QGemm", 0) == 32  # qkv/proj/fc1/fc2 x 4 x 2 with bias and dequantization fused
    assert ops.get("QLinearConv", 0) >= 1


def test_policy_nodes_stay_float(setup):
    graph = onnx.load(str(setup / "int8" / "ckd_k1.00_int8.onnx"))
    q = quantized_nodes(graph)
    audit = check_policy(graph)
    assert audit["violations"] == []
    by_op = {}
    for n in graph.graph.node:
        by_op.setdefault(n.op_type, []).append(n.name)
    # Every LayerNorm, Softmax, GELU Erf and attention-core MatMul is fed by float tensors, not DequantizeLinear.
    for op in ("LayerNormalization", "Softmax", "Erf"):
        assert by_op[op] and not set(by_op[op]) & q, op
    core = [n for n in by_op["MatMul"] if keep_float("MatMul", n)]
    assert len(core) == 16 and not set(core) & q  # q@k^T and attn@v, 4 blocks x 2 branches
    head_out = [n for n in by_op["Conv"] if "conv5_" in n]
    assert len(head_out) == 3 and not set(head_out) & q
    assert len(by_op["MatMul"]) == 16  # only the attention core is left as MatMul
    linear = by_op["Gemm"]
    assert len(linear) == 32 and set(linear) <= q  # the GEMMs really are INT8
    gemm_out = {o for n in graph.graph.node if n.op_type == "Gemm" for o in n.output}
    assert not [n for n in graph.graph.node if n.op_type == "QuantizeLinear" and n.input[0] in gemm_out]
    assert {r.label for r in KEEP_FLOAT} >= {"layernorm", "softmax", "attention-core", "gelu", "head-output"}


def test_gate_passes_on_tracker_calibration_and_fails_on_constant_frames(demo, tmp_path, capsys):
    base = ["quantize", "--onnx", str(demo / "fp32"), "--gate", "--eval-sequences", "4", "--eval-length", "30"]
    assert main([*base, "--calib", str(demo / "calib"), "--out", str(tmp_path / "ok")]) == 0  # held-out seed 1000
    (good,) = json.loads((tmp_path / "ok" / "fidelity.json").read_text())["rungs"]
    assert good["keep_ratio"] == 1.0 and not good["failures"]
    assert good["iou_agreement_median"] > 0.95 and good["score_cosine_mean"] > 0.95
    assert main([*base, "--calib", str(demo / "calib_const"), "--out", str(tmp_path / "bad")]) == 2
    assert "fidelity gate failed; worst rung k=1.00" in capsys.readouterr().err
    (bad,) = json.loads((tmp_path / "bad" / "fidelity.json").read_text())["rungs"]
    assert bad["failures"] and bad["score_cosine_mean"] < good["score_cosine_mean"]
    assert bad["iou_agreement_mean"] < good["iou_agreement_mean"]


def test_bad_inputs_are_refused(setup, tmp_path):
    other = tmp_path / "other"
    export_rungs(CKDNet(preset("nano")).eval(), other, (1.0,), "random:nano:other", verify=False)
    with pytest.raises(CKDError, match="made with model random:nano:0"):
        quantize_export(other, setup / "calib", tmp_path / "x")
    with pytest.raises(CKDError, match="no calibration.json"):
        quantize_export(setup / "fp32", tmp_path, tmp_path / "y")
    assert not (tmp_path / "y").exists()
    rung = other / "ckd_k1.00.onnx"
    rung.write_bytes(rung.read_bytes()[:5000])
    with pytest.raises(CKDError, match="sha256 mismatch"):
        quantize_export(other, setup / "calib", tmp_path / "z")
    from edge.backends.onnxruntime import open_session

    with pytest.raises(CKDError, match="ckd_k1.00.onnx: ONNX Runtime cannot load it"):
        open_session(rung)


def test_fidelity_arithmetic():
    gt = np.array([[10.0, 10, 20, 20]] * 5)
    same = rung_fidelity(1.0, [gt], [gt.copy()], [gt.copy()], [gt], [1.0] * 4, Thresholds())
    assert same.iou_agreement_median == 1.0 and same.auc_drop_points == 0.0 and not same.failures
    off = gt.copy()
    off[1:, 0] += 15  # INT8 drifts 15 px: IoU 5/35
    drift = rung_fidelity(0.7, [gt], [off], [off], [gt], [0.5] * 4, Thresholds(min_score_cosine=0.9))
    assert drift.iou_agreement_median == pytest.approx(5 * 20 / (2 * 400 - 5 * 20))
    assert drift.auc_drop_points > 1.0 and len(drift.failures) == 3
    assert worst_rung([same, drift]) is drift
    assert cosine(np.ones((4, 4)), np.ones((4, 4))) == 1.0
    assert ort.get_device() == "CPU"


def test_fidelity_without_ground_truth_is_plain_json():
    box = np.array([[10.0, 10, 20, 20]] * 3)
    off = box.copy()
    off[1:, 0] += 15
    r = rung_fidelity(1.0, [box], [off], [off], [None], [0.99] * 2, Thresholds())
    d = r.to_dict()
    assert d["auc_drop_points"] is None and d["auc_fp32"] is None and d["precision_delta_points"] is None
    assert r.failures == [f"median IoU agreement {r.iou_agreement_median:.3f} < 0.9"]  # AUC cannot fail
    json.dumps(d, allow_nan=False)
