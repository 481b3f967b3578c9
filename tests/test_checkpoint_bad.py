"""Checkpoints and saved inputs that must not pass: one CKDError (one CLI line) naming the file and the problem."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ckd.errors import CKDError
from ckd.model.checkpoint import load_model, save_model, save_official
from ckd.model.config import preset
from ckd.model.network import CKDNet
from ckd_cli.main import main


@pytest.fixture(scope="module")
def nano():
    torch.manual_seed(0)
    return CKDNet(preset("nano")).eval()


@pytest.fixture
def saved(nano, tmp_path):
    return save_model(nano, tmp_path / "student")


def config_edit(path, change) -> None:
    cfg = path.with_suffix(".json")
    doc = json.loads(cfg.read_text())
    cfg.write_text(json.dumps(change(doc)))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: {}, "config must be a non-empty JSON object"),
        (lambda d: [d], "config must be a non-empty JSON object"),
        (lambda d: {k: v for k, v in d.items() if k != "num_heads"}, "config lacks num_heads"),
        (lambda d: {**d, "patch_size": 15}, "template_size 64 is not a multiple of patch_size 15"),
        (lambda d: {**d, "ce_keep_ratio": 1.5}, r"ce_keep_ratio must be in \(0, 1\]"),
        (lambda d: {**d, "embed_dim": 32, "num_heads": 2}, "does not fit this architecture"),
        (lambda d: {**d, "bogus": 1}, "unknown config keys: bogus"),
        (lambda d: {**d, "search_factor": float("inf")}, "config search_factor = inf is not finite"),  # Infinity
        (lambda d: {**d, "layer_norm_eps": float("inf")}, "config layer_norm_eps = inf is not finite"),
    ],
)
def test_bad_config_beside_weights(saved, change, message):
    config_edit(saved, change)
    with pytest.raises(CKDError, match=message):
        load_model(saved)


def test_config_not_json(saved):
    saved.with_suffix(".json").write_text("{embed_dim: 64")
    with pytest.raises(CKDError, match="cannot read config .*student.json"):
        load_model(saved)


def test_truncated_weights(saved):
    saved.write_bytes(saved.read_bytes()[:500])
    with pytest.raises(CKDError, match="student.safetensors: not a readable safetensors file"):
        load_model(saved)


def test_non_finite_weights_are_refused(nano, tmp_path):
    from safetensors.torch import save_file

    path = save_model(nano, tmp_path / "nan")
    state = {k: v.clone() for k, v in nano.state_dict().items()}
    state["box_head.conv1_ctr.0.weight"][0, 0, 0, 0] = float("nan")
    save_file(state, str(path))
    with pytest.raises(CKDError, match="nan.safetensors: weight box_head.conv1_ctr.0.weight holds NaN"):
        load_model(path)
    official = tmp_path / "inf.pth.tar"
    state["box_head.conv1_ctr.0.weight"][0, 0, 0, 0] = float("inf")
    torch.save({"net": state}, official)
    with pytest.raises(CKDError, match="inf.pth.tar: weight .* holds NaN or infinite"):
        load_model(official)


def test_pickles_without_tensors_and_folders(nano, tmp_path):
    torch.save({"net": {"a": 1}}, tmp_path / "odd.pth.tar")
    with pytest.raises(CKDError, match="odd.pth.tar: no state dict found"):
        load_model(tmp_path / "odd.pth.tar")
    (tmp_path / "dir.pth.tar").mkdir()
    with pytest.raises(CKDError, match="checkpoint not found"):
        load_model(tmp_path / "dir.pth.tar")
    save_official(nano, tmp_path / "nano.pth.tar")  # not the official (base) architecture and no config
    with pytest.raises(CKDError, match="embed width 64 but official CKD is 768"):
        load_model(tmp_path / "nano.pth.tar")


def test_forward_cli_ends_in_one_line(saved, tmp_path, capsys):
    (tmp_path / "in.npz").write_bytes(b"PK\x03\x04 truncated zip")
    argv = [
        "forward",
        "--checkpoint",
        str(saved),
        "--inputs",
        str(tmp_path / "in.npz"),
        "--out",
        str(tmp_path / "o.npz"),
    ]
    assert main(argv) == 2
    np.savez(tmp_path / "in.npz", template_rgb=np.zeros((1, 3, 32, 32), np.float32))
    assert main(argv) == 2
    config_edit(saved, lambda d: {})
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("ckd forward: error: ") for line in err), err
    assert (
        "cannot read inputs" in err[0]
        and "template_rgb has shape (1, 3, 32, 32)" in err[1]
        and "config must be" in err[2]
    )
    assert not (tmp_path / "o.npz").exists()
