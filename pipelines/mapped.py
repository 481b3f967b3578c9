"""Zero-copy numpy views of GStreamer buffers.

PyGObject without the gst-python overrides returns a *copy* (`bytes`) from `Gst.Buffer.map`; this module calls
`gst_buffer_map` through ctypes instead and wraps the mapped memory in a numpy array without copying.

Two things make this safe:

- The C `GstBuffer *` is read from the PyGObject wrapper (the boxed pointer stored right after the object head).
  That layout is PyGObject's, not an API, so it is checked once, on first use, against PyGObject's own hash of a
  boxed value (its pointer) and against the C library (the mini-object's type tag and the size of a probe buffer);
  every map checks the pointer against the hash again. A PyGObject that lays its wrappers out differently ends in
  one clear error instead of a wild read.
- The buffer is unmapped only when the last numpy view of it is gone (a finalizer on the memory object every view
  refers to), so no view can ever read unmapped memory. `release()` drops the frame's own views; a view that is
  still alive then is counted in `MappedFrame.escaped` (the loop reports it; tests require 0): it keeps the
  buffer mapped until it dies, so it is a leak to fix, never a crash. A write map with a live view is an error.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
import weakref

import numpy as np

from ckd.errors import CKDError

GST_MAP_READ, GST_MAP_WRITE = 1, 2


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
    lib.gst_buffer_get_size.argtypes = [ctypes.c_void_p]
    lib.gst_buffer_get_size.restype = ctypes.c_size_t
    lib.gst_buffer_get_type.argtypes = []
    lib.gst_buffer_get_type.restype = ctypes.c_size_t
    return lib


_LIB = _libgst()
_layout_checked = False
_lock = threading.Lock()


def _pointer_from_layout(buffer) -> int:
    return ctypes.c_void_p.from_address(id(buffer) + object.__basicsize__).value or 0


def check_layout() -> None:
    """Verify (once) that a `Gst.Buffer` wrapper holds its `GstBuffer *` where `buffer_pointer` reads it."""
    global _layout_checked
    if _layout_checked:
        return
    import gi

    gi.require_version("Gst", "1.0")
    from gi.repository import Gst

    Gst.init(None)
    probe_size = 4099
    probe = Gst.Buffer.new_allocate(None, probe_size, None)
    ptr = _pointer_from_layout(probe)
    problem = None
    if not ptr or ptr != hash(probe):
        problem = "the pointer after the object head is not the one PyGObject hashes"
    elif ctypes.c_size_t.from_address(ptr).value != _LIB.gst_buffer_get_type():
        problem = "the object there is not a GstBuffer"
    elif _LIB.gst_buffer_get_size(ptr) != probe_size:
        problem = "the buffer there has the wrong size"
    if problem:
        raise CKDError(
            f"PyGObject {gi.__version__} lays out Gst.Buffer differently from what zero-copy mapping expects "
            f"({problem}); install PyGObject >=3.42,<3.51 (the kit's pin)"
        )
    _layout_checked = True


def buffer_pointer(buffer) -> int:
    """Address of the C GstBuffer behind a PyGObject `Gst.Buffer` (layout verified by `check_layout`)."""
    check_layout()
    ptr = _pointer_from_layout(buffer)
    if ptr != hash(buffer) or ctypes.c_size_t.from_address(ptr).value != _LIB.gst_buffer_get_type():
        raise CKDError(f"not a GStreamer buffer wrapper: {type(buffer).__name__}")
    return ptr


def frame_shape(fmt: str, width: int, height: int) -> tuple[tuple[int, ...], np.dtype]:
    if fmt == "RGB":
        return (height, width, 3), np.dtype(np.uint8)
    if fmt == "GRAY8":
        return (height, width), np.dtype(np.uint8)
    if fmt == "GRAY16_LE":
        return (height, width), np.dtype("<u2")
    raise CKDError(f"unsupported frame format {fmt}")


def _unmap(ptr: int, info: _MapInfo, buffer) -> None:
    """Finalizer of the mapped memory: runs once the last view is gone (`buffer` keeps the GstBuffer alive)."""
    _LIB.gst_buffer_unmap(ptr, ctypes.byref(info))
    with _lock:
        MappedFrame.live -= 1


class MappedFrame:
    """A mapped buffer seen as an HxW(x3) numpy array without copying (read-only unless `write`, which needs a
    buffer nobody else holds, e.g. fresh from a pool); call `release()` when done."""

    escaped = 0  # views still alive at release() (kept mapped until they die); the loop reports it
    live = 0  # buffers mapped right now

    __slots__ = ("_finalizer", "_write", "array", "address", "size")

    def __init__(
        self, buffer, fmt: str, width: int, height: int, stride: int | None = None, write: bool = False
    ) -> None:
        ptr = buffer_pointer(buffer)
        info = _MapInfo()
        self._write = write
        if not _LIB.gst_buffer_map(ptr, ctypes.byref(info), GST_MAP_WRITE if write else GST_MAP_READ):
            raise CKDError(f"cannot map a GStreamer buffer for {'writing' if write else 'reading'}")
        self.address, self.size = int(info.data), int(info.size)
        shape, dtype = frame_shape(fmt, width, height)
        row = shape[1] * (shape[2] if len(shape) == 3 else 1) * dtype.itemsize
        stride = stride or (row + 3) // 4 * 4  # GStreamer default: rows padded to 4 bytes
        if stride * (height - 1) + row > self.size:
            stride = row
        if row * height > self.size:
            _LIB.gst_buffer_unmap(ptr, ctypes.byref(info))
            raise CKDError(f"GStreamer buffer of {self.size} bytes is too small for a {width}x{height} {fmt} frame")
        memory = (ctypes.c_uint8 * self.size).from_address(self.address)
        with _lock:
            MappedFrame.live += 1
        self._finalizer = weakref.finalize(memory, _unmap, ptr, info, buffer)
        strides = (stride, 3, 1) if len(shape) == 3 else (stride, dtype.itemsize)
        self.array = np.ndarray(shape, dtype=dtype, buffer=memory, strides=strides)
        self.array.flags.writeable = write

    def contains(self, array: np.ndarray) -> bool:
        """Whether `array`'s data lies in this mapped buffer (a view of the frame, not a copy)."""
        start = array.__array_interface__["data"][0]
        return self.address <= start < self.address + self.size

    def release(self) -> None:
        """Drop the frame's views; the buffer is unmapped now, or when the last escaped view dies."""
        if self.array is None:
            return
        self.array = None
        if self._finalizer.alive:
            with _lock:
                MappedFrame.escaped += 1
            if self._write:
                raise CKDError("a view of a GStreamer buffer mapped for writing outlived release()")

    def __enter__(self) -> MappedFrame:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
