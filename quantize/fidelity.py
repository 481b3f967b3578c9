"""Fidelity-gate arithmetic: how far a quantized (or otherwise rebuilt) model is from its FP32 reference.

The gate compares *models*, not trajectories. Both models get identical inputs and their outputs are compared
crop by crop (`compare_outputs`): IoU of the two decoded boxes, displacement of the Hann-windowed score-map peak
(search-crop pixels), and the cosine of the two score maps. These isolate quantization error; a free-running
tracker's success AUC mostly measures chaos (two trackers a few pixels apart follow different targets after a
distractor crossing). Where ground truth exists, accuracy is reported as a paired difference over sequences with a
bootstrap confidence interval (`paired_drop`) and fails only when the whole interval lies beyond the allowed drop.

Pure numpy and Python-3.8 clean (a device module, pyproject.toml): `ckd build` on the Jetson uses
`check_outputs` against the shipped reference outputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from ckd.errors import CKDError
from quantize.gate_limits import Thresholds

BOOTSTRAP_RESAMPLES = 2000
# A percentile bootstrap over fewer sequences gives intervals too narrow to trust: reported, but cannot fail.
MIN_SEQUENCES = 5


# --- per-crop agreement (identical inputs) ---------------------------------------------------------------------


def decode(outputs: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The tracker's decode for a batch: (N x 4 boxes cx, cy, w, h as fractions of the search crop, N x 2 peak
    cells row, col), peak = arg-max of the score map times the Hann window."""
    from ckd.track.tracker import hann2d  # imported here: the tracker module pulls in OpenCV

    score = np.asarray(outputs["score_map"], np.float32)
    n, f = score.shape[0], score.shape[-1]
    windowed = np.nan_to_num(score.reshape(n, f * f) * hann2d(f).reshape(1, f * f), nan=-np.inf)
    flat = np.argmax(windowed, axis=1)
    iy, ix = np.divmod(flat, f)
    rows = np.arange(n)
    size = np.asarray(outputs["size_map"], np.float32).reshape(n, 2, f * f)[rows, :, flat]
    offset = np.asarray(outputs["offset_map"], np.float32).reshape(n, 2, f * f)[rows, :, flat]
    boxes = np.stack([(ix + offset[:, 0]) / f, (iy + offset[:, 1]) / f, size[:, 0], size[:, 1]], axis=1)
    return boxes.astype(np.float64), np.stack([iy, ix], axis=1)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise IoU of centre-format boxes (cx, cy, w, h); 0 where either box is empty or not finite."""
    lo = np.maximum(a[:, :2] - a[:, 2:] / 2, b[:, :2] - b[:, 2:] / 2)
    hi = np.minimum(a[:, :2] + a[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2)
    inter = np.prod(np.clip(hi - lo, 0.0, None), axis=1)
    union = np.prod(np.clip(a[:, 2:], 0.0, None), axis=1) + np.prod(np.clip(b[:, 2:], 0.0, None), axis=1) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.nan_to_num(np.where(union > 0, inter / union, 0.0), nan=0.0)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two score maps after removing each map's mean (a flat sigmoid map near 0.5
    would otherwise score ~1 against anything); 1.0 for two identical flat maps, 0.0 if either is not finite."""
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return 0.0
    a, b = a - a.mean(), b - b.mean()
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    return float(np.clip(a @ b / denom, -1.0, 1.0)) if denom > 0 else 1.0 if np.allclose(a, b) else 0.0


@dataclass(frozen=True)
class CropAgreement:
    """Per-crop agreement of a candidate's outputs with the reference's on the same inputs (one entry per crop)."""

    iou: np.ndarray
    peak_shift_px: np.ndarray
    cosine: np.ndarray

    @classmethod
    def concat(cls, parts: Sequence[CropAgreement]) -> CropAgreement:
        if not parts:
            return cls(np.zeros(0), np.zeros(0), np.zeros(0))
        return cls(*(np.concatenate([getattr(p, k) for p in parts]) for k in ("iou", "peak_shift_px", "cosine")))


def compare_outputs(
    reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray], search_size: int
) -> CropAgreement:
    """Agreement of two sets of named outputs (`score_map`, `size_map`, `offset_map`, batch N) computed from
    identical inputs; `search_size` (pixels) converts score-map cells into search-crop pixels."""
    for name in ("score_map", "size_map", "offset_map"):
        a, b = np.shape(reference[name]), np.shape(candidate[name])
        if a != b:
            raise CKDError(f"{name}: the outputs compared have different shapes {list(a)} and {list(b)}")
    ref_boxes, ref_peaks = decode(reference)
    boxes, peaks = decode(candidate)
    ref_score, score = np.asarray(reference["score_map"]), np.asarray(candidate["score_map"])
    shift = np.hypot(*(peaks - ref_peaks).T.astype(np.float64)) * (search_size / ref_score.shape[-1])
    cos = np.array([cosine(ref_score[i], score[i]) for i in range(len(score))])
    return CropAgreement(box_iou(ref_boxes, boxes), shift, cos)


