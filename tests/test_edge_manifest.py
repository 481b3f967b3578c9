"""Export manifest: round trip, checksum verification, rung lookup, clear errors."""

from __future__ import annotations

import json

import pytest
from toy_export import toy_export

from ckd.errors import CKDError
from ckd.model.config import preset
from edge.manifest import MANIFEST_NAME, Manifest, Rung, sha256_file


def make_export(tmp_path, ratios=(1.0, 0.7, 0.5)) -> Manifest:
    return toy_export(tmp_path, ratios)


def test_round_trip_and_fields(tmp_path):
    saved = make_export(tmp_path)
    data = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert data["format"] == "ckd-onnx/1"
    assert data["rungs"][0] == {
        "keep_ratio": 1.0,
        "file": "ckd_k1.00.onnx",
        "sha256": sha256_file(tmp_path / "ckd_k1.00.onnx"),
        "precision": "fp32",
    }
    loaded = Manifest.load(tmp_path)
    assert loaded == saved
    assert loaded.ckd_config == preset("nano")
    assert loaded.inputs["search_rgb"] == [1, 3, 128, 128]
    assert loaded.outputs["score_map"] == [1, 1, 8, 8]
    assert loaded.keep_ratios == (0.5, 0.7, 1.0)
    assert loaded.path(loaded.rungs[1]) == tmp_path / "ckd_k0.70.onnx"
    assert not list(tmp_path.glob(".*tmp")), "atomic save left a temp file"


def test_sha256_of_known_bytes(tmp_path):
    f = tmp_path / "x"
    f.write_bytes(b"abc")
    assert sha256_file(f) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_rung_lookup(tmp_path):
    m = make_export(tmp_path)
    assert m.rung(0.7).file == "ckd_k0.70.onnx"
    assert m.rung(0.62).keep_ratio == 0.7  # nearest
    assert m.rung(0.6).keep_ratio == 0.7  # tie goes to the larger (safer) ratio
    assert m.rung(None).keep_ratio == preset("nano").ce_keep_ratio
    with pytest.raises(CKDError, match=r"keep ratio 0\.62 .*0\.50, 0\.70, 1\.00"):
        m.rung(0.62, exact=True)
    with pytest.raises(CKDError, match="no int8 rung"):
        m.rung(0.7, precision="int8")


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / MANIFEST_NAME).unlink(), "no export manifest"),
        (lambda d: (d / MANIFEST_NAME).write_text("{oops"), "bad JSON at line 1"),
        (lambda d: (d / "ckd_k0.50.onnx").unlink(), r"ckd_k0\.50\.onnx: listed in manifest\.json but missing"),
        (lambda d: (d / "ckd_k0.70.onnx").write_bytes(b"tampered"), r"ckd_k0\.70\.onnx: sha256 mismatch"),
    ],
)
def test_load_errors_name_the_file(tmp_path, damage, message):
    make_export(tmp_path)
    damage(tmp_path)
    with pytest.raises(CKDError, match=message):
        Manifest.load(tmp_path)


def test_unknown_format_and_unverified_load(tmp_path):
    make_export(tmp_path)
    (tmp_path / "ckd_k0.70.onnx").write_bytes(b"tampered")
    assert len(Manifest.load(tmp_path, verify=False).rungs) == 3
    data = json.loads((tmp_path / MANIFEST_NAME).read_text())
    data["format"] = "ckd-onnx/9"
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(data))
    with pytest.raises(CKDError, match=r"manifest\.json: unknown manifest format 'ckd-onnx/9'"):
        Manifest.load(tmp_path, verify=False)


def test_bad_rung_values_rejected():
    with pytest.raises(CKDError, match="precision 'fp8'"):
        Rung(0.7, "a.onnx", "0" * 64, "fp8")
    with pytest.raises(CKDError, match="keep ratio 1.5"):
        Rung(1.5, "a.onnx", "0" * 64)
