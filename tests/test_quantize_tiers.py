"""Precision tiers: what each one quantizes (node by node and as ONNX Runtime kernels), and `ckd quantize` keeping the
fastest tier whose rungs pass the fidelity gate, recorded in the manifest. A random nano model (its FP32 and INT8
trackers agree whatever the tier, so the real gate passes; an impossible IoU limit makes every tier fail)."""

from __future__ import annotations

import json

import onnx
import pytest

from calibration.sources import synthetic_clips
from ckd_cli.main import main
from edge.int8 import optimized_ops, quantize_export
from edge.int8_tiers import quantize_gated, tiers_to_try
from quantize.fidelity import Thresholds
from quantize.policy import FASTEST_FIRST, TIERS, check_policy, keep_float, quantized_nodes


@pytest.fixture(scope="module")
def tiers(nano_calibrated, tmp_path_factory):
    root = tmp_path_factory.mktemp("tiers")
    for name in TIERS:
        quantize_export(nano_calibrated / "fp32", nano_calibrated / "calib", root / name, tier=name, method="minmax")
    return root


def _int8_by_op(path) -> dict[str, set[str]]:
    graph = onnx.load(str(path))
    q = quantized_nodes(graph)
    out: dict[str, set[str]] = {}
    for n in graph.graph.node:
        if n.name in q:
            out.setdefault(n.op_type, set()).add(n.name)
    assert check_policy(graph, TIERS[path.parent.name].rules)["violations"] == []
    return out


def test_each_tier_quantizes_what_it_names(tiers):
    cons, bal, agg = (_int8_by_op(tiers / t / "ckd_k1.00_int8.onnx") for t in TIERS)
    assert len(cons["Gemm"]) == len(bal["Gemm"]) == len(agg["Gemm"]) == 32
    assert "MatMul" not in cons and "Softmax" not in cons
    core = {n for n in bal["MatMul"] if keep_float("MatMul", n)}  # names the conservative rules keep float
    assert len(core) == 16 and core == agg["MatMul"]  # q@k^T and attn@v, 4 blocks x 2 branches
    assert "Softmax" not in bal and len(agg["Softmax"]) == 8
    for by_op in (cons, bal, agg):  # never: LayerNorm, GELU (Erf), the head's output convolutions
        assert "LayerNormalization" not in by_op and "Erf" not in by_op
        assert not [n for n in by_op.get("Conv", ()) if "conv5_" in n]
    ops = {t: optimized_ops(tiers / t / "ckd_k1.00_int8.onnx") for t in TIERS}
    assert "QLinearMatMul" not in ops["conservative"] and ops["conservative"].get("QGemm") == 32
    assert ops["balanced"].get("QLinearMatMul", 0) + ops["balanced"].get("MatMulIntegerToFloat", 0) == 16
    assert ops["aggressive"].get("QLinearSoftmax") == 8 and "Softmax" not in ops["aggressive"]


def test_fastest_passing_tier_is_kept_and_recorded(nano_calibrated, tmp_path, capsys):
    fp32, calib = nano_calibrated / "fp32", nano_calibrated / "calib"
    clips = synthetic_clips(1, 6, seed=1000)
    assert tiers_to_try("auto") == FASTEST_FIRST == ("aggressive", "balanced", "conservative")
    ok = quantize_gated(fp32, calib, tmp_path / "ok", clips, Thresholds(), log=lambda _: None)
    assert ok.passed and [t["tier"] for t in ok.tried] == ["aggressive"]
    assert ok.manifest.calibration["tier"] == "aggressive"
    never = Thresholds(min_iou_agreement=1.01)
    bad = quantize_gated(fp32, calib, tmp_path / "bad", clips, never, log=lambda _: None)
    assert not bad.passed and [t["tier"] for t in bad.tried] == list(FASTEST_FIRST)
    assert all(not t["passed"] and t["failures"][0].startswith("k=1.00: median IoU") for t in bad.tried)
    assert json.loads((tmp_path / "bad" / "manifest.json").read_text())["calibration"]["tier"] == "conservative"

    base = ["quantize", "--onnx", str(fp32), "--calib", str(calib)]
    assert main([*base, "--out", str(tmp_path / "plain")]) == 0  # no gate: conservative
    assert main([*base, "--out", str(tmp_path / "bal"), "--tier", "balanced"]) == 0
    out = capsys.readouterr().out
    assert "(tier conservative, " in out and "(tier balanced, " in out
    gate = ["--gate", "--eval-sequences", "1", "--eval-length", "6", "--report", str(tmp_path / "r.json")]
    assert main([*base, "--out", str(tmp_path / "auto"), *gate, "--min-iou", "1.01"]) == 2
    report = json.loads((tmp_path / "r.json").read_text())
    assert [t["tier"] for t in report["tiers_tried"]] == list(FASTEST_FIRST)
    assert "tier aggressive (also Softmax" in capsys.readouterr().out
