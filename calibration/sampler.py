"""Tracker-in-the-loop sampling: the crops the network really sees at run time, both modalities.

A `Tap` wraps any backend; while sampling, each run's four input buffers (template crop from init, search
crop around the previous estimate, as the tracker filled them) are copied. Frames that cannot be read are
skipped (a clip whose first frame cannot be read is skipped whole); `Clip` reports each one in one line. A clip
the tracker refuses to start on (RGB and thermal of different sizes) is skipped whole too, as `ckd track` does;
those are counted in one line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from ckd.data.clip import Clip, FrameError
from ckd.errors import CKDError
from ckd.track.backend import INPUT_NAMES

_log = logging.getLogger(__name__)


class Tap:
    """A backend proxy calling `on_run(inputs, outputs)` after every run (copy what you keep: the backend
    reuses its buffers). Everything else is the wrapped backend's."""

    def __init__(self, backend, on_run: Callable[[Mapping[str, np.ndarray], dict[str, np.ndarray]], None]) -> None:
        self.backend = backend
        self.on_run = on_run
        self.name = backend.name
        self.template_size, self.search_size = backend.template_size, backend.search_size
        self.keep_ratios = backend.keep_ratios

    def input_buffers(self) -> dict[str, np.ndarray]:
        return self.backend.input_buffers()

    def run(self, inputs: Mapping[str, np.ndarray], keep_ratio: float | None = None) -> dict[str, np.ndarray]:
        out = self.backend.run(inputs, keep_ratio)
        self.on_run(inputs, out)
        return out


def sample_crops(
    backend, clips: Sequence[Clip], count: int, every: int = 1, progress: bool = False
) -> dict[str, np.ndarray]:
    """Run the tracker over `clips` (round robin, whole clips) until `count` crops are recorded.

    Returns the four named inputs stacked along the batch axis: (count, 3, T, T) / (count, 3, S, S).
    """
    from tqdm import tqdm

    from ckd.track.tracker import Tracker

    samples: list[dict[str, np.ndarray]] = []
    calls = [0]

    def record(inputs: Mapping[str, np.ndarray], _outputs) -> None:
        if calls[0] % max(1, every) == 0:
            samples.append({k: np.array(inputs[k], dtype=np.float32, copy=True) for k in INPUT_NAMES})
        calls[0] += 1

    tracker = Tracker(Tap(backend, record))
    bar = tqdm(total=count, desc="calibration crops", unit="crop", disable=not progress)
    refused: list[str] = []
    for clip in clips:
        if len(samples) >= count:
            break
        before = len(samples)
        try:
            tracker.init(*clip.load(0), clip.init_box)
        except FrameError:
            continue  # reported by the clip
        except CKDError as exc:  # RGB and thermal of different sizes, ...
            refused.append(f"{clip.name}: {exc}")
            continue
        for i in range(1, clip.frames):
            if len(samples) >= count:
                break
            try:
                rgb, tir = clip.load(i)
            except FrameError:
                continue
            tracker.update(rgb, tir)
        bar.update(len(samples) - before)
    bar.close()
    if refused:
        _log.warning("skipped %d clip(s) the tracker cannot start on (first: %s)", len(refused), refused[0])
    samples = samples[:count]
    if not samples:
        return {}
    return {k: np.concatenate([s[k] for s in samples], axis=0) for k in INPUT_NAMES}
