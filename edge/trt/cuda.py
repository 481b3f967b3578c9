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

    def end_capture(self, stream) -> tuple:
        """End a stream capture and instantiate the graph: (graph, executable graph). On a failed instantiation
        the captured graph is destroyed before the error is raised."""
        graph = self.call("cudaStreamEndCapture", stream)
        try:
            return graph, self.call("cudaGraphInstantiateWithFlags", graph, 0)
        except CKDError:
            self.call("cudaGraphDestroy", graph)
            raise

    def abort_capture(self, stream) -> None:
        """Take the stream out of capture mode after a failure inside the capture (the partial graph is dropped)."""
        result = self.rt.cudaStreamEndCapture(stream)
        graph = result[1] if isinstance(result, tuple) and len(result) > 1 else None
        if graph is not None and int(result[0]) == 0:
            self.call("cudaGraphDestroy", graph)

    def launch(self, graph_exec, stream) -> None:
        self.call("cudaGraphLaunch", graph_exec, stream)


class StreamRunner:
    """One stream, two timing events and, with `graphs`, one CUDA graph per key (captured on first use, replayed
    after). A capture that fails ends the capture, frees what it made and leaves that key on plain launches
    (`graph_failures` says why). `close` destroys everything it created, once."""

    def __init__(self, cuda: Cuda, graphs: bool = False) -> None:
        self.cuda, self.graphs = cuda, graphs
        self.stream = cuda.stream()
        self._events: list = []
        self._graphs: dict = {}  # key -> (graph, executable graph)
        self.graph_failures: dict = {}
        try:
            self._events = [cuda.event(), cuda.event()]
        except CKDError:
            self.close()
            raise

    def _capture(self, key, enqueue) -> None:
        enqueue()  # one plain run first: TensorRT allocates lazily, which must not happen in a capture
        self.cuda.sync(self.stream)
        self.cuda.begin_capture(self.stream)
        try:
            enqueue()
        except Exception:
            self.cuda.abort_capture(self.stream)
            raise
        self._graphs[key] = self.cuda.end_capture(self.stream)

    def run(self, key, enqueue) -> float:
        """Run `enqueue()` (or its graph) on the stream, wait for it; returns the GPU time in ms."""
        start, end = self._events
        self.cuda.call("cudaEventRecord", start, self.stream)
        if self.graphs and key not in self._graphs and key not in self.graph_failures:
            try:
                self._capture(key, enqueue)
            except CKDError as exc:
                self.graph_failures[key] = str(exc)
        if key in self._graphs:
            self.cuda.launch(self._graphs[key][1], self.stream)
        else:
            enqueue()
        self.cuda.call("cudaEventRecord", end, self.stream)
        self.cuda.sync(self.stream)
        return self.cuda.elapsed_ms(start, end)

    def close(self) -> None:
        for graph, graph_exec in self._graphs.values():
            self.cuda.call("cudaGraphExecDestroy", graph_exec)
            self.cuda.call("cudaGraphDestroy", graph)
        self._graphs.clear()
        for event in self._events:
            self.cuda.call("cudaEventDestroy", event)
        self._events = []
        if self.stream is not None:
            self.cuda.call("cudaStreamDestroy", self.stream)
            self.stream = None


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
