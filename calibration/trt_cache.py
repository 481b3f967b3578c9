"""TensorRT calibration cache text: `TRT-<NV_TENSORRT_VERSION>-EntropyCalibration2`, then `tensor: <hex>` lines
(each value the float32 scale, big-endian hex). Written on the host by `ckd quantize --format trt`, replayed on
the device by the TensorRT 8.x calibrator route. Plain stdlib: the device imports it."""

from __future__ import annotations

import math
import struct

from ckd.errors import CKDError

ALGORITHM = "EntropyCalibration2"


def nv_tensorrt_version(version: str) -> int:
    """NV_TENSORRT_VERSION of a version string: 8.x major * 1000 + minor * 100 + patch ('8.5.2.2' -> 8502),
    10.x major * 10000 + minor * 100 + patch ('10.3.0' -> 100300, as in 10.x caches 'TRT-100300-...')."""
    parts = [int("".join(ch for ch in p if ch.isdigit()) or 0) for p in str(version).split(".")[:3]]
    major, minor, patch = (parts + [0, 0])[:3]
    return major * (10000 if major >= 10 else 1000) + minor * 100 + patch


def header(tensorrt_version: str) -> str:
    return f"TRT-{nv_tensorrt_version(tensorrt_version)}-{ALGORITHM}"


def write_cache(scales: dict[str, float], tensorrt_version: str) -> bytes:
    """The cache for per-tensor `scales` (amax / 127 of each activation), stamped for `tensorrt_version`."""
    lines = [header(tensorrt_version)]
    for name, scale in sorted(scales.items()):
        if not math.isfinite(scale) or scale <= 0:
            raise CKDError(f"tensor {name}: scale {scale} cannot go into a calibration cache")
        lines.append(f"{name}: {struct.pack('>f', scale).hex()}")
    return ("\n".join(lines) + "\n").encode("ascii")


def read_cache(cache: bytes, source: str = "calibration cache") -> dict[str, float]:
    """The scales of a cache; CKDError naming `source` when it is not one."""
    try:
        lines = cache.decode("ascii").splitlines()
        if not lines or not lines[0].startswith("TRT-"):
            raise ValueError("no TRT-<version>-<algorithm> header")
        out = {}
        for line in lines[1:]:
            name, _, value = line.rpartition(": ")
            out[name] = struct.unpack(">f", bytes.fromhex(value))[0]
    except (UnicodeDecodeError, ValueError, struct.error) as exc:
        raise CKDError(f"{source}: not a TensorRT calibration cache ({exc})") from None
    return out


def restamp(cache: bytes, tensorrt_version: str, source: str = "calibration cache") -> bytes:
    """The same entries under the header of `tensorrt_version` (TensorRT refuses a header of another version:
    'Calibration table does not match calibrator algorithm type')."""
    return write_cache(read_cache(cache, source), tensorrt_version)
