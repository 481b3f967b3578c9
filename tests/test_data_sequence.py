"""Sequences on disk: thermal as datasets store it, frames paired by number, unusable frames counted per sensor,
and `ckd track` / `ckd calibrate` going on past them."""

from __future__ import annotations

import json
import logging

import cv2
import numpy as np
import pytest
import torch

import ckd.data.clip as clip_module
from ckd.data.boxes import read_boxes, to_one_based, write_boxes
from ckd.data.clip import FrameError
from ckd.data.readers import open_dataset, read_sequence
from ckd.data.sequence import frame_number, read_frame
from ckd.data.synthetic import SyntheticSequence
from ckd.data.thermal import thermal_to_8bit
from ckd.model.checkpoint import save_model
from ckd.model.config import preset
from ckd.model.network import CKDNet
from ckd_cli.main import main

W, H, N = 160, 128, 10
# How each sequence stores its thermal frames: file suffix and the stored pixels of a 16-bit frame.
STORAGE = {
    "gray16_png": (".png", lambda t16: t16),
    "gray16_tiff": (".tiff", lambda t16: t16),
    "gray8_png": (".png", thermal_to_8bit),
    "gray8x3_jpg": (".jpg", lambda t16: cv2.merge([thermal_to_8bit(t16)] * 3)),
}


def _write(root, name: str, seed: int):
    suffix, store = STORAGE[name]
    seq = SyntheticSequence(seed, frames=N, width=W, height=H)
    (root / name / "visible").mkdir(parents=True)
    (root / name / "infrared").mkdir()
    for i in range(N):
        f = seq.frame(i)
        cv2.imwrite(str(root / name / "visible" / f"v{i:06d}.jpg"), cv2.cvtColor(f.rgb, cv2.COLOR_RGB2BGR))
        assert cv2.imwrite(str(root / name / "infrared" / f"i{i:06d}{suffix}"), store(f.thermal16))
    write_boxes(root / name / "init.txt", to_one_based(seq.boxes), fmt="%g")
    return seq


