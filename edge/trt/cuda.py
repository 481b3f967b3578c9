"""Thin CUDA runtime helpers over cuda-python: streams, events, pinned and mapped host buffers, CUDA graphs.

Imported only where a GPU is used. On Jetson (integrated GPU) `HostBuffer(mapped=True)` allocates with
`cudaHostAllocMapped` and hands TensorRT the device alias of the same memory: the CPU writes the numpy
view, the GPU reads it, nothing is copied. On discrete GPUs it is page-locked host memory plus a device
allocation, moved with async copies on the backend's stream.
"""

from __future__ import annotations

import ctypes
from types import ModuleType

import numpy as np

from ckd.errors import CKDError


def import_cudart() -> ModuleType:
    """cuda-python's runtime module (`cuda.bindings.runtime` in 12.6+, `cuda.cudart` before)."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError:
            raise CKDError("cuda-python not found: `pip install cuda-python` matching the device's CUDA") from None
    return cudart


class Cuda:
    """The runtime calls the kit needs, each checked (a failing call raises CKDError naming it)."""

    def __init__(self) -> None:
        self.rt = import_cudart()

    def call(self, name: str, *args):
        result = getattr(self.rt, name)(*args)
        err, rest = (result[0], result[1:]) if isinstance(result, tuple) else (result, ())
        if int(err) != 0:
            raise CKDError(f"CUDA {name} failed: {err}")
        return rest[0] if len(rest) == 1 else rest

    def stream(self):
        return self.call("cudaStreamCreate")

    def sync(self, stream) -> None:
        self.call("cudaStreamSynchronize", stream)

    def event(self):
        return self.call("cudaEventCreate")

    def elapsed_ms(self, start, end) -> float:
        return float(self.call("cudaEventElapsedTime", start, end))

    def begin_capture(self, stream) -> None:
        mode = self.rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        self.call("cudaStreamBeginCapture", stream, mode)

    def end_capture(self, stream):
        """End a stream capture and instantiate the graph; returns the executable graph."""
        graph = self.call("cudaStreamEndCapture", stream)
        return self.call("cudaGraphInstantiateWithFlags", graph, 0)

    def launch(self, graph_exec, stream) -> None:
        self.call("cudaGraphLaunch", graph_exec, stream)


class HostBuffer:
    """A numpy array in page-locked host memory with the device address TensorRT should use.

    `mapped=True` (integrated GPU): one allocation, `device_ptr` aliases it (zero copy).
    `mapped=False` (discrete GPU): a separate device allocation; `to_device`/`to_host` copy asynchronously.
    """

    def __init__(self, cuda: Cuda, shape: tuple[int, ...], dtype=np.float32, mapped: bool = False) -> None:
        self.cuda, self.mapped = cuda, mapped
        dtype = np.dtype(dtype)
        self.nbytes = int(np.prod(shape)) * dtype.itemsize
        rt = cuda.rt
        flags = rt.cudaHostAllocMapped if mapped else rt.cudaHostAllocDefault
        self.host_ptr = int(cuda.call("cudaHostAlloc", self.nbytes, flags))
        raw = (ctypes.c_uint8 * self.nbytes).from_address(self.host_ptr)
        self.array = np.frombuffer(raw, dtype=dtype).reshape(shape)
        if mapped:
            self.device_ptr = int(cuda.call("cudaHostGetDevicePointer", self.host_ptr, 0))
        else:
            self.device_ptr = int(cuda.call("cudaMalloc", self.nbytes))

    def to_device(self, stream) -> None:
        if not self.mapped:
            kind = self.cuda.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
            self.cuda.call("cudaMemcpyAsync", self.device_ptr, self.host_ptr, self.nbytes, kind, stream)

    def to_host(self, stream) -> None:
        if not self.mapped:
            kind = self.cuda.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
            self.cuda.call("cudaMemcpyAsync", self.host_ptr, self.device_ptr, self.nbytes, kind, stream)

    def free(self) -> None:
        if self.host_ptr:
            if not self.mapped:
                self.cuda.call("cudaFree", self.device_ptr)
            self.cuda.call("cudaFreeHost", self.host_ptr)
            self.host_ptr = self.device_ptr = 0
            self.array = np.empty((0,), self.array.dtype)  # never leave a view of freed memory
