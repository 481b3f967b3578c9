"""The dual-sensor inference loop: frame -> preparation -> tracker -> controller -> outputs.

Frames come from a feed (`pipelines.feed`): live sensors give the newest pair (frames the loop cannot keep up
with are dropped), a recorded clip is replayed frame by frame in lockstep. `pipelines.prep` turns a pair into the
arrays the tracker sees (zero-copy views, thermal to 8 bits, registration), the adaptive controller picks the
keep-ratio rung of every frame, and `pipelines.outputs` writes one row per source frame (JSONL, results file) and
the overlay video. Latency and allocations are accounted in `pipelines.accounting`; `pipelines.report` writes
the report.

Faults: a source that errors, ends or stalls is reported by name (and GStreamer element); in live mode the tracker
keeps running on the other sensor (its image stands in), live sources reconnect with back-off. A sensor that
delivers no frame at all ends the run with an error. SIGINT and SIGTERM end the run cleanly with every output
finalised (`pipelines.signals`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ckd.atomic import write_json_atomic
from ckd.errors import CKDError
from pipelines.accounting import AllocationProbe, LatencyLog
from pipelines.feed import Job, LiveFeed, ReplayFeed
from pipelines.mapped import MappedFrame
from pipelines.outputs import FrameRows, JsonlWriter, OverlayVideo
from pipelines.pairing import default_tolerance
from pipelines.prep import FramePrep
from pipelines.registration import RigCalibration
from pipelines.report import run_report
from pipelines.signals import StopSignals
from pipelines.uri import SourceSpec

MAX_SKIP_LINES = 20  # frames without a partner logged one line each, up to this many


@dataclass
class LoopOptions:
    target_fps: float = 30.0
    max_frames: int | None = None  # tracked frames before stopping
    duration_s: float | None = None
    init_box: tuple[float, float, float, float] | None = None
    tolerance_s: float | None = None  # pairing tolerance; default half the slower sensor's period
    stall_s: float = 1.0  # a sensor silent this long is treated as lost until it resumes (live)
    first_frame_s: float = 10.0  # a sensor without a first frame this long after the start fails the run
    rungs: tuple[float, ...] = (1.0,)
    adaptive: bool = True
    realtime: bool | None = None  # None: replay when both sources are recorded clips; False: replay
    overlay: bool = True
    udp: str | None = None
    display: bool = False
    results: str | Path | None = None  # boxes in the benchmark text format, one line per source frame
    alloc_frames: tuple[int, int] | None = (20, 60)  # tracked frames between which allocations are counted
    progress: bool = True
    clock: Callable[[], float] = time.perf_counter  # processing-time clock (tests inject a simulated one)


class DualSensorLoop:
    """Runs a `Tracker` on an RGB + thermal pair of sources until they end, a frame/time limit, or a signal."""

    def __init__(
        self,
        rgb: SourceSpec,
        tir: SourceSpec,
        tracker,
        out_dir: str | Path,
        options: LoopOptions | None = None,
        calibration: RigCalibration | None = None,
        nvidia: bool | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.tracker = tracker
        self.out_dir = Path(out_dir)
        self.opt = opt = options or LoopOptions()
        self.log = log or (lambda s: print(s, file=sys.stderr))
        self.replay = self._replay(rgb, tir)
        if self.replay:
            self.feed: LiveFeed | ReplayFeed = ReplayFeed([rgb, tir], opt.tolerance_s, nvidia=nvidia)
        else:
            tol = opt.tolerance_s or default_tolerance(rgb.number("fps", 30), tir.number("fps", 30))
            self.feed = LiveFeed([rgb, tir], tol, opt.stall_s, nvidia=nvidia)
        self.rig = self.feed.rig
        self.init_box = self._find_init_box()
        self.prep = FramePrep(calibration, self.log, self._name_of)
        self.controller = self._make_controller()
        self.latency = LatencyLog()
        self.alloc = AllocationProbe(*opt.alloc_frames) if opt.alloc_frames else None
        self.counts = {"tracked": 0, "skipped": 0, "not_tracked": 0, "degraded": 0}
        self.rows: FrameRows | None = None
        self.video: OverlayVideo | None = None
        self._fps_ema, self._last_done = 0.0, None
        self._events_seen, self._problems_seen, self._skip_lines = 0, {"rgb": 0, "tir": 0}, 0

    # -- set-up ------------------------------------------------------------------------------------------------

    def _replay(self, rgb: SourceSpec, tir: SourceSpec) -> bool:
        if self.opt.realtime is None:
            return rgb.recorded and tir.recorded
        if not self.opt.realtime and not (rgb.replayable and tir.replayable):
            raise CKDError("replay needs recorded clips (file://) or synthetic sensors, not live cameras")
        return not self.opt.realtime

    def _find_init_box(self) -> tuple[float, ...] | None:
        if self.opt.init_box is not None:
            return tuple(self.opt.init_box)
        found = self.rig.init_box()
        if found is not None:
            box, origin = found
            self.log(f"init box {', '.join(f'{v:g}' for v in box)} (x,y,w,h) from {origin}")
            return box
        if not self.opt.display:
            raise CKDError("no --init x,y,w,h given and no display to select the target on the first frame")
        return None

    def _make_controller(self):
        if not self.opt.adaptive:
            return None
        from pipelines.controller import Rung, RungController

        precision = getattr(self.tracker.backend, "precision", "fp32")
        return RungController([Rung(r, precision) for r in self.opt.rungs], self.opt.target_fps)

    def _name_of(self, role: str, index: int) -> str:
        provider = self.rig.source(role).provider
        return f"{role} frame {index} ({provider.name(index)})" if provider is not None else f"{role} frame {index}"

    # -- the loop ---------------------------------------------------------------------------------------------

    def run(self) -> dict:
        """Run to the end; returns the report (also written to out_dir/latency.json). CKDError when a sensor
        delivered no frame (after the outputs are written)."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.rows = FrameRows(
            JsonlWriter(self.out_dir / "track.jsonl"), self.opt.results, self.rig.first_index(), self.feed.gap_reason
        )
        escaped0 = MappedFrame.escaped
        self._warm_up()
        # the bar counts source frames in replay, tracked frames live
        bar = self._progress(self.rig.frame_count() if self.replay else self.opt.max_frames)
        failure = None
        t_start = time.monotonic()
        with StopSignals() as stop:
            try:
                self.rig.start()
                while not stop.received:
                    failure = self._delivery_failure(time.monotonic() - t_start)
                    if failure or self._limit_reached(t_start):
                        break
                    job = self.feed.next()
                    self._report_events()
                    if job is None:
                        if self.feed.ended(idle=True):
                            break
                        continue
                    self._handle(job)
                    if bar is not None and (job.index is not None if self.replay else not job.skip):
                        bar.update(1)
            finally:
                self.rig.stop()
                if bar is not None:
                    bar.close()
                self._report_events()
                self.rows.close()
                video = self.video.close() if self.video is not None else None
            if stop.received:
                self.log(f"{stop.received}: outputs finished")
        report = self._report(time.monotonic() - t_start, video, stop.received, MappedFrame.escaped - escaped0)
        write_json_atomic(self.out_dir / "latency.json", report)
        if self.controller is not None:
            self.controller.write_log(self.out_dir / "controller.csv")
        if failure:
            raise CKDError(failure)
        return report

    def _warm_up(self) -> None:
        """Run every rung once before the sensors start (sessions/engines load lazily; not inside the budget)."""
        backend = self.tracker.backend
        for rung in self.opt.rungs:
            backend.run(backend.input_buffers(), keep_ratio=rung)

    def _progress(self, total: int | None):
        if not self.opt.progress:
            return None
        from tqdm import tqdm

        return tqdm(total=total, desc="ckd run", unit="frame", file=sys.stderr)

    def _limit_reached(self, t_start: float) -> bool:
        if self.opt.max_frames is not None and self.counts["tracked"] >= self.opt.max_frames:
            return True
        return self.opt.duration_s is not None and time.monotonic() - t_start >= self.opt.duration_s

    def _delivery_failure(self, elapsed_s: float) -> str | None:
        """One line when a sensor has delivered no frame and will not (ended, or silent since the start)."""
        for src in self.rig.sources:
            if src.frames:
                continue
            gone = not src.alive and src.retry_at is None
            if src.error and gone:
                return f"{src.error} (no frame delivered)"
            if gone or elapsed_s > self.opt.first_frame_s:
                why = "the stream ended" if src.eos else f"nothing within {self.opt.first_frame_s:g} s of the start"
                return f"{src.spec.name}: no frame delivered ({why})"
        return None

    def _report_events(self) -> None:
        """Log source events and unreadable frames (one line each) and add them to the JSONL."""
        lines = self.rig.events[self._events_seen :]
        self._events_seen += len(lines)
        for src in self.rig.sources:
            role, problems = src.spec.role, src.problems
            lines += [f"{p}; frame not tracked" for p in problems[self._problems_seen[role] :]]
            self._problems_seen[role] = len(problems)
        for line in lines:
            self.log(line)
            self.rows.write(None, {"event": line, "t": round(time.time(), 3)})

    # -- one job ----------------------------------------------------------------------------------------------

    def _handle(self, job: Job) -> None:
        if job.skip:  # a frame without a partner (replay): its row says why
            if job.index is not None:
                self.counts["not_tracked"] += 1
            if not job.quiet and self._skip_lines < MAX_SKIP_LINES:
                self._skip_lines += 1
                last = self._skip_lines == MAX_SKIP_LINES
                self.log(job.skip + (" (further frames without a partner: see track.jsonl)" if last else ""))
            self._skipped_row(job, job.skip)
            return
        self._track(job)

    def _track(self, job: Job) -> None:
        clock = self.opt.clock
        t0 = clock()
        decision = self.controller.decision if self.controller is not None else None
        first = self.tracker.state is None
        with self.prep.frame(job) as frame:
            t_in = clock() - t0
            if decision is not None and decision.skip and not first:
                self.controller.update(clock() - t0, None, behind_s=0.0)
                self.counts["skipped"] += 1
                self._skipped_row(job, decision.reason)
                return
            keep = decision.rung.keep_ratio if decision is not None else self.opt.rungs[0]
            timing: dict = {}
            if first:
                box, score = self._init(frame), 1.0
            else:
                box, score = self.tracker.update(frame.rgb, frame.tir8, keep_ratio=keep)
                timing = self.tracker.last_timing
            t_ov = clock()
            if self.opt.overlay:
                self._overlay(frame, box, score, keep, job.note)
            t_ov = clock() - t_ov
        proc = clock() - t0
        e2e = self._end_to_end(job, proc)
        if self.controller is not None and not first:  # the init frame (and encoder start) is not a rung sample
            behind = 0.0 if self.replay else max(0.0, e2e - 1.0 / self.opt.target_fps)
            self.controller.update(proc, score, behind_s=behind)
        model_ms = float(timing.get("model_ms", 0.0))
        self.latency.add(
            input=t_in,
            crop=float(timing.get("preprocess_ms", 0.0)) / 1e3,
            model=model_ms / 1e3,
            decode=float(timing.get("decode_ms", 0.0)) / 1e3,
            overlay=t_ov,
            processing=proc,
            e2e=e2e,
        )
        self._tick_fps(clock())
        record = {
            **self._times(job),
            "box": [round(float(v), 2) for v in box],
            "score": round(float(score), 4),
            "rung": keep,
            "latency_ms": round(e2e * 1e3, 3),
            "proc_ms": round(proc * 1e3, 3),
            "model_ms": round(model_ms, 3),
            "decision": decision.reason if decision is not None else "fixed rung",
        }
        if job.note:
            record["degraded"] = job.note
        self.rows.write(job.index, record, box)
        if self.alloc is not None:
            self.alloc.frame(self.counts["tracked"])
        self.counts["tracked"] += 1
        self.counts["degraded"] += bool(job.note)

    def _skipped_row(self, job: Job, reason: str) -> None:
        self.rows.write(job.index, {**self._times(job), "box": None, "skipped": True, "reason": reason})

    @staticmethod
    def _times(job: Job) -> dict:
        return {f"t_{r}": None if getattr(job, r) is None else round(getattr(job, r).pts_s, 6) for r in ("rgb", "tir")}

    def _end_to_end(self, job: Job, proc: float) -> float:
        """Live: capture to output on the rig's clock. Replay (no real-time reference): the processing time."""
        if self.replay:
            return proc
        captured = max(s.timestamp for s in (job.rgb, job.tir) if s is not None)
        return self.rig.clock.get_time() / 1e9 - captured

    def _tick_fps(self, now: float) -> None:
        if self._last_done is not None:
            inst = 1.0 / max(now - self._last_done, 1e-6)
            self._fps_ema = inst if self._fps_ema == 0 else 0.9 * self._fps_ema + 0.1 * inst
        self._last_done = now

    def _init(self, frame) -> np.ndarray:
        box = self.init_box or self._select_box(frame.rgb)
        self.tracker.init(frame.rgb, frame.tir8, box)
        return np.asarray(box, dtype=np.float64)

    def _select_box(self, rgb: np.ndarray) -> tuple[float, ...]:
        try:
            x, y, w, h = cv2.selectROI("ckd run: select the target", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            cv2.destroyAllWindows()
        except cv2.error:
            raise CKDError("this OpenCV build has no GUI to select the target: give --init x,y,w,h") from None
        if w <= 0 or h <= 0:
            raise CKDError("no target selected: give --init x,y,w,h")
        return (float(x), float(y), float(w), float(h))

    def _overlay(self, frame, box, score, keep, note) -> None:
        if self.video is None:
            h, w = frame.rgb.shape[:2]
            fps = self.opt.target_fps
            self.video = OverlayVideo(self.out_dir / "overlay.mp4", w, h, fps, self.opt.udp, self.opt.display)
        rung = "-" if keep is None else f"{keep:g}"
        self.video.compose(frame.rgb, frame.tir8, box, score, self._fps_ema, rung, note)
        self.video.push()

    # -- report -----------------------------------------------------------------------------------------------

    def _report(self, wall_s: float, video: Path | None, stopped_by: str | None, escaped: int) -> dict:
        copies = self.prep.copies_per_frame()
        if self.video is not None and self.video.frames:
            copies["overlay_compose"] = round(self.video.copies / self.video.frames, 3)
        kind = self.prep.kind
        return run_report(
            mode=self.feed.mode,
            counts=dict(self.counts),
            feed=self.feed.stats(),
            latency=self.latency,
            sources=self.rig.sources,
            copies=copies,
            allocations=self.alloc.result if self.alloc is not None else None,
            escaped_views=escaped,
            thermal=kind,
            events=self.rig.events,
            stopped_by=stopped_by,
            rows={
                "jsonl_lines": self.rows.jsonl.lines,
                "results": str(self.opt.results) if self.opt.results else None,
                "results_rows": self.rows.rows if self.opt.results else None,
            },
            overlay=str(video) if video else None,
            wall_s=wall_s,
        )
