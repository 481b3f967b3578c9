"""The TensorRT 8.x calibrator route: an FP32 graph built with the INT8 flag and a calibrator that replays the
calibration cache written on the host (`ckd quantize --format trt`, from the Q/DQ graphs' activation scales),
restamped for the running TensorRT (`calibration.trt_cache`)."""

from __future__ import annotations

from types import ModuleType

from calibration.trt_cache import restamp


def cache_calibrator(trt: ModuleType, cache: bytes, source: str = "calibration cache"):
    """An `IInt8EntropyCalibrator2` that only replays `cache`."""
    data = restamp(cache, trt.__version__, source)

    class CacheCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names):  # noqa: ARG002 - the cache answers everything
            return None

        def read_calibration_cache(self) -> bytes:
            return data

        def write_calibration_cache(self, cache) -> None:  # noqa: ARG002
            return None

    return CacheCalibrator()
