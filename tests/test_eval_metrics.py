"""Per-frame metrics of ckd.eval against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from ckd.eval import metrics as m


def test_matlab_range_counts_down_from_stop_in_the_second_half():
    r = m.matlab_range(0, 0.05, 1)
    assert len(r) == 21 and r[0] == 0.0 and r[-1] == 1.0 and r[10] == 0.5
    assert r[3] == 3 * 0.05  # first half: start + k*step
    assert r[13] == 1 - 7 * 0.05 != 13 * 0.05  # second half: stop - (n-k)*step, as MATLAB's colon
    assert len(m.matlab_range(0, 0.5, 25)) == 51 and m.matlab_range(0, 0.5, 25)[10] == 5.0
    assert len(m.matlab_range(0, 0.02, 1)) == 51


def test_overlap_is_calc_rect_int():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [3, 4, 5, 6]], float)
    b = np.array([[5, 5, 10, 10], [10, 0, 10, 10], [0, 0, 20, 10], [3, 4, 5, 6]], float)
    # 5x5 shared pixels of two 10x10 boxes: 25 / (100 + 100 - 25); touching boxes share nothing; nested 100/200.
    np.testing.assert_allclose(m.overlap(a, b), [25 / 175, 0.0, 0.5, 1.0])


def test_center_errors():
    res = np.array([[3, 4, 10, 10], [0, 0, 20, 10]], float)
    gt = np.array([[0, 0, 10, 10], [0, 0, 10, 20]], float)
    # second row: centres (10, 5) vs (5, 10)
    np.testing.assert_allclose(m.center_error(res, gt), [5.0, np.hypot(5, 5)])
    np.testing.assert_allclose(m.normalized_center_error(res, gt), [0.5, np.hypot(0.5, 0.25)])


def test_counts_and_area():
    v = np.array([-1.0, 0.0, 5.0, np.nan])
    t = np.array([0.0, 5.0])
    assert m.count_at_most(v, t).tolist() == [2, 3]
    assert m.count_below(v, t).tolist() == [1, 2]
    assert m.count_above(v, t).tolist() == [1, 0]
    assert m.trapezoid_area(np.array([0.0, 0.5, 1.0]), np.array([1.0, 1.0, 0.0])) == pytest.approx(0.75)