@dataclass
class CropCheck:
    """Summary of a `CropAgreement` and the per-crop limits it breaks (`failures` empty = pass)."""

    crops: int
    iou_agreement_median: float
    iou_agreement_mean: float
    peak_moved_fraction: float
    peak_shift_px_mean: float
    score_cosine_mean: float
    score_cosine_min: float
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def __str__(self) -> str:
        figures = (
            f"median IoU {self.iou_agreement_median:.3f}, cosine {self.score_cosine_mean:.3f}, "
            f"peak moved on {self.peak_moved_fraction:.0%} of {self.crops} crops"
        )
        return f"{figures}: " + ("pass" if self.passed else "; ".join(self.failures))


def check_crops(agreement: CropAgreement, limits: Thresholds | None = None) -> CropCheck:
    """Summarise per-crop agreement and apply the per-crop limits (no crops at all is a failure)."""
    limits = limits or Thresholds()
    n = int(agreement.iou.size)
    if n == 0:
        nan = float("nan")
        return CropCheck(0, nan, nan, nan, nan, nan, nan, ["no crops were compared"])
    iou_med = float(np.median(agreement.iou))
    moved = float(np.mean(agreement.peak_shift_px > 0))
    cos = float(np.mean(agreement.cosine))
    failures = []
    if not iou_med >= limits.min_iou_agreement:
        failures.append(f"median box IoU {iou_med:.3f} < {limits.min_iou_agreement:g}")
    if not cos >= limits.min_score_cosine:
        failures.append(f"mean score-map cosine {cos:.3f} < {limits.min_score_cosine:g}")
    if not moved <= limits.max_peak_moved:
        failures.append(f"score peak moved on {moved:.1%} of crops > {limits.max_peak_moved:.0%}")
    return CropCheck(
        crops=n,
        iou_agreement_median=iou_med,
        iou_agreement_mean=float(np.mean(agreement.iou)),
        peak_moved_fraction=moved,
        peak_shift_px_mean=float(np.mean(agreement.peak_shift_px)),
        score_cosine_mean=cos,
        score_cosine_min=float(np.min(agreement.cosine)),
        failures=failures,
    )


def check_outputs(
    reference: Mapping[str, np.ndarray],
    candidate: Mapping[str, np.ndarray],
    search_size: int,
    limits: Thresholds | None = None,
) -> CropCheck:
    """The gate's per-crop verdict for two sets of named outputs on identical inputs (e.g. a TensorRT engine
    against the shipped FP32 reference outputs)."""
    return check_crops(compare_outputs(reference, candidate, search_size), limits)


# --- accuracy against ground truth, paired over sequences ---------------------------------------------------------


