"""The evaluation's box reader: what `read_boxes` gives for x,y,w,h files, polygons as their bounding box, and one
error line naming file and line for anything else."""

from __future__ import annotations

import numpy as np
import pytest

from ckd.data.boxes import read_boxes
from ckd.errors import CKDError
from ckd.eval.layouts import read_regular_boxes, tracker_name

FILES = {
    "crlf_bom.txt": "\ufeff1,2,3,4\r\n5,6,7,8\r\n",
    "mixed.txt": "1, 2\t3 4\n\n5,6,7,8\n",
    "nan.txt": "1,2,3,4\nnan,nan,nan,nan\n",
    "empty.txt": "",
}


@pytest.mark.parametrize("name", sorted(FILES))
def test_same_boxes_as_read_boxes(tmp_path, name):
    path = tmp_path / name
    path.write_text(FILES[name], encoding="utf-8", newline="")
    np.testing.assert_array_equal(read_regular_boxes(path), read_boxes(path))


@pytest.mark.parametrize(
    "text",
    [
        "1,2,3,4\n1,2,3\n",
        "1,2,3,4\n# comment\n",
        "1,2,3,4\n5,6,x,8\n",
        "1,2,3,4\n1,2,3,4,5\n",  # a score column is not silently dropped
        "1,2,3,4,5,6\n1,2,3,4,5,6\n",  # regular but neither a box nor a polygon
        "1,2,3,4\n1,2,3,4,5,6,7,8,9,10\n",
    ],
)
def test_other_row_lengths_are_refused_naming_the_line(tmp_path, text):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(CKDError, match=r"bad.txt:[12]: expected 4 numbers \(x,y,w,h\) or 8 \(polygon\)"):
        read_regular_boxes(path)
    assert np.isnan(read_regular_boxes(path, strict=False)).any(axis=1).sum() >= 1  # --allow-missing: NaN rows


def test_polygons_become_their_bounding_box(tmp_path):
    path = tmp_path / "poly.txt"
    # an axis-aligned rectangle written as 4 corners, a rotated square, and a mixed file's x,y,w,h row
    path.write_text("10,20,40,20,40,60,10,60\n5,0,10,5,5,10,0,5\n1,2,3,4\n")
    np.testing.assert_array_equal(read_regular_boxes(path), [[10, 20, 30, 40], [0, 0, 10, 10], [1, 2, 3, 4]])
    (tmp_path / "regular.txt").write_text("10\t20\t40\t20\t40\t60\t10\t60\n" * 3)  # numpy's fast path
    np.testing.assert_array_equal(read_regular_boxes(tmp_path / "regular.txt"), [[10, 20, 30, 40]] * 3)


def test_sequence_names_from_lists_are_plain_names(tmp_path):
    from ckd.eval import load_ground_truth

    (tmp_path / "annos").mkdir()
    (tmp_path / "annos" / "a.txt").write_text("1,2,3,4\n")
    (tmp_path / "testingsetList.txt").write_text("a\n../../etc/passwd\n")
    with pytest.raises(CKDError, match="testingsetList.txt: file name '../../etc/passwd' contains a path separator"):
        load_ground_truth("lasher", tmp_path)


def test_tracker_name(tmp_path):
    assert tracker_name(tmp_path / "MTNet_tracking_result") == "MTNet"
    assert tracker_name(tmp_path / "ckd_mce") == "ckd_mce"


def test_lasher_dataset_root_with_list(tmp_path):
    from ckd.eval import load_ground_truth

    for name in ["leftgirl'swhitebag", "1boycoming", "not_in_list"]:
        (tmp_path / "testingset" / name).mkdir(parents=True)
        (tmp_path / "testingset" / name / "init.txt").write_text("5,6,7,8\n0,0,0,0\n")
    (tmp_path / "testingsetList.txt").write_text("leftgirl'swhitebag\r\n1boycoming\r\n")
    truth = load_ground_truth("lasher", tmp_path)
    assert [s.name for s in truth.sequences] == ["leftgirl'swhitebag", "1boycoming"]
    assert truth.sequences[0].boxes[0].tolist() == [[4, 5, 7, 8], [-1, -1, 0, 0]]  # 1-based file -> 0-based
