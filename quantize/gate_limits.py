"""The fidelity gate's limits and default evaluation clips (no numpy: the CLI reads them to build its parser).

Chosen from `benchmarks/gate_error_rates.py` on the demo student (docs/fidelity.md).
"""

from __future__ import annotations

from dataclasses import dataclass

# Held-out synthetic evaluation clips (calibration uses seed 0).
EVAL_SEQUENCES = 8
EVAL_FRAMES = 80
EVAL_SEED = 1000


@dataclass(frozen=True)
class Thresholds:
    """Per crop (identical inputs): median box IoU, mean score-map cosine (mean removed), and the fraction of
    crops whose score-map peak lands on another cell. Accuracy (only with ground truth): success-AUC and
    precision drop in points, failing only when the whole `confidence` bootstrap interval over sequences lies
    above the limit."""

    min_iou_agreement: float = 0.9
    min_score_cosine: float = 0.9
    max_peak_moved: float = 0.3
    max_auc_drop: float = 2.0
    max_precision_drop: float = 2.0
    confidence: float = 0.95
