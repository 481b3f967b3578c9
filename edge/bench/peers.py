"""The CPU peer measured in the same run: OpenCV `TrackerNano` (NanoTrack v2, RGB only) on the same frames."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edge.bench.clip import Clip
from edge.bench.measure import Run, peak_rss_mb, reset_peak_rss

BACKBONE = "nanotrack_backbone_sim.onnx"
NECKHEAD = "nanotrack_head_sim.onnx"


def nanotrack_files(folder: str | Path) -> tuple[Path, Path] | None:
    """(backbone, neck+head) ONNX paths in `folder`, or None when either is missing."""
    folder = Path(folder)
    backbone, head = folder / BACKBONE, folder / NECKHEAD
    return (backbone, head) if backbone.is_file() and head.is_file() else None


def _create(backbone: Path, head: Path):
    import cv2

    params = cv2.TrackerNano_Params()
    params.backbone = str(backbone)
    params.neckhead = str(head)
    return cv2.TrackerNano.create(params)


def track_nanotrack(folder: str | Path, clip: Clip, warmup: int = 3, threads: int | None = None) -> Run:
    """Same protocol as `measure.track_clip`: init on frame 0, untimed warm-up, re-init, time every update.

    Frames are converted to BGR before timing (an OpenCV pipeline captures BGR). Only the total per frame is
    measured (OpenCV does not expose the split); a lost target (ok False) keeps the previous box.
    """
    import cv2

    files = nanotrack_files(folder)
    if files is None:
        raise FileNotFoundError(f"{folder}: needs {BACKBONE} and {NECKHEAD}")
    if threads:
        cv2.setNumThreads(int(threads))
    bgr = [cv2.cvtColor(clip.load(i)[0], cv2.COLOR_RGB2BGR) for i in range(len(clip))]
    init_box = tuple(int(round(v)) for v in clip.init_box)
    scope = "configuration" if reset_peak_rss() else "process"
    tracker = _create(*files)
    tracker.init(bgr[0], init_box)
    for i in range(warmup):
        tracker.update(bgr[1 + i % (len(clip) - 1)])
    tracker = _create(*files)
    tracker.init(bgr[0], init_box)
    run = Run(times={"total": []}, peak_rss_scope=scope)
    boxes = np.empty((len(clip), 4))
    boxes[0] = clip.init_box
    for i in range(1, len(clip)):
        t0 = time.perf_counter()
        ok, box = tracker.update(bgr[i])
        run.times["total"].append((time.perf_counter() - t0) * 1e3)
        boxes[i] = box if ok else boxes[i - 1]
    run.boxes = boxes
    run.peak_rss_mb = peak_rss_mb()
    return run
