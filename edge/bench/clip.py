"""The frames a benchmark runs on, loaded into memory first so file reading is never timed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ckd.errors import CKDError


@dataclass
class Clip:
    """Frame pairs (HxWx3 uint8 RGB, thermal as HxWx3 or HxW uint8) and 0-based x,y,w,h ground truth (NaN = absent)."""

    name: str
    rgb: list[np.ndarray]
    tir: list[np.ndarray]
    gt: np.ndarray

    def __len__(self) -> int:
        return len(self.rgb)


def synthetic_clip(frames: int, seed: int = 0, width: int = 640, height: int = 480) -> Clip:
    """A seeded procedural sequence (`ckd.data.synthetic`), thermal through the kit's AGC, hidden frames NaN."""
    from ckd.data.synthetic import SyntheticSequence
    from ckd.data.thermal import ThermalAGC

    if frames < 2:
        raise CKDError(f"--frames must be at least 2 (one to initialise, one to track), got {frames}")
    seq, agc = SyntheticSequence(seed, frames=frames, width=width, height=height), ThermalAGC()
    rgb, tir, gt = [], [], np.full((frames, 4), np.nan)
    for i in range(frames):
        f = seq.frame(i)
        rgb.append(f.rgb)
        tir.append(agc(f.thermal16))
        if f.visible:
            gt[i] = f.box
    return Clip(f"synthetic-{seed}", rgb, tir, gt)


def dataset_clip(spec: str, frames: int, sequence: str | None = None) -> Clip:
    """The first `frames` frames of one sequence of a benchmark: `spec` = BENCHMARK:ROOT (e.g. lasher:/data/LasHeR)."""
    bench, sep, root = spec.partition(":")
    if not sep or not root:
        raise CKDError(f"--eval {spec!r}: expected BENCHMARK:ROOT, e.g. lasher:/data/LasHeR/testingset")
    try:
        from ckd.data.readers import open_dataset
    except ImportError:
        raise CKDError("--eval needs the dataset readers (ckd.data.readers), which this checkout lacks") from None
    sequences = open_dataset(bench, root)
    if not sequences:
        raise CKDError(f"{root}: no sequences found for {bench}")
    if sequence is not None:
        found = [s for s in sequences if s.name == sequence]
        if not found:
            raise CKDError(f"{root}: no sequence named {sequence!r}")
        seq = found[0]
    else:
        seq = sequences[0]
    n = min(frames, len(seq))
    pairs = [seq.load(i) for i in range(n)]
    gt = np.asarray(seq.gt[:n], dtype=np.float64)
    if not np.isfinite(gt[0]).all():
        raise CKDError(f"{seq.name}: the first frame has no ground-truth box to initialise from")
    return Clip(f"{bench}/{seq.name}", [p[0] for p in pairs], [p[1] for p in pairs], gt)


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
