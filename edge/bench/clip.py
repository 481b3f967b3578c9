"""The frames a benchmark runs on: a `ckd.data.clip.Clip` loaded into memory first, so file reading and the
thermal mapping are never timed."""

from __future__ import annotations

import numpy as np

from ckd.data.clip import Clip
from ckd.errors import CKDError


def synthetic_clip(frames: int, seed: int = 0, width: int = 640, height: int = 480) -> Clip:
    """A seeded procedural sequence (`ckd.data.synthetic`) in memory, hidden frames NaN in `gt`."""
    from ckd.data.synthetic import synthetic_clip as generate

    if frames < 2:
        raise CKDError(f"--frames must be at least 2 (one to initialise, one to track), got {frames}")
    return generate(seed, frames, width, height).in_memory()


def dataset_clip(spec: str, frames: int, sequence: str | None = None) -> Clip:
    """The first `frames` frames of one sequence of a benchmark: `spec` = BENCHMARK:ROOT (e.g. lasher:/data/LasHeR)."""
    bench, sep, root = spec.partition(":")
    if not sep or not root:
        raise CKDError(f"--eval {spec!r}: expected BENCHMARK:ROOT, e.g. lasher:/data/LasHeR/testingset")
    from ckd.data.readers import open_dataset

    sequences = open_dataset(bench, root)
    if sequence is not None:
        found = [s for s in sequences if s.name == sequence]
        if not found:
            raise CKDError(f"{root}: no sequence named {sequence!r}")
        seq = found[0]
    else:
        seq = sequences[0]
    if not np.isfinite(seq.gt[0]).all():
        raise CKDError(f"{seq.name}: the first frame has no ground-truth box to initialise from")
    return seq.in_memory(frames, name=f"{bench}/{seq.name}")


def accuracy(boxes: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """OTB-style success AUC (mean success over IoU thresholds 0:0.05:1) and precision at 20 px, on annotated frames."""
    from ckd.eval.metrics import center_error, overlap

    valid = np.isfinite(gt).all(axis=1)
    if not valid.any():
        return {"success_auc": float("nan"), "precision_20px": float("nan")}
    iou = np.nan_to_num(overlap(boxes[valid], gt[valid]), nan=0.0)
    err = center_error(boxes[valid], gt[valid])
    thresholds = np.linspace(0.0, 1.0, 21)
    success = (iou[:, None] > thresholds[None, :]).mean(axis=0)
    return {"success_auc": float(success.mean()), "precision_20px": float((err <= 20.0).mean())}
