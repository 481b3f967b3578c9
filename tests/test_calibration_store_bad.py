"""Calibration sets that must not pass: every fault ends in one CKDError naming the file and the problem."""

from __future__ import annotations

import json

import numpy as np
import pytest
from toy_export import toy_export

from calibration.store import load_calibration, write_calibration
from ckd.errors import CKDError
from ckd.model.checkpoint import file_sha256
from ckd_cli.main import main

MODEL = {"name": "nano", "checkpoint_sha256": "0" * 64}


def crops(n: int = 6) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    shapes = {"template_rgb": 64, "template_tir": 64, "search_rgb": 128, "search_tir": 128}
    return {k: rng.standard_normal((n, 3, s, s)).astype(np.float32) for k, s in shapes.items()}


@pytest.fixture
def cal_dir(tmp_path):
    write_calibration(tmp_path / "cal", crops(), "synthetic", 0, MODEL, shard_size=4)
    return tmp_path / "cal"


def edit_manifest(cal_dir, change) -> None:
    path = cal_dir / "calibration.json"
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def replace_shard(cal_dir, arrays: dict, name: str = "shard_0000.npz", raw: bytes | None = None) -> None:
    """Rewrite a shard and update its sha256 in the manifest (the hash check alone cannot catch it)."""
    path = cal_dir / name
    if raw is None:
        np.savez(path, **arrays)
    else:
        path.write_bytes(raw)

    def fix(doc):
        next(s for s in doc["shards"] if s["file"] == name)["sha256"] = file_sha256(path)

    edit_manifest(cal_dir, fix)


def good(n: int = 4) -> dict[str, np.ndarray]:
    return crops(n)


MANIFEST_FAULTS = [
    (lambda d: d["shards"][0].update(file="../shard_0000.npz"), "path separator"),
    (lambda d: d["shards"][0].update(file="/etc/passwd"), "path separator"),
    (lambda d: d["shards"][1].update(file=d["shards"][0]["file"]), "listed twice"),
    (lambda d: d["shards"][0].update(file=["shard_0000.npz"]), "is not a non-empty string"),
    (lambda d: d.update(model={}), "names no checkpoint_sha256"),
    (lambda d: d["model"].update(checkpoint_sha256=""), "names no checkpoint_sha256"),
    (lambda d: d.update(count=5), "inconsistent"),
    (lambda d: d.update(shards=[]), "empty or inconsistent"),
    (lambda d: d["inputs"].update(search_rgb=[3, 128, 128]), r"search_rgb has shape \[3, 128, 128\]"),
    (lambda d: d["shards"][0].update(sha256="not-a-hash"), "sha256 'not-a-hash"),
    (lambda d: (d["shards"][0].update(count=0), d["shards"][1].update(count=6)), "count 0"),
    (lambda d: d.pop("seed"), "malformed calibration manifest"),
    (lambda d: d.update(count=float("inf")), r"malformed calibration manifest \(OverflowError"),  # json: Infinity
    (lambda d: d["shards"][0].update(count=float("-inf")), r"malformed calibration manifest \(OverflowError"),
    (lambda d: d.update(format="ckd-calib/9"), "unknown format"),
]


@pytest.mark.parametrize("change, message", MANIFEST_FAULTS)
def test_bad_manifest_fields(cal_dir, change, message):
    edit_manifest(cal_dir, change)
    with pytest.raises(CKDError, match=message):
        load_calibration(cal_dir)


def test_manifest_that_is_not_an_object_or_not_text(cal_dir):
    (cal_dir / "calibration.json").write_text("[1, 2]")
    with pytest.raises(CKDError, match="calibration.json: unknown format"):
        load_calibration(cal_dir)
    (cal_dir / "calibration.json").write_bytes(b"\xff\xfe{")
    with pytest.raises(CKDError, match="malformed calibration manifest"):
        load_calibration(cal_dir)


def test_shard_that_is_a_link_or_fifo(cal_dir, tmp_path):
    import os

    shard = cal_dir / "shard_0000.npz"
    shard.rename(tmp_path / "elsewhere.npz")
    shard.symlink_to(tmp_path / "elsewhere.npz")
    with pytest.raises(CKDError, match="shard_0000.npz: listed in calibration.json but is a symlink"):
        load_calibration(cal_dir)
    shard.unlink()
    os.mkfifo(shard)
    with pytest.raises(CKDError, match="shard_0000.npz: listed in calibration.json but is a FIFO"):
        load_calibration(cal_dir)


@pytest.mark.parametrize(
    "arrays, raw, message",
    [
        (None, b"PK\x03\x04 truncated", "not a readable .npz"),
        (None, b"plain text, not a zip", "not a readable .npz"),
        (
            {**good(), "search_rgb": good()["search_rgb"][:, :, :64, :64]},
            None,
            r"search_rgb is float32 \(4, 3, 64, 64\)",
        ),
        ({**good(), "template_rgb": good()["template_rgb"].astype(np.float64)}, None, "template_rgb is float64"),
        ({**good(3)}, None, r"expected float32 \(4, 3, 64, 64\)"),  # fewer samples than the manifest says
        ({k: v for k, v in good().items() if k != "template_tir"}, None, "no template_tir array"),
    ],
)
def test_corrupt_or_wrongly_shaped_shards_with_updated_hash(cal_dir, arrays, raw, message):
    replace_shard(cal_dir, arrays, raw=raw)
    with pytest.raises(CKDError, match=f"shard_0000.npz: .*{message}"):
        load_calibration(cal_dir)


def test_values_are_checked_when_read(cal_dir):
    bad = good()
    bad["search_tir"][1, 0, 5, 5] = np.nan
    replace_shard(cal_dir, bad)
    cal = load_calibration(cal_dir)  # headers are fine
    with pytest.raises(CKDError, match="shard_0000.npz: search_tir holds NaN"):
        list(cal.batches())


def test_other_model_is_refused_always(cal_dir):
    cal = load_calibration(cal_dir)
    with pytest.raises(CKDError, match="made with model 0000"):
        cal.check_model(cal.inputs, "f" * 64)
    cal.check_model(cal.inputs, "0" * 64)  # its own model passes


def test_quantize_cli_ends_in_one_line(cal_dir, tmp_path, capsys):
    toy_export(tmp_path / "onnx", ratios=(0.7,))
    edit_manifest(cal_dir, lambda d: d.update(model={"name": "nano"}))
    argv = ["quantize", "--onnx", str(tmp_path / "onnx"), "--calib", str(cal_dir), "--out", str(tmp_path / "q")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ckd quantize: error: ") and "checkpoint_sha256" in err[0]
    assert not (tmp_path / "q" / "manifest.json").exists()
