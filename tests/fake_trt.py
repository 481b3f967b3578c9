"""Test doubles for what cannot run here: cuda-python's runtime (a counting fake of the calls the kit makes, for
resource lifetimes) and a tiny `tensorrt` shaped like 8.6's API, used ONLY to import and run the device entry
points without torch/onnx/onnxruntime, and to drive the builder and backend logic (DLA core, failed builds under
`best`, the calibration-cache route). The fake engine cannot compute the network: its outputs are a fixed peak
(`fake_outputs`), so no accuracy is ever concluded from it."""

from __future__ import annotations

import ctypes
import json
import sys
import types
from collections import Counter

import numpy as np


class FakeCudart:
    """cuda-python's runtime calls as `(err, value)` tuples; counts every call and every live object."""

    cudaHostAllocMapped, cudaHostAllocDefault = 2, 0
    cudaMemcpyKind = types.SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2)
    cudaStreamCaptureMode = types.SimpleNamespace(cudaStreamCaptureModeThreadLocal=1)

    def __init__(self) -> None:
        self.calls: Counter = Counter()
        self.live: dict[str, set] = {k: set() for k in ("stream", "event", "graph", "exec", "host", "device")}
        self.capturing: set = set()
        self.fail: set[str] = set()  # call names that return an error
        self._next = 1000
        self._memory: dict[int, ctypes.Array] = {}

    def _new(self, kind: str) -> int:
        self._next += 1
        self.live[kind].add(self._next)
        return self._next

    def _drop(self, kind: str, handle) -> tuple:
        if handle not in self.live[kind]:
            return (1,)  # cudaErrorInvalidValue: destroyed twice or never made
        self.live[kind].discard(handle)
        return (0,)

    def __getattr__(self, name: str):
        if not name.startswith("cuda"):
            raise AttributeError(name)

        def call(*args):
            self.calls[name] += 1
            if name in self.fail:
                return (700,) if name != "cudaStreamEndCapture" else (700, None)
            return getattr(self, "_" + name)(*args)

        return call

    def _cudaStreamCreate(self):
        return 0, self._new("stream")

    def _cudaStreamDestroy(self, s):
        return self._drop("stream", s)

    def _cudaStreamSynchronize(self, s):
        return (900,) if s in self.capturing else (0,)  # not allowed while capturing

    def _cudaEventCreate(self):
        return 0, self._new("event")

    def _cudaEventDestroy(self, e):
        return self._drop("event", e)

    def _cudaEventRecord(self, e, s):
        return (0,)

    def _cudaEventElapsedTime(self, a, b):
        return 0, 0.5

    def _cudaStreamBeginCapture(self, s, mode):
        self.capturing.add(s)
        return (0,)

    def _cudaStreamEndCapture(self, s):
        if s not in self.capturing:
            return 1, None
        self.capturing.discard(s)
        return 0, self._new("graph")

    def _cudaGraphInstantiateWithFlags(self, g, flags):
        return 0, self._new("exec")

    def _cudaGraphLaunch(self, g, s):
        return (0,)

    def _cudaGraphExecDestroy(self, g):
        return self._drop("exec", g)

    def _cudaGraphDestroy(self, g):
        return self._drop("graph", g)

    def _cudaHostAlloc(self, n, flags):
        buf = (ctypes.c_uint8 * n)()
        addr = ctypes.addressof(buf)
        self._memory[addr] = buf
        self.live["host"].add(addr)
        return 0, addr

    def _cudaHostGetDevicePointer(self, p, flags):
        return 0, p

    def _cudaMalloc(self, n):
        return 0, self._new("device")

    def _cudaFree(self, p):
        return self._drop("device", p)

    def _cudaFreeHost(self, p):
        self._memory.pop(p, None)
        return self._drop("host", p)

    def _cudaMemcpyAsync(self, dst, src, n, kind, s):
        return (0,)


def install_cudart(monkeypatch=None) -> FakeCudart:
    """Make `from cuda.bindings import runtime` return a fresh FakeCudart."""
    rt = FakeCudart()
    cuda, bindings = types.ModuleType("cuda"), types.ModuleType("cuda.bindings")
    bindings.runtime = rt
    cuda.bindings = bindings
    mods = {"cuda": cuda, "cuda.bindings": bindings, "cuda.bindings.runtime": rt}
    for name, mod in mods.items():
        if monkeypatch is not None:
            monkeypatch.setitem(sys.modules, name, mod)
        else:
            sys.modules[name] = mod
    return rt


OUTPUTS = ("score_map", "size_map", "offset_map", "pred_boxes")