@pytest.fixture()
def dataset(tmp_path):
    """Four LasHeR-layout sequences, one per thermal storage; `gray8x3_jpg` gets one bad frame of each kind."""
    gen = {name: _write(tmp_path, name, seed) for seed, name in enumerate(STORAGE)}
    bad = tmp_path / "gray8x3_jpg"
    (bad / "visible" / "v000003.jpg").write_bytes(b"")  # empty
    (bad / "infrared" / "i000005.jpg").unlink()  # missing
    data = (bad / "infrared" / "i000007.jpg").read_bytes()
    (bad / "infrared" / "i000007.jpg").write_bytes(data[: len(data) // 2])  # truncated
    (bad / "visible" / "v000008.jpg").write_bytes(b"\xff\xd8 not a jpeg at all \xff\xd9")  # corrupt
    return tmp_path, gen


def test_frame_numbers_from_names():
    names = {"v000012.jpg": 12, "00012i.jpg": 12, "frame_3_v7.png": 7, "010001.jpg": 10001, "thumbs.jpg": None}
    assert {n: frame_number(n) for n in names} == names


def test_thermal_read_as_stored_and_mapped_once(dataset, monkeypatch, caplog):
    root, gen = dataset
    monkeypatch.setattr(clip_module, "_announced", set())
    seqs = {s.name: s for s in open_dataset("lasher", root)}
    with caplog.at_level(logging.INFO, logger="ckd"):
        for name, seq in seqs.items():
            if name == "gray8x3_jpg":
                continue
            for i in (0, 6):
                want = thermal_to_8bit(gen[name].frame(i).thermal16)
                rgb, tir = seq.load(i)
                assert rgb.shape == (H, W, 3) and tir.shape == (H, W) and tir.dtype == np.uint8
                np.testing.assert_array_equal(tir, want)  # lossless storage: exactly the one mapping
        stored = seqs["gray8x3_jpg"].read(6)[1]
        assert stored.shape == (H, W, 3)
        tir = seqs["gray8x3_jpg"].load(6)[1]
        assert np.abs(tir.astype(int) - thermal_to_8bit(gen["gray8x3_jpg"].frame(6).thermal16)).mean() < 3
    assert read_frame(root / "gray16_tiff" / "infrared" / "i000000.tiff", "thermal").dtype == np.uint16
    notices = [r.getMessage() for r in caplog.records if r.name == "ckd.data.clip"]
    assert notices == [
        "thermal: 16-bit radiometric counts (per-frame 1-99 % percentile stretch to 8 bits) (detected in gray16_png)",
        "thermal: 8-bit grey (used as is) (detected in gray8_png)",
        "thermal: 8-bit grey stored as 3 equal channels (first channel used) (detected in gray8x3_jpg)",
    ]


def test_bad_frames_pair_by_number_and_are_counted_per_sensor(dataset, caplog):
    root, gen = dataset
    seq = read_sequence("lasher", root / "gray8x3_jpg")
    assert len(seq) == N and seq.tir_frames[5] is None  # the hole stays at its own number
    assert "gray8x3_jpg: frames 0..9, frames missing: 1 in infrared/ (pairs go by frame number)" in caplog.text
    caplog.clear()
    reasons = {}
    with caplog.at_level(logging.WARNING, logger="ckd"):
        for i in range(N):
            try:
                rgb, tir = seq.load(i)
            except FrameError as exc:
                reasons[i] = (exc.sensor, exc.reason)
                continue
            want = thermal_to_8bit(gen["gray8x3_jpg"].frame(i).thermal16)
            assert np.abs(tir.astype(int) - want).mean() < 3, i  # frame i pairs with thermal i, never shifted
    assert reasons == {3: ("rgb", "empty"), 5: ("thermal", "missing"), 7: ("thermal", "corrupt"), 8: ("rgb", "corrupt")}
    assert seq.problems == {"rgb": {3: "empty", 8: "corrupt"}, "thermal": {5: "missing", 7: "corrupt"}}
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 4
    assert "v000003.jpg is empty (0 bytes)" in lines[0] and "infrared/ has no frame number 5" in lines[1]
    assert "i000007.jpg is truncated" in lines[2] and "v000008.jpg is not a readable image" in lines[3]
    with pytest.raises(FrameError):
        seq.load(3)  # again: same error, not reported twice
    assert len(caplog.records) == 4
    assert seq.problem_summary() == "gray8x3_jpg: unusable frames: rgb 1 empty, 1 corrupt; thermal 1 missing, 1 corrupt"


@pytest.fixture(scope="module")
def nano_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    return save_model(CKDNet(preset("nano")), tmp_path_factory.mktemp("nano") / "nano")


def test_track_goes_on_past_bad_frames(dataset, nano_checkpoint, capsys):
    root, _ = dataset
    (root / "gray16_png" / "visible" / "v000000.jpg").write_bytes(b"")  # no first frame: sequence skipped
    small = cv2.imread(str(root / "gray8_png" / "infrared" / "i000000.png"), cv2.IMREAD_UNCHANGED)[::2, ::2]
    cv2.imwrite(str(root / "gray8_png" / "infrared" / "i000000.png"), small)  # sizes differ: sequence skipped
    out = root.parent / "results"
    argv = ["track", "--benchmark", "lasher", "--data-root", str(root), "--checkpoint", str(nano_checkpoint)]
    assert main([*argv, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "gray16_png: skipped, its first frame pair cannot be read" in err
    assert "gray8_png: skipped, rgb frame 160x128 and thermal frame 80x64 differ in size" in err
    assert "v000003.jpg is empty (0 bytes)" in err and "infrared/ has no frame number 5" in err
    assert "gray8x3_jpg: unusable frames: rgb 1 empty, 1 corrupt; thermal 1 missing, 1 corrupt" in err
    assert sorted(p.name for p in out.iterdir()) == ["gray16_tiff.txt", "gray8x3_jpg.txt"]
    boxes = read_boxes(out / "gray8x3_jpg.txt")
    assert boxes.shape == (N, 4) and np.isfinite(boxes).all()
    bad = np.isin(np.arange(N), [3, 5, 7, 8])
    assert (boxes[bad] == 0).all() and (boxes[~bad, 2:] > 0).all()  # unusable frame: 0,0,0,0, not tracked


def test_calibrate_goes_on_past_bad_frames(dataset, nano_checkpoint, capsys):
    root, _ = dataset
    out = root.parent / "calib"
    argv = ["calibrate", "--model", str(nano_checkpoint), "--benchmark", "lasher", "--data", str(root)]
    assert main([*argv, "--out", str(out), "--frames", "40", "--every", "1"]) == 0
    captured = capsys.readouterr()
    assert "i000007.jpg is truncated" in captured.err and "only 32 of the 40" in captured.out
    summary = "gray8x3_jpg: unusable frames: rgb 1 empty, 1 corrupt; thermal 1 missing, 1 corrupt (skipped)"
    assert summary in captured.err
    # 4 sequences x 9 updates, minus the 4 unusable frames of one of them
    assert json.loads((out / "calibration.json").read_text())["count"] == 32
