"""`make device-check` without a GPU: the graphs it ships are made and clean, its tracking criterion holds for the
demo student under ONNX Runtime (FP32 and the TensorRT-format INT8 graphs), and without TensorRT it writes a
report that fails on the first step with one clear reason."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ckd.data.synthetic import SyntheticSequence
from ckd_cli.main import main as ckd
from edge.backends.onnxruntime import OrtBackend
from edge.trt import device_check
from quantize.cpu_target import FORMATS, host_target


def test_iou():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], float)
    b = np.array([[0, 0, 10, 10], [5, 0, 10, 10], [20, 20, 5, 5]], float)
    np.testing.assert_allclose(device_check.iou(a, b), [1.0, 50 / 150, 0.0])


@pytest.mark.parametrize(("folder", "precision"), [("fp32", "fp32"), ("trt", "int8")])
def test_tracking_criterion_holds_for_the_demo_student(demo_graphs, folder, precision):
    if folder == "trt" and host_target() not in FORMATS["s8s8"].exact_on:
        # TensorRT's symmetric S8S8 graphs saturate in ONNX Runtime's x86 kernels without VNNI (issue 12)
        pytest.skip(f"TensorRT-format INT8 runs exactly under ONNX Runtime only on VNNI or Arm, not {host_target()}")
    result = device_check.track_clip(OrtBackend(demo_graphs / folder, precision=precision))
    visible = SyntheticSequence(device_check.TRACK_SEED, frames=device_check.TRACK_FRAMES).visible
    assert result["frames"] == int((visible[1:] & visible[:-1]).sum())
    assert result["median_iou"] >= device_check.MIN_MEDIAN_IOU + 0.05  # margin for FP16/INT8 engines


def test_tracking_criterion_fails_a_backend_that_does_not_localise(demo_graphs):
    seq = SyntheticSequence(device_check.TRACK_SEED, frames=device_check.TRACK_FRAMES)
    both = seq.visible[1:] & seq.visible[:-1]
    stay = device_check.iou(seq.boxes[:-1][both].astype(float), seq.boxes[1:][both].astype(float))
    assert np.median(stay) < device_check.MIN_MEDIAN_IOU - 0.1  # re-centring alone does not pass the check

    class Frozen:  # the real FP32 graphs, with the network's box estimate replaced by the crop centre
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def run(self, buffers, keep_ratio):
            out = dict(self.inner.run(buffers, keep_ratio))
            out["score_map"] = np.zeros_like(out["score_map"])
            out["offset_map"] = np.zeros_like(out["offset_map"])
            return out

    with pytest.raises(RuntimeError, match="median IoU with the ground truth"):
        device_check.track_clip(Frozen(OrtBackend(demo_graphs / "fp32", precision="fp32")))


def test_prepare_makes_clean_graphs_for_every_tensorrt(tmp_path, capsys):
    graphs = tmp_path / "graphs"
    device_check.prepare(graphs, models=("demo",))
    for sub in ("fp32", "int8"):
        assert ckd(["check-trt", str(graphs / "demo" / sub)]) == 0
    assert (graphs / "demo" / "fp32" / "reference.npz").is_file()
    assert (graphs / "demo" / "fp32" / "trt8.5" / "reference.npz").is_file()


def test_packages_import_only_those_to_their_left():
    """README's layout rule, ckd <- calibration <- quantize <- edge <- pipelines <- ckd_cli, over every import
    (lazy ones inside functions included): `prepare` above once reached the CLI layer from edge."""
    import ast
    from pathlib import Path

    order = ["ckd", "calibration", "quantize", "edge", "pipelines", "ckd_cli"]
    root = Path(__file__).resolve().parents[1]
    wrong = []
    for pkg in order:
        for path in sorted((root / pkg).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top in order and order.index(top) > order.index(pkg):
                        wrong.append(f"{path.relative_to(root)}:{node.lineno} imports {name}")
    assert wrong == []


def test_without_tensorrt_the_report_fails_on_the_first_step(tmp_path):
    try:
        import tensorrt  # noqa: F401

        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    out = tmp_path / "report.json"
    assert device_check.main(["--graphs", str(tmp_path / "none"), "--out", str(out)]) == 1
    doc = json.loads(out.read_text())
    assert doc["passed"] is False and [s["step"] for s in doc["steps"]] == ["environment"]
    assert "TensorRT Python bindings not found" in doc["steps"][0]["error"]
