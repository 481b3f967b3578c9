"""Calibration sets: tracker-in-the-loop crops, shards + manifest, verification, readers for the quantizers."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from calibration.readers import TrtBatchStream, modelopt_arrays, ort_reader
from calibration.sampler import sample_crops
from calibration.sources import Clip, pair_clips, synthetic_clips
from calibration.store import load_calibration, write_calibration
from ckd.errors import CKDError
from ckd.model.config import preset
from ckd.model.network import CKDNet
from ckd.track.torch_backend import TorchBackend
from ckd_cli.main import main

MODEL = {"name": "nano", "checkpoint_sha256": "random:nano:0"}


@pytest.fixture(scope="module")
def backend():
    torch.manual_seed(0)
    return TorchBackend(CKDNet(preset("nano")).eval(), threads=1)


@pytest.fixture(scope="module")
def crops(backend):
    return sample_crops(backend, synthetic_clips(2, 12, seed=3), 16, every=1)


def test_crops_are_what_the_tracker_feeds(crops, backend):
    assert crops["template_rgb"].shape == (16, 3, 64, 64)
    assert crops["search_tir"].shape == (16, 3, 128, 128)
    # The template is cropped once at init: identical for every sample of a clip (11 updates per 12-frame clip).
    assert np.array_equal(crops["template_rgb"][0], crops["template_rgb"][10])
    assert not np.array_equal(crops["template_rgb"][0], crops["template_rgb"][11])  # second clip
    # Search crops follow the target frame by frame, in both modalities, normalised like ImageNet inputs.
    assert not np.array_equal(crops["search_rgb"][0], crops["search_rgb"][1])
    for k in ("search_rgb", "search_tir"):
        assert crops[k].std() > 0.2 and -3.0 < crops[k].mean() < 3.0
    assert not np.allclose(crops["search_rgb"], crops["search_tir"])


def test_store_roundtrip_and_readers(crops, tmp_path):
    cal = write_calibration(tmp_path, crops, "synthetic", 3, MODEL, shard_size=6)
    assert [s["count"] for s in cal.shards] == [6, 6, 4]
    loaded = load_calibration(tmp_path)
    assert loaded.count == 16 and loaded.inputs["search_rgb"] == [1, 3, 128, 128]
    stacked = modelopt_arrays(loaded)
    np.testing.assert_array_equal(stacked["search_tir"], crops["search_tir"])
    reader = ort_reader(loaded)
    first = reader.get_next()
    n = 1 + sum(1 for _ in iter(reader.get_next, None))
    assert n == 16 and first["template_tir"].shape == (1, 3, 64, 64)
    reader.rewind()
    np.testing.assert_array_equal(reader.get_next()["search_rgb"], first["search_rgb"])
    stream = TrtBatchStream(loaded, batch_size=4)
    batches = []
    while (b := stream.next_batch()) is not None:
        batches.append(b["search_rgb"].copy())
    assert len(batches) == len(stream) == 4 and batches[0].shape == (4, 3, 128, 128)
    assert all(b["search_rgb"].flags.c_contiguous for b in [stream._buffers])
    np.testing.assert_array_equal(batches[1], crops["search_rgb"][4:8])


def test_bad_sets_are_refused(crops, tmp_path):
    with pytest.raises(CKDError, match="no calibration.json"):
        load_calibration(tmp_path)  # empty folder
    write_calibration(tmp_path, crops, "synthetic", 3, MODEL, shard_size=8)
    cal = load_calibration(tmp_path)
    with pytest.raises(CKDError, match="made for inputs"):
        cal.check_model({**cal.inputs, "search_rgb": [1, 3, 256, 256]})
    with pytest.raises(CKDError, match="made with model random:nano:0"):
        cal.check_model(cal.inputs, "0123abcd" * 8)
    shard = tmp_path / "shard_0001.npz"
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(CKDError, match="shard_0001.npz: sha256 does not match"):
        load_calibration(tmp_path)
    with pytest.raises(CKDError, match="no calibration crops"):
        write_calibration(tmp_path / "none", {}, "synthetic", 3, MODEL)
    assert not (tmp_path / "none" / "calibration.json").exists()


def _write_pairs(root, n=3):
    rng = np.random.default_rng(0)
    for sub in ("Test_vi", "Test_ir"):
        (root / sub).mkdir(parents=True)
    for i in range(n):
        cv2.imwrite(str(root / "Test_vi" / f"{i}.png"), rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))
        cv2.imwrite(str(root / "Test_ir" / f"{i}.png"), rng.integers(0, 255, (96, 128), dtype=np.uint8))


def test_image_pairs_folder(tmp_path, backend):
    _write_pairs(tmp_path)
    clips = pair_clips(tmp_path)
    assert [c.name for c in clips] == ["Test_vi/0", "Test_vi/1", "Test_vi/2"]
    np.testing.assert_allclose(clips[0].init_box, [48, 36, 32, 24])
    crops = sample_crops(backend, clips, 10)
    assert crops["search_rgb"].shape[0] == 3  # one search crop per pair
    (tmp_path / "Test_ir" / "0.png").unlink()
    assert len(pair_clips(tmp_path)) == 2  # unmatched names are skipped
    (tmp_path / "Test_vi" / "1.png").write_bytes(b"")  # unreadable visible image: the pair is left out
    data = (tmp_path / "Test_ir" / "2.png").read_bytes()
    (tmp_path / "Test_ir" / "2.png").write_bytes(data[: len(data) // 2])  # truncated thermal: skipped when sampled
    (clip,) = pair_clips(tmp_path)
    assert sample_crops(backend, [clip], 10) == {}
    assert clip.problem_summary() == "Test_vi/2: unusable frames: thermal 1 corrupt"
    (tmp_path / "other").mkdir()
    with pytest.raises(CKDError, match="no visible/infrared image pairs"):
        pair_clips(tmp_path / "other")


def test_clips_whose_rgb_and_thermal_differ_in_size_are_skipped_and_counted(tmp_path, backend, caplog):
    _write_pairs(tmp_path)
    small = np.random.default_rng(1).integers(0, 255, (48, 64), dtype=np.uint8)
    for i in (0, 1):
        cv2.imwrite(str(tmp_path / "Test_ir" / f"{i}.png"), small)  # thermal half the size of the visible image
    with caplog.at_level("WARNING", logger="calibration.sampler"):
        crops = sample_crops(backend, pair_clips(tmp_path), 10)
    assert crops["search_rgb"].shape[0] == 1  # the one usable pair
    (line,) = [r.getMessage() for r in caplog.records if r.name == "calibration.sampler"]
    assert line.startswith("skipped 2 clip(s) the tracker cannot start on (first: Test_vi/0: rgb frame 128x96 and")
    assert "\n" not in line


def test_llvip_pairs(shared_dir, backend):
    clips = pair_clips(shared_dir / "data" / "llvip_pairs")
    assert len(clips) >= 40
    crops = sample_crops(backend, clips[:3], 3)
    assert crops["search_tir"].std() > 0.1


def test_cli_calibrate(tmp_path, capsys):
    out = tmp_path / "cal"
    rc = main(["export", "--preset", "nano", "--out", str(tmp_path / "onnx"), "--keep-ratios", "0.7", "--no-verify"])
    assert rc == 0
    args = ["calibrate", "--model", str(tmp_path / "onnx"), "--out", str(out), "--frames", "8"]
    assert main([*args, "--sequences", "1", "--length", "20"]) == 0
    meta = json.loads((out / "calibration.json").read_text())
    assert meta["count"] == 8 and meta["model"]["checkpoint_sha256"] == "random:nano:0"
    (tmp_path / "empty").mkdir()
    bad = ["calibrate", "--model", str(tmp_path / "onnx"), "--benchmark", "pairs", "--data", str(tmp_path / "empty")]
    assert main([*bad, "--out", str(tmp_path / "bad")]) == 2
    assert "no visible/infrared image pairs" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_clip_protocol_is_plain_data():
    frame = np.zeros((64, 64, 3), np.uint8)
    clip = Clip("c", 2, lambda i: (frame, frame[..., 0]), np.array([10.0, 10, 20, 20]))
    assert clip.load(1)[1].shape == (64, 64)
