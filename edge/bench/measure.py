"""Per-frame timings: warm-up, then the tracker's own split (preprocess, model, decode) for every frame of a clip."""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ckd.track.backend import Backend
from ckd.track.tracker import Tracker
from edge.bench.clip import Clip
from edge.trt.bench import latency_stats

STAGES = ("preprocess", "model", "decode", "total")


def reset_peak_rss() -> bool:
    """Reset this process's peak resident set (Linux `clear_refs` 5); False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_mb() -> float:
    """Peak resident set of this process since the last reset (VmHWM), else since start (ru_maxrss), MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@dataclass
class Run:
    """What one configuration did on a clip: per-frame times per stage (ms), boxes, peak memory."""

    times: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})
    boxes: np.ndarray | None = None
    peak_rss_mb: float = float("nan")
    peak_rss_scope: str = "configuration"

    def stats(self) -> dict[str, dict[str, float]]:
        return {s: latency_stats(v) for s, v in self.times.items()}


def track_clip(backend: Backend, clip: Clip, keep_ratio: float | None, warmup: int = 3) -> Run:
    """Initialise on frame 0, run `warmup` untimed updates, re-initialise, then time every update of the clip.

    Boxes (frame 0 = the init box) are returned for accuracy. Peak memory covers this call, session creation
    included (lazy runtimes build their graphs on first use).
    """
    scope = "configuration" if reset_peak_rss() else "process"
    tracker = Tracker(backend)
    init_box = clip.init_box
    for i in range(warmup):
        if i == 0:
            tracker.init(*clip.load(0), init_box)
        tracker.update(*clip.load(1 + i % (len(clip) - 1)), keep_ratio=keep_ratio)
    run = Run(peak_rss_scope=scope)
    boxes = np.empty((len(clip), 4))
    boxes[0] = init_box
    tracker.init(*clip.load(0), init_box)
    for i in range(1, len(clip)):
        rgb, tir = clip.load(i)
        t0 = time.perf_counter()
        box, _ = tracker.update(rgb, tir, keep_ratio=keep_ratio)
        total = (time.perf_counter() - t0) * 1e3
        boxes[i] = box
        for s in ("preprocess", "model", "decode"):
            run.times[s].append(float(tracker.last_timing[f"{s}_ms"]))
        run.times["total"].append(total)
    run.boxes = boxes
    run.peak_rss_mb = peak_rss_mb()
    return run
