"""The CKD network: official state-dict layout, strict checkpoint round trips, run-time keep ratios, MCE."""

from __future__ import annotations

import math

import pytest
import torch

from ckd.errors import CKDError
from ckd.model.checkpoint import load_model, save_model, save_official
from ckd.model.config import CKDConfig, preset
from ckd.model.network import CKDNet, center_template_mask, rank_search_tokens


def _inputs(cfg: CKDConfig, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    t, s = cfg.template_size, cfg.search_size
    return [torch.randn(1, 3, *(2 * (n,)), generator=g) for n in (t, t, s, s)]


@pytest.fixture(scope="module")
def base() -> CKDNet:
    torch.manual_seed(0)
    return CKDNet(preset("base")).eval()


def test_base_matches_official_state_dict(base, shared_dir, tmp_path):
    lines = (shared_dir / "reference" / "ckd_state_dict.txt").read_text().splitlines()
    ref = [line.split("\t") for line in lines]
    state = base.state_dict()
    assert [r[0] for r in ref] == list(state)  # same names, same order (394 entries)
    for name, shape, dtype in ref:
        assert str(list(state[name].shape)) == shape, name
        assert str(state[name].dtype) == dtype, name
    assert len(state) == 394
    assert round(sum(p.numel() for p in base.parameters()) / 1e6, 1) == 183.9

    # A random state dict in the official layout ({'net': ...}) reloads strictly and identically.
    path = save_official(base, tmp_path / "CKD_ep0030.pth.tar")
    loaded = load_model(path)
    assert loaded.cfg == preset("base")
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_keep_ratio_is_a_runtime_argument(base):
    x = _inputs(base.cfg)
    with torch.inference_mode():
        expected = {1.0: [256, 256, 256], 0.7: [180, 126, 89], 0.5: [128, 64, 32]}
        for ratio, kept in expected.items():
            base(*x, keep_ratio=ratio)
            assert base.last_kept == kept
        out = base(*x, keep_ratio=[1.0, 0.7, 0.5])
        assert base.last_kept == [256, 180, 90]
    assert out["score_map"].shape == (1, 1, 16, 16)
    assert out["size_map"].shape == out["offset_map"].shape == (1, 2, 16, 16)
    assert out["pred_boxes"].shape == (1, 1, 4)


def test_kept_tokens_follow_ceil_rule():
    cfg = preset("base")
    n, expected = 256, []
    for _ in cfg.ce_loc:
        n = math.ceil(0.6 * n)
        expected.append(n)
    assert cfg.kept_tokens(0.6) == expected
    with pytest.raises(CKDError):
        cfg.keep_ratios([0.7, 0.7])
    with pytest.raises(CKDError):
        cfg.keep_ratios(1.5)


def test_elimination_restores_zeros_and_outputs_change():
    torch.manual_seed(1)
    model = CKDNet(preset("nano")).eval()
    x = _inputs(model.cfg, 3)
    with torch.inference_mode():
        full = model(*x, keep_ratio=1.0)
        pruned = model(*x, keep_ratio=0.5)
    assert model.last_kept == preset("nano").kept_tokens(0.5)
    assert not torch.allclose(full["score_map"], pruned["score_map"])
    # dropped tokens are restored as zeros: the first head conv then sees zero columns at those cells
    ns = model.cfg.num_search_tokens
    feats = torch.randn(1, 5, 8)
    idx = torch.tensor([[7, 2, 30, 11, 0]])
    restored = model._restore(feats, idx, 5)
    assert restored.shape == (1, ns, 8)
    assert torch.equal(restored[0, idx[0]], feats[0])
    assert restored.abs().sum(dim=-1).count_nonzero() == 5


def test_mce_ranks_by_elementwise_max_of_both_modalities():
    cfg = preset("nano")
    nt, ns = cfg.num_template_tokens, cfg.num_search_tokens
    mask = center_template_mask(cfg)
    assert mask.sum() == 1 and mask[0, 5]  # 4x4 template grid: cell (1, 1)
    assert center_template_mask(preset("base"))[0].nonzero().item() == 27  # 8x8 grid: cell (3, 3)
    n = nt + ns
    rgb = torch.zeros(1, 2, n, n)
    tir = torch.zeros(1, 2, n, n)
    rgb[0, :, 5, nt + 3] = 0.9  # RGB attends to search token 3
    tir[0, :, 5, nt + 9] = 0.8  # thermal attends to search token 9
    tir[0, :, 5, nt + 3] = 0.1
    rgb[0, :, 6, nt + 12] = 5.0  # a template token outside the mask: ignored
    idx = rank_search_tokens(torch.maximum(rgb, tir), nt, mask, 2)
    assert idx.tolist() == [[3, 9]]
    assert rank_search_tokens(tir, nt, mask, 1).tolist() == [[9]]


def test_shared_student_and_kit_checkpoint_roundtrip(tmp_path):
    cfg = CKDConfig(**{**preset("nano").to_dict(), "ce_loc": (1, 2, 3), "share_student": True, "name": "shared"})
    model = CKDNet(cfg)
    assert model.rgb_branch is model.tir_branch
    path = save_model(model, tmp_path / "student")
    assert path.suffix == ".safetensors" and path.with_suffix(".json").is_file()
    loaded = load_model(path)
    assert loaded.cfg == cfg
    x = _inputs(cfg)
    with torch.inference_mode():
        assert torch.equal(model.eval()(*x)["score_map"], loaded(*x)["score_map"])


def test_checkpoint_errors_are_one_clear_line(tmp_path):
    with pytest.raises(CKDError, match="not found"):
        load_model(tmp_path / "missing.pth.tar")
    bad = tmp_path / "corrupt.pth.tar"
    bad.write_bytes(b"\x80\x02not a pickle at all")
    with pytest.raises(CKDError, match="not a readable PyTorch checkpoint"):
        load_model(bad)
    # A checkpoint of another architecture: the nano weights under the base architecture.
    nano = tmp_path / "nano.pth.tar"
    torch.save({"net": CKDNet(preset("nano")).state_dict()}, nano)
    with pytest.raises(CKDError, match="official CKD is 768"):
        load_model(nano)
    with pytest.raises(CKDError, match=r"shape mismatch \d+: rgb_branch"):
        load_model(nano, config=preset("tiny"))
    trimmed = CKDNet(preset("nano")).state_dict()
    trimmed.pop("box_head.conv5_ctr.bias")
    trimmed["extra.weight"] = torch.zeros(1)
    torch.save({"net": trimmed}, nano)
    with pytest.raises(CKDError, match=r"missing 1: box_head.conv5_ctr.bias; unexpected 1: extra.weight"):
        load_model(nano, config=preset("nano"))


@pytest.mark.parametrize("name", ["nano", "base"])
def test_center_mask_built_without_scatter_is_the_official_mask_bit_for_bit(name):
    """The comparison-built mask equals the release's `mask[:, c, c] = True`, and the outputs do not move a bit."""
    cfg = preset(name)
    side = cfg.template_size // cfg.patch_size
    c = side // 2 - 1 if side % 2 == 0 else side // 2
    official = torch.zeros(2, side, side, dtype=torch.bool)
    official[:, c, c] = True
    assert torch.equal(center_template_mask(cfg, 2), official.flatten(1))
    if name != "nano":
        return
    torch.manual_seed(3)
    model = CKDNet(cfg).eval()
    x = _inputs(cfg)
    with torch.inference_mode():
        for keep in (1.0, 0.7, 0.5):
            ours = model(*x, keep_ratio=keep)
            theirs = model(*x, keep_ratio=keep, template_mask=official[:1].flatten(1))
            for k in ("score_map", "size_map", "offset_map", "pred_boxes"):
                assert torch.equal(ours[k], theirs[k]), (keep, k)
