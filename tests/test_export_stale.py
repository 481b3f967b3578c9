"""A re-export leaves nothing of the old export behind: rungs, calibration cache, reference outputs, manifest."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from toy_export import edit_manifest, toy_export

from ckd.errors import CKDError
from ckd.model.config import preset
from ckd.model.network import CKDNet
from edge.export import export_rungs
from edge.manifest import MANIFEST_NAME, Manifest, sha256_file


def old_export(folder):
    """An earlier export with other rungs, a listed calibration cache, reference outputs and a user's note."""
    toy_export(folder, ratios=(1.0, 0.5), int8=True)
    (folder / "calib.cache").write_bytes(b"TRT-8601-EntropyCalibration2\n")
    digest = sha256_file(folder / "calib.cache")
    edit_manifest(folder, lambda d: d.update(calibration={"cache": "calib.cache", "cache_sha256": digest}))
    np.savez(folder / "reference.npz", x=np.zeros(1))
    (folder / "notes.txt").write_text("mine\n")


def test_reexport_removes_what_the_old_export_wrote(tmp_path):
    old_export(tmp_path)
    torch.manual_seed(0)
    manifest, _ = export_rungs(CKDNet(preset("nano")).eval(), tmp_path, [0.7], "random:nano:0", verify=False)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([MANIFEST_NAME, "ckd_k0.70.onnx", "notes.txt"])
    assert Manifest.load(tmp_path).files().keys() == {"ckd_k0.70.onnx"} and manifest.calibration is None


def test_failed_reexport_leaves_no_manifest_to_accept(tmp_path):
    old_export(tmp_path)
    edit_manifest(tmp_path, lambda d: d.update(rungs="broken"))  # even an unreadable old manifest goes
    torch.manual_seed(0)
    model = CKDNet(preset("nano")).eval()
    model.forward = None  # the export itself fails after the old files are gone
    with pytest.raises(Exception):  # noqa: B017 - torch's own error; what matters is what is left
        export_rungs(model, tmp_path, [0.7], "random:nano:0", verify=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calib.cache", "notes.txt"]  # unlisted now: harmless
    with pytest.raises(CKDError, match="no export manifest"):
        Manifest.load(tmp_path)
