"""`ckd build` and the TensorRT backend over the fakes of `fake_trt` (TensorRT and CUDA cannot run here): the DLA
core reaches the runtime before any engine is deserialized."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from fake_trt import install_cudart, make_tensorrt
from toy_export import toy_export

from edge.backends.tensorrt import TensorRTBackend
from edge.devices import PROFILES, Device
from edge.manifest import Manifest
from edge.trt.build import build_all
from edge.trt.flags import detect

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
