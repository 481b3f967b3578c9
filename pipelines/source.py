"""A sensor as a GStreamer pipeline ending in `appsink max-buffers=1 drop=true`.

Each `GstSource` is its own pipeline on a clock shared by all sources of a rig, so buffer timestamps
(base time + running time) are comparable across sensors. Samples are handed to a callback from the streaming
thread (never queued beyond what the pairing stage keeps). Bus errors and EOS are recorded with the source and
the GStreamer element that raised them; live sources are restarted with exponential back-off by `poll()`.
`GstRig` runs the GLib main loop for the bus watches in its own thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ckd.errors import CKDError
from pipelines.mapped import MappedFrame
from pipelines.uri import SourceSpec, launch_string


def gst():
    """Import and initialise GStreamer (lazily: the CLI imports this module without GStreamer)."""
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstVideo", "1.0")
    from gi.repository import GLib, Gst, GstVideo

    Gst.init(None)
    return Gst, GLib, GstVideo


@dataclass
class Sample:
    """One frame as delivered: the GStreamer sample (holds the buffer) and its clock time in seconds."""

    role: str
    timestamp: float
    sample: object
    width: int
    height: int
    fmt: str
    stride: int

    def map(self) -> MappedFrame:
        """Zero-copy numpy view of the frame (release it when done)."""
        return MappedFrame(self.sample.get_buffer(), self.fmt, self.width, self.height, self.stride)


class GstSource:
    """One sensor pipeline. `on_sample(Sample)` is called from the GStreamer streaming thread."""

    def __init__(self, spec: SourceSpec, on_sample: Callable[[Sample], None], clock=None, nvidia: bool | None = None):
        self.spec = spec
        self.description = launch_string(spec, nvidia=nvidia)
        self.on_sample = on_sample
        self.clock = clock
        self.pipeline = None
        self.feeder = None
        self.frames = 0
        self.error: str | None = None
        self.eos = False
        self.restarts = 0
        self.timestamp_jumps = 0
        self.retry_at: float | None = None
        self.stalled = False
        self.last_arrival = 0.0
        self._last_ts = -1.0
        self._geometry: tuple[int, int, int] | None = None
        self._lock = threading.Lock()

    @property
    def alive(self) -> bool:
        return self.error is None and not self.eos

    def build(self) -> None:
        Gst, GLib, _ = gst()
        try:
            self.pipeline = Gst.parse_launch(self.description)
        except GLib.Error as exc:
            raise CKDError(f"{self.spec.name}: cannot build pipeline '{self.description}': {exc.message}") from None
        if self.clock is not None:
            self.pipeline.use_clock(self.clock)
        sink = self.pipeline.get_by_name("sink")
        sink.set_property("emit-signals", True)
        sink.connect("new-sample", self._on_new_sample)
        if self.spec.scheme == "synthetic":
            from pipelines.synthetic_src import SyntheticFeeder

            self.feeder = SyntheticFeeder(self.spec, self.pipeline.get_by_name("src"))

    def watch(self, bus_handler: Callable) -> None:
        bus = self.pipeline.get_bus()
        bus.add_signal_watch()
        bus.connect("message", bus_handler, self)

    def start(self) -> None:
        Gst, _, _ = gst()
        self.error, self.eos, self._geometry = None, False, None
        self.last_arrival = time.monotonic()
        if self.pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            msg = self.pipeline.get_bus().timed_pop_filtered(0, Gst.MessageType.ERROR)
            self.error = describe_error(self.spec, msg) if msg else f"{self.spec.name}: pipeline failed to start"
            return
        if self.feeder is not None:
            self.feeder.start()

    def stop(self) -> None:
        if self.pipeline is None:
            return
        Gst, _, _ = gst()
        if self.feeder is not None:
            self.feeder.stop()
        self.pipeline.set_state(Gst.State.NULL)

    def _on_new_sample(self, sink) -> int:
        Gst, _, GstVideo = gst()
        sample = sink.emit("pull-sample")
        if sample is None:
            return Gst.FlowReturn.EOS
        if self._geometry is None:
            info = GstVideo.VideoInfo.new_from_caps(sample.get_caps())
            self._geometry = (info.width, info.height, info.stride[0])
        buf = sample.get_buffer()
        now = self.pipeline.get_clock().get_time() if self.pipeline.get_clock() else None
        ts = self._timestamp(sample, buf, now)
        self.frames += 1
        self.last_arrival = time.monotonic()
        w, h, stride = self._geometry
        self.on_sample(Sample(self.spec.role, ts, sample, w, h, self.spec.out_format, stride))
        return Gst.FlowReturn.OK

    def _timestamp(self, sample, buf, now: int | None) -> float:
        """Clock time of the frame: base time + running time of its PTS; arrival time when missing or jumping."""
        Gst, _, _ = gst()
        ts_ns = None
        if buf.pts != Gst.CLOCK_TIME_NONE:
            running = sample.get_segment().to_running_time(Gst.Format.TIME, buf.pts)
            if running != Gst.CLOCK_TIME_NONE and running >= 0:
                ts_ns = running + self.pipeline.get_base_time()
        ts, jumped = frame_time(ts_ns, now, self._last_ts)
        self.timestamp_jumps += jumped
        self._last_ts = ts
        return ts


def frame_time(pts_ns: int | None, now_ns: int | None, last_s: float, max_jump_s: float = 1.0) -> tuple[float, bool]:
    """(seconds on the clock, whether it was repaired): the buffer's clock time unless it is missing, more than
    `max_jump_s` away from the clock's now (a timestamp jump: use arrival time), or not after the last frame."""
    jumped = False
    ts_ns = pts_ns
    if now_ns is not None and (ts_ns is None or abs(ts_ns - now_ns) > max_jump_s * 1e9):
        jumped = ts_ns is not None
        ts_ns = now_ns
    ts = (ts_ns or 0) / 1e9
    if ts <= last_s:  # never go backwards
        jumped = True
        ts = last_s + 1e-6
    return ts, jumped


