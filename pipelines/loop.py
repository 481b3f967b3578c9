"""The dual-sensor inference loop: newest pair -> thermal AGC -> registration -> tracker -> outputs.

Frames stay in GStreamer's buffers: each is mapped and viewed as numpy without copying; AGC, registration and the
tracker's crops write into buffers allocated once. The keep-ratio rung of every frame comes from the adaptive
controller (`pipelines.controller.RungController`) fed with the loop's per-frame latency and tracking score.

Faults: a source that errors, ends or stalls is reported by name (and GStreamer element); the tracker keeps running
on the other sensor (its image stands in for the missing one), live sources reconnect with back-off, and the JSONL
is flushed per frame. Ctrl-C ends the run cleanly with every output finalised.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ckd.atomic import write_json_atomic
from ckd.errors import CKDError
from pipelines.outputs import JsonlWriter, OverlayVideo
from pipelines.pairing import Pairer
from pipelines.registration import Registrar, RigCalibration
from pipelines.source import GstRig, Sample
from pipelines.uri import SourceSpec


@dataclass
class LoopOptions:
    target_fps: float = 30.0
    max_frames: int | None = None  # processed frames (pairs) before stopping
    duration_s: float | None = None
    init_box: tuple[float, float, float, float] | None = None
    tolerance_s: float | None = None  # pairing tolerance; default half the slower sensor's period
    stall_s: float = 1.0  # a sensor silent this long is treated as lost until it resumes
    rungs: tuple[float, ...] = (1.0,)
    adaptive: bool = True
    overlay: bool = True
    udp: str | None = None
    display: bool = False
    trace_alloc_frames: tuple[int, int] | None = (20, 60)  # tracemalloc window (first, last processed frame)
    progress: bool = True


def _fps_of(spec: SourceSpec, default: float) -> float:
    return spec.number("fps", default)


class DualSensorLoop:
    """Runs a `Tracker` on an RGB + thermal rig until the sources end, a frame/time limit, or Ctrl-C."""

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
        from ckd.data.thermal import ThermalAGC

        self.specs = {"rgb": rgb, "tir": tir}
        self.tracker = tracker
        self.out_dir = Path(out_dir)
        self.opt = options or LoopOptions()
        self.calibration = calibration
        self.log = log or (lambda s: print(s, file=sys.stderr))
        tol = self.opt.tolerance_s or 0.5 / min(_fps_of(rgb, 30), _fps_of(tir, 30))
        self.pairer = Pairer(tol, depth=2)  # held samples pin sensor buffers: keep few (v4l2 pools are small)
        self.agc = ThermalAGC()
        self._cond = threading.Condition()
        self._latest: dict[str, Sample | None] = {"rgb": None, "tir": None}
        self._used: dict[str, float] = {"rgb": -1.0, "tir": -1.0}
        self.rig = GstRig([rgb, tir], self._on_sample, nvidia=nvidia)
        self.controller = self._make_controller()
        self._bufs: dict[str, np.ndarray] = {}
        self.registrar: Registrar | None = None
        self.video: OverlayVideo | None = None
        self.jsonl: JsonlWriter | None = None
        cap = 1 << 16
        # per-frame seconds by stage (ring of `cap` frames): what end-to-end latency is made of
        self.times = {k: np.zeros(cap) for k in ("input", "crop", "model", "decode", "overlay", "processing", "e2e")}
        self.n = 0
        self.skipped = 0
        self.degraded_frames = 0
        self.zero_copy_checked = False
        self.alloc: dict | None = None
        self.interrupted = False
        self._fps_ema = 0.0
        self._last_done: float | None = None
        self._events_seen = 0
        self._idle = False

    # -- set-up ------------------------------------------------------------------------------------------------

    def _make_controller(self):
        if not self.opt.adaptive:
            return None
        from pipelines.controller import Rung, RungController

        precision = getattr(self.tracker.backend, "precision", "fp32")
        return RungController([Rung(r, precision) for r in self.opt.rungs], self.opt.target_fps)

    def _on_sample(self, sample: Sample) -> None:
        with self._cond:
            self.pairer.push(sample.role, sample.timestamp, sample)
            self._latest[sample.role] = sample
            self._cond.notify()

    def _buffer(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        buf = self._bufs.get(name)
        if buf is None or buf.shape != shape:
            buf = self._bufs[name] = np.zeros(shape, dtype=np.uint8)
        return buf

    # -- the loop ---------------------------------------------------------------------------------------------

    def run(self) -> dict:
        """Run to the end; returns the latency report (also written to out_dir/latency.json)."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.jsonl = JsonlWriter(self.out_dir / "track.jsonl")
        self._warm_up()
        bar = self._progress()
        t_start = time.monotonic()
        self.rig.start()
        self._report_events()
        try:
            while not self._finished(t_start):
                self.rig.poll(self.opt.stall_s)
                job = self._next_job()
                self._idle = job is None
                self._report_events()
                if job is not None:
                    self._process(*job)
                    if bar is not None:
                        bar.update(1)
        except KeyboardInterrupt:
            self.interrupted = True
            self.log("interrupted: finishing outputs")
        finally:
            self.rig.stop()
            if bar is not None:
                bar.close()
            self.jsonl.close()
            video = self.video.close() if self.video is not None else None
        report = self.report(time.monotonic() - t_start, video)
        write_json_atomic(self.out_dir / "latency.json", report)
        if self.controller is not None and hasattr(self.controller, "write_log"):
            self.controller.write_log(self.out_dir / "controller.csv")
        return report

    def _warm_up(self) -> None:
        """Run every rung once before the sensors start (sessions/engines load lazily; not inside the budget)."""
        backend = self.tracker.backend
        for rung in self.opt.rungs:
            backend.run(backend.input_buffers(), keep_ratio=rung)

    def _progress(self):
        if not self.opt.progress:
            return None
        from tqdm import tqdm

        return tqdm(total=self.opt.max_frames, desc="ckd run", unit="frame", file=sys.stderr)

    def _finished(self, t_start: float) -> bool:
        if self.opt.max_frames is not None and self.n >= self.opt.max_frames:
            return True
        if self.opt.duration_s is not None and time.monotonic() - t_start >= self.opt.duration_s:
            return True
        sources = self.rig.sources
        if not self._idle or any(s.alive for s in sources):
            return False
        # nothing is running: wait for a reconnect only while no sensor has ended for good
        gone = [s for s in sources if s.retry_at is None]
        return bool(gone)

    def _fresh(self, role: str) -> bool:
        s = self._latest[role]
        return s is not None and s.timestamp > self._used[role]

    def _next_job(self) -> tuple[Sample | None, Sample | None, str] | None:
        """The newest pair, or, when one sensor is lost, the other sensor's newest frame alone."""
        with self._cond:
            pair = self.pairer.pop()
            if pair is None:
                self._cond.wait(0.05)
                pair = self.pairer.pop()
            if pair is not None:
                (_, a), (_, b) = pair
                return a, b, ""
            lost = self._lost()
            if len(lost) == 1:
                alive = "tir" if lost[0] == "rgb" else "rgb"
                if self._fresh(alive):
                    self.pairer.flush()
                    s = self._latest[alive]
                    note = f"{lost[0]} lost"
                    return (s, None, note) if alive == "rgb" else (None, s, note)
        return None

    def _lost(self) -> list[str]:
        return [s.spec.role for s in self.rig.sources if not s.alive or s.stalled]

    def _report_events(self) -> None:
        events = self.rig.events
        while self._events_seen < len(events):
            self.log(events[self._events_seen])
            if self.jsonl is not None:
                self.jsonl.write({"event": events[self._events_seen], "t": time.time()})
            self._events_seen += 1

    # -- one frame --------------------------------------------------------------------------------------------

    def _process(self, rgb_s: Sample | None, tir_s: Sample | None, note: str) -> None:
        t0 = time.perf_counter()
        self._trace_alloc()
        decision = self.controller.decision if self.controller is not None else None
        maps = []
        try:
            rgb, tir8, ts = self._frames(rgb_s, tir_s, maps)
            t_in = time.perf_counter() - t0
            if decision is not None and decision.skip and self.tracker.state is not None:
                self._record(ts, None, None, None, 0.0, 0.0, time.perf_counter() - t0, decision.reason, skipped=True)
                self.skipped += 1
                self.controller.update(time.perf_counter() - t0, None, behind_s=0.0)
                return
            keep = decision.rung.keep_ratio if decision is not None else (self.opt.rungs or (None,))[0]
            first = self.tracker.state is None
            timing = {}
            if first:
                box, score = self._init(rgb, tir8), 1.0
            else:
                box, score = self.tracker.update(rgb, tir8, keep_ratio=keep)
                timing = self.tracker.last_timing
            model_ms = float(timing.get("model_ms", 0.0))
            t_ov = time.perf_counter()
            if self.opt.overlay:
                self._overlay(rgb, tir8, box, score, keep, note)
            t_ov = time.perf_counter() - t_ov
        finally:
            for m in maps:
                m.release()
        proc = time.perf_counter() - t0
        clock = self.rig.clock.get_time() / 1e9
        e2e = clock - ts
        if self.controller is not None and not first:  # the init frame (and encoder start) is not a rung sample
            self.controller.update(proc, score, behind_s=max(0.0, e2e - 1.0 / self.opt.target_fps))
        i = self.n % len(self.times["e2e"])
        for key, value in (
            ("input", t_in),
            ("crop", float(timing.get("preprocess_ms", 0.0)) / 1e3),
            ("model", model_ms / 1e3),
            ("decode", float(timing.get("decode_ms", 0.0)) / 1e3),
            ("overlay", t_ov),
            ("processing", proc),
            ("e2e", e2e),
        ):
            self.times[key][i] = value
        now = time.perf_counter()
        if self._last_done is not None:
            inst = 1.0 / max(now - self._last_done, 1e-6)
            self._fps_ema = inst if self._fps_ema == 0 else 0.9 * self._fps_ema + 0.1 * inst
        self._last_done = now
        reason = decision.reason if decision is not None else "fixed rung"
        self._record(ts, box, score, keep, e2e, model_ms, proc, reason, note=note)
        self.n += 1
        self.degraded_frames += bool(note)

    def _frames(self, rgb_s: Sample | None, tir_s: Sample | None, maps: list) -> tuple[np.ndarray, np.ndarray, float]:
        """Zero-copy views of the pair, thermal through AGC and registration; a lost sensor is stood in for."""
        rgb = tir8 = None
        if rgb_s is not None:
            m = rgb_s.map()
            maps.append(m)
            rgb = m.array
            self._used["rgb"] = rgb_s.timestamp
            self._check_zero_copy(m, rgb_s)
        if tir_s is not None:
            m = tir_s.map()
            maps.append(m)
            raw = m.array
            self._used["tir"] = tir_s.timestamp
            if raw.dtype == np.uint16:
                lo, hi = self.agc.update(raw)
                from ckd.data.thermal import agc

                raw = agc(raw, lo, hi, out=self._buffer("agc", raw.shape))
            if rgb is not None and self.registrar is None:
                self._make_registrar(rgb)
            if self.registrar is not None:
                tir8 = self.registrar(raw)
            else:
                tir8 = raw
        if rgb is None:  # thermal only: its image stands in for RGB
            rgb = self._buffer("rgb_standin", (*tir8.shape, 3))
            cv2.cvtColor(tir8, cv2.COLOR_GRAY2RGB, dst=rgb)
        if tir8 is None:  # RGB only: its gray image stands in for thermal
            tir8 = self._buffer("tir_standin", rgb.shape[:2])
            cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY, dst=tir8)
        ts = max(s.timestamp for s in (rgb_s, tir_s) if s is not None)
        return rgb, tir8, ts

    def _make_registrar(self, rgb: np.ndarray) -> None:
        self.registrar = Registrar((rgb.shape[1], rgb.shape[0]), self.calibration)
        if self.registrar.warning:
            self.log(f"warning: {self.registrar.warning}")

    def _check_zero_copy(self, m, sample: Sample) -> None:
        """Once: the numpy frame must be the mapped GStreamer memory itself (no copy on the way in)."""
        if self.zero_copy_checked:
            return
        addr = m.array.__array_interface__["data"][0]
        if addr != m.address:
            raise CKDError(f"{sample.role} frame is not a view of the GStreamer buffer")
        self.zero_copy_checked = True

    def _init(self, rgb: np.ndarray, tir8: np.ndarray) -> np.ndarray:
        box = self.opt.init_box
        if box is None:
            box = self._default_box(rgb)
        self.tracker.init(rgb, tir8, box)
        return np.asarray(box, dtype=np.float64)

    def _default_box(self, rgb: np.ndarray) -> tuple[float, ...]:
        spec = self.specs["rgb"]
        if spec.scheme == "synthetic":
            from pipelines.synthetic_src import synthetic_sequence

            return tuple(float(v) for v in synthetic_sequence(spec).frame(0).box)
        if self.opt.display and os.environ.get("DISPLAY"):
            try:
                x, y, w, h = cv2.selectROI("ckd run: select the target", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
                cv2.destroyAllWindows()
            except cv2.error:
                raise CKDError("this OpenCV build has no GUI to select the target: give --init x,y,w,h") from None
            if w > 0 and h > 0:
                return (float(x), float(y), float(w), float(h))
        raise CKDError("no --init x,y,w,h given and no display to select the target on the first frame")

    def _overlay(self, rgb, tir8, box, score, keep, note) -> None:
        if self.video is None:
            h, w = rgb.shape[:2]
            fps = self.opt.target_fps
            self.video = OverlayVideo(self.out_dir / "overlay.mp4", w, h, fps, self.opt.udp, self.opt.display)
        rung = "-" if keep is None else f"{keep:g}"
        self.video.compose(rgb, tir8, box, score, self._fps_ema, rung, note)
        self.video.push()

    def _record(self, ts, box, score, keep, e2e, model_ms, proc, reason, note="", skipped=False) -> None:
        rec = {
            "frame": self.n + self.skipped,
            "t": round(ts, 6),
            "box": None if box is None else [round(float(v), 2) for v in box],
            "score": None if score is None else round(float(score), 4),
            "rung": keep,
            "latency_ms": round(e2e * 1e3, 3),
            "proc_ms": round(proc * 1e3, 3),
            "model_ms": round(model_ms, 3),
            "decision": reason,
        }
        if note:
            rec["degraded"] = note
        if skipped:
            rec["skipped"] = True
        self.jsonl.write(rec)

    def _trace_alloc(self) -> None:
        """tracemalloc over a window of steady-state frames: net growth and blocks allocated per frame."""
        win = self.opt.trace_alloc_frames
        if win is None:
            return
        first, last = win
        if self.n == first:
            tracemalloc.start()
            self._alloc0 = tracemalloc.take_snapshot()
        elif self.n == last and tracemalloc.is_tracing():
            snap = tracemalloc.take_snapshot()
            tracemalloc.stop()
            # the simulated sensors (synthetic generator) allocate their frames: they are the camera, not the loop
            keep = [tracemalloc.Filter(False, "*synthetic*"), tracemalloc.Filter(False, tracemalloc.__file__)]
            diff = snap.filter_traces(keep).compare_to(self._alloc0.filter_traces(keep), "lineno")
            frames = last - first
            growth = sum(d.size_diff for d in diff)
            top = sorted(diff, key=lambda d: -d.size_diff)[:3]
            self.alloc = {
                "top_growth": [
                    f"{d.traceback[0].filename.rsplit('/', 2)[-1]}:{d.traceback[0].lineno} {d.size_diff} B" for d in top
                ],
                "frames": frames,
                "net_bytes_per_frame": round(growth / frames, 1),
                "net_blocks_per_frame": round(sum(d.count_diff for d in diff) / frames, 2),
            }

    # -- report -----------------------------------------------------------------------------------------------

    def report(self, wall_s: float, video: Path | None) -> dict:
        n = min(self.n, len(self.times["e2e"]))
        warm = slice(1, n) if n > 1 else slice(0, n)  # frame 0 is the init

        def stats(a: np.ndarray) -> dict:
            a = a[warm] * 1e3
            if a.size == 0:
                return {"p50_ms": None, "p95_ms": None, "mean_ms": None}
            return {
                "p50_ms": round(float(np.percentile(a, 50)), 3),
                "p95_ms": round(float(np.percentile(a, 95)), 3),
                "mean_ms": round(float(a.mean()), 3),
            }

        model, proc, e2e = stats(self.times["model"]), stats(self.times["processing"]), stats(self.times["e2e"])
        ratio = None
        if model["p50_ms"]:
            ratio = round(e2e["p50_ms"] / model["p50_ms"], 2)
        sources = {
            s.spec.role: {
                "uri": s.spec.uri,
                "frames": s.frames,
                "error": s.error,
                "eos": s.eos,
                "restarts": s.restarts,
                "timestamp_jumps": s.timestamp_jumps,
            }
            for s in self.rig.sources
        }
        return {
            "frames_processed": self.n,
            "frames_skipped": self.skipped,
            "frames_degraded": self.degraded_frames,
            "wall_s": round(wall_s, 3),
            "fps": round(self.n / wall_s, 2) if wall_s > 0 else None,
            "model": model,
            "stages_p50_ms": {k: stats(v)["p50_ms"] for k, v in self.times.items()},
            "processing": proc,
            "end_to_end": e2e,
            "e2e_over_model_p50": ratio,
            "pairing": self.pairer.stats.as_dict(),
            "frames_dropped": sum(self.pairer.stats.dropped.values()),
            "sources": sources,
            "zero_copy_input": self.zero_copy_checked,
            "copies_per_frame": self.copies_per_frame(),
            "allocations": self.alloc,
            "events": list(self.rig.events),
            "interrupted": self.interrupted,
            "jsonl_lines": self.jsonl.lines if self.jsonl else 0,
            "overlay": str(video) if video else None,
        }

    def copies_per_frame(self) -> dict:
        """Full-frame writes per processed frame, by stage (inputs are mapped views: 0 copies)."""
        tir_fmt = self.specs["tir"].out_format
        return {
            "input_rgb": 0,
            "input_tir": 0,
            "agc_16_to_8": int(tir_fmt == "GRAY16_LE"),
            "registration": round(self.registrar.writes / max(self.n, 1), 2) if self.registrar else 0,
            "overlay_compose": 2 if self.opt.overlay else 0,
            "overlay_to_encoder": 0,  # composed straight into pooled GStreamer buffers
        }
