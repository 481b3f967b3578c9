"""Rung plans, precision choice under `best`, the fidelity gate and reference outputs (real ONNX Runtime)."""

from __future__ import annotations

import numpy as np
import pytest
from toy_export import toy_export

from ckd.errors import CKDError
from edge.devices import PROFILES, profile_from_nvidia_smi
from edge.int8 import record_gate
from edge.manifest import Manifest, sha256_file
from edge.trt.plan import Candidate, choose_best, gate_reason, plan_rungs
from edge.trt.reference import load_reference, make_reference
from quantize.fidelity import RungFidelity, check_outputs
from quantize.gate_limits import Thresholds

ORIN = PROFILES["orin-nx"]


def test_plan_best_builds_fp16_and_int8_per_rung(tmp_path):
    export = toy_export(tmp_path, ratios=(1.0, 0.7, 0.5), int8=True)
    plans = plan_rungs(export, "best", ORIN)
    assert [(p.keep_ratio, p.precision) for p in plans] == [
        (1.0, "fp16"),
        (1.0, "int8"),
        (0.7, "fp16"),
        (0.7, "int8"),
        (0.5, "fp16"),
        (0.5, "int8"),
    ]
    int8 = plans[1]
    assert int8.onnx.name == "ckd_k1.00_int8.onnx" and int8.int8_source == "qdq"
    assert plans[0].onnx.name == "ckd_k1.00.onnx" and plans[0].onnx_sha256 == export.rungs[0].sha256


def test_plan_int8_sources(tmp_path):
    export = toy_export(tmp_path / "fp32", ratios=(0.7,))
    with pytest.raises(CKDError, match="no INT8 source for keep ratio 0.70: run `ckd quantize`"):
        plan_rungs(export, "int8", ORIN)
    assert [p.precision for p in plan_rungs(export, "best", ORIN)] == ["fp16"]  # best degrades to FP16 alone
    qdq = toy_export(tmp_path / "q", ratios=(0.7,), int8=True)
    assert plan_rungs(export, "int8", ORIN, int8_export=qdq)[0].onnx.parent == tmp_path / "q"
    export.calibration = {"cache": "calib.cache"}
    with pytest.raises(CKDError, match="calib.cache: listed in manifest.json but missing"):
        plan_rungs(export, "int8", ORIN, allow_calibration_cache=True)
    (tmp_path / "fp32" / "calib.cache").write_bytes(b"TRT-8502-EntropyCalibration2\nx: 3c23d70a\n")
    plan = plan_rungs(export, "int8", ORIN, allow_calibration_cache=True)[0]
    assert plan.int8_source == "calibration-cache" and plan.calibration_cache == tmp_path / "fp32" / "calib.cache"
    assert plan.onnx.name == "ckd_k0.70.onnx" and plan.calibration_sha256 == sha256_file(plan.calibration_cache)


def test_plan_no_calibration_cache_int8_for_a_keep_ratio_the_gate_failed(tmp_path):
    """`record_gate` removes a failed INT8 rung but the folder keeps its calibration cache: on TensorRT 8.x that
    keep ratio must not fall back to the FP32 graph + cache (that would build the INT8 the gate refused)."""
    fp32 = toy_export(tmp_path / "fp32", ratios=(1.0, 0.7))
    folder = tmp_path / "int8"
    int8 = toy_export(folder, ratios=(1.0, 0.7), int8=True)
    (folder / "calibration.cache").write_bytes(b"TRT-8502-EntropyCalibration2\nx: 3c23d70a\n")
    int8.rungs = [r for r in int8.rungs if r.precision == "int8"]
    int8.calibration = {
        **int8.calibration,
        "cache": "calibration.cache",
        "cache_sha256": sha256_file(folder / "calibration.cache"),
    }
    int8.gate = {"pending": True}
    int8.save(folder)
    verdicts = [
        RungFidelity(10, 0.99, 0.98, 0.0, 0.0, 0.99, 0.95, f, keep_ratio=k) for k, f in ((1.0, []), (0.7, ["x"]))
    ]
    record_gate(int8, verdicts, Thresholds())
    gated = Manifest.load(folder)
    assert gated.calibration["cache"] == "calibration.cache" and list(gated.failed_gate()) == [0.7]
    plans = plan_rungs(fp32, "best", ORIN, int8_export=gated, allow_calibration_cache=True)
    assert [(p.keep_ratio, p.precision, p.int8_source) for p in plans] == [
        (1.0, "fp16", ""),
        (1.0, "int8", "qdq"),
        (0.7, "fp16", ""),
    ]
    with pytest.raises(CKDError, match="no INT8 source for keep ratio 0.70: its INT8 rung failed the fidelity gate"):
        plan_rungs(fp32, "int8", ORIN, int8_export=gated, allow_calibration_cache=True)
    # a keep ratio the gate never saw (no Q/DQ rung, not failed) still takes the cache route
    fp32_more = toy_export(tmp_path / "fp32b", ratios=(1.0, 0.7, 0.5))
    plans = plan_rungs(fp32_more, "best", ORIN, int8_export=gated, allow_calibration_cache=True)
    assert [(p.keep_ratio, p.int8_source) for p in plans if p.precision == "int8"] == [
        (1.0, "qdq"),
        (0.5, "calibration-cache"),
    ]


