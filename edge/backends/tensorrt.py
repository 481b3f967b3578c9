"""TensorRT backend: one execution context per keep-ratio rung, all sharing one stream and one set of buffers.

Inputs and outputs have the same shapes at every rung, so one set of page-locked buffers serves all
contexts; their addresses are bound by tensor name once (`set_tensor_address`) and every frame is just
`execute_async_v3`. On Jetson the buffers are mapped host memory: `input_buffers()` returns arrays the
GPU reads directly (zero copy). On a discrete GPU the inputs are copied up and the outputs down
asynchronously on the same stream. With `cuda_graphs=True` each rung's launch is captured once and replayed.
Engines built for a DLA core are deserialized with `runtime.DLA_core` set to it. `close()` (or leaving a `with`
block) destroys the graphs, events, stream and buffers; a backend that fails half-way through construction
releases what it had made.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ckd.errors import CKDError
from ckd.track.backend import INPUT_NAMES, OUTPUT_NAMES, input_shapes, output_shapes
from edge.devices import Device
from edge.manifest import Manifest
from edge.trt import cache
from edge.trt.cuda import Cuda, HostBuffer, StreamRunner
from edge.trt.flags import detect, import_tensorrt
from edge.trt.selection import SELECTION_NAME, read_selection, verify_keys


class TensorRTBackend:
    """The tracker's Backend over serialized TensorRT engines, one per rung (`{keep_ratio: engine bytes}`)."""

    name = "tensorrt"

    def __init__(
        self,
        engines: Mapping[float, bytes],
        template_size: int,
        search_size: int,
        patch_size: int = 16,
        *,
        zero_copy: bool = False,
        cuda_graphs: bool = False,
        default_keep_ratio: float | None = None,
        precisions: Mapping[float, str] | None = None,
        dla_core: int | None = None,
    ) -> None:
        if not engines:
            raise CKDError("TensorRT backend needs at least one engine")
        trt = import_tensorrt()
        features = detect(trt)
        features.require_supported()
        self.template_size, self.search_size = template_size, search_size
        self.keep_ratios = tuple(sorted(engines))
        self.default_keep_ratio = default_keep_ratio if default_keep_ratio is not None else self.keep_ratios[-1]
        self.zero_copy, self.cuda_graphs = zero_copy, cuda_graphs
        self.precisions = dict(precisions or {})  # rung -> engine precision, for reports
        self.last_gpu_ms = float("nan")
        self.cuda = Cuda()
        self._buffers: dict[str, HostBuffer] = {}
        self._engines, self._contexts = {}, {}
        self._runner = StreamRunner(self.cuda, graphs=cuda_graphs)
        try:
            shapes = {**input_shapes(template_size, search_size), **output_shapes(search_size // patch_size)}
            for name, shape in shapes.items():
                self._buffers[name] = HostBuffer(self.cuda, shape, np.float32, mapped=zero_copy)
            self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
            if dla_core is not None:
                self._runtime.DLA_core = int(dla_core)
            for ratio, blob in engines.items():
                engine = self._runtime.deserialize_cuda_engine(blob)
                if engine is None:
                    raise CKDError(f"keep ratio {ratio:.2f}: TensorRT could not deserialize the engine (rebuild it)")
                self._check_io(trt, engine, shapes, ratio)
                context = engine.create_execution_context()
                for name in shapes:
                    context.set_tensor_address(name, self._buffers[name].device_ptr)
                self._engines[ratio], self._contexts[ratio] = engine, context
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> TensorRTBackend:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @staticmethod
    def _check_io(trt, engine, shapes: dict[str, tuple[int, ...]], ratio: float) -> None:
        names = {engine.get_tensor_name(i) for i in range(engine.num_io_tensors)}
        if names != set(shapes):
            raise CKDError(f"keep ratio {ratio:.2f}: engine tensors {sorted(names)} are not the CKD I/O names")
        for name, shape in shapes.items():
            got = tuple(engine.get_tensor_shape(name))
            if got != shape or engine.get_tensor_dtype(name) != trt.float32:
                raise CKDError(f"keep ratio {ratio:.2f}: engine tensor {name} is {got}, expected float32 {shape}")

    def input_buffers(self) -> dict[str, np.ndarray]:
        return {name: self._buffers[name].array for name in INPUT_NAMES}

    def rung_for(self, keep_ratio: float | None) -> float:
        """The rung that runs for a requested keep ratio (nearest; ties to the larger, None: the default)."""
        target = self.default_keep_ratio if keep_ratio is None else keep_ratio
        return min(self.keep_ratios, key=lambda r: (abs(r - target), -r))

    def _enqueue(self, ratio: float) -> None:
        for name in INPUT_NAMES:
            self._buffers[name].to_device(self._runner.stream)
        if not self._contexts[ratio].execute_async_v3(int(self._runner.stream)):
            raise CKDError(f"keep ratio {ratio:.2f}: TensorRT execute_async_v3 failed")
        for name in OUTPUT_NAMES:
            self._buffers[name].to_host(self._runner.stream)

    @property
    def graph_failures(self) -> dict:
        """Rungs whose CUDA graph capture failed (they run with plain launches), with the reason."""
        return self._runner.graph_failures

    def run(self, inputs: Mapping[str, np.ndarray], keep_ratio: float | None = None) -> dict[str, np.ndarray]:
        ratio = self.rung_for(keep_ratio)
        for name in INPUT_NAMES:
            buf = self._buffers[name].array
            if inputs[name] is not buf:  # the tracker writes into input_buffers(): then nothing is copied
                np.copyto(buf, inputs[name])
        self.last_gpu_ms = self._runner.run(ratio, lambda: self._enqueue(ratio))
        return {name: self._buffers[name].array.copy() for name in OUTPUT_NAMES}

    def close(self) -> None:
        """Destroy the execution contexts and engines, then the graphs, events, stream and buffers (idempotent)."""
        self._contexts.clear()
        self._engines.clear()
        self._runner.close()
        for buf in self._buffers.values():
            buf.free()

    @classmethod
    def from_export(
        cls,
        export_dir: str | Path,
        device: Device | None = None,
        cache_dir: str | Path | None = None,
        cuda_graphs: bool = False,
    ) -> TensorRTBackend:
        """The engines `ckd build` selected for an export (`selection.json`), each verified against the cache.

        `device` defaults to this machine's (`edge.devices.detect()`).
        """
        if device is None:
            from edge import devices

            device = devices.detect()
        export = Manifest.load(export_dir)
        cache_dir = Path(cache_dir) if cache_dir else Path(export_dir) / "engines"
        selection_file = cache_dir / SELECTION_NAME
        doc = read_selection(selection_file)
        trt_version = import_tensorrt().__version__
        keys = verify_keys(
            doc, str(selection_file), Path(export_dir), device.name, device.profile.compute_capability, trt_version
        )
        dla = {k.dla_core for k in keys}
        if len(dla) > 1:
            raise CKDError(f"{selection_file}: engines for several DLA cores {sorted(dla, key=str)}: run `ckd build`")
        engines = {k.keep_ratio: cache.load(cache_dir, k) for k in keys}
        cfg = export.ckd_config
        return cls(
            engines,
            cfg.template_size,
            cfg.search_size,
            cfg.patch_size,
            zero_copy=device.is_jetson,
            cuda_graphs=cuda_graphs,
            default_keep_ratio=export.rung(None).keep_ratio,
            precisions={k.keep_ratio: k.precision for k in keys},
            dla_core=dla.pop(),
        )
