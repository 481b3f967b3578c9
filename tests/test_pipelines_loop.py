"""The dual-sensor loop end to end on real GStreamer sources with the torch backend (nano preset, random weights)."""

from __future__ import annotations

import json
import sys
import threading
import time
import tracemalloc

import cv2
import numpy as np
import pytest
import torch
from sim_clock import SimClock

from ckd.model.config import preset
from ckd.model.network import CKDNet
from ckd.track.torch_backend import TorchBackend
from ckd.track.tracker import Tracker
from pipelines.loop import DualSensorLoop, LoopOptions
from pipelines.uri import parse_uri

SIZE = "&width=160&height=120"


@pytest.fixture(scope="module")
def nano_backend():
    torch.manual_seed(0)
    return TorchBackend(CKDNet(preset("nano")).eval(), threads=1)


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_thermal_dies_mid_run_loop_survives_and_outputs_are_complete(tmp_path, nano_backend):
    # 15 fps: the nano model keeps up even on a loaded machine, so the RGB-alone frames after the error are tracked
    rgb = parse_uri(f"synthetic://?seed=3&fps=15&frames=60{SIZE}", "rgb")
    tir = parse_uri(f"synthetic://?seed=3&fps=15&error_after=20{SIZE}", "tir")
    opt = LoopOptions(target_fps=15, rungs=(1.0, 0.7, 0.5), stall_s=0.5, progress=False, alloc_frames=(5, 25))
    results = tmp_path / "res" / "synthetic.txt"
    opt.results = results
    report = DualSensorLoop(rgb, tir, Tracker(nano_backend), tmp_path, opt, log=lambda s: None).run()

    tir_err = report["sources"]["tir"]["error"]
    assert tir_err.endswith("GStreamer element 'src': sensor disconnected") and tir_err.startswith("tir source")
    assert report["sources"]["rgb"]["frames"] == 60 and report["sources"]["rgb"]["eos"]
    # the tracker kept running on RGB alone after the thermal sensor died (how many of the 40 RGB-alone frames it
    # tracked rather than dropped depends on the machine's speed under live pacing: a few are enough)
    assert report["frames"]["degraded"] >= 5
    lines = _lines(tmp_path / "track.jsonl")
    rows = [r for r in lines if "frame" in r]
    assert [r["frame"] for r in rows] == list(range(60))  # one row per source frame, dropped ones included
    events = [r["event"] for r in lines if "event" in r]
    assert len(lines) == report["jsonl_lines"] == len(rows) + len(events) and tir_err in events
    tracked = [r for r in rows if r["box"] is not None]
    assert len(tracked) == report["frames_processed"] and report["results_rows"] == 60
    assert all(len(r["box"]) == 4 and 0.0 <= r["score"] <= 1.0 and r["latency_ms"] > 0 for r in tracked)
    assert all(r["t_rgb"] == pytest.approx(r["frame"] / 15, abs=1e-6) for r in tracked)
    assert tracked[-1].get("degraded") == "tir lost" and tracked[-1]["t_tir"] is None
    # the results file: line k is frame k, 1-based boxes of the tracked rows, 0,0,0,0 for the others
    boxes = np.loadtxt(results, delimiter=",")
    assert boxes.shape == (60, 4)
    for r in rows:
        want = [0, 0, 0, 0] if r["box"] is None else np.add(r["box"], [1, 1, 0, 0])
        assert np.allclose(boxes[r["frame"]], want, atol=0.01)
    # the overlay video holds one frame per tracked frame and decodes
    cap = cv2.VideoCapture(str(tmp_path / "overlay.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == len(tracked)
    ok, img = cap.read()
    assert ok and img.shape == (120, 320, 3)
    # measured copies: RGB is the mapped buffer itself, 16-bit thermal is mapped once into 8 bits, no resize
    copies = report["copies_per_frame"]
    assert report["zero_copy_input"] and copies["rgb_input"] == 0 and copies["registration"] == 0
    assert copies["overlay_compose"] == 2 and 0 < copies["thermal_to_8bit"] <= 1 and report["thermal"] == "gray16"
    assert report["frame_views_outliving_release"] == 0
    # no per-frame growth of Python objects in steady state beyond the controller's per-frame log entry
    assert report["allocations"]["frames"] == 20 and report["allocations"]["net_blocks_per_frame"] < 40
    saved = json.loads((tmp_path / "latency.json").read_text())
    assert saved["frames_processed"] == report["frames_processed"]
    assert saved["end_to_end"]["p50_ms"] >= saved["model"]["p50_ms"] > 0


def test_rgb_lost_with_a_rig_of_two_resolutions_thermal_stands_in_registered_in_rgb_pixels(tmp_path, nano_backend):
    """A 160x128 RGB camera and an 80x64 thermal camera (rig: thermal pixels x2). When RGB dies, the thermal frame
    is still registered onto the RGB geometry before it stands in: the tracker and the overlay (sized from RGB
    frames) get 160x128 frames, and the run finishes."""
    from pipelines.registration import RigCalibration

    rgb = parse_uri("synthetic://?seed=3&fps=15&error_after=20&width=160&height=128", "rgb")
    tir = parse_uri("synthetic://?seed=3&fps=15&frames=60&width=80&height=64", "tir")
    rig = RigCalibration(np.diag([2.0, 2.0, 1.0]), (160, 128), (80, 64))
    opt = LoopOptions(target_fps=15, rungs=(1.0,), adaptive=False, stall_s=0.5, progress=False)
    tracker = Tracker(nano_backend)
    seen = []
    update = tracker.update

    def recording_update(rgb_frame, tir8, **kw):
        seen.append((rgb_frame.shape, tir8.shape))
        return update(rgb_frame, tir8, **kw)

    tracker.update = recording_update
    report = DualSensorLoop(rgb, tir, tracker, tmp_path, opt, calibration=rig, log=lambda s: None).run()

    assert report["sources"]["rgb"]["error"] and report["sources"]["tir"]["frames"] == 60
    assert report["frames"]["degraded"] >= 5  # frames tracked on thermal alone after RGB died
    rows = [r for r in _lines(tmp_path / "track.jsonl") if r.get("box")]
    assert rows[-1].get("degraded") == "rgb lost" and rows[-1]["t_rgb"] is None
    assert seen and set(seen) == {((128, 160, 3), (128, 160))}  # RGB geometry throughout
    # boxes stay in RGB pixels: the thermal-only frames are not clipped into an 80x64 frame
    lost = [r["box"] for r in rows if r.get("degraded") == "rgb lost"]
    assert max(x + w for x, _, w, _ in lost) > 80 or max(y + h for _, y, _, h in lost) > 64
    cap = cv2.VideoCapture(str(tmp_path / "overlay.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == len(rows)
    ok, img = cap.read()
    assert ok and img.shape == (128, 320, 3)


class LoadedBackend:
    """The real torch backend plus a cost proportional to the keep ratio (token-bound work), doubled while
    `loaded()`: on a simulated clock the cost is accounted, on the real one it is a busy-wait."""

    def __init__(self, inner, ms_at_full: float, loaded, clock=None):
        self.inner, self.ms, self.loaded, self.clock = inner, ms_at_full, loaded, clock
        self.name, self.keep_ratios = "loaded-torch", inner.keep_ratios
        self.template_size, self.search_size = inner.template_size, inner.search_size

    def input_buffers(self):
        return self.inner.input_buffers()

    def run(self, inputs, keep_ratio=None):
        t0 = time.perf_counter()
        out = self.inner.run(inputs, keep_ratio)
        extra = self.ms * (keep_ratio or 1.0) * (2.0 if self.loaded() else 1.0) / 1e3
        if self.clock is not None:
            self.clock.account(extra)
        else:
            while time.perf_counter() - t0 < extra:
                pass
        return out


def neutral_tracker(backend, counter: list[int] | None = None) -> Tracker:
    """A tracker whose score is always 0.45 (neither low nor high): only latency drives the rung here (the score
    rule is tested in test_pipelines_controller.py); `counter[0]` counts updates."""
    tracker = Tracker(backend)
    update = tracker.update

    def neutral_update(*args, **kw):
        if counter is not None:
            counter[0] += 1
        box, _ = update(*args, **kw)
        return box, 0.45

    tracker.update = neutral_update
    return tracker


def test_controller_steps_down_under_load_and_back_on_a_simulated_clock_with_every_frame_replayed(
    tmp_path, nano_backend
):
    """Replay (every frame tracked, none skipped) with the frame cost on a simulated clock: 30 ms x keep ratio,
    doubled for frames 60..149; budget 50 ms (20 fps)."""
    clock, n = SimClock(), [0]

    def loaded() -> bool:
        return 60 <= n[0] < 150

    tracker = neutral_tracker(LoadedBackend(nano_backend, ms_at_full=30.0, loaded=loaded, clock=clock), n)
    uri = f"synthetic://?seed=4&fps=20&frames=210{SIZE}"
    rungs = (1.0, 0.85, 0.7, 0.6, 0.5)
    opt = LoopOptions(target_fps=20, rungs=rungs, realtime=False, overlay=False, progress=False, clock=clock)
    report = DualSensorLoop(
        parse_uri(uri, "rgb"), parse_uri(uri, "tir"), tracker, tmp_path, opt, log=lambda s: None
    ).run()
    rows = [r for r in _lines(tmp_path / "track.jsonl") if "frame" in r]
    assert report["mode"] == "replay" and [r["frame"] for r in rows] == list(range(210))
    assert report["frames_processed"] == 210 and report["frames_skipped"] == 0  # replay tracks every frame
    rung = [r["rung"] for r in rows]
    assert set(rung[1:60]) == {1.0}  # 30 ms fits the 50 ms budget
    assert max(rung[80:150]) < 1.0 and min(rung[80:150]) >= 0.7  # 60 ms does not; 0.7 (42 ms) does
    assert all(r["proc_ms"] < 50 for r in rows[80:150] if r["rung"] <= 0.7)
    assert set(rung[-20:]) == {1.0}  # back on the richest rung once the load is gone
    assert "down:" in " ".join(r["decision"] for r in rows[60:80])


@pytest.mark.timing
def test_controller_holds_target_fps_under_load_and_returns_to_richest_rung(tmp_path, nano_backend):
    """Wall clock, live synthetic sensors: the controller holds 20 fps while a busy-wait doubles the cost."""
    fps, seconds, load = 20.0, 12.0, (3.0, 7.0)  # load doubles the frame cost from 3 s to 7 s
    start: list[float] = []

    def loaded() -> bool:
        if not start:
            start.append(time.monotonic())
        return load[0] <= time.monotonic() - start[0] < load[1]

    backend = LoadedBackend(nano_backend, ms_at_full=30.0, loaded=loaded)
    uri = f"synthetic://?seed=4&fps={fps:g}&frames={int(fps * seconds)}{SIZE}"
    opt = LoopOptions(target_fps=fps, rungs=(1.0, 0.85, 0.7, 0.6, 0.5), progress=False, alloc_frames=None)
    report = DualSensorLoop(
        parse_uri(uri, "rgb"), parse_uri(uri, "tir"), neutral_tracker(backend), tmp_path, opt, log=lambda s: None
    ).run()
    frames = [r for r in _lines(tmp_path / "track.jsonl") if r.get("box")]
    t = np.array([r["frame"] / fps for r in frames])
    rung = {round(r["frame"] / fps, 3): r["rung"] for r in frames}

    def rate(a: float, b: float) -> float:
        return float(((t >= a) & (t < b)).sum() / (b - a))

    settled = (load[0] + 1.5, load[1])
    assert rate(*settled) == pytest.approx(fps, rel=0.05), report["frames"]
    loaded_rungs = [g for ts, g in rung.items() if settled[0] <= ts < settled[1]]
    assert max(loaded_rungs) < 1.0  # it had to drop tokens to hold the rate
    assert rate(1.0, load[0]) == pytest.approx(fps, rel=0.05)
    late = [g for ts, g in rung.items() if ts >= seconds - 1.0]
    assert late and all(g == 1.0 for g in late)  # back on the richest rung once the load is gone


def test_live_sensor_reconnects_with_back_off_and_a_stall_is_bridged(tmp_path, nano_backend):
    rgb = parse_uri(f"synthetic://?seed=5&fps=30&frames=90{SIZE}", "rgb")
    # a live thermal camera that drops out after 12 frames (every time), and first stalls for 0.8 s
    tir = parse_uri(f"synthetic://?seed=5&fps=30&live=1&error_after=12&stall_after=4&stall_s=0.8{SIZE}", "tir")
    opt = LoopOptions(target_fps=30, rungs=(1.0,), adaptive=False, stall_s=0.3, overlay=False, progress=False)
    loop = DualSensorLoop(rgb, tir, Tracker(nano_backend), tmp_path, opt, log=lambda s: None)
    report = loop.run()
    events = report["events"]
    name = tir.name
    assert f"{name}: no frames for 0.3 s (stalled)" in events
    assert f"{name}: frames again after a stall" in events
    assert f"{name}: reconnecting in 0.5 s" in events and f"{name}: reconnect attempt 1" in events
    assert report["sources"]["tir"]["restarts"] >= 1 and report["sources"]["tir"]["frames"] > 12
    frames = [r for r in _lines(tmp_path / "track.jsonl") if r.get("box")]
    states = ["tir lost" if r.get("degraded") else "paired" for r in frames]
    # paired -> RGB alone (stall) -> paired -> RGB alone (dropout) -> paired again after the reconnect
    runs = [s for i, s in enumerate(states) if i == 0 or s != states[i - 1]]
    assert runs[:5] == ["paired", "tir lost", "paired", "tir lost", "paired"]
    # every RGB frame arrived; how many were processed depends on the machine's speed (live pacing drops the rest)
    assert report["sources"]["rgb"]["frames"] == 90 and report["frames_processed"] == len(frames)


def test_the_loop_installs_no_process_wide_diagnostic_hooks(tmp_path, nano_backend, monkeypatch):
    """Issue 16: tracemalloc.start/stop (and tracing/profiling hooks) race with GStreamer threads entering Python
    and can crash the process. The production loop must never touch them: every such call is recorded here."""
    calls: list[str] = []
    for module, names in (
        (tracemalloc, ("start", "stop", "take_snapshot", "clear_traces")),
        (sys, ("settrace", "setprofile")),
        (threading, ("settrace", "setprofile")),
    ):
        for name in names:
            monkeypatch.setattr(module, name, lambda *a, _n=f"{module.__name__}.{name}", **k: calls.append(_n))
    uri = f"synthetic://?seed=2&fps=30&frames=60{SIZE}"
    opt = LoopOptions(target_fps=30, rungs=(1.0, 0.5), progress=False, alloc_frames=(5, 25))
    report = DualSensorLoop(
        parse_uri(uri, "rgb"), parse_uri(uri, "tir"), Tracker(nano_backend), tmp_path, opt, log=lambda s: None
    ).run()
    assert report["mode"] == "live" and report["allocations"]["frames"] == 20  # steady-state frames were counted
    assert calls == []
