"""The five benchmark protocols, each as its official toolkit computes it.

A protocol turns one sequence (ground truth + result, both 0-based x, y, w, h) into hit counts per threshold, then
aggregates sequences into scores. Sources read: LasHeR toolkit (`calcSeqErrRobust.m`, OTB-style ranking), the
RGBT234/VTUAV toolkit (`calcPlotErr_TPR.m`, `plot_*.m`), the GTOT toolkit (`calcPlotErr.m`, plot script, `auc.m`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ckd.eval import metrics as m


@dataclass(frozen=True)
class SequenceGT:
    """Ground truth of one sequence: one array per modality (visible first), each N x 4, 0-based x, y, w, h."""

    name: str
    boxes: tuple[np.ndarray, ...]

    @property
    def length(self) -> int:
        return len(self.boxes[0])


@dataclass(frozen=True)
class Curve:
    """One plotted curve: its key in the scores, thresholds, and how the curve is summarised."""

    key: str
    thresholds: np.ndarray
    at: float | None  # representative threshold; None = area (mean or trapezoid) over the curve
    xlabel: str


@dataclass(frozen=True)
class SequenceCounts:
    """Per-threshold hit counts of one sequence and the number of frames they are out of."""

    name: str
    frames: int
    counts: dict[str, np.ndarray]


@dataclass(frozen=True)
class Scores:
    values: dict[str, float]
    curves: dict[str, np.ndarray]
    sequences: int


_PIXELS = m.matlab_range(0, 1, 50)
_OVERLAPS = m.matlab_range(0, 0.05, 1)


def _best_over_modalities(res: np.ndarray, gt: SequenceGT) -> tuple[np.ndarray, np.ndarray]:
    """Per frame the smaller centre error and the larger IoU over the modalities' truths (NaN ignored, as MATLAB's
    min/max do)."""
    err = np.fmin.reduce([m.center_error(res, g) for g in gt.boxes])
    iou = np.fmax.reduce([m.overlap(res, g) for g in gt.boxes])
    return err, iou


class Protocol:
    """Base: per-sequence rates averaged over sequences (RGBT234, RGBT210, VTUAV, LasHeR)."""

    name: str
    curves: tuple[Curve, ...]
    subsample: int = 1  # evaluate every n-th result row (VTUAV annotates every 10th frame)

    def required_rows(self, gt: SequenceGT) -> int:
        """Result rows needed to cover the ground truth."""
        return (gt.length - 1) * self.subsample + 1

    def prepare(self, gt: SequenceGT, result: np.ndarray) -> np.ndarray:
        """Subsample and cut the result to the ground-truth length (longer results are allowed by every toolkit)."""
        return np.array(result[:: self.subsample][: gt.length], dtype=np.float64)

    def count(self, gt: SequenceGT, result: np.ndarray) -> SequenceCounts:
        raise NotImplementedError

    def _summary(self, curve: Curve, y: np.ndarray) -> float:
        if curve.at is None:
            return float(np.mean(y))  # success "AUC" of the OTB family: mean over the 21 thresholds
        return float(y[int(np.argmin(np.abs(curve.thresholds - curve.at)))])

    def aggregate(self, seqs: Sequence[SequenceCounts]) -> Scores:
        values, curves = {}, {}
        for curve in self.curves:
            rates = np.array([s.counts[curve.key] / s.frames for s in seqs]).reshape(len(seqs), len(curve.thresholds))
            y = self._average(rates)
            curves[curve.key] = y
            values[curve.key] = self._summary(curve, y)
        return Scores(values, curves, len(seqs))

    def _average(self, rates: np.ndarray) -> np.ndarray:
        # plot_ST.m / RGBT234 toolkit: every sequence weighs the same, none is dropped.
        return rates.mean(axis=0) if len(rates) else np.zeros(rates.shape[1])


class MaxOverModalities(Protocol):
    """RGBT234 and VTUAV: per frame the smaller centre error and the larger IoU over visible and infrared truth."""

    curves = (
        Curve("MPR", _PIXELS, 20.0, "Location error threshold (px)"),
        Curve("MSR", _OVERLAPS, None, "Overlap threshold"),
    )
    replace_first = False

    def count(self, gt: SequenceGT, result: np.ndarray) -> SequenceCounts:
        res = self.prepare(gt, result)
        if self.replace_first:
            res[0] = gt.boxes[0][0]
        # calcPlotErr_TPR.m: centres x + w/2 (the truth goes through x1 = x, x2 = x + w and back); IoU calcRectInt.
        err, iou = _best_over_modalities(res, gt)
        keys = [c.key for c in self.curves]
        return SequenceCounts(
            gt.name,
            gt.length,
            {
                keys[0]: m.count_at_most(err, self.curves[0].thresholds),  # plot_*.m: errCenter <= threshold
                keys[1]: m.count_above(iou, self.curves[1].thresholds),  # plot_*.m: err > threshold
            },
        )


class RGBT234(MaxOverModalities):
    name = "rgbt234"


class VTUAV(MaxOverModalities):
    """VTUAV: truth every 10th frame, so the result is taken 1:10 (`results.res(1:10:end,:)`), then as RGBT234."""

    name = "vtuav"
    subsample = 10


class RGBT210(MaxOverModalities):
    """RGBT210: one ground truth (`init.txt`) for both modalities; the first frame is replaced by the truth."""

    name = "rgbt210"
    replace_first = True
    curves = (
        Curve("PR", _PIXELS, 20.0, "Location error threshold (px)"),
        Curve("SR", _OVERLAPS, None, "Overlap threshold"),
    )


class LasHeR(Protocol):
    """LasHeR: PR at 20 px, NPR at 0.20, SR = mean over 21 IoU thresholds (`calcSeqErrRobust.m` + OTB ranking)."""

    name = "lasher"
    curves = (
        Curve("PR", _PIXELS, 20.0, "Location error threshold (px)"),
        Curve("NPR", _PIXELS / 100.0, 0.20, "Normalized location error threshold"),
        Curve("SR", _OVERLAPS, None, "Overlap threshold"),
    )

    def count(self, gt: SequenceGT, result: np.ndarray) -> SequenceCounts:
        truth = gt.boxes[0]
        res = self.prepare(gt, result)  # results cut to the ground-truth length
        # A row with NaN or w/h <= 0 takes the previous (already repaired) row, unless the truth row is NaN.
        bad = np.isnan(res).any(axis=1) | (res[:, 2] <= 0) | (res[:, 3] <= 0)
        keep = ~bad | np.isnan(truth).any(axis=1)
        keep[0] = True
        res = res[np.maximum.accumulate(np.where(keep, np.arange(len(res)), 0))]
        res[0] = truth[0]  # first frame replaced by the ground truth
        # NPR divides the centre offset by the truth's w and h.
        err = m.center_error(res, truth)
        nerr = m.normalized_center_error(res, truth)
        iou = m.overlap(res, truth)
        # Truth with any coordinate <= 0 in the 1-based file (x or y <= -1 here, or w/h <= 0): the toolkit sets
        # the centre errors to -1 (a hit at every threshold) and the overlap to -1 (a miss at every threshold).
        absent = (truth[:, :2] <= -1).any(axis=1) | (truth[:, 2:4] <= 0).any(axis=1)
        err[absent], nerr[absent], iou[absent] = -1.0, -1.0, -1.0
        pr, npr, sr = self.curves
        return SequenceCounts(
            gt.name,
            gt.length,
            {
                "PR": m.count_at_most(err, pr.thresholds),
                "NPR": m.count_at_most(nerr, npr.thresholds),
                "SR": m.count_above(iou, sr.thresholds),
            },
        )

    def _average(self, rates: np.ndarray) -> np.ndarray:
        # OTB-style ranking (plotDrawSave.m): sequences whose whole curve is zero are dropped from the average.
        kept = rates[rates.sum(axis=1) > np.finfo(float).eps]
        return kept.mean(axis=0) if len(kept) else np.zeros(rates.shape[1])


class GTOT(Protocol):
    """GTOT: frames pooled over all sequences; MPR at 5 px with `<`, MSR = trapezoid area (`auc.m`) on 0:0.02:1."""

    name = "gtot"
    curves = (
        Curve("MPR", m.matlab_range(0, 0.5, 25), 5.0, "Location error threshold (px)"),
        Curve("MSR", m.matlab_range(0, 0.02, 1), None, "Overlap threshold"),
    )

    def count(self, gt: SequenceGT, result: np.ndarray) -> SequenceCounts:
        res = self.prepare(gt, result)
        # calcPlotErr.m: truth corners x1 y1 x2 y2 become x, y, x2-x1, y2-y1; centres x + w/2; min error, max IoU.
        err, iou = _best_over_modalities(res, gt)
        pr, sr = self.curves
        return SequenceCounts(
            gt.name,
            gt.length,
            {"MPR": m.count_below(err, pr.thresholds), "MSR": m.count_above(iou, sr.thresholds)},
        )

    def aggregate(self, seqs: Sequence[SequenceCounts]) -> Scores:
        frames = sum(s.frames for s in seqs)
        values, curves = {}, {}
        for curve in self.curves:
            total = np.sum([s.counts[curve.key] for s in seqs], axis=0) if seqs else np.zeros(len(curve.thresholds))
            y = total / max(frames, 1)
            curves[curve.key] = y
            if curve.at is None:
                values[curve.key] = m.trapezoid_area(curve.thresholds, y)
            else:
                values[curve.key] = self._summary(curve, y)
        return Scores(values, curves, len(seqs))


PROTOCOLS: dict[str, type[Protocol]] = {p.name: p for p in (LasHeR, RGBT234, RGBT210, GTOT, VTUAV)}


def get_protocol(name: str) -> Protocol:
    return PROTOCOLS[name.lower()]()
