"""Zero-copy numpy views of GStreamer buffers.

PyGObject without the gst-python overrides returns a *copy* (`bytes`) from `Gst.Buffer.map`; this module calls
`gst_buffer_map` through ctypes instead and wraps the mapped memory in a numpy array without copying. The view
is valid until `MappedFrame.release()` (which unmaps and lets GStreamer reuse the buffer).
"""

from __future__ import annotations

import ctypes
import ctypes.util

import numpy as np

from ckd.errors import CKDError

GST_MAP_READ, GST_MAP_WRITE = 1, 2
_BYTES_PER_PIXEL = {"RGB": 3, "GRAY8": 1, "GRAY16_LE": 2}


class _MapInfo(ctypes.Structure):
    _fields_ = [
        ("memory", ctypes.c_void_p),
        ("flags", ctypes.c_int),
        ("data", ctypes.c_void_p),
        ("size", ctypes.c_size_t),
        ("maxsize", ctypes.c_size_t),
        ("user_data", ctypes.c_void_p * 4),
        ("_gst_reserved", ctypes.c_void_p * 4),
    ]


def _libgst() -> ctypes.CDLL:
    name = ctypes.util.find_library("gstreamer-1.0") or "libgstreamer-1.0.so.0"
    lib = ctypes.CDLL(name)
    lib.gst_buffer_map.argtypes = [ctypes.c_void_p, ctypes.POINTER(_MapInfo), ctypes.c_int]
    lib.gst_buffer_map.restype = ctypes.c_int
    lib.gst_buffer_unmap.argtypes = [ctypes.c_void_p, ctypes.POINTER(_MapInfo)]
    lib.gst_buffer_unmap.restype = None
    return lib


_LIB = _libgst()


def buffer_pointer(buffer) -> int:
    """Address of the C GstBuffer behind a PyGObject `Gst.Buffer` (the boxed pointer after the object head)."""
    return ctypes.c_void_p.from_address(id(buffer) + object.__basicsize__).value


def frame_shape(fmt: str, width: int, height: int) -> tuple[tuple[int, ...], np.dtype]:
    if fmt == "RGB":
        return (height, width, 3), np.dtype(np.uint8)
    if fmt == "GRAY8":
        return (height, width), np.dtype(np.uint8)
    if fmt == "GRAY16_LE":
        return (height, width), np.dtype("<u2")
    raise CKDError(f"unsupported frame format {fmt}")


class MappedFrame:
    """A mapped buffer seen as an HxW(x3) numpy array without copying (read-only unless `write`, which needs a
    buffer nobody else holds, e.g. fresh from a pool); call `release()` when done."""

    __slots__ = ("_buffer", "_info", "array", "address")

    def __init__(
        self, buffer, fmt: str, width: int, height: int, stride: int | None = None, write: bool = False
    ) -> None:
        self._buffer = buffer  # keeps the GstBuffer alive while mapped
        self._info = _MapInfo()
        flags = GST_MAP_WRITE if write else GST_MAP_READ
        if not _LIB.gst_buffer_map(buffer_pointer(buffer), ctypes.byref(self._info), flags):
            raise CKDError(f"cannot map a GStreamer buffer for {'writing' if write else 'reading'}")
        shape, dtype = frame_shape(fmt, width, height)
        row = shape[1] * (shape[2] if len(shape) == 3 else 1) * dtype.itemsize
        stride = stride or (row + 3) // 4 * 4  # GStreamer default: rows padded to 4 bytes
        if stride * (height - 1) + row > self._info.size:
            stride = row
        if row * height > self._info.size:
            _LIB.gst_buffer_unmap(buffer_pointer(buffer), ctypes.byref(self._info))
            self._buffer = None
            raise CKDError(
                f"GStreamer buffer of {self._info.size} bytes is too small for a {width}x{height} {fmt} frame"
            )
        self.address = int(self._info.data)
        raw = (ctypes.c_uint8 * self._info.size).from_address(self.address)
        strides = (stride, 3, 1) if len(shape) == 3 else (stride, dtype.itemsize)
        self.array = np.ndarray(shape, dtype=dtype, buffer=raw, strides=strides)
        self.array.flags.writeable = write

    def release(self) -> None:
        if self._buffer is not None:
            self.array = None
            _LIB.gst_buffer_unmap(buffer_pointer(self._buffer), ctypes.byref(self._info))
            self._buffer = None

    def __del__(self) -> None:
        self.release()
