"""`ckd forward` (parity tool) and `ckd --help`."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from ckd.model.checkpoint import save_model
from ckd.model.config import preset
from ckd.model.network import CKDNet
from ckd_cli.main import main


def test_help_lists_commands():
    out = subprocess.run([sys.executable, "-m", "ckd_cli.main", "--help"], capture_output=True, text=True, check=True)
    for cmd in ("forward", "track"):
        assert cmd in out.stdout


def test_forward_matches_torch_and_reports_errors(tmp_path, capsys):
    torch.manual_seed(0)
    model = CKDNet(preset("nano")).eval()
    ckpt = save_model(model, tmp_path / "nano")
    rng = np.random.default_rng(0)
    arrays = {
        "template_rgb": rng.standard_normal((1, 3, 64, 64), dtype=np.float32),
        "template_tir": rng.standard_normal((1, 3, 64, 64), dtype=np.float32),
        "search_rgb": rng.standard_normal((1, 3, 128, 128), dtype=np.float32),
        "search_tir": rng.standard_normal((1, 3, 128, 128), dtype=np.float32),
    }
    np.savez(tmp_path / "in.npz", **arrays)
    for ratio in ("1.0", "0.5"):
        rc = main(
            [
                "forward",
                "--checkpoint",
                str(ckpt),
                "--inputs",
                str(tmp_path / "in.npz"),
                "--out",
                str(tmp_path / "out.npz"),
                "--keep-ratio",
                ratio,
            ]
        )
        assert rc == 0
        out = np.load(tmp_path / "out.npz")
        with torch.inference_mode():
            ref = model(*(torch.from_numpy(arrays[k]) for k in arrays), keep_ratio=float(ratio))
        for k in ("score_map", "size_map", "offset_map", "pred_boxes"):
            np.testing.assert_array_equal(out[k], ref[k].numpy())
    assert out["score_map"].shape == (1, 1, 8, 8) and out["pred_boxes"].shape == (1, 1, 4)

    arrays["search_rgb"] = arrays["search_rgb"][:, :, :64]
    np.savez(tmp_path / "bad.npz", **arrays)
    rc = main(
        ["forward", "--checkpoint", str(ckpt), "--inputs", str(tmp_path / "bad.npz"), "--out", str(tmp_path / "o.npz")]
    )
    assert rc == 2
    assert "search_rgb has shape" in capsys.readouterr().err
    assert not (tmp_path / "o.npz").exists()
    rc = main(["forward", "--checkpoint", str(tmp_path / "nope.pth.tar"), "--inputs", "x", "--out", "y"])
    assert rc == 2


@pytest.mark.parametrize("argv", [["forward", "--help"], ["track", "--help"]])
def test_subcommand_help(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    assert "--checkpoint" in capsys.readouterr().out