def describe_error(spec: SourceSpec, message) -> str:
    """One line naming the source and the GStreamer element of a bus ERROR message."""
    err, debug = message.parse_error()
    element = message.src.get_name() if message.src is not None else "?"
    hint = ""
    if debug and "not-negotiated" in debug:
        hint = " (caps did not negotiate: check format/width/height/fps options)"
    return f"{spec.name}: GStreamer element '{element}': {err.message}{hint}"


class GstRig:
    """The sensors of one run on a shared clock, with the GLib main loop in its own thread."""

    def __init__(self, specs: list[SourceSpec], on_sample: Callable[[Sample], None], nvidia: bool | None = None):
        Gst, GLib, _ = gst()
        self.clock = Gst.SystemClock.obtain()
        self.sources = [GstSource(s, on_sample, clock=self.clock, nvidia=nvidia) for s in specs]
        self.events: list[str] = []
        self._context = GLib.MainContext.new()
        self._loop = GLib.MainLoop.new(self._context, False)
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self.changed = threading.Event()  # set on every bus event that changes a source's state

    def start(self) -> None:
        for src in self.sources:
            src.build()
        self._thread = threading.Thread(target=self._run_loop, name="ckd-glib", daemon=True)
        self._thread.start()
        self._ready.wait(5)
        for src in self.sources:
            src.start()
            if src.error:
                self._note(src.error)

    def _run_loop(self) -> None:
        self._context.push_thread_default()
        for src in self.sources:
            src.watch(self._on_message)
        self._ready.set()
        self._loop.run()
        self._context.pop_thread_default()

    def _note(self, text: str) -> None:
        self.events.append(text)
        self.changed.set()

    def _on_message(self, bus, message, src: GstSource) -> None:
        Gst, _, _ = gst()
        if message.type == Gst.MessageType.ERROR and src.error is None:
            src.error = describe_error(src.spec, message)
            self._schedule_retry(src)
            self._note(src.error)
        elif message.type == Gst.MessageType.EOS and not src.eos:
            src.eos = True
            self._note(f"{src.spec.name}: end of stream")
            self._schedule_retry(src)

    def _schedule_retry(self, src: GstSource) -> None:
        if src.spec.live:
            delay = min(30.0, 0.5 * 2**src.restarts)
            src.retry_at = time.monotonic() + delay
            self._note(f"{src.spec.name}: reconnecting in {delay:.1f} s")

    def poll(self, stall_s: float) -> None:
        """Restart dropped live sources whose back-off has expired; note sources that stall or resume."""
        now = time.monotonic()
        for src in self.sources:
            if src.retry_at is not None and now >= src.retry_at:
                src.retry_at = None
                src.restarts += 1
                self._note(f"{src.spec.name}: reconnect attempt {src.restarts}")
                src.stop()
                src.start()
                if src.error:
                    self._schedule_retry(src)
            silent = src.alive and now - src.last_arrival > stall_s
            if silent and not src.stalled:
                self._note(f"{src.spec.name}: no frames for {stall_s:.1f} s (stalled)")
            elif src.stalled and not silent and src.alive:
                self._note(f"{src.spec.name}: frames again after a stall")
            src.stalled = silent

    def stop(self) -> None:
        for src in self.sources:
            src.stop()
        self._loop.quit()
        if self._thread is not None:
            self._thread.join(2)
