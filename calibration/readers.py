"""Calibration data for the quantizers: ONNX Runtime `CalibrationDataReader`, NVIDIA Model Optimizer arrays, and
fixed-size batches for a TensorRT calibrator. (TensorRT's own 8.x calibrator route replays a cache written on the
host from the Q/DQ scales, `calibration.trt_cache`: no CUDA context is made here.)"""

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
