"""Where calibration (and fidelity-gate) frames come from: sequences to run the tracker over.

Every source is a `ckd.data.clip.Clip` (the kit's one clip type): random-access frame pairs as the network sees
them (`load(i)`: RGB HxWx3 uint8, thermal through the one mapping `thermal_to_8bit`), the 0-based x,y,w,h box to
initialise on, and ground truth when known.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ckd.data.clip import Clip
from ckd.data.pairs import pair_clips
from ckd.errors import CKDError

__all__ = ["Clip", "dataset_clips", "open_clips", "pair_clips", "synthetic_clips"]


def synthetic_clips(count: int, frames: int, seed: int, width: int = 320, height: int = 256) -> list[Clip]:
    """`count` procedural sequences (`ckd.data.synthetic`, no thermal crossover), 16-bit thermal as generated."""
    from ckd.data.synthetic import synthetic_clips as generate

    return generate(count, frames, seed, width, height, crossover=False)


def dataset_clips(benchmark: str, root: str | Path, limit: int | None = None) -> list[Clip]:
    """Sequences of an RGBT benchmark laid out on disk (`ckd.data.readers.open_dataset`)."""
    from ckd.data.readers import open_dataset

    clips = []
    for seq in open_dataset(benchmark, root)[:limit]:
        valid = np.flatnonzero(np.isfinite(seq.gt).all(axis=1) & (seq.gt[:, 2:] > 0).all(axis=1))
        if valid.size == 0 or valid[0] != 0:
            continue  # the tracker initialises on frame 0
        clips.append(seq)
    if not clips:
        raise CKDError(f"{root}: no {benchmark} sequence has a ground-truth box on its first frame")
    return clips


def open_clips(benchmark: str, data: str | Path | None, sequences: int, frames: int, seed: int) -> list[Clip]:
    """Clips for `--benchmark`: `synthetic` (generated, `data` unused), `pairs` (image-pair folder) or a dataset."""
    if benchmark == "synthetic":
        return synthetic_clips(sequences, frames, seed)
    if data is None:
        raise CKDError(f"--data is required for --benchmark {benchmark}")
    if benchmark == "pairs":
        return pair_clips(data)
    return dataset_clips(benchmark, data, limit=sequences)
