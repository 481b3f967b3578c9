"""`ckd build` and the TensorRT backend over the fakes of `fake_trt` (TensorRT and CUDA cannot run here): the DLA
core reaches the runtime before any engine is deserialized, `best` keeps whatever built and passed and records each
failure in selection.json, and the TensorRT 8.x calibrator replays the host's calibration cache."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from fake_trt import fake_outputs, install_cudart, make_tensorrt
from toy_export import toy_export

from calibration.trt_cache import read_cache, restamp, write_cache
from ckd.errors import CKDError
from edge.backends.tensorrt import TensorRTBackend
from edge.devices import PROFILES, Device
from edge.manifest import Manifest, sha256_file
from edge.trt.build import build_all
from edge.trt.calibrator import cache_calibrator
from edge.trt.flags import detect
from edge.trt.reference import REFERENCE_NAME, load_reference, reference_inputs
from edge.trt.selection import read_selection

AGX_ORIN = Device(PROFILES["agx-orin"])  # two DLA cores; Jetson, so the backend maps its buffers (zero copy)


def _shapes(export: Manifest) -> dict[str, list[int]]:
    return {**export.inputs, **export.outputs}


@pytest.fixture
def rt(monkeypatch):
    return install_cudart(monkeypatch)


def _fake_trt(monkeypatch, export: Manifest, version: str = "8.6.2"):
    trt = make_tensorrt(_shapes(export), version)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    return trt


def _build(export_dir: Path, precision: str, trt, **kwargs) -> Path:
    return build_all(export_dir, precision, AGX_ORIN, trt, detect(trt), log=lambda _: None, **kwargs)


def _engine(path: Path) -> dict:
    return json.loads(path.read_bytes())


def test_dla_core_is_set_on_the_runtime_before_deserializing(tmp_path, monkeypatch, rt):
    export = toy_export(tmp_path / "fp32", ratios=(1.0, 0.7))
    trt = _fake_trt(monkeypatch, export)
    blob = json.dumps({"io": _shapes(export)}).encode()
    cfg = export.ckd_config
    with TensorRTBackend({1.0: blob, 0.7: blob}, cfg.template_size, cfg.search_size, zero_copy=True) as gpu:
        assert gpu._runtime.DLA_core == -1  # never assigned: TensorRT's "no DLA"
        assert {r: e.dla_core for r, e in gpu._engines.items()} == {1.0: -1, 0.7: -1}
    with TensorRTBackend({1.0: blob}, cfg.template_size, cfg.search_size, zero_copy=True, dla_core=1) as dla:
        assert dla._engines[1.0].dla_core == 1  # set on the runtime before this engine was deserialized
    # through `ckd build --dla 1` and selection.json: the engines are built for core 1 and loaded on core 1
    _build(export.directory, "fp16", trt, dla_core=1)
    engine = _engine(tmp_path / "fp32" / "engines" / "ckd_k0.70_fp16_dla1.engine")
    assert engine["dla_core"] == 1 and {"FP16", "GPU_FALLBACK"} <= set(engine["flags"])
    with TensorRTBackend.from_export(export.directory, AGX_ORIN) as backend:
        assert {r: e.dla_core for r, e in backend._engines.items()} == {1.0: 1, 0.7: 1}
    assert all(not live for live in rt.live.values())  # every CUDA object the backends made was destroyed


def _write_matching_reference(export: Manifest) -> None:
    """Reference outputs equal to what the fake engines write, so the real fidelity gate passes every engine that
    builds (the fake cannot compute the network: this tests the build's bookkeeping, not accuracy)."""
    arrays = {f"input/{k}": v for k, v in reference_inputs(export).items()}
    for rung in export.rungs:
        arrays.update({f"k{rung.keep_ratio:.2f}/{k}": v for k, v in fake_outputs(export.outputs).items()})
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    (export.directory / REFERENCE_NAME).write_bytes(buf.getvalue())
    load_reference(export.directory, 0.7)  # readable as the build reads it


def test_best_records_failed_builds_and_keeps_what_passed(tmp_path, monkeypatch, rt):
    export = toy_export(tmp_path / "fp32", ratios=(1.0, 0.7))
    int8 = toy_export(tmp_path / "int8", ratios=(1.0, 0.7), int8=True)
    _write_matching_reference(export)
    trt = _fake_trt(monkeypatch, export)
    fp16_07 = (tmp_path / "fp32" / "ckd_k0.70.onnx").read_bytes()
    int8_10 = (tmp_path / "int8" / "ckd_k1.00_int8.onnx").read_bytes()

    def fail_build(onnx: bytes, flags: set) -> bool:
        if onnx == int8_10 and "INT8" in flags:
            raise RuntimeError("[TRT] [E] 10: Could not find any implementation for node /m/MatMul\n   (tactics: 0)")
        return onnx == fp16_07 and "INT8" not in flags  # TensorRT returns None for a failed build

    trt.fail_build = fail_build
    path = _build(export.directory, "best", trt, int8_dir=int8.directory)
    doc = read_selection(path)
    assert doc["failures"] == [
        {
            "keep_ratio": 1.0,
            "precision": "int8",
            "reason": "[TRT] [E] 10: Could not find any implementation for node /m/MatMul (tactics: 0)",
        },
        {
            "keep_ratio": 0.7,
            "precision": "fp16",
            "reason": f"{tmp_path / 'fp32' / 'ckd_k0.70.onnx'}: TensorRT failed to build a fp16 engine (see the log "
            "above)",
        },
    ]
    kept = {r["key"]["keep_ratio"]: r["key"]["precision"] for r in doc["rungs"]}
    assert kept == {0.7: "int8", 1.0: "fp16"}  # each rung served by the engine that built and passed the gate
    assert all(r["fidelity"]["failures"] == [] and r["gpu_ms"] == 0.5 and r["alternatives"] == [] for r in doc["rungs"])
    engines = sorted(p.name for p in (tmp_path / "fp32" / "engines").glob("*.engine"))
    assert engines == ["ckd_k0.70_int8.engine", "ckd_k1.00_fp16.engine"]
    with TensorRTBackend.from_export(export.directory, AGX_ORIN) as backend:
        assert backend.precisions == {0.7: "int8", 1.0: "fp16"}
    # nothing builds: still a selection.json listing every failure, and a CKDError saying so
    trt.fail_build = lambda onnx, flags: True
    with pytest.raises(CKDError, match=r"no engine was built and passed for any rung \(4 failures in .*selection"):
        _build(export.directory, "best", trt, int8_dir=int8.directory, cache_dir=tmp_path / "none")
    doc = json.loads((tmp_path / "none" / "selection.json").read_text())
    assert doc["rungs"] == [] and len(doc["failures"]) == 4
    assert {(f["keep_ratio"], f["precision"]) for f in doc["failures"]} == {
        (1.0, "fp16"),
        (1.0, "int8"),
        (0.7, "fp16"),
        (0.7, "int8"),
    }


def test_cache_calibrator_replays_the_cache_and_never_asks_for_batches():
    trt = make_tensorrt({}, "8.6.1")
    cache = write_cache({"search_rgb": 0.02, "/m/norm_output_0": 0.0125}, "8.5.2")  # as `ckd quantize` writes it
    calibrator = cache_calibrator(trt, cache, "calib.cache")
    assert isinstance(calibrator, trt.IInt8EntropyCalibrator2)
    data = calibrator.read_calibration_cache()
    assert data == restamp(cache, "8.6.1")  # the same scales under the running TensorRT's header
    assert data.decode().splitlines()[0] == "TRT-8601-EntropyCalibration2"
    assert read_cache(data) == pytest.approx({"search_rgb": 0.02, "/m/norm_output_0": 0.0125})
    assert calibrator.get_batch_size() == 1
    assert calibrator.get_batch(["search_rgb", "search_tir"]) is None  # no data: "no more batches"
    calibrator.write_calibration_cache(b"TRT-8601-EntropyCalibration2\nsearch_rgb: 3f800000\n")
    assert calibrator.read_calibration_cache() == data  # a table TensorRT writes back replaces nothing
    with pytest.raises(CKDError, match="calib.cache: not a TensorRT calibration cache"):
        cache_calibrator(trt, b"\x89PNG\r\n", "calib.cache")


def test_calibration_cache_route_builds_from_the_cache(tmp_path, monkeypatch, rt):
    export = toy_export(tmp_path / "fp32", ratios=(0.7,))
    cache = write_cache({"search_rgb": 0.02, "/m/norm_output_0": 0.0125}, "8.5.2")
    (tmp_path / "fp32" / "calib.cache").write_bytes(cache)
    export.calibration = {"cache": "calib.cache", "cache_sha256": sha256_file(tmp_path / "fp32" / "calib.cache")}
    export.save(export.directory)
    trt = _fake_trt(monkeypatch, export, "8.6.1")
    path = _build(export.directory, "int8", trt)
    (rung,) = read_selection(path)["rungs"]
    assert rung["key"]["model_sha256"] == export.rungs[0].sha256  # built from the FP32 graph
    assert rung["key"]["calibration_sha256"] == sha256_file(tmp_path / "fp32" / "calib.cache")
    engine = _engine(tmp_path / "fp32" / "engines" / "ckd_k0.70_int8.engine")
    assert {"FP16", "INT8"} <= set(engine["flags"])
    assert engine["calibration"] == restamp(cache, "8.6.1").decode()  # TensorRT read the replayed table
    assert engine["batches"] == 0


def test_ckd_run_closes_the_tensorrt_backend_when_the_loop_cannot_start(tmp_path, monkeypatch, rt, capsys):
    """`ckd run` whose loop refuses to start (here: --replay of live cameras) after the TensorRT backend was made:
    the backend is closed, every CUDA object it made destroyed."""
    from ckd_cli.main import main
    from edge import devices

    export = toy_export(tmp_path / "fp32", ratios=(1.0,))
    _build(export.directory, "fp16", _fake_trt(monkeypatch, export))
    monkeypatch.setattr(devices, "detect", lambda root="/": AGX_ORIN)
    cam = "v4l2:///dev/video0"
    argv = ["run", "--rgb", cam, "--tir", f"{cam}?format=GRAY16_LE", "--backend", "tensorrt"]
    argv += ["--model-dir", str(export.directory), "--replay", "--no-overlay", "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    assert "replay needs recorded clips" in capsys.readouterr().err
    assert rt.calls["cudaStreamCreate"] >= 1 and rt.calls["cudaHostAlloc"] >= 1  # the backend was made...
    assert all(not live for live in rt.live.values()), rt.live  # ...and closed
