"""Thermal -> RGB registration: homography estimation, `ckd calibrate-rig`, warping into a fixed buffer."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ckd.errors import CKDError
from ckd_cli.main import main
from pipelines.registration import Registrar, RigCalibration, estimate

# A thermal camera (320x256) seeing the RGB scene (640x480) scaled x1.8, shifted and slightly rotated.
TRUE_H = np.array(
    [[1.8 * np.cos(0.02), -1.8 * np.sin(0.02), 40.0], [1.8 * np.sin(0.02), 1.8 * np.cos(0.02), 10.0], [0, 0, 1]]
)


def _pairs(n: int, noise: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    tir = rng.uniform([10, 10], [310, 246], size=(n, 2))
    rgb = cv2.perspectiveTransform(tir.reshape(-1, 1, 2), TRUE_H).reshape(-1, 2) + rng.normal(0, noise, (n, 2))
    return tir, rgb


def test_estimate_recovers_the_homography_and_rejects_an_outlier():
    tir, rgb = _pairs(20, noise=0.3)
    rgb[3] += 80.0  # one wrong click
    h, rms = estimate(tir, rgb)
    assert np.allclose(h / h[2, 2], TRUE_H, atol=0.02 * np.abs(TRUE_H).max())
    assert rms > 10  # the outlier stays in the RMS...
    inliers = np.delete(np.arange(20), 3)
    proj = cv2.perspectiveTransform(tir[inliers].reshape(-1, 1, 2), h).reshape(-1, 2)
    assert np.abs(proj - rgb[inliers]).max() < 1.5  # ...but does not bend the fit
    with pytest.raises(CKDError, match="at least 4"):
        estimate(tir[:3], rgb[:3])


def test_calibrate_rig_cli_and_warp_into_preallocated_buffer(tmp_path, capsys):
    tir, rgb = _pairs(12, noise=0.2, seed=1)
    pts = tmp_path / "pairs.txt"
    pts.write_text("\r\n".join(f"{a:.3f}\t{b:.3f}, {c:.3f} {d:.3f}" for (a, b), (c, d) in zip(tir, rgb, strict=True)))
    out = tmp_path / "rig.json"
    assert (
        main(
            ["calibrate-rig", "--points", str(pts), "--rgb-size", "640x480", "--tir-size", "320x256", "--out", str(out)]
        )
        == 0
    )
    assert "12 point pairs" in capsys.readouterr().out
    cal = RigCalibration.load(out)
    assert cal.rgb_size == (640, 480) and cal.points == 12 and cal.rms_px < 1.0
    reg = Registrar((640, 480), cal)
    frame = np.zeros((256, 320), np.uint8)
    frame[100:120, 150:170] = 255  # a hot square at thermal (150..170, 100..120)
    addr = reg.out.ctypes.data
    for _ in range(3):
        warped = reg(frame)
    assert warped.ctypes.data == addr and reg.writes == 3  # same buffer every frame
    ys, xs = np.nonzero(warped > 128)
    centre = cv2.perspectiveTransform(np.array([[[159.5, 109.5]]]), TRUE_H)[0, 0]
    assert abs(xs.mean() - centre[0]) < 2 and abs(ys.mean() - centre[1]) < 2


def test_without_calibration_resize_or_pass_through():
    reg = Registrar((64, 48))
    assert reg.warning and "no rig calibration" in reg.warning
    same = np.full((48, 64), 7, np.uint8)
    assert reg(same) is same and reg.writes == 0  # aligned: no copy
    small = np.full((24, 32), 9, np.uint8)
    assert reg(small) is reg.out and (reg.out == 9).all() and reg.writes == 1


def test_bad_calibration_files_are_named(tmp_path):
    bad = tmp_path / "rig.json"
    bad.write_text('{"homography": [[1, 0], [0, 1]], "rgb_size": [640, 480], "tir_size": [320, 256]}')
    with pytest.raises(CKDError, match="rig.json: homography must be an invertible 3x3"):
        RigCalibration.load(bad)
    bad.write_text("not json")
    with pytest.raises(CKDError, match="rig.json: not a rig calibration"):
        RigCalibration.load(bad)
    cal = RigCalibration(np.eye(3), (640, 480), (320, 256))
    with pytest.raises(CKDError, match="640x480 RGB camera, but the RGB source delivers 320x240"):
        Registrar((320, 240), cal)
    assert (
        main(["calibrate-rig", "--points", str(tmp_path / "missing.txt"), "--rgb-size", "1x1", "--tir-size", "1x1"])
        == 2
    )
