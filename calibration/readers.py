"""Calibration data for the quantizers: ONNX Runtime `CalibrationDataReader`, NVIDIA Model Optimizer arrays,
and a TensorRT batch stream (the TRT 8.5 fallback builds INT8 engines from a calibrator and caches its scales)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from calibration.store import CalibrationSet
from ckd.track.backend import INPUT_NAMES


def ort_reader(cal: CalibrationSet):
    """An `onnxruntime.quantization.CalibrationDataReader` over the set, one batch-1 sample per call."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = cal.samples()

        def get_next(self):
            return next(self._it, None)

        def rewind(self) -> None:
            self._it = cal.samples()

    return Reader()


def modelopt_arrays(cal: CalibrationSet) -> dict[str, np.ndarray]:
    """Model Optimizer's ONNX PTQ `calibration_data`: each named input stacked to (N, 3, H, W)."""
    batches = list(cal.batches())
    return {k: np.concatenate([b[k] for b in batches], axis=0) for k in INPUT_NAMES}


class TrtBatchStream:
    """Fixed-size batches of the named inputs, contiguous float32, for a TensorRT INT8 calibrator.

    `next_batch()` returns a dict of (batch, 3, H, W) arrays or None at the end; the last partial batch is
    dropped (TensorRT calibrators need a constant batch size). `reset()` starts over.
    """

    def __init__(self, cal: CalibrationSet, batch_size: int = 1) -> None:
        self.cal = cal
        self.batch_size = int(batch_size)
        self.shapes = {k: (self.batch_size, *cal.inputs[k][1:]) for k in INPUT_NAMES}
        self._buffers = {k: np.zeros(self.shapes[k], np.float32) for k in INPUT_NAMES}
        self._it: Iterator[dict[str, np.ndarray]] = cal.samples()

    def __len__(self) -> int:
        return self.cal.count // self.batch_size

    def reset(self) -> None:
        self._it = self.cal.samples()

    def next_batch(self) -> dict[str, np.ndarray] | None:
        for i in range(self.batch_size):
            sample = next(self._it, None)
            if sample is None:
                return None
            for k in INPUT_NAMES:
                self._buffers[k][i] = sample[k][0]
        return self._buffers


def trt_calibrator(cal: CalibrationSet, cache_path: str, batch_size: int = 1):
    """A `tensorrt.IInt8EntropyCalibrator2` fed by `TrtBatchStream` through pycuda device buffers (Jetson only)."""
    import pycuda.autoinit  # noqa: F401 - creates the CUDA context
    import pycuda.driver as cuda
    import tensorrt as trt

    stream = TrtBatchStream(cal, batch_size)

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()
            self.device = {k: cuda.mem_alloc(int(np.prod(s)) * 4) for k, s in stream.shapes.items()}

        def get_batch_size(self) -> int:
            return stream.batch_size

        def get_batch(self, names):
            batch = stream.next_batch()
            if batch is None:
                return None
            for k in names:
                cuda.memcpy_htod(self.device[k], batch[k])
            return [int(self.device[k]) for k in names]

        def read_calibration_cache(self):
            try:
                with open(cache_path, "rb") as f:
                    return f.read()
            except OSError:
                return None

        def write_calibration_cache(self, cache) -> None:
            with open(cache_path, "wb") as f:
                f.write(bytes(cache))

    return Calibrator()