def fake_outputs(shapes: dict[str, list[int]]) -> dict[str, np.ndarray]:
    """What every fake engine writes: 0.25 everywhere, a 0.9 score peak in the middle, offsets 0.5."""
    out = {}
    for name in OUTPUTS:
        shape = tuple(shapes[name])
        arr = np.full(shape, 0.5 if name == "offset_map" else 0.25, np.float32)
        if name == "score_map":
            arr[..., shape[-2] // 2, shape[-1] // 2] = 0.9
        out[name] = arr
    return out


def make_tensorrt(shapes: dict[str, list[int]], version: str = "8.6.2") -> types.ModuleType:
    """A module shaped like `tensorrt` 8.6 whose engines have the CKD tensors `shapes` and write `fake_outputs`.

    Engines are JSON: the I/O shapes, the builder flags, the config's DLA core and the calibration table TensorRT
    read from the config's INT8 calibrator (and how many batches it asked for). Deserialized engines record the
    runtime's `DLA_core` at that moment. `trt.fail_build(onnx_bytes, flags)`, when set, decides per build: True
    makes `build_serialized_network` return None (TensorRT's failed build); it may also raise, as TensorRT does.
    """
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.float32, trt.float16 = "float32", "float16"
    trt.fail_build = None  # (onnx bytes, flag names) -> bool, or None: every build succeeds
    outputs = OUTPUTS

    class Logger:
        WARNING = 2

        def __init__(self, level=2):
            self.level = level

    class ICudaEngine:
        num_io_tensors = 0

        def __init__(self, io):
            self.io = io
            self.num_io_tensors = len(io)

        def get_tensor_name(self, i):
            return list(self.io)[i]

        def get_tensor_mode(self, name):
            return "OUTPUT" if name in outputs else "INPUT"

        def get_tensor_shape(self, name):
            return tuple(self.io[name])

        def get_tensor_dtype(self, name):
            return trt.float32

        def create_execution_context(self):
            return IExecutionContext(self)

    class IExecutionContext:
        def __init__(self, engine):
            self.engine, self.addr = engine, {}

        def set_tensor_address(self, name, ptr):
            self.addr[name] = ptr

        def execute_async_v3(self, stream):
            for name, value in fake_outputs(self.engine.io).items():
                n = value.size
                arr = np.frombuffer((ctypes.c_float * n).from_address(self.addr[name]), np.float32)
                arr[...] = value.reshape(-1)
            return True

    class Runtime:
        def __init__(self, logger):
            self.DLA_core = -1

        def deserialize_cuda_engine(self, blob):
            try:
                engine = ICudaEngine(json.loads(bytes(blob))["io"])
            except ValueError:
                return None
            engine.dla_core = self.DLA_core  # the core TensorRT places a DLA engine on: the runtime's, now
            return engine

    class Layer:
        def __init__(self, name):
            self.name, self.num_outputs, self.precision = name, 1, None

        def get_output(self, i):
            return types.SimpleNamespace(dtype=trt.float32)

        def set_output_type(self, i, dtype):
            pass

    class Network:
        def __init__(self):
            self.layers, self.onnx = [], b""

        @property
        def num_layers(self):
            return len(self.layers)

        def get_layer(self, i):
            return self.layers[i]

    class OnnxParser:
        num_errors = 0

        def __init__(self, network, logger):
            self.network = network

        def parse(self, data):
            self.network.onnx = bytes(data)
            self.network.layers = [Layer("/m/rgb_branch/norm/ln_fp32/Sub")] if b"/ln_fp32/" in data else []
            return bool(data)

    class IBuilderConfig:
        def __init__(self):
            self.flags = set()

        def set_memory_pool_limit(self, pool, size):
            pass

        def set_flag(self, flag):
            self.flags.add(flag)

        def create_timing_cache(self, data):
            return data

        def set_timing_cache(self, cache, ignore):
            pass

        def get_timing_cache(self):
            return types.SimpleNamespace(serialize=lambda: b"timing")

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            return Network()

        def create_builder_config(self):
            return IBuilderConfig()

        def build_serialized_network(self, network, config):
            if trt.fail_build is not None and trt.fail_build(network.onnx, config.flags):
                return None
            table, batches = None, 0
            calibrator = getattr(config, "int8_calibrator", None)
            if "INT8" in config.flags and calibrator is not None:
                cache = calibrator.read_calibration_cache()  # TensorRT calibrates only when there is no cache
                while cache is None and calibrator.get_batch(["search_rgb"]):
                    batches += 1
                table = None if cache is None else bytes(cache).decode()
            doc = {"io": shapes, "flags": sorted(config.flags), "dla_core": getattr(config, "DLA_core", None)}
            return json.dumps({**doc, "calibration": table, "batches": batches}).encode()

    class IInt8EntropyCalibrator2:
        def __init__(self):
            pass

    trt.Logger, trt.Runtime, trt.Builder, trt.OnnxParser = Logger, Runtime, Builder, OnnxParser
    trt.ICudaEngine, trt.IExecutionContext, trt.IBuilderConfig = ICudaEngine, IExecutionContext, IBuilderConfig
    trt.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(EXPLICIT_BATCH=0)
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE=0)
    trt.BuilderFlag = types.SimpleNamespace(FP16="FP16", INT8="INT8", GPU_FALLBACK="GPU_FALLBACK")
    trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS = "OBEY_PRECISION_CONSTRAINTS"
    trt.DeviceType = types.SimpleNamespace(GPU=0, DLA=1)
    return trt
