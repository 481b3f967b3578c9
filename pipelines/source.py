"""GStreamer set-up for the sensors: launch descriptions, one pipeline per sensor, appsrc feeders, the rig.

Each `GstSource` is its own pipeline on a clock shared by all sources of a rig, so buffer times compare across
sensors. Two ways to run (`replay`):

- **live** (cameras, streams, synthetic sensors, `--realtime` clips): the sink is `appsink max-buffers=1
  drop=true sync=true`; samples are handed to a callback from the streaming thread and the consumer only ever
  sees the newest frame.
- **replay** (recorded clips): the sink is `appsink max-buffers=2 drop=false sync=false` and the main thread
  pulls every sample (`GstSource.pull`), so a slow consumer holds the file back (back-pressure) instead of losing
  frames, and no Python runs on GStreamer's threads.

Image frames and synthetic sensors are pushed into an `appsrc` by `AppsrcFeeder` from its own thread; each
buffer carries its source frame index in `offset`, so frames pair by their own number. Frames that cannot be read
are not pushed: they are listed in `AppsrcFeeder.problems`. Bus errors and EOS are recorded with the source and
the GStreamer element that raised them; live sources are restarted with exponential back-off by `poll()`.
`GstRig` runs the GLib main loop for the bus watches in its own thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ckd.errors import CKDError
from pipelines.folder_src import FolderFrames, FrameProblem
from pipelines.mapped import MappedFrame
from pipelines.synthetic_src import SyntheticFrames
from pipelines.uri import SourceSpec


def gst():
    """Import and initialise GStreamer (lazily: the CLI imports this module without GStreamer)."""
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstVideo", "1.0")
    from gi.repository import GLib, Gst, GstVideo

    Gst.init(None)
    return Gst, GLib, GstVideo


def has_element(name: str) -> bool:
    """Whether GStreamer on this machine has an element factory (e.g. NVIDIA's nvvidconv)."""
    Gst, _, _ = gst()
    return Gst.ElementFactory.find(name) is not None


# -- launch descriptions (what `ckd run --print-pipeline` shows) ------------------------------------------------


def frame_provider(spec: SourceSpec) -> SyntheticFrames | FolderFrames | None:
    """The frames an appsrc-fed source pushes (synthetic sensors, numbered image frames), else None."""
    if spec.scheme == "synthetic":
        return SyntheticFrames(spec)
    if spec.frames_folder:
        try:
            return FolderFrames(spec.location, spec.role)
        except CKDError as exc:
            raise CKDError(f"{spec.name}: {exc}") from None
    return None


def _sink(fmt: str, replay: bool) -> str:
    mode = "max-buffers=2 drop=false sync=false" if replay else "max-buffers=1 drop=true sync=true"
    return f"video/x-raw,format={fmt} ! appsink name=sink {mode}"


def _fraction(fps: float) -> str:
    if fps <= 0:
        raise CKDError(f"frame rate must be positive, got {fps}")
    return f"{round(fps * 1000)}/1000"


def _size_caps(spec: SourceSpec) -> str:
    caps = ""
    for key in ("width", "height"):
        if key in spec.params:
            caps += f",{key}={int(spec.number(key, 0))}"
    if "fps" in spec.params:
        caps += f",framerate={_fraction(spec.number('fps', 30))}"
    return caps


def _convert(spec: SourceSpec, nvidia: bool) -> str:
    """Conversion chain from decoded video to the appsink format."""
    if nvidia and spec.out_format == "RGB":
        return "nvvidconv ! video/x-raw,format=BGRx ! videoconvert"
    return "videoconvert"


def launch_string(spec: SourceSpec, nvidia: bool | None = None, replay: bool = False, frames=None) -> str:
    """The GStreamer description of a source (`frames`: its `frame_provider`, made here when not given)."""
    if nvidia is None:
        nvidia = has_element("nvvidconv")
    if spec.scheme == "synthetic" or spec.frames_folder:
        frames = frames or frame_provider(spec)
        f, fps = frames.format, spec.number("fps", 30)
        caps = f"video/x-raw,format={f.fmt},width={f.width},height={f.height},framerate={_fraction(fps)}"
        return f'appsrc name=src is-live={str(not replay).lower()} format=time caps="{caps}" ! {_sink(f.fmt, replay)}'
    sink = _sink(spec.out_format, replay)
    if spec.scheme == "v4l2":
        fmt = spec.params.get("format", "GRAY16_LE" if spec.out_format == "GRAY16_LE" else "").upper()
        if fmt == "MJPEG":
            dec = f"image/jpeg{_size_caps(spec)} ! jpegdec ! {_convert(spec, nvidia)}"
        elif fmt in ("GRAY16_LE", "GRAY8"):
            rows = int(spec.number("telemetry", 0))
            crop = f" ! videocrop bottom={rows}" if rows > 0 else ""
            dec = f"video/x-raw,format={fmt}{_size_caps(spec)}{crop}"
            if spec.out_format != fmt:
                dec += " ! videoconvert"
        elif fmt:
            dec = f"video/x-raw,format={fmt}{_size_caps(spec)} ! {_convert(spec, nvidia)}"
        else:
            dec = _convert(spec, nvidia)
        return f"v4l2src device={spec.location} ! {dec} ! {sink}"
    if spec.scheme == "csi":
        w, h, fps = int(spec.number("width", 1280)), int(spec.number("height", 720)), spec.number("fps", 30)
        return (
            f"nvarguscamerasrc sensor-id={spec.location} ! "
            f"video/x-raw(memory:NVMM),width={w},height={h},framerate={_fraction(fps)} ! "
            f"nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! {sink}"
        )
    if spec.scheme == "rtsp":
        latency = int(spec.number("latency", 100))
        return f"rtspsrc location={spec.location} latency={latency} ! decodebin ! {_convert(spec, nvidia)} ! {sink}"
    path = Path(spec.location)
    if not path.is_file():
        raise CKDError(f"{spec.name}: {path} does not exist")
    return f'filesrc location="{path}" ! decodebin ! {_convert(spec, nvidia)} ! {sink}'


# -- samples -----------------------------------------------------------------------------------------------


@dataclass
class Sample:
    """One frame as delivered: the GStreamer sample (holds the buffer), its source frame index, its time on the
    rig's clock (`timestamp`, seconds: capture time when live, stream time in replay) and its stream time
    (`pts_s`, seconds since the stream's start)."""

    role: str
    index: int
    timestamp: float
    pts_s: float
    sample: object
    width: int
    height: int
    fmt: str
    stride: int

    def map(self) -> MappedFrame:
        """Zero-copy numpy view of the frame (release it when done)."""
        return MappedFrame(self.sample.get_buffer(), self.fmt, self.width, self.height, self.stride)


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


# -- sources -----------------------------------------------------------------------------------------------


class AppsrcFeeder:
    """Pushes a frame provider's frames into an appsrc from its own thread (blocking while the appsrc is full).

    Fault injection (spec options, counted in frames from the first): `error_after=N` posts a GStreamer error
    after N frames (a sensor unplugged), `stall_after=N&stall_s=T` stops pushing for T seconds after N frames.
    """

    def __init__(self, spec: SourceSpec, appsrc, frames) -> None:
        self.spec, self.appsrc, self.frames = spec, appsrc, frames
        self.fps = spec.number("fps", 30)
        self.error_after = int(spec.number("error_after", -1))
        self.stall_after = int(spec.number("stall_after", -1))
        self.stall_s = spec.number("stall_s", 1.0)
        self.problems: list[FrameProblem] = []  # appended by the feeder thread, read by the main thread
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        appsrc.set_property("max-buffers", 2)
        appsrc.set_property("block", True)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"ckd-feed-{self.spec.role}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end; `GstSource.stop` joins it once the pipeline no longer blocks it."""
        self._stop.set()

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        Gst, GLib, _ = gst()
        first, duration, offset = self.frames.first, int(1e9 / self.fps), 0
        for i in range(first, self.frames.last + 1):
            if self._stop.is_set():
                return
            if i - first == self.error_after:
                err = GLib.Error.new_literal(Gst.ResourceError.quark(), "sensor disconnected", Gst.ResourceError.READ)
                self.appsrc.post_message(Gst.Message.new_error(self.appsrc, err, f"injected after {i - first} frames"))
                return
            if i - first == self.stall_after:
                self._stop.wait(self.stall_s)
                offset += int(self.stall_s * 1e9)  # a live sensor's clock keeps running while it stalls
            try:
                image = self.frames.read(i)
            except FrameProblem as exc:
                self.problems.append(exc)
                continue
            buf = Gst.Buffer.new_wrapped(np.ascontiguousarray(image).tobytes())
            buf.pts, buf.duration, buf.offset = (i - first) * duration + offset, duration, i
            if self.appsrc.emit("push-buffer", buf) != Gst.FlowReturn.OK:
                return
        self.appsrc.emit("end-of-stream")


class GstSource:
    """One sensor pipeline: live, `on_sample(Sample)` is called from the streaming thread; replay, `pull()`."""

    def __init__(
        self,
        spec: SourceSpec,
        on_sample: Callable[[Sample], None] | None,
        clock=None,
        nvidia: bool | None = None,
        replay: bool = False,
    ):
        self.spec = spec
        self.replay = replay
        self.provider = frame_provider(spec)
        self.description = launch_string(spec, nvidia=nvidia, replay=replay, frames=self.provider)
        self.on_sample = on_sample
        self.clock = clock
        self.pipeline = None
        self.sink = None
        self.feeder: AppsrcFeeder | None = None
        self.frames = 0
        self.error: str | None = None
        self.eos = False
        self.restarts = 0
        self.timestamp_jumps = 0
        self.retry_at: float | None = None
        self.stalled = False
        self.last_arrival = 0.0
        self._last_ts = -1.0
        self._geometry: tuple[int, int, int, str, float] | None = None

    @property
    def alive(self) -> bool:
        return self.error is None and not self.eos

    @property
    def fps(self) -> float | None:
        """Frame rate from the caps of the first sample (None before it; a camera's nominal rate)."""
        if self._geometry is None:
            return None
        return self._geometry[4] or self.spec.number("fps", 30)

    @property
    def problems(self) -> list[FrameProblem]:
        """Frames the source could not deliver (missing, empty, corrupt files), in frame order."""
        return self.feeder.problems if self.feeder is not None else []

    def build(self) -> None:
        Gst, GLib, _ = gst()
        try:
            self.pipeline = Gst.parse_launch(self.description)
        except GLib.Error as exc:
            raise CKDError(f"{self.spec.name}: cannot build pipeline '{self.description}': {exc.message}") from None
        if self.clock is not None:
            self.pipeline.use_clock(self.clock)
        self.sink = self.pipeline.get_by_name("sink")
        if not self.replay:
            self.sink.set_property("emit-signals", True)
            self.sink.connect("new-sample", self._on_new_sample)
        if self.provider is not None:
            self.feeder = AppsrcFeeder(self.spec, self.pipeline.get_by_name("src"), self.provider)

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
        self.pipeline.set_state(Gst.State.NULL)  # unblocks a feeder waiting in push-buffer
        if self.feeder is not None:
            self.feeder.join()

    def pull(self, timeout_s: float) -> Sample | None:
        """Replay: the next sample, waiting up to `timeout_s`; None when there is none yet or the stream ended."""
        sample = self.sink.emit("try-pull-sample", int(timeout_s * 1e9))
        return None if sample is None else self._make_sample(sample)

    @property
    def exhausted(self) -> bool:
        """Replay: nothing more will come (an error, or end of stream with every sample pulled)."""
        return self.error is not None or bool(self.sink.get_property("eos"))

    def _on_new_sample(self, sink) -> int:
        Gst, _, _ = gst()
        sample = sink.emit("pull-sample")
        if sample is None:
            return Gst.FlowReturn.EOS
        self.on_sample(self._make_sample(sample))
        return Gst.FlowReturn.OK

    def _make_sample(self, sample) -> Sample:
        Gst, _, GstVideo = gst()
        if self._geometry is None:
            info = GstVideo.VideoInfo.new_from_caps(sample.get_caps())
            fps = info.fps_n / info.fps_d if info.fps_d and info.fps_n > 0 else 0.0
            fmt = GstVideo.VideoFormat.to_string(info.finfo.format)
            self._geometry = (info.width, info.height, info.stride[0], fmt, fps)
        w, h, stride, fmt, fps = self._geometry
        buf = sample.get_buffer()
        pts_s = None
        if buf.pts != Gst.CLOCK_TIME_NONE:
            stream = sample.get_segment().to_stream_time(Gst.Format.TIME, buf.pts)
            pts_s = stream / 1e9 if stream != Gst.CLOCK_TIME_NONE else None
        if self.feeder is not None:
            index = buf.offset
        elif pts_s is not None and fps > 0:
            index = round(pts_s * fps)
        else:
            index = self.frames
        if pts_s is None:
            pts_s = index / fps if fps > 0 else float(index)
        ts = pts_s if self.replay else self._clock_time(sample, buf)
        self.frames += 1
        self.last_arrival = time.monotonic()
        return Sample(self.spec.role, int(index), ts, pts_s, sample, w, h, fmt, stride)

    def _clock_time(self, sample, buf) -> float:
        """Clock time of the frame: base time + running time of its PTS; arrival time when missing or jumping."""
        Gst, _, _ = gst()
        clock = self.pipeline.get_clock()
        now = clock.get_time() if clock else None
        ts_ns = None
        if buf.pts != Gst.CLOCK_TIME_NONE:
            running = sample.get_segment().to_running_time(Gst.Format.TIME, buf.pts)
            if running != Gst.CLOCK_TIME_NONE and running >= 0:
                ts_ns = running + self.pipeline.get_base_time()
        ts, jumped = frame_time(ts_ns, now, self._last_ts)
        self.timestamp_jumps += jumped
        self._last_ts = ts
        return ts


class GstRig:
    """The sensors of one run on a shared clock, with the GLib main loop in its own thread.

    Live (`on_sample` given): samples arrive through the callback. Replay (`on_sample=None`): pull them from
    `sources` with `GstSource.pull`.
    """

    def __init__(
        self, specs: list[SourceSpec], on_sample: Callable[[Sample], None] | None = None, nvidia: bool | None = None
    ):
        Gst, GLib, _ = gst()
        self.clock = Gst.SystemClock.obtain()
        replay = on_sample is None
        self.sources = [GstSource(s, on_sample, clock=self.clock, nvidia=nvidia, replay=replay) for s in specs]
        self.events: list[str] = []
        self._context = GLib.MainContext.new()
        self._loop = GLib.MainLoop.new(self._context, False)
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    def source(self, role: str) -> GstSource:
        return next(s for s in self.sources if s.spec.role == role)

    def init_box(self) -> tuple[tuple[float, float, float, float], str] | None:
        """(box, where it came from) when the RGB source knows the target's first box (synthetic, benchmark clip)."""
        provider = self.source("rgb").provider
        return provider.init_box() if provider is not None else None

    def first_index(self) -> int | None:
        """Index of the clip's first frame when the sources know it (image frames, synthetic), else None."""
        firsts = [s.provider.first for s in self.sources if s.provider is not None]
        return min(firsts) if firsts else None

    def frame_count(self) -> int | None:
        """Source frames from the first to the last index when every source knows its frames, else None."""
        if any(s.provider is None for s in self.sources):
            return None
        return max(s.provider.last for s in self.sources) - self.first_index() + 1

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
