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
from quantize.policy import TIER_NAMES, TIERS, check_policy, keep_float, quantized_nodes


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
    seconds = {"aggressive": 0.003, "balanced": 0.001, "conservative": 0.002}  # injected: the order to gate in
    calls = []

    def timer(name, run):
        run()  # the rounds really run every rung
        calls.append(name)
        return seconds[name]

    assert tiers_to_try("auto") == TIER_NAMES and tiers_to_try("balanced") == ("balanced",)
    ok = quantize_gated(fp32, calib, tmp_path / "ok", clips, Thresholds(), log=lambda _: None, timer=timer)
    assert ok.passed and [(t["tier"], t["model_ms"]) for t in ok.tried] == [("balanced", 1.0)]
    assert ok.manifest.calibration["tier"] == "balanced" and len(calls) == 3 * 10  # 9 timed rounds + 1 warm-up
    assert sorted(p.name for p in (tmp_path / "ok").iterdir()) == ["ckd_k1.00_int8.onnx", "manifest.json"]
    never = Thresholds(min_iou_agreement=1.01)
    bad = quantize_gated(fp32, calib, tmp_path / "bad", clips, never, log=lambda _: None, timer=timer)
    assert not bad.passed and [t["tier"] for t in bad.tried] == ["balanced", "conservative", "aggressive"]
    assert all(not t["passed"] and t["failures"][0].startswith("k=1.00: median box IoU") for t in bad.tried)
    record = json.loads((tmp_path / "bad" / "manifest.json").read_text())
    assert record["calibration"]["tier"] == "aggressive" and record["rungs"] == []  # failed rungs removed
    assert record["gate"]["failed"][0]["keep_ratio"] == 1.0

    base = ["quantize", "--onnx", str(fp32), "--calib", str(calib)]
    assert main([*base, "--out", str(tmp_path / "plain")]) == 0  # no gate: conservative
    assert main([*base, "--out", str(tmp_path / "bal"), "--tier", "balanced"]) == 0
    out = capsys.readouterr().out
    assert "(tier conservative, " in out and "(tier balanced, " in out
    gate = ["--gate", "--eval-sequences", "1", "--eval-length", "6", "--report", str(tmp_path / "r.json")]
    assert main([*base, "--out", str(tmp_path / "auto"), *gate, "--min-iou", "1.01"]) == 2
    report = json.loads((tmp_path / "r.json").read_text())
    assert sorted(t["tier"] for t in report["tiers_tried"]) == sorted(TIER_NAMES)
    assert all(t["model_ms"] > 0 for t in report["tiers_tried"])
    assert "model time per tier" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--format", "trt", "--engine", "modelopt"], "--engine modelopt does not apply to --format trt"),
        (["--format", "trt", "--tier", "balanced"], "--tier balanced needs --format ort --engine ort"),
        (["--engine", "modelopt", "--tier", "aggressive", "--gate"], "--tier aggressive needs --format ort"),
    ],
)
def test_options_the_format_would_ignore_are_refused(tmp_path, capsys, extra, message):
    """Combinations `quantize_export` would silently replace (engine, tier) fail in one line before any work."""
    argv = ["quantize", "--onnx", str(tmp_path / "fp32"), "--calib", str(tmp_path / "calib")]
    assert main([*argv, "--out", str(tmp_path / "out"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ckd quantize: error: ") and message in err and "\n" not in err
    assert not (tmp_path / "out").exists()
