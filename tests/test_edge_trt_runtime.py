"""TensorRT runtime defects of issue 13 / 15 that CPU tests can pin down: CUDA object lifetimes and failed graph
captures (a counting fake of cuda-python's runtime), the engine cache reading and hashing the bytes it returns,
malformed and stale selection.json keys, calibration caches (format, restamping, key)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from fake_trt import install_cudart
from toy_export import toy_export

from calibration.trt_cache import header, nv_tensorrt_version, read_cache, restamp, write_cache
from ckd.errors import CKDError
from edge.trt import cache
from edge.trt.cache import EngineKey
from edge.trt.selection import read_selection, verify_keys

KEY = EngineKey("ab" * 32, 0.7, "fp16", "10.3.0", "Jetson Orin Nano", "8.7")


@pytest.fixture
def rt(monkeypatch):
    return install_cudart(monkeypatch)


def test_stream_runner_destroys_everything_it_made(rt):
    from edge.trt.cuda import Cuda, HostBuffer, StreamRunner

    cuda = Cuda()
    runner = StreamRunner(cuda, graphs=True)
    buffers = [HostBuffer(cuda, (1, 3, 8, 8), mapped=m) for m in (True, False)]
    work = []
    for _ in range(3):
        assert runner.run(0.7, lambda: work.append(1)) == 0.5
    assert len(work) == 2  # one plain warm-up run + one captured: later frames replay the graph
    assert rt.calls["cudaGraphLaunch"] == 3 and rt.calls["cudaStreamBeginCapture"] == 1
    for buf in buffers:
        buf.free()
    runner.close()
    runner.close()  # idempotent: nothing destroyed twice (the fake fails a second destroy)
    assert {k: len(v) for k, v in rt.live.items()} == dict.fromkeys(rt.live, 0)
    assert rt.calls["cudaGraphExecDestroy"] == rt.calls["cudaGraphDestroy"] == 1


def test_failed_capture_ends_the_capture_and_runs_plainly(rt):
    from edge.trt.cuda import Cuda, StreamRunner

    runner = StreamRunner(Cuda(), graphs=True)
    calls = []

    def enqueue():
        calls.append(len(rt.capturing))
        if rt.capturing:
            raise CKDError("keep ratio 0.70: TensorRT execute_async_v3 failed")

    runner.run(0.7, enqueue)
    assert not rt.capturing  # the stream left capture mode
    assert "execute_async_v3 failed" in runner.graph_failures[0.7]
    assert rt.live["graph"] == set() and rt.live["exec"] == set()  # the partial graph was dropped
    runner.run(0.7, enqueue)  # later frames: plain launches, no new capture attempt
    assert calls == [0, 1, 0, 0] and rt.calls["cudaStreamBeginCapture"] == 1
    runner.close()
    assert all(not v for v in rt.live.values())


def test_failed_instantiation_destroys_the_captured_graph(rt):
    from edge.trt.cuda import Cuda, StreamRunner

    rt.fail.add("cudaGraphInstantiateWithFlags")
    runner = StreamRunner(Cuda(), graphs=True)
    runner.run(1.0, lambda: None)
    assert "cudaGraphInstantiateWithFlags failed" in runner.graph_failures[1.0]
    assert not rt.live["graph"] and not rt.capturing
    runner.close()


def test_cache_load_hashes_the_bytes_it_returns(tmp_path, monkeypatch):
    path = cache.store(tmp_path, KEY, b"engine-bytes")
    reads = []
    original = Path.read_bytes

    def counting(self):
        if self == path:
            reads.append(self)
        return original(self)

    monkeypatch.setattr(Path, "read_bytes", counting)
    assert cache.load(tmp_path, KEY) == b"engine-bytes"
    assert len(reads) == 1  # no second read that could differ from the one that was hashed
    path.write_bytes(b"engine-bytez")
    with pytest.raises(CKDError, match="checksum does not match its record"):
        cache.load(tmp_path, KEY)


def test_calibration_cache_is_part_of_the_key(tmp_path):
    int8 = dataclasses.replace(KEY, precision="int8", calibration_sha256="11" * 32)
    cache.store(tmp_path, int8, b"int8")
    moved = cache.check(tmp_path, dataclasses.replace(int8, calibration_sha256="22" * 32))
    assert not moved.ok and "calibration_sha256 '1111" in moved.reason


@pytest.mark.parametrize(
    "record",
    [
        None,
        "key",
        {"model_sha256": "ab"},
        {**dataclasses.asdict(KEY), "keep_ratio": "0.7"},
        {**dataclasses.asdict(KEY), "x": 1},
    ],
)
def test_malformed_key_is_one_clear_line(record):
    with pytest.raises(CKDError, match=r"^sel\.json: malformed engine key .*run `ckd build`"):
        EngineKey.from_record(record, "sel.json")


def _selection(tmp_path, keys, int8_dir=None):
    doc = {
        "rungs": [{"key": dataclasses.asdict(k)} for k in keys],
        "sources": {"int8": str(int8_dir) if int8_dir else None},
    }
    (tmp_path / "selection.json").write_text(json.dumps(doc))
    return read_selection(tmp_path / "selection.json")


def test_selection_checks_every_engine_against_the_graphs_now(tmp_path):
    export = toy_export(tmp_path / "fp32", ratios=(0.7,))
    int8 = toy_export(tmp_path / "int8", ratios=(0.7,), int8=True)
    here = ("Jetson Orin Nano", "8.7", "8.6.2")
    fp16 = EngineKey(export.rungs[0].sha256, 0.7, "fp16", "8.6.2", *here[:2])
    qdq = EngineKey(int8.rungs[1].sha256, 0.7, "int8", "8.6.2", *here[:2])
    ok = verify_keys(_selection(tmp_path, [fp16, qdq], int8.directory), "sel", export.directory, *here)
    assert [k.precision for k in ok] == ["fp16", "int8"]
    stale = dataclasses.replace(qdq, model_sha256="ee" * 32)  # INT8 engine of a graph no longer in the folder
    with pytest.raises(CKDError, match="int8 engine of keep ratio 0.70 was built from a graph that is not in"):
        verify_keys(_selection(tmp_path, [stale], int8.directory), "sel", export.directory, *here)
    with pytest.raises(CKDError, match="which is gone"):
        verify_keys(_selection(tmp_path, [qdq], tmp_path / "nowhere"), "sel", export.directory, *here)
    with pytest.raises(
        CKDError, match="built for Jetson Orin Nano / TensorRT 8.6.2, this is Jetson Orin Nano / TensorRT 10.3.0"
    ):
        verify_keys(_selection(tmp_path, [fp16]), "sel", export.directory, *here[:2], "10.3.0")
    (tmp_path / "selection.json").write_text('{"rungs": [{"key": {"model_sha256": 3}}]}')
    with pytest.raises(CKDError, match="malformed engine key"):
        verify_keys(read_selection(tmp_path / "selection.json"), "sel", export.directory, *here)
    (tmp_path / "selection.json").write_text('{"rungs": [], "failures": []}')
    with pytest.raises(CKDError, match="no engine selected"):
        read_selection(tmp_path / "selection.json")


def test_calibration_cache_route_checks_the_cache(tmp_path):
    export = toy_export(tmp_path / "fp32", ratios=(0.7,))
    int8 = toy_export(tmp_path / "int8", ratios=(0.7,), int8=True)
    from edge.manifest import sha256_file

    def write_cache_file(scale: float) -> str:
        (int8.directory / "calib.cache").write_bytes(write_cache({"x": scale}, "8.5.2"))
        int8.calibration = {"cache": "calib.cache", "cache_sha256": sha256_file(int8.directory / "calib.cache")}
        int8.save(int8.directory)
        return int8.calibration["cache_sha256"]

    here = ("Jetson Orin NX", "8.7", "8.5.2")
    key = EngineKey(export.rungs[0].sha256, 0.7, "int8", "8.5.2", *here[:2], None, write_cache_file(0.1))
    assert verify_keys(_selection(tmp_path, [key], int8.directory), "sel", export.directory, *here) == [key]
    write_cache_file(0.2)  # re-quantized: a new cache, correctly listed, but the engine was built from the old one
    with pytest.raises(CKDError, match="calibration cache changed"):
        verify_keys(_selection(tmp_path, [key], int8.directory), "sel", export.directory, *here)


def test_calibration_cache_text():
    assert nv_tensorrt_version("8.5.2.2") == 8502 and nv_tensorrt_version("8.6.2") == 8602
    assert nv_tensorrt_version("10.3.0") == 100300
    data = write_cache({"/m/norm_output_0": 0.0125, "a": 2.5}, "8.5.2")
    assert data.decode().splitlines()[:2] == ["TRT-8502-EntropyCalibration2", "/m/norm_output_0: 3c4ccccd"]
    assert read_cache(data) == pytest.approx({"/m/norm_output_0": 0.0125, "a": 2.5})
    again = restamp(data, "8.6.2")
    assert again.decode().splitlines()[0] == header("8.6.2") == "TRT-8602-EntropyCalibration2"
    assert read_cache(again) == read_cache(data)
    with pytest.raises(CKDError, match="calib.cache: not a TensorRT calibration cache"):
        restamp(b"\x89PNG", "8.5.2", "calib.cache")
    with pytest.raises(CKDError, match="cannot go into a calibration cache"):
        write_cache({"x": float(np.nan)}, "8.5.2")


def test_demo_calibration_cache_holds_the_qdq_scales(demo_graphs):
    import onnx

    from edge.manifest import Manifest
    from quantize.trt_qdq import activation_scales

    manifest = Manifest.load(demo_graphs / "trt")
    scales = read_cache((demo_graphs / "trt" / "calib.cache").read_bytes())
    graph = onnx.load(str(manifest.path(manifest.rung(0.7, "int8"))))
    want = activation_scales(graph)
    assert want and all(scales[name] == pytest.approx(s, rel=1e-6) for name, s in want.items())
    fp32_tensors = {o for n in onnx.load(str(demo_graphs / "fp32" / "ckd_k0.70.onnx")).graph.node for o in n.output}
    fp32_tensors |= {"template_rgb", "template_tir", "search_rgb", "search_tir"}
    assert set(want) <= fp32_tensors  # named as the FP32 graph's tensors, which the calibrator route builds from
