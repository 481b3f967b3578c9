"""Tracker-in-the-loop sampling: the crops the network really sees at run time, both modalities.

A `Recorder` wraps any backend; each `run` copies the four input buffers the tracker has just filled
(template crop from init, search crop around the previous estimate) before the network runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from calibration.sources import Clip
from ckd.track.backend import INPUT_NAMES


class Recorder:
    """A backend proxy that keeps a copy of the inputs of every `keep`-th call."""

    def __init__(self, backend, every: int = 1) -> None:
        self.backend = backend
        self.name = f"recorded-{backend.name}"
        self.template_size, self.search_size = backend.template_size, backend.search_size
        self.keep_ratios = backend.keep_ratios
        self.every = max(1, int(every))
        self.samples: list[dict[str, np.ndarray]] = []
        self._calls = 0

    def input_buffers(self) -> dict[str, np.ndarray]:
        return self.backend.input_buffers()

    def run(self, inputs: Mapping[str, np.ndarray], keep_ratio: float | None = None) -> dict[str, np.ndarray]:
        if self._calls % self.every == 0:
            self.samples.append({k: np.array(inputs[k], dtype=np.float32, copy=True) for k in INPUT_NAMES})
        self._calls += 1
        return self.backend.run(inputs, keep_ratio)


def sample_crops(
    backend, clips: Sequence[Clip], count: int, every: int = 1, progress: bool = False
) -> dict[str, np.ndarray]:
    """Run the tracker over `clips` (round robin, whole clips) until `count` crops are recorded.

    Returns the four named inputs stacked along the batch axis: (count, 3, T, T) / (count, 3, S, S).
    """
    from tqdm import tqdm

    from ckd.track.tracker import Tracker

    rec = Recorder(backend, every)
    tracker = Tracker(rec)
    bar = tqdm(total=count, desc="calibration crops", unit="crop", disable=not progress)
    for clip in clips:
        if len(rec.samples) >= count:
            break
        before = len(rec.samples)
        rgb, tir = clip.load(0)
        tracker.init(rgb, tir, clip.init_box)
        for i in range(1, clip.frames):
            if len(rec.samples) >= count:
                break
            rgb, tir = clip.load(i)
            tracker.update(rgb, tir)
        bar.update(len(rec.samples) - before)
    bar.close()
    samples = rec.samples[:count]
    if not samples:
        return {}
    return {k: np.concatenate([s[k] for s in samples], axis=0) for k in INPUT_NAMES}
