"""The evaluation's fast box reader gives exactly what `read_boxes` gives, or its error."""

from __future__ import annotations

import numpy as np
import pytest

from ckd.data.boxes import read_boxes
from ckd.errors import CKDError
from ckd.eval.layouts import read_regular_boxes, tracker_name

FILES = {
    "crlf_bom.txt": "\ufeff1,2,3,4\r\n5,6,7,8\r\n",
    "mixed.txt": "1, 2\t3 4\n\n5,6,7,8\n",
    "eight_columns.txt": "1,2,3,4,9,9,9,9\n5,6,7,8,9,9,9,9\n",
    "ragged.txt": "1,2,3,4,5\n5,6,7,8\n",
    "nan.txt": "1,2,3,4\nnan,nan,nan,nan\n",
    "empty.txt": "",
}


@pytest.mark.parametrize("name", sorted(FILES))
def test_same_boxes_as_read_boxes(tmp_path, name):
    path = tmp_path / name
    path.write_text(FILES[name], encoding="utf-8", newline="")
    np.testing.assert_array_equal(read_regular_boxes(path), read_boxes(path))


@pytest.mark.parametrize("text", ["1,2,3,4\n1,2,3\n", "1,2,3,4\n# comment\n", "1,2,3,4\n5,6,x,8\n"])
def test_irregular_files_get_read_boxes_error(tmp_path, text):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(CKDError, match=r"bad.txt:2: expected 4 numbers"):
        read_regular_boxes(path)


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
