"""INT8: Q/DQ graphs run in ONNX Runtime, the precision policy holds node by node, and the fidelity gate
passes on a tracker-sampled calibration set and fails on a constant-frame one.

Model: the nano preset, random weights, made to behave like a tracker cheaply: the score tower's last 1x1 conv
is scaled by 30 and the size tower's bias set to logit(0.25). Measured: with plain random init the score map is
0.5 +- 0.01 everywhere (the Hann window alone picks the peak) and the size map 0.5 (the box doubles each frame
until clipped to the image), so FP32 and INT8 agree whatever the calibration. With the two edits the peak
follows image features and the box keeps its size, so the gate sees whether INT8 preserves those features.
(Random attention is nearly uniform, so MCE rungs < 1.0 pick among near-ties; the gate test uses the 1.0 rung.)
"""

from __future__ import annotations

import json
import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from calibration.sampler import sample_crops
from calibration.sources import Clip, synthetic_clips
from calibration.store import write_calibration
from ckd.errors import CKDError
from ckd.model.config import preset
from ckd.model.network import CKDNet
from ckd_cli.main import main
from edge.backends.onnxruntime import OrtBackend
from edge.export import export_rungs, random_inputs
from edge.int8 import fidelity, optimized_ops, quantize_export
from quantize.fidelity import Thresholds, cosine, rung_fidelity, worst_rung
from quantize.policy import KEEP_FLOAT, check_policy, keep_float, quantized_nodes

SOURCE = "random:nano-peaked:0"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("int8")
    torch.manual_seed(0)
    model = CKDNet(preset("nano")).eval()
    with torch.no_grad():
        model.box_head.conv5_ctr.weight *= 30.0
        model.box_head.conv5_ctr.bias.zero_()
        model.box_head.conv5_size.bias.fill_(math.log(0.25 / 0.75))
    export_rungs(model, root / "fp32", (1.0,), SOURCE, verify=False)
    backend = OrtBackend(root / "fp32", precision="fp32")
    identity = {"name": "nano", "checkpoint_sha256": SOURCE}
    crops = sample_crops(backend, synthetic_clips(4, 17, seed=1), 32, every=2)
    write_calibration(root / "calib", crops, "synthetic", 1, identity)
    gray = np.full((240, 320, 3), 128, np.uint8)
    flat = Clip("constant", 33, lambda i: (gray, gray[..., 0]), np.array([140.0, 100, 40, 40]))
    write_calibration(root / "calib_const", sample_crops(backend, [flat], 32), "constant", 0, identity)
    quantize_export(root / "fp32", root / "calib", root / "int8")
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
    assert cosine(out["score_map"], ref["score_map"]) > 0.8
    ops = optimized_ops(setup / "int8" / "ckd_k1.00_int8.onnx")
    assert ops.get("QLinearMatMul", 0) + ops.get("MatMulIntegerToFloat", 0) >= 32  # qkv/proj/fc1/fc2 x 4 x 2
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
    linear = [n for n in by_op["MatMul"] if n not in core]
    assert len(linear) == 32 and set(linear) <= q  # the GEMMs really are INT8
    assert {r.label for r in KEEP_FLOAT} >= {"layernorm", "softmax", "attention-core", "gelu", "head-output"}


def test_gate_passes_on_tracker_calibration_and_fails_on_constant_frames(setup):
    clips = synthetic_clips(2, 30, seed=500)  # held out: calibration used seed 1
    (good,) = fidelity(setup / "fp32", setup / "int8", clips)
    quantize_export(setup / "fp32", setup / "calib_const", setup / "int8_const")
    (bad,) = fidelity(setup / "fp32", setup / "int8_const", clips)
    assert not good.failures, good.to_dict()
    assert good.iou_agreement_median > 0.95 and good.score_cosine_mean > 0.97
    assert bad.failures, bad.to_dict()
    assert bad.score_cosine_mean < 0.95 and bad.iou_agreement_mean < good.iou_agreement_mean
    assert worst_rung([good, bad]) is bad


def test_cli_gate_exit_codes_and_report(setup, tmp_path, capsys):
    base = ["quantize", "--onnx", str(setup / "fp32"), "--keep-ratios", "1.0", "--gate"]
    base += ["--eval-sequences", "1", "--eval-length", "30"]
    assert main([*base, "--calib", str(setup / "calib"), "--out", str(tmp_path / "ok")]) == 0
    report = json.loads((tmp_path / "ok" / "fidelity.json").read_text())
    assert report["rungs"][0]["keep_ratio"] == 1.0 and report["calibration"]["count"] == 32
    assert main([*base, "--calib", str(setup / "calib_const"), "--out", str(tmp_path / "bad")]) == 2
    assert "fidelity gate failed; worst rung k=1.00" in capsys.readouterr().err


def test_bad_inputs_are_refused(setup, tmp_path):
    other = tmp_path / "other"
    export_rungs(CKDNet(preset("nano")).eval(), other, (1.0,), "random:nano:other", verify=False)
    with pytest.raises(CKDError, match="made with model random:nano-peaked"):
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
    drift = rung_fidelity(0.7, [gt], [off], [off], [gt], [0.5] * 4, Thresholds())
    assert drift.iou_agreement_median == pytest.approx(5 * 20 / (2 * 400 - 5 * 20))
    assert drift.auc_drop_points > 1.0 and len(drift.failures) == 3
    assert worst_rung([same, drift]) is drift
    assert cosine(np.ones((4, 4)), np.ones((4, 4))) == 1.0
    assert ort.get_device() == "CPU"
