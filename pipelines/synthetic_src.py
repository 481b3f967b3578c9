"""`synthetic://` sensors: the synthetic sequence generator pushed into an `appsrc` at a frame rate.

The RGB role pushes `SynthFrame.rgb` (RGB), the thermal role `SynthFrame.thermal16` (GRAY16_LE), both from the
same `SyntheticSequence(seed)`, so a `synthetic://?seed=S` pair is a registered dual-sensor rig. Buffers carry
PTS = index / fps; the appsink (sync=true) paces them in real time on the pipeline clock.

Fault injection for tests and demos: `error_after=N` posts a GStreamer error from the appsrc after N frames
(a sensor unplugged), `stall_after=N&stall_s=T` stops pushing for T seconds after N frames.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np

from ckd.errors import CKDError
from pipelines.uri import SourceSpec


def synthetic_sequence(spec: SourceSpec):
    """The `SyntheticSequence` a synthetic:// URI describes."""
    try:
        from ckd.data.synthetic import SyntheticSequence
    except ImportError as exc:
        raise CKDError(f"{spec.name}: the synthetic generator (ckd.data.synthetic) is not available: {exc}") from None
    return SyntheticSequence(
        seed=int(spec.number("seed", 0)),
        frames=int(spec.number("frames", 300)),
        width=int(spec.number("width", 640)),
        height=int(spec.number("height", 480)),
        crossover=spec.params.get("crossover", "0").lower() in ("1", "true", "yes"),
    )


def frame_function(spec: SourceSpec) -> tuple[Callable[[int], np.ndarray], int]:
    """(index -> image for this role, number of frames) for a synthetic:// source."""
    seq = synthetic_sequence(spec)
    if spec.role == "rgb":
        return (lambda i: seq.frame(i).rgb), len(seq)
    return (lambda i: seq.frame(i).thermal16), len(seq)


class SyntheticFeeder:
    """Pushes frames into an appsrc from its own thread (blocks when the appsrc queue is full)."""

    def __init__(self, spec: SourceSpec, appsrc, frames: Callable[[int], np.ndarray] | None = None, count=None):
        self.spec = spec
        self.appsrc = appsrc
        if frames is None:
            frames, count = frame_function(spec)
        self.frames = frames
        self.count = int(count if count is not None else spec.number("frames", 300))
        self.fps = spec.number("fps", 30)
        self.error_after = int(spec.number("error_after", -1))
        self.stall_after = int(spec.number("stall_after", -1))
        self.stall_s = spec.number("stall_s", 1.0)
        self.pushed = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        appsrc.set_property("max-buffers", 2)
        appsrc.set_property("block", True)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"ckd-synth-{self.spec.role}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)

    def _run(self) -> None:
        from pipelines.source import gst

        Gst, GLib, _ = gst()
        duration, offset = int(1e9 / self.fps), 0
        for i in range(self.count):
            if self._stop.is_set():
                return
            if i == self.error_after:
                err = GLib.Error.new_literal(Gst.ResourceError.quark(), "sensor disconnected", Gst.ResourceError.READ)
                self.appsrc.post_message(Gst.Message.new_error(self.appsrc, err, f"injected after {i} frames"))
                return
            if i == self.stall_after:
                self._stop.wait(self.stall_s)
                offset += int(self.stall_s * 1e9)  # a live sensor's clock keeps running while it stalls
            image = np.ascontiguousarray(self.frames(i))
            buf = Gst.Buffer.new_wrapped(image.tobytes())
            buf.pts = i * duration + offset
            buf.duration = duration
            if self.appsrc.emit("push-buffer", buf) != Gst.FlowReturn.OK:
                return
            self.pushed += 1
        time.sleep(0.05)
        self.appsrc.emit("end-of-stream")
