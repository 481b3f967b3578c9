"""Shared fixtures: paths to ../shared, GPU detection for `@pytest.mark.gpu`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def _has_gpu() -> bool:
    if shutil.which("nvidia-smi") is None and not Path("/etc/nv_tegra_release").exists():
        return False
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


def pytest_collection_modifyitems(config, items):
    if _has_gpu():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU with TensorRT")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """`../shared` beside the checkout; tests that need it skip cleanly when it is absent."""
    if not SHARED.is_dir():
        pytest.skip("../shared is not present")
    return SHARED


@pytest.fixture(scope="session")
def demo_graphs(tmp_path_factory):
    """The demo student as `make demo` + `ckd quantize --format trt` leave it, through the CLI: fp32/ (every
    TensorRT generation, trt8.5/ inside), calib/, trt/ (TensorRT INT8 Q/DQ) and ort/ (ONNX Runtime CPU INT8)."""
    from ckd_cli.main import main

    root = tmp_path_factory.mktemp("demo_graphs")
    fp32, calib = root / "fp32", root / "calib"
    assert main(["export", "--out", str(fp32), "--keep-ratios", "1.0,0.7"]) == 0
    assert main(["calibrate", "--model", str(fp32), "--out", str(calib), "--frames", "16"]) == 0
    for fmt in ("trt", "ort"):
        argv = ["quantize", "--onnx", str(fp32), "--calib", str(calib), "--out", str(root / fmt), "--format", fmt]
        assert main(argv) == 0
    return root
