"""Fidelity-gate arithmetic: how closely INT8 tracking follows FP32 tracking, and the pass/fail verdict.

Per rung: per-frame IoU agreement between the FP32 and INT8 boxes on the same crops (median), success AUC (mean over IoU
thresholds 0:0.05:1 of the fraction of frames above it) and precision (centre error <= 20 px) of each
against ground truth, and the cosine similarity of the raw score maps. Pure numpy, no runtime needed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ckd.eval.metrics import center_error, matlab_range, overlap

THRESHOLDS = matlab_range(0.0, 0.05, 1.0)


@dataclass(frozen=True)
class Thresholds:
    """Gate limits: median IoU agreement and success-AUC drop in points (the issue's defaults), and optionally
    the mean score-map cosine (mean-removed), a stricter raw-output check; 0 disables a limit."""

    min_iou_agreement: float = 0.9
    max_auc_drop: float = 1.0
    min_score_cosine: float = 0.0


def success_auc(boxes: np.ndarray, gt: np.ndarray) -> float:
    """Success AUC in [0, 1] over frames with a valid ground-truth box."""
    valid = np.isfinite(gt).all(axis=1) & (gt[:, 2:] > 0).all(axis=1)
    if not valid.any():
        return float("nan")
    iou = np.nan_to_num(overlap(boxes[valid], gt[valid]), nan=0.0)
    return float(np.mean([(iou > t).mean() for t in THRESHOLDS]))


def precision_20(boxes: np.ndarray, gt: np.ndarray, pixels: float = 20.0) -> float:
    valid = np.isfinite(gt).all(axis=1) & (gt[:, 2:] > 0).all(axis=1)
    if not valid.any():
        return float("nan")
    return float((center_error(boxes[valid], gt[valid]) <= pixels).mean())


def _mean(xs: list[float]) -> float:
    """Mean ignoring NaN (sequences without ground truth); NaN when nothing is left."""
    xs = np.asarray(xs, dtype=np.float64)
    return float(np.nanmean(xs)) if np.isfinite(xs).any() else float("nan")


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two score maps after removing each map's mean (a flat sigmoid map near 0.5
    would otherwise score ~1 against anything); 1.0 for two identical flat maps."""
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    a, b = a - a.mean(), b - b.mean()
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / denom) if denom > 0 else 1.0 if np.allclose(a, b) else 0.0


@dataclass
class RungFidelity:
    """Agreement of INT8 with FP32 at one keep ratio over all evaluation frames."""

    keep_ratio: float
    frames: int
    iou_agreement_median: float
    iou_agreement_mean: float
    auc_fp32: float
    auc_int8: float
    precision_fp32: float
    precision_int8: float
    score_cosine_mean: float
    score_cosine_min: float
    failures: list[str] = field(default_factory=list)

    @property
    def auc_drop_points(self) -> float:
        """FP32 minus INT8 success AUC in points; NaN without ground truth (the AUC limit then cannot fail)."""
        return 100.0 * (self.auc_fp32 - self.auc_int8)

    def to_dict(self) -> dict:
        """Plain JSON types; figures that cannot be computed (no ground truth, no frames) are None."""
        d = asdict(self)
        d["auc_drop_points"] = self.auc_drop_points
        d["precision_delta_points"] = 100.0 * (self.precision_int8 - self.precision_fp32)
        return {k: None if isinstance(v, float) and not np.isfinite(v) else v for k, v in d.items()}


def rung_fidelity(
    keep_ratio: float,
    fp32_boxes: list[np.ndarray],
    int8_lockstep: list[np.ndarray],
    int8_free: list[np.ndarray],
    gts: list[np.ndarray | None],
    cosines: list[float],
    limits: Thresholds,
) -> RungFidelity:
    """Summarise per-sequence boxes (N x 4 each, row 0 = init) and per-frame score cosines; apply limits.

    `int8_lockstep`: INT8 boxes predicted from the FP32 tracker's previous state (same crops, so a per-frame
    comparison that one early miss cannot compound); `int8_free`: the INT8 tracker on its own, for AUC/precision.
    """
    pairs = zip(fp32_boxes, int8_lockstep, strict=True)
    iou = np.concatenate([np.nan_to_num(overlap(a[1:], b[1:]), nan=0.0) for a, b in pairs])
    with_gt = [(a, b, g) for a, b, g in zip(fp32_boxes, int8_free, gts, strict=True) if g is not None]
    aucs = [(success_auc(a[1:], g[1:]), success_auc(b[1:], g[1:])) for a, b, g in with_gt]
    precs = [(precision_20(a[1:], g[1:]), precision_20(b[1:], g[1:])) for a, b, g in with_gt]
    r = RungFidelity(
        keep_ratio=keep_ratio,
        frames=int(iou.size),
        iou_agreement_median=float(np.median(iou)) if iou.size else float("nan"),
        iou_agreement_mean=float(np.mean(iou)) if iou.size else float("nan"),
        auc_fp32=_mean([a for a, _ in aucs]),
        auc_int8=_mean([b for _, b in aucs]),
        precision_fp32=_mean([a for a, _ in precs]),
        precision_int8=_mean([b for _, b in precs]),
        score_cosine_mean=float(np.mean(cosines)) if cosines else float("nan"),
        score_cosine_min=float(np.min(cosines)) if cosines else float("nan"),
    )
    if not r.iou_agreement_median >= limits.min_iou_agreement:
        r.failures.append(f"median IoU agreement {r.iou_agreement_median:.3f} < {limits.min_iou_agreement}")
    if r.auc_drop_points > limits.max_auc_drop:
        r.failures.append(f"success AUC drop {r.auc_drop_points:.2f} points > {limits.max_auc_drop}")
    if limits.min_score_cosine > 0 and not r.score_cosine_mean >= limits.min_score_cosine:
        r.failures.append(f"score-map cosine {r.score_cosine_mean:.3f} < {limits.min_score_cosine}")
    return r


def worst_rung(results: list[RungFidelity]) -> RungFidelity | None:
    """The failing rung with the lowest IoU agreement, or None when every rung passes."""
    failed = [r for r in results if r.failures]
    return min(failed, key=lambda r: (r.iou_agreement_median, -np.nan_to_num(r.auc_drop_points))) if failed else None