def _scored(boxes: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Frames that count: a finite predicted box (NaN = not scored, e.g. after a reset) and a valid truth box."""
    return np.isfinite(boxes).all(axis=1) & np.isfinite(gt).all(axis=1) & (gt[:, 2:] > 0).all(axis=1)


def success_auc(boxes: np.ndarray, gt: np.ndarray) -> float:
    """Success AUC in [0, 1] (mean over IoU thresholds 0:0.05:1) over the scored frames; NaN if none."""
    from ckd.eval.metrics import matlab_range, overlap  # host side only: the device needs `check_outputs`

    valid = _scored(boxes, gt)
    if not valid.any():
        return float("nan")
    iou = np.nan_to_num(overlap(boxes[valid], gt[valid]), nan=0.0)
    return float(np.mean([(iou > t).mean() for t in matlab_range(0.0, 0.05, 1.0)]))


def precision_20(boxes: np.ndarray, gt: np.ndarray, pixels: float = 20.0) -> float:
    """Fraction of scored frames whose centre error is at most `pixels`; NaN if none."""
    from ckd.eval.metrics import center_error

    valid = _scored(boxes, gt)
    if not valid.any():
        return float("nan")
    return float((center_error(boxes[valid], gt[valid]) <= pixels).mean())


@dataclass(frozen=True)
class PairedDrop:
    """Mean over sequences of reference minus candidate, in points, with a bootstrap confidence interval
    (infinite with fewer than two sequences: nothing can be concluded)."""

    mean: float
    low: float
    high: float
    sequences: int


def paired_drop(
    reference: Sequence[float], candidate: Sequence[float], confidence: float = 0.95, seed: int = 0
) -> PairedDrop:
    """Paired difference 100 * (reference - candidate) per sequence (NaN pairs dropped), its mean and a
    percentile bootstrap interval over sequences (`BOOTSTRAP_RESAMPLES` resamples, seeded: reproducible)."""
    d = 100.0 * (np.asarray(reference, np.float64) - np.asarray(candidate, np.float64))
    d = d[np.isfinite(d)]
    if d.size == 0:
        return PairedDrop(float("nan"), float("nan"), float("nan"), 0)
    if d.size < 2:
        return PairedDrop(float(d.mean()), -np.inf, np.inf, 1)
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, (BOOTSTRAP_RESAMPLES, d.size))].mean(axis=1)
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return PairedDrop(float(d.mean()), float(low), float(high), int(d.size))


# --- one rung's verdict ---------------------------------------------------------------------------------------------


@dataclass
class RungFidelity(CropCheck):
    """The gate's verdict for one keep ratio: the per-crop check over all compared crops and, with ground truth,
    the paired accuracy drops over sequences (`failures` holds both kinds; empty = the rung passes)."""

    keep_ratio: float = float("nan")
    sequences: int = 0  # sequences with ground truth (accuracy)
    reset_on_failure: bool = False
    auc_fp32: float = float("nan")
    auc_int8: float = float("nan")
    auc_drop_points: float = float("nan")
    auc_drop_ci: tuple[float, float] = (float("nan"), float("nan"))
    precision_fp32: float = float("nan")
    precision_int8: float = float("nan")
    precision_drop_points: float = float("nan")
    precision_drop_ci: tuple[float, float] = (float("nan"), float("nan"))

    def to_dict(self) -> dict:
        """Plain JSON types, keep ratio first; figures that cannot be computed (no ground truth, one sequence)
        are None."""

        def plain(v):
            if isinstance(v, (tuple, list)):
                return [plain(x) for x in v]
            return None if isinstance(v, float) and not np.isfinite(v) else v

        d = asdict(self)
        return {k: plain(v) for k, v in {"keep_ratio": d.pop("keep_ratio"), **d}.items()}


def _nanmean(xs: Sequence[float]) -> float:
    xs = np.asarray(xs, dtype=np.float64)
    return float(np.nanmean(xs)) if np.isfinite(xs).any() else float("nan")


def rung_fidelity(
    keep_ratio: float,
    agreement: CropAgreement,
    accuracy: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]] = (),
    limits: Thresholds | None = None,
    reset_on_failure: bool = False,
) -> RungFidelity:
    """The verdict for one rung from its per-crop agreement and, per sequence with ground truth, the
    (reference boxes, candidate boxes, truth) of the accuracy runs (N x 4 each, frame 0 = init, not scored)."""
    limits = limits or Thresholds()
    r = RungFidelity(**asdict(check_crops(agreement, limits)), keep_ratio=keep_ratio, reset_on_failure=reset_on_failure)
    if not accuracy:
        return r
    auc = [(success_auc(a[1:], g[1:]), success_auc(b[1:], g[1:])) for a, b, g in accuracy]
    prec = [(precision_20(a[1:], g[1:]), precision_20(b[1:], g[1:])) for a, b, g in accuracy]
    for name, pairs, limit in (("auc", auc, limits.max_auc_drop), ("precision", prec, limits.max_precision_drop)):
        ref, cand = [p[0] for p in pairs], [p[1] for p in pairs]
        drop = paired_drop(ref, cand, limits.confidence)
        setattr(r, f"{name}_fp32", _nanmean(ref))
        setattr(r, f"{name}_int8", _nanmean(cand))
        setattr(r, f"{name}_drop_points", drop.mean)
        setattr(r, f"{name}_drop_ci", (drop.low, drop.high))
        r.sequences = max(r.sequences, drop.sequences)
        if drop.sequences >= MIN_SEQUENCES and drop.low > limit:
            label = "success AUC" if name == "auc" else "precision"
            r.failures.append(
                f"{label} drop {drop.mean:.2f} points, {limits.confidence:.0%} interval "
                f"[{drop.low:.2f}, {drop.high:.2f}] over {drop.sequences} sequences, all above {limit:g}"
            )
    return r


def worst_rung(results: Sequence[RungFidelity]) -> RungFidelity | None:
    """The failing rung with the lowest median IoU agreement, or None when every rung passes."""
    failed = [r for r in results if r.failures]
    return min(failed, key=lambda r: np.nan_to_num(r.iou_agreement_median, nan=-1.0)) if failed else None
