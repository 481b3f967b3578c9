"""One clip type for every consumer: training sampler, calibration, fidelity gate, benchmarks, `ckd track`.

A `Clip` is a named run of frame pairs with random access. `read(i)` gives the pair as stored (RGB HxWx3 uint8
in RGB order; thermal as the sensor or dataset stores it: 16-bit, 8-bit grey, grey saved as 3 channels, false
colour); `load(i)` gives what the network sees: the same RGB and the thermal through `thermal_to_8bit`, the one
mapping the run-time loop uses too. The first thermal kind seen is announced once per process in one line, and
a change of kind inside a clip is reported. `gt` is N x 4 0-based x, y, w, h (NaN rows: absent or unknown) when
known; `init_box` defaults to its first row. `gt_sparse` is True when some NaN rows mark frames nobody annotated
(ground truth every k-th frame, or shorter than the clip), so a NaN row there does not mean the target is absent.

A frame that cannot be used raises `FrameError` (a `CKDError` naming the file: missing, empty or corrupt), which
consumers that can go on (tracking, sampling) catch per frame; each is counted per sensor (`problems`), reported
once in one line and summed up by `problem_summary()`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from ckd.data.thermal import GRAY8, describe_thermal, thermal_kind, thermal_to_8bit
from ckd.errors import CKDError

_log = logging.getLogger(__name__)
_announced: set = set()  # thermal kinds already announced in this process
SENSORS = ("rgb", "thermal")
REASONS = ("missing", "empty", "corrupt")


class FrameError(CKDError):
    """One frame of one sensor could not be used (missing, empty or corrupt); the message names the file."""

    def __init__(self, message: str, sensor: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.sensor, self.reason = sensor, reason


class Clip:
    """Frame pairs `0..frames-1` read on demand, with optional ground truth (see the module docstring)."""

    def __init__(
        self,
        name: str,
        frames: int,
        read: Callable[[int], tuple[np.ndarray, np.ndarray]],
        init_box: np.ndarray | None = None,
        gt: np.ndarray | None = None,
    ) -> None:
        self.name = name
        self.frames = int(frames)
        self._read = read
        self.gt = None if gt is None else np.asarray(gt, np.float64)
        if init_box is None and self.gt is not None and len(self.gt):
            init_box = self.gt[0]
        self.init_box = None if init_box is None else np.array(init_box, np.float64)
        self.thermal_kind: str | None = None
        self.distractors: np.ndarray | None = None  # K x N x 4 boxes of known look-alikes (synthetic clips)
        self.gt_sparse = False  # some NaN rows of gt are frames nobody annotated, not an absent target
        self.problems: dict[str, dict[int, str]] = {s: {} for s in SENSORS}  # frame index -> missing/empty/corrupt

    def __len__(self) -> int:
        return self.frames

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Frame pair `i` as stored: (RGB HxWx3 uint8, thermal as stored)."""
        if not 0 <= i < self.frames:
            raise IndexError(f"{self.name}: frame {i} out of range 0..{self.frames - 1}")
        return self._read(i)

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Frame pair `i` as the network sees it: (RGB HxWx3 uint8, thermal HxW uint8 by `thermal_to_8bit`).

        An unusable frame raises `FrameError`; the first time for each frame it is counted and reported."""
        try:
            rgb, tir = self.read(i)
            try:
                kind = thermal_kind(tir)
            except TypeError as exc:
                raise FrameError(f"thermal frame {i} is unsupported: {exc}", "thermal", "corrupt") from None
        except FrameError as exc:
            if exc.sensor in self.problems and i not in self.problems[exc.sensor]:
                self.problems[exc.sensor][i] = exc.reason
                _log.warning("%s: %s frame %d unusable: %s", self.name, exc.sensor, i, exc)
            raise
        if kind != self.thermal_kind:
            if self.thermal_kind is not None:
                _log.warning("%s: thermal frame %d changes kind: %s", self.name, i, describe_thermal(kind))
            elif kind not in _announced:
                _log.info("%s (detected in %s)", describe_thermal(kind), self.name)
            _announced.add(kind)
            self.thermal_kind = kind
        return rgb, thermal_to_8bit(tir, kind=kind)

    def problem_summary(self) -> str | None:
        """One line counting the unusable frames met so far per sensor, or None when there were none."""
        parts = []
        for sensor in SENSORS:
            reasons = list(self.problems[sensor].values())
            if reasons:
                parts.append(f"{sensor} " + ", ".join(f"{reasons.count(r)} {r}" for r in REASONS if r in reasons))
        return f"{self.name}: unusable frames: {'; '.join(parts)}" if parts else None

    def in_memory(self, frames: int | None = None, name: str | None = None) -> Clip:
        """The first `frames` pairs (default all) loaded now, as `load` gives them, so later reads cost nothing
        (benchmarks time no I/O)."""
        n = self.frames if frames is None else min(int(frames), self.frames)
        pairs = [self.load(i) for i in range(n)]
        gt = None if self.gt is None else self.gt[:n]
        clip = Clip(name or self.name, n, pairs.__getitem__, self.init_box, gt)
        clip.thermal_kind = GRAY8  # already mapped: nothing new to announce
        clip.gt_sparse = self.gt_sparse
        return clip
