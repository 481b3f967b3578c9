"""Shared fixtures: paths to ../shared, GPU detection for `@pytest.mark.gpu`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def gpu_status(tegra: bool, nvidia_smi: bool, tensorrt_error: str | None) -> tuple[str, str]:
    """What `@pytest.mark.gpu` tests do here: ("run", ""), ("skip", why) or ("fail", why).

    A Jetson (/etc/nv_tegra_release) whose Python cannot import tensorrt is a broken device set-up, not a
    machine without a GPU: its GPU tests fail loudly instead of skipping.
    """
    if tensorrt_error is None and (tegra or nvidia_smi):
        return "run", ""
    if tegra:
        return "fail", (
            f"this is a Jetson but `import tensorrt` fails ({tensorrt_error}): make the venv with "
            "--system-site-packages over JetPack's python3-libnvinfer (see `make device-check`)"
        )
    if nvidia_smi:
        return "skip", f"NVIDIA GPU without the TensorRT Python bindings ({tensorrt_error})"
    return "skip", "needs an NVIDIA GPU with TensorRT"


def _tensorrt_error() -> str | None:
    try:
        import tensorrt  # noqa: F401
    except ImportError as exc:
        return str(exc) or "ImportError"
    return None


def pytest_collection_modifyitems(config, items):
    gpu = [item for item in items if "gpu" in item.keywords]
    if not gpu:
        return
    tegra = Path("/etc/nv_tegra_release").exists()
    action, why = gpu_status(tegra, shutil.which("nvidia-smi") is not None, _tensorrt_error())
    for item in gpu:
        if action == "skip":
            item.add_marker(pytest.mark.skip(reason=why))
        elif action == "fail":
            item.user_properties.append(("gpu_setup_broken", why))


def pytest_runtest_setup(item):
    """Before any fixture: a GPU test on a Jetson that cannot import tensorrt fails with the reason."""
    broken = dict(item.user_properties).get("gpu_setup_broken")
    if broken:
        pytest.fail(broken, pytrace=False)


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


@pytest.fixture(scope="session")
def nano_calibrated(tmp_path_factory) -> Path:
    """A random nano model's 1.0 rung (`fp32/`) and 8 tracker-sampled calibration crops (`calib/`)."""
    import torch

    from calibration.sampler import sample_crops
    from calibration.sources import synthetic_clips
    from calibration.store import write_calibration
    from ckd.model.config import preset
    from ckd.model.network import CKDNet
    from edge.backends.onnxruntime import OrtBackend
    from edge.export import export_rungs

    root = tmp_path_factory.mktemp("nano_calibrated")
    torch.manual_seed(0)
    export_rungs(CKDNet(preset("nano")).eval(), root / "fp32", (1.0,), "random:nano:calibrated", verify=False)
    backend = OrtBackend(root / "fp32", precision="fp32")
    crops = sample_crops(backend, synthetic_clips(2, 9, seed=1), 8, every=1)
    identity = {"name": "nano", "checkpoint_sha256": "random:nano:calibrated"}
    write_calibration(root / "calib", crops, "synthetic", 1, identity)
    return root
