"""Protocol rules on small hand-made benchmarks whose scores were worked out by hand (files in 1-based x,y,w,h)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ckd.errors import CKDError
from ckd.eval import evaluate, get_protocol, load_ground_truth


def _write(path: Path, rows, sep: str = ",") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(sep.join(str(v) for v in r) + "\n" for r in rows))


def _score(benchmark: str, gt: Path, results: Path, **kw) -> dict:
    ev = evaluate(get_protocol(benchmark), load_ground_truth(benchmark, gt), [results], **kw)
    return {**ev.trackers[0].overall.values, "sequences": ev.trackers[0].overall.sequences}


def test_lasher_rules(tmp_path):
    annos, res = tmp_path / "annos", tmp_path / "T_tracking_result"
    _write(annos / "a.txt", [(10, 10, 20, 20), (10, 10, 20, 20), (0, 0, 0, 0), (1, 1, 20, 20), (10, 10, 20, 20)])
    _write(
        res / "a.txt",
        [
            (500, 500, 5, 5),  # first frame: replaced by the truth -> perfect
            (40, 10, 20, 20),  # 30 px off: PR miss, NPR 1.5 miss, IoU 0
            (10, 10, 20, 20),  # truth absent (coordinates <= 0): PR and NPR hit, SR miss
            ("nan", "nan", "nan", "nan"),  # NaN -> previous box (10,10,20,20): 12.7 px, NPR 0.64, IoU 121/679
            (10, 10, -5, 20),  # w <= 0 -> previous (repaired) box: perfect
            (0, 0, 1, 1),  # beyond the truth: cut
        ],
        sep="\t",
    )
    # Second sequence: truth absent on frame 1, target missed on frame 2 -> its SR curve is all zero and is dropped.
    _write(annos / "b.txt", [(0, 0, 0, 0), (10, 10, 20, 20)])
    _write(res / "b.txt", [(5, 5, 5, 5), (300, 300, 20, 20)])
    s = _score("lasher", tmp_path, res)
    assert s["PR"] == pytest.approx((4 / 5 + 1 / 2) / 2)
    assert s["NPR"] == pytest.approx((3 / 5 + 1 / 2) / 2)
    # IoUs of a: 1, 0, -1, 0.178, 1 -> 3 frames above 0..0.15 (4 thresholds), 2 above 0.2..0.95 (16), none above 1.
    assert s["SR"] == pytest.approx((4 * 3 + 16 * 2) / 21 / 5)
    assert s["sequences"] == 2


def test_rgbt234_takes_best_modality_and_keeps_first_frame(tmp_path):
    seq = tmp_path / "s1"
    _write(seq / "visible.txt", [(1, 1, 10, 10)] * 3)
    _write(seq / "infrared.txt", [(3, 1, 10, 10), (31, 1, 10, 10), (1, 1, 10, 10)])
    # frame 1 (not replaced): 25/23 px, no overlap; frame 2: 21/9 px, IoU 0 / 10/190; frame 3 perfect
    _write(tmp_path / "res" / "s1.txt", [(26, 1, 10, 10), (22, 1, 10, 10), (1, 1, 10, 10)])
    s = _score("rgbt234", tmp_path, tmp_path / "res")
    assert s["MPR"] == pytest.approx(2 / 3)
    # IoU max per frame 0, 0.0526, 1: 2 frames above 0 and 0.05, 1 above 0.1..0.95 (18 thresholds), 0 above 1
    assert s["MSR"] == pytest.approx((2 + 2 + 18) / 21 / 3)


def test_rgbt210_single_truth_first_frame_replaced(tmp_path):
    _write(tmp_path / "s1" / "init.txt", [(1, 1, 10, 10)] * 3)
    _write(tmp_path / "res" / "s1.txt", [(26, 1, 10, 10), (22, 1, 10, 10), (1, 1, 10, 10)])
    s = _score("rgbt210", tmp_path, tmp_path / "res")
    assert s["PR"] == pytest.approx(2 / 3)  # frame 1 replaced, frame 2 is 21 px off
    assert s["SR"] == pytest.approx(20 * 2 / 21 / 3)


def test_gtot_corners_strict_5px_pooled_trapezoid(tmp_path):
    # corners x1 y1 x2 y2 (w = x2 - x1), space separated as GTOT ships them
    _write(tmp_path / "A" / "groundTruth_v.txt", [(10, 10, 40, 40)] * 3, sep=" ")
    _write(tmp_path / "A" / "groundTruth_i.txt", [(14, 10, 44, 40)] * 3, sep=" ")
    _write(tmp_path / "B" / "groundTruth_v.txt", [(0, 0, 10, 10)], sep=" ")
    _write(tmp_path / "B" / "groundTruth_i.txt", [(0, 0, 10, 10)], sep=" ")
    res = tmp_path / "res"
    # A: perfect; 5/1 px off (IoU 750/1050, 870/930); 5/9 px off -> min exactly 5 is NOT < 5 (IoU 750/1050)
    _write(res / "A.txt", [(10, 10, 30, 30), (15, 10, 30, 30), (5, 10, 30, 30)])
    _write(res / "B.txt", [(100, 100, 10, 10)])  # B: lost
    s = _score("gtot", tmp_path, res)
    assert s["MPR"] == pytest.approx(2 / 4)  # frames pooled: per-sequence averaging would give 1/3
    # pooled success over 0:0.02:1 with IoUs 1, 0.935, 0.714, 0: 3/4 up to 0.70, 2/4 to 0.92, 1/4 to 0.98, then 0
    y = np.array([0.75] * 36 + [0.5] * 11 + [0.25] * 3 + [0.0])
    assert s["MSR"] == pytest.approx(0.02 * (y.sum() - (y[0] + y[-1]) / 2)) == pytest.approx(0.6575)


def test_vtuav_subsamples_results_one_in_ten(tmp_path):
    seq = tmp_path / "test_ST" / "car_001"
    _write(seq / "rgb.txt", [(10, 10, 20, 20), (50, 10, 20, 20)], sep=" ")
    _write(seq / "ir.txt", [(10, 10, 20, 20), (50, 10, 20, 20)], sep=" ")
    rows = [(10, 10, 20, 20)] + [(900, 900, 5, 5)] * 9 + [(50, 10, 20, 20)]
    _write(tmp_path / "res" / "car_001.txt", rows)
    s = _score("vtuav", tmp_path, tmp_path / "res")
    assert s["MPR"] == 1.0 and s["MSR"] == pytest.approx(20 / 21)
    _write(tmp_path / "short" / "car_001.txt", rows[:10])  # frame 11 is annotated but missing
    with pytest.raises(CKDError, match="car_001.txt: 10 rows, ground truth needs 11"):
        _score("vtuav", tmp_path, tmp_path / "short")
