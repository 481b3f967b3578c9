"""Synthetic RGBT generator: determinism, modality gap, events, speed (timing), LasHeR-layout writer and `ckd synth`."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from ckd.data.readers import open_dataset
from ckd.data.synthetic import SyntheticSequence, sequence_seed, write_dataset
from ckd.data.thermal import thermal_to_8bit
from ckd_cli.main import main


def _same(a, b) -> bool:
    return (
        np.array_equal(a.rgb, b.rgb)
        and np.array_equal(a.thermal16, b.thermal16)
        and np.array_equal(a.box, b.box)
        and a.visible == b.visible
    )


def test_deterministic_random_access():
    a, b = SyntheticSequence(7, frames=30), SyntheticSequence(7, frames=30)
    late, early = b.frame(25), b.frame(3)  # out of order on b
    assert _same(a.frame(3), early) and _same(a.frame(25), late)
    assert _same(a.frame(3), a.frame(3))
    other = SyntheticSequence(8, frames=30).frame(3)
    assert not np.array_equal(other.rgb, early.rgb)
    f = a.frame(0)
    assert f.rgb.shape == (480, 640, 3) and f.rgb.dtype == np.uint8
    assert f.thermal16.shape == (480, 640) and f.thermal16.dtype == np.uint16
    assert f.box.shape == (4,) and f.box.dtype == np.float64
    with pytest.raises(IndexError):
        a.frame(30)


def _high_freq(img8: np.ndarray) -> float:
    return float(np.abs(cv2.Laplacian(img8.astype(np.float32), cv2.CV_32F)).mean())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_modality_gap_thermal_is_smooth_rgb_is_textured(seed):
    seq = SyntheticSequence(seed, frames=12)
    rgb_hf, tir_hf = [], []
    for i in range(12):
        f = seq.frame(i)
        rgb_hf.append(_high_freq(cv2.cvtColor(f.rgb, cv2.COLOR_RGB2GRAY)))
        tir_hf.append(_high_freq(thermal_to_8bit(f.thermal16)))
    assert np.mean(rgb_hf) > 2.5 * np.mean(tir_hf)  # measured 3.4x..12x over seeds 0..4


def _clear_view(seq: SyntheticSequence, i: int) -> bool:
    """The whole box is inside the image and clear of the occluding pillar."""
    x, y, w, h = seq.boxes[i]
    inside = x >= 0 and y >= 0 and x + w <= seq.width and y + h <= seq.height
    return inside and (x + w <= seq.pillar_x or x >= seq.pillar_x + seq.pillar_w)


def _target_heat(seq: SyntheticSequence, i: int) -> float:
    """Target centre minus the ambient background at the same place (counts)."""
    f = seq.frame(i)
    x, y, w, h = f.box.astype(int)
    sl = np.s_[y + h // 3 : y + 2 * h // 3, x + w // 3 : x + 2 * w // 3]
    return float(f.thermal16[sl].astype(np.float64).mean() - seq.ambient[sl].mean())


def test_target_is_warm_and_crossover_cools_it_to_background():
    found = False
    for seed in range(1, 12, 2):
        seq = SyntheticSequence(seed, frames=100, crossover=True)
        first, last = seq.crossover_frames
        inside = [i for i in range(first, last + 1) if _clear_view(seq, i)]
        outside = [i for i in range(0, first - 10) if _clear_view(seq, i)]
        if len(inside) < 3 or len(outside) < 3:
            continue
        found = True
        assert np.median([_target_heat(seq, i) for i in outside]) > 200
        assert abs(np.median([_target_heat(seq, i) for i in inside])) < 40
    assert found
    plain = SyntheticSequence(0, frames=100)
    assert plain.crossover_frames is None
    assert np.median([_target_heat(plain, i) for i in range(100) if _clear_view(plain, i)]) > 200


@pytest.mark.parametrize("seed", range(6))
def test_occlusion_and_out_of_view_frames(seed):
    seq = SyntheticSequence(seed, frames=100)
    assert seq.visible[0]
    b, W, H = seq.boxes, seq.width, seq.height
    outside = (b[:, 0] + b[:, 2] <= 0) | (b[:, 0] >= W) | (b[:, 1] + b[:, 3] <= 0) | (b[:, 1] >= H)
    hidden = ~seq.visible & ~outside
    assert outside.any() and hidden.any()
    assert not seq.visible[outside].any()
    assert 0.03 < (~seq.visible).mean() < 0.35
    sizes = b[:, 2] * b[:, 3]
    assert sizes.max() / sizes.min() > 1.3  # scale change
    assert np.abs(np.diff(b[:, :2], axis=0)).sum() > W  # it moves


@pytest.mark.timing
def test_frame_is_fast():
    seq = SyntheticSequence(3, frames=50)
    seq.frame(0)
    times = []
    for i in range(1, 21):
        t0 = time.perf_counter()
        seq.frame(i)
        times.append(time.perf_counter() - t0)
    assert np.median(times) < 0.010  # ~1.7 ms measured on one core; loose for a shared machine


def _blur(img: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(img.astype(np.float32), (0, 0), 2.0)


def test_write_dataset_reads_back_as_lasher(tmp_path):
    names = write_dataset(tmp_path, sequences=2, frames=12, seed=5, width=160, height=128)
    assert names == ["synth_000", "synth_001"]
    assert sorted(p.name for p in tmp_path.iterdir()) == names  # no temp folders left behind
    seqs = open_dataset("lasher", tmp_path)
    assert [s.name for s in seqs] == names
    for j, seq in enumerate(seqs):
        gen = SyntheticSequence(sequence_seed(5, j), 12, 160, 128, crossover=bool(j))
        assert len(seq) == 12
        for i in range(12):
            f = gen.frame(i)
            if f.visible:
                np.testing.assert_allclose(seq.gt[i], f.box)
            else:
                assert np.isnan(seq.gt[i]).all()
            rgb, tir = seq.load(i)
            assert rgb.shape == (128, 160, 3) and tir.shape == (128, 160)  # thermal written as 8-bit grey
            # JPEG loses texture at this size; blurred, only the compression error is left (~1 level, BGR: >10).
            assert np.abs(_blur(rgb) - _blur(f.rgb)).mean() < 3
            assert np.abs(_blur(tir) - _blur(thermal_to_8bit(f.thermal16))).mean() < 3
        assert 0 < np.isnan(seq.gt[:, 0]).sum() < 12  # absent rows (0,0,0,0 in the file) really written
        for name in ("init.txt", "visible.txt", "infrared.txt"):
            assert (tmp_path / seq.name / name).is_file()


def test_cli_synth_refuses_non_empty_out_unless_forced(tmp_path, capsys):
    out = tmp_path / "ds"
    argv = ["synth", "--out", str(out), "--sequences", "1", "--frames", "3", "--width", "96", "--height", "80"]
    assert main(argv) == 0
    first = (out / "synth_000" / "visible" / "v000002.jpg").read_bytes()
    assert main(argv) == 2
    assert "not empty" in capsys.readouterr().err
    assert main([*argv, "--force"]) == 0
    assert (out / "synth_000" / "visible" / "v000002.jpg").read_bytes() == first  # same seed, same bytes
    assert main(["synth", "--out", str(tmp_path / "x"), "--width", "32"]) == 2
    with pytest.raises(SystemExit):
        main(["synth", "--out", str(tmp_path / "y"), "--frames", "0"])
