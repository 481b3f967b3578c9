"""Replaying recorded clips: every frame, paired by its own number (folders) or timestamp (videos), one row per
source frame, bad frames named and counted, thermal recognised from the data, and `ckd eval` on the results."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from ckd.data.synthetic import SyntheticSequence
from ckd.data.thermal import thermal_to_8bit
from ckd.eval import get_protocol, load_ground_truth
from ckd.model.config import preset
from ckd.model.network import CKDNet
from ckd.track.torch_backend import TorchBackend
from ckd.track.tracker import Tracker
from ckd_cli.main import main
from pipelines.loop import DualSensorLoop, LoopOptions
from pipelines.uri import parse_uri

W, H = 160, 120


def _write_clip(seq_dir: Path, frames: int, seed: int = 3) -> np.ndarray:
    """A VTUAV-layout sequence: rgb/ and ir/ JPEGs numbered from 0 (thermal: grey saved as 3 channels), the
    ground truth every 10th frame in rgb.txt and ir.txt (1-based). Returns every frame's true box (0-based)."""
    (seq_dir / "rgb").mkdir(parents=True)
    (seq_dir / "ir").mkdir()
    seq = SyntheticSequence(seed=seed, frames=frames, width=W, height=H)
    boxes = []
    for i in range(frames):
        f = seq.frame(i)
        cv2.imwrite(str(seq_dir / "rgb" / f"{i:06d}.jpg"), cv2.cvtColor(f.rgb, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(seq_dir / "ir" / f"{i:06d}.jpg"), np.repeat(thermal_to_8bit(f.thermal16)[..., None], 3, 2))
        boxes.append(f.box)
    boxes = np.asarray(boxes, dtype=np.float64)
    for name in ("rgb.txt", "ir.txt"):
        np.savetxt(seq_dir / name, boxes[::10] + [1, 1, 0, 0], fmt="%.2f")
    return boxes


def test_replay_of_frame_folders_with_bad_frames_gives_one_row_per_frame_and_ckd_eval_scores_it(tmp_path, capsys):
    root = tmp_path / "clips" / "test_ST"
    seq = root / "bird1"
    _write_clip(seq, frames=31)
    tir10 = seq / "ir" / "000010.jpg"
    tir10.write_bytes(tir10.read_bytes()[:600])  # cut short (a frame with ground truth)
    (seq / "rgb" / "000017.jpg").write_bytes(b"")  # empty
    (seq / "ir" / "000025.jpg").unlink()  # missing in the middle
    (seq / "ir" / "000030.jpg").unlink()  # and the thermal folder is one frame shorter
    out, results = tmp_path / "run", tmp_path / "results" / "ckd" / "bird1.txt"
    argv = ["run", "--rgb", f"file://{seq}/rgb?fps=10", "--tir", f"file://{seq}/ir?fps=10", "--random-preset", "nano"]
    argv += ["--threads", "1", "--fixed-rung", "1.0", "--out", str(out), "--results", str(results), "--no-overlay"]
    torch.manual_seed(0)
    assert main(argv) == 0
    err = capsys.readouterr().err
    # one line per bad file, naming the sensor, the frame and the file; the init box comes from the ground truth
    assert f"tir frame 10: {tir10} is truncated (no end-of-image marker); frame not tracked" in err
    assert f"rgb frame 17: {seq}/rgb/000017.jpg is empty (0 bytes); frame not tracked" in err
    assert f"tir frame 25: no file numbered 25 in {seq}/ir; frame not tracked" in err
    assert "rgb frame 30 not tracked: the tir clip ends at frame 29" in err
    assert f"(x,y,w,h) from {seq}/rgb.txt" in err and "thermal: 8-bit grey stored as 3 equal channels" in err

    report = json.loads((out / "latency.json").read_text())
    f = report["frames"]
    assert report["mode"] == "replay" and f["paired_by"] == "frame index"
    assert f["read"] == {"rgb": 30, "tir": 28} and f["paired"] == f["tracked"] == 27 and f["not_tracked"] == 4
    assert f["not_paired"] == {
        "rgb": {"tir frame corrupt": 1, "tir frame missing": 1, "tir clip shorter": 1},
        "tir": {"rgb frame empty": 1},
    }
    assert report["sources"]["rgb"]["unreadable"] == {"empty": 1}
    assert report["sources"]["tir"]["unreadable"] == {"corrupt": 1, "missing": 1}
    assert report["frames_skipped"] == 0 and report["frames_dropped"] == 0 and report["thermal"] == "gray8-as-3-channel"

    rows = [r for r in map(json.loads, (out / "track.jsonl").read_text().splitlines()) if "frame" in r]
    assert [r["frame"] for r in rows] == list(range(31))  # one row per source frame, by its own number
    untracked = {r["frame"]: r["reason"] for r in rows if r["box"] is None}
    assert sorted(untracked) == [10, 17, 25, 30] and "truncated" in untracked[10] and "empty" in untracked[17]
    assert all(r["t_rgb"] == pytest.approx(r["frame"] / 10) for r in rows if r["t_rgb"] is not None)
    assert rows[0]["box"] == pytest.approx(np.loadtxt(seq / "rgb.txt")[0] - [1, 1, 0, 0], abs=0.01)

    # the results file scores directly against the sparse ground truth (VTUAV: every 10th frame)
    lines = results.read_text().splitlines()
    assert len(lines) == 31 and lines[10] == lines[17] == lines[25] == lines[30] == "0,0,0,0"
    evaluation = ["eval", "--benchmark", "vtuav", "--gt", str(root.parent), "--results", str(results.parent)]
    assert main([*evaluation, "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)["ckd"]
    ours = np.array([[0.0] * 4 if r["box"] is None else r["box"] for r in rows])
    protocol = get_protocol("vtuav")
    want = protocol.aggregate([protocol.count(load_ground_truth("vtuav", root).sequences[0], ours)]).values
    assert scores["sequences"] == 1 and scores["MPR"] == pytest.approx(want["MPR"])
    assert scores["MSR"] == pytest.approx(want["MSR"]) and want["MSR"] <= 3 / 4  # frame 10 (skipped) is a miss


def _folder(path: Path, frames: list[np.ndarray], ext: str) -> Path:
    path.mkdir(parents=True)
    for i, im in enumerate(frames):
        cv2.imwrite(str(path / f"{i + 1:05d}{ext}"), im if im.ndim == 2 else cv2.cvtColor(im, cv2.COLOR_RGB2BGR))
    return path


@pytest.mark.parametrize(
    "kind, ext, notice",
    [
        ("gray16", ".png", "16-bit radiometric counts"),
        ("gray8", ".png", "8-bit grey (used as is)"),
        ("gray8-as-3-channel", ".jpg", "8-bit grey stored as 3 equal channels"),
    ],
)
def test_thermal_as_stored_is_recognised_from_the_data(tmp_path, kind, ext, notice):
    seq = SyntheticSequence(seed=5, frames=4, width=W, height=H)
    raw = [seq.frame(i).thermal16 for i in range(4)]
    tir = {
        "gray16": raw,
        "gray8": [thermal_to_8bit(t) for t in raw],
        "gray8-as-3-channel": [np.repeat(thermal_to_8bit(t)[..., None], 3, 2) for t in raw],
    }[kind]
    rgb_dir = _folder(tmp_path / "visible", [seq.frame(i).rgb for i in range(4)], ".jpg")
    tir_dir = _folder(tmp_path / "infrared", tir, ext)
    log: list[str] = []
    torch.manual_seed(0)
    tracker = Tracker(TorchBackend(CKDNet(preset("nano")).eval(), threads=1))
    opt = LoopOptions(init_box=tuple(seq.frame(0).box), overlay=False, progress=False)
    loop = DualSensorLoop(parse_uri(f"file://{rgb_dir}", "rgb"), parse_uri(f"file://{tir_dir}", "tir"), tracker,
                          tmp_path / "out", opt, log=log.append)  # fmt: skip
    report = loop.run()
    assert report["thermal"] == kind and report["frames_processed"] == 4
    assert [line for line in log if line.startswith("thermal:")] == [
        f"thermal: {notice}" + log[0].split(notice, 1)[1]
    ] and f"detected in tir frame 1 ({tir_dir}/00001{ext})" in log[0]
    copies = report["copies_per_frame"]
    assert copies["thermal_to_8bit"] == (0 if kind == "gray8" else 1)  # grey is tracked straight from the buffer


def test_thermal_of_another_size_without_a_rig_is_resized_with_one_line(tmp_path):
    seq = SyntheticSequence(seed=6, frames=3, width=W, height=H)
    rgb_dir = _folder(tmp_path / "rgb", [seq.frame(i).rgb for i in range(3)], ".jpg")
    small = [cv2.resize(thermal_to_8bit(seq.frame(i).thermal16), (W // 2, H // 2)) for i in range(3)]
    tir_dir = _folder(tmp_path / "ir", small, ".png")
    log: list[str] = []
    torch.manual_seed(0)
    tracker = Tracker(TorchBackend(CKDNet(preset("nano")).eval(), threads=1))
    opt = LoopOptions(init_box=tuple(seq.frame(0).box), overlay=False, progress=False)
    report = DualSensorLoop(parse_uri(f"file://{rgb_dir}", "rgb"), parse_uri(f"file://{tir_dir}", "tir"), tracker,
                            tmp_path / "out", opt, log=log.append).run()  # fmt: skip
    warnings = [line for line in log if line.startswith("warning:")]
    assert warnings == [
        f"warning: tir frame 1 ({tir_dir}/00001.png) is 80x60, RGB frames are 160x120, and no --rig is given: "
        "thermal frames are resized to the RGB size (boxes drift where the views differ; `ckd calibrate-rig` makes "
        "a rig file)"
    ]
    assert report["frames_processed"] == 3 and report["copies_per_frame"]["registration"] == 1


def test_replay_of_two_videos_pairs_by_timestamp_and_tracks_every_frame(tmp_path):
    seq = SyntheticSequence(seed=8, frames=20, width=W, height=H)
    paths = {"rgb": tmp_path / "rgb.avi", "tir": tmp_path / "ir.avi"}
    writers = {r: cv2.VideoWriter(str(p), cv2.VideoWriter_fourcc(*"MJPG"), 10, (W, H)) for r, p in paths.items()}
    for i in range(20):
        f = seq.frame(i)
        writers["rgb"].write(cv2.cvtColor(f.rgb, cv2.COLOR_RGB2BGR))
        writers["tir"].write(np.repeat(thermal_to_8bit(f.thermal16)[..., None], 3, 2))
    for w in writers.values():
        w.release()
    torch.manual_seed(0)
    tracker = Tracker(TorchBackend(CKDNet(preset("nano")).eval(), threads=1))
    results = tmp_path / "res.txt"
    opt = LoopOptions(init_box=tuple(seq.frame(0).box), overlay=False, progress=False, results=results)
    report = DualSensorLoop(parse_uri(f"file://{paths['rgb']}", "rgb"), parse_uri(f"file://{paths['tir']}", "tir"),
                            tracker, tmp_path / "out", opt, log=lambda s: None).run()  # fmt: skip
    f = report["frames"]
    assert report["mode"] == "replay" and f["paired_by"].startswith("timestamp (within 50 ms")
    assert f["read"] == {"rgb": 20, "tir": 20} and f["tracked"] == 20 and report["results_rows"] == 20
    assert report["thermal"] == "gray8-as-3-channel"  # decoded video: grey in 3 channels, recognised
    assert len(results.read_text().splitlines()) == 20
