"""`ckd track` end to end: a tiny model tracks synthetic sequences and writes valid result files."""

from __future__ import annotations

import json

import numpy as np
import torch

from ckd.data.boxes import read_boxes
from ckd.data.readers import open_dataset
from ckd.data.synthetic import write_dataset
from ckd.model.checkpoint import save_model
from ckd.model.config import preset
from ckd.model.network import CKDNet
from ckd_cli.main import main


def test_track_synthetic_end_to_end(tmp_path, capsys):
    data = tmp_path / "synth"
    names = write_dataset(data, sequences=2, frames=12, seed=5, width=320, height=240)
    torch.manual_seed(0)
    ckpt = save_model(CKDNet(preset("nano")), tmp_path / "nano")
    out = tmp_path / "results"
    argv = ["track", "--benchmark", "lasher", "--data-root", str(data), "--checkpoint", str(ckpt), "--out", str(out)]
    assert main(argv) == 0
    assert "FPS" in capsys.readouterr().out
    sequences = {s.name: s for s in open_dataset("lasher", data)}
    for name in names:
        boxes = read_boxes(out / f"{name}.txt")
        assert boxes.shape == (12, 4) and np.isfinite(boxes).all()
        # first row is the ground truth, written 1-based
        np.testing.assert_allclose(boxes[0], sequences[name].gt[0] + [1, 1, 0, 0], atol=1e-3)
        assert (boxes[1:, 2:] >= 10).all()  # clipped with the official 10 px margin
        assert (boxes[:, 0] >= 1).all() and (boxes[:, 0] + boxes[:, 2] <= 321 + 1e-6).all()
    assert not list(out.glob(".*"))  # no temp files left behind

    # a second run skips finished sequences; the results feed `ckd eval`
    assert main(argv) == 0
    assert "already have results" in capsys.readouterr().out
    assert main(["eval", "--benchmark", "lasher", "--gt", str(data), "--results", str(out), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)["results"]
    assert scores["sequences"] == 2 and 0.0 <= scores["SR"] <= 1.0


def test_track_bad_input(tmp_path, capsys):
    rc = main(
        [
            "track",
            "--benchmark",
            "lasher",
            "--data-root",
            str(tmp_path / "none"),
            "--out",
            str(tmp_path / "o"),
            "--checkpoint",
            str(tmp_path / "missing.safetensors"),
        ]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.safetensors" in err