def test_plan_device_limits(tmp_path):
    export = toy_export(tmp_path, ratios=(0.7,))
    with pytest.raises(CKDError, match="Jetson Orin Nano has no DLA"):
        plan_rungs(export, "fp16", PROFILES["orin-nano"], dla_core=0)
    with pytest.raises(CKDError, match="DLA cores 0..1"):
        plan_rungs(export, "fp16", ORIN, dla_core=2)
    assert plan_rungs(export, "fp16", ORIN, dla_core=1)[0].dla_core == 1
    with pytest.raises(CKDError, match="the DLA runs FP16 and INT8 only"):
        plan_rungs(export, "fp32", ORIN, dla_core=0)
    with pytest.raises(CKDError, match="no fast fp16"):
        plan_rungs(export, "fp16", profile_from_nvidia_smi("NVIDIA GeForce GTX 1080, 6.1"))
    with pytest.raises(CKDError, match="unknown precision 'fp8'"):
        plan_rungs(export, "fp8", ORIN)


def _outputs(rng, peak: tuple[int, int] = (4, 4), f: int = 8) -> dict[str, np.ndarray]:
    """Head outputs with a clear score peak at `peak`, boxes 0.3 of the crop, random offsets."""
    score = rng.uniform(0.0, 0.1, (1, 1, f, f)).astype(np.float32)
    score[0, 0, peak[0], peak[1]] = 0.9
    return {
        "score_map": score,
        "size_map": np.full((1, 2, f, f), 0.3, np.float32),
        "offset_map": rng.uniform(0.4, 0.6, (1, 2, f, f)).astype(np.float32),
    }


def test_fidelity_gate_on_reference_outputs():
    """`ckd build` checks engines with the gate of `ckd quantize --gate` (quantize.fidelity.check_outputs)."""
    ref = _outputs(np.random.default_rng(1))
    same = check_outputs(ref, ref, 128)
    assert same.passed and same.iou_agreement_median == 1.0 and same.score_cosine_mean == 1.0
    assert same.crops == 1 and same.peak_shift_px_mean == 0.0
    near = {k: v + np.float32(0.002) for k, v in ref.items()}  # FP16-sized differences
    assert check_outputs(ref, near, 128).passed
    moved = _outputs(np.random.default_rng(1), peak=(4, 5))
    check = check_outputs(ref, moved, 128)
    assert check.peak_shift_px_mean == 16.0  # one cell of an 8x8 map over a 128-pixel crop
    assert check.iou_agreement_median < 0.9 and not check.passed
    assert "score peak moved on 100.0% of crops > 30%" in str(check)


def test_choose_best():
    rng = np.random.default_rng(2)
    ref = _outputs(rng)
    good = check_outputs(ref, ref, 128)
    bad = check_outputs(ref, _outputs(rng, peak=(2, 6)), 128)
    assert good.passed and not bad.passed
    picks = choose_best(
        [
            Candidate(1.0, "fp16", 10.0, good),
            Candidate(1.0, "int8", 6.0, good),  # clearly faster: INT8 kept
            Candidate(0.7, "fp16", 8.0, good),
            Candidate(0.7, "int8", 7.8, good),  # < 5 % faster: FP16 kept
            Candidate(0.5, "fp16", 7.0, good),
            Candidate(0.5, "int8", 4.0, bad),  # fails the gate
        ]
    )
    assert {k: c.precision for k, c in picks.items()} == {1.0: "int8", 0.7: "fp16", 0.5: "fp16"}
    assert choose_best([Candidate(0.7, "int8", 4.0, bad), Candidate(1.0, "fp16", 9.0, good)]) == {
        1.0: Candidate(1.0, "fp16", 9.0, good)
    }  # a rung where nothing passes is left out; the others stay
    assert gate_reason(Candidate(0.7, "int8", 4.0, bad)).startswith("fidelity gate: median IoU 0.011, cosine -0.012")


def test_reference_round_trip_with_onnxruntime(tmp_path):
    export = toy_export(tmp_path, ratios=(1.0, 0.7))
    make_reference(export)
    inputs, out_1 = load_reference(tmp_path, 1.0)
    _, out_07 = load_reference(tmp_path, 0.7)
    # the toy graph: score_map = keep_ratio * 16x16 mean of the channel-mean of search_rgb
    expected = inputs["search_rgb"].mean(axis=1).reshape(8, 16, 8, 16).mean(axis=(1, 3))
    np.testing.assert_allclose(out_1["score_map"][0, 0], expected, atol=1e-5)
    np.testing.assert_allclose(out_07["score_map"], 0.7 * out_1["score_map"], atol=1e-6)
    with pytest.raises(CKDError, match="no reference outputs for keep ratio 0.50"):
        load_reference(tmp_path, 0.5)


def test_cli_build_checks_export_then_tensorrt(tmp_path, capsys):
    from ckd_cli.main import main

    export = toy_export(tmp_path, ratios=(0.7,))
    (tmp_path / "ckd_k0.70.onnx").write_bytes(b"changed after export")
    assert main(["build", "--onnx", str(export.directory)]) == 2
    assert "ckd_k0.70.onnx: sha256 mismatch" in capsys.readouterr().err
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        toy_export(tmp_path, ratios=(0.7,))
        assert main(["build", "--onnx", str(tmp_path)]) == 2
        assert "TensorRT Python bindings not found" in capsys.readouterr().err
