"""The CKD inference network: RGB and thermal student branches stepped together, MCE, fused center head.

One explicit loop walks both branches block by block. At a CE layer, after the attention residual
and before the MLP, multi-modal candidate elimination (MCE) combines the two branches' template->search
attention by element-wise max, ranks the search tokens once and keeps the same tokens in both branches.
After the final norm the dropped tokens are restored as zeros in their original positions and the
two search feature maps are concatenated along channels for the head.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ckd.model.config import CKDConfig
from ckd.model.head import CenterHead
from ckd.model.vit import ViTBranch

KeepRatio = float | list[float] | tuple[float, ...] | None


def center_template_mask(cfg: CKDConfig, batch: int = 1, device: torch.device | None = None) -> Tensor:
    """OSTrack `CTR_POINT` template mask: only the template cell at the box centre ((3,3) of 8x8, token 27).

    Built by a comparison, not an in-place `mask[:, c, c] = True`: the exporter folds it to a constant
    instead of writing a BOOL `ScatterND`, which TensorRT's scatter layer does not take.
    """
    side = cfg.template_size // cfg.patch_size
    c = side // 2 - 1 if side % 2 == 0 else side // 2
    cells = torch.arange(side * side, device=device)
    return (cells == c * side + c).unsqueeze(0).expand(batch, -1)


def rank_search_tokens(attn: Tensor, num_template: int, template_mask: Tensor, keep: int) -> Tensor:
    """Indices (B, keep) of the search tokens most attended from the masked template tokens.

    attn: (B, heads, N, N) attention probabilities (already combined over modalities for MCE).
    Mean over the masked template rows and over heads, then top-`keep`, highest first.
    """
    attn_ts = attn[:, :, :num_template, num_template:]  # B, H, Nt, Ns
    weights = template_mask.to(attn.dtype)[:, None, :, None]
    score = (attn_ts * weights).sum(dim=2) / weights.sum(dim=2)  # B, H, Ns
    score = score.mean(dim=1)
    return torch.topk(score, keep, dim=1, largest=True, sorted=True).indices


def _gather_tokens(x: Tensor, num_template: int, keep_idx: Tensor) -> Tensor:
    t, s = x[:, :num_template], x[:, num_template:]
    s = s.gather(1, keep_idx.unsqueeze(-1).expand(-1, -1, s.shape[-1]))
    return torch.cat([t, s], dim=1)


class CKDNet(nn.Module):
    """Two ViT students (`rgb_branch`, `tir_branch`) + fused `box_head`; names match the official checkpoint."""

    def __init__(self, cfg: CKDConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.rgb_branch = ViTBranch(cfg)
        self.tir_branch = self.rgb_branch if cfg.share_student else ViTBranch(cfg)
        self.box_head = CenterHead(2 * cfg.embed_dim, cfg.head_channels, cfg.feat_size)

    def forward(
        self,
        template_rgb: Tensor,
        template_tir: Tensor,
        search_rgb: Tensor,
        search_tir: Tensor,
        template_mask: Tensor | None = None,
        keep_ratio: KeepRatio = None,
        search_mask: Tensor | None = None,
        return_features: bool = False,
    ) -> dict[str, Tensor]:
        """Run both branches and the head.

        keep_ratio: None = the configured ratio at every CE layer, a float for all CE layers, or one
        per CE layer; 1.0 disables elimination. search_mask (B, Ns) bool: masked-modeling patches to zero.
        With `return_features`, `features_rgb`/`features_tir` hold every block's output tokens
        (residual stream before the final norm), valid when no token is eliminated.
        """
        cfg = self.cfg
        b = template_rgb.shape[0]
        nt, ns = cfg.num_template_tokens, cfg.num_search_tokens
        if template_mask is None:
            template_mask = center_template_mask(cfg, b, template_rgb.device)
        ratios = dict(zip(cfg.ce_loc, cfg.keep_ratios(keep_ratio), strict=True))

        xr = self.rgb_branch.embed(template_rgb, search_rgb, search_mask)
        xt = self.tir_branch.embed(template_tir, search_tir, search_mask)
        global_index = torch.arange(ns, device=xr.device).unsqueeze(0).expand(b, ns)
        n_search = ns
        feats_r: list[Tensor] = []
        feats_t: list[Tensor] = []
        kept: list[int] = []  # search tokens after each CE layer, for inspection (`last_kept`)
        for i, (blk_r, blk_t) in enumerate(zip(self.rgb_branch.blocks, self.tir_branch.blocks, strict=True)):
            xr, attn_r = blk_r.attend(xr)
            xt, attn_t = blk_t.attend(xt)
            if i in ratios:
                keep = math.ceil(ratios[i] * n_search)
                if keep < n_search:
                    idx = rank_search_tokens(torch.maximum(attn_r, attn_t), nt, template_mask, keep)
                    xr = _gather_tokens(xr, nt, idx)
                    xt = _gather_tokens(xt, nt, idx)
                    global_index = global_index.gather(1, idx)
                    n_search = keep
                kept.append(n_search)
            xr = blk_r.feed_forward(xr)
            xt = blk_t.feed_forward(xt)
            if return_features:
                feats_r.append(xr)
                feats_t.append(xt)

        search_r = self._restore(self.rgb_branch.norm(xr)[:, nt:], global_index, n_search)
        search_t = self._restore(self.tir_branch.norm(xt)[:, nt:], global_index, n_search)
        fused = torch.cat([search_r, search_t], dim=-1)  # B, Ns, 2C
        f = cfg.feat_size
        out = self.box_head(fused.transpose(1, 2).reshape(b, -1, f, f))
        self.last_kept = kept
        if return_features:
            out["features_rgb"] = feats_r  # type: ignore[assignment]
            out["features_tir"] = feats_t  # type: ignore[assignment]
        return out

    def _restore(self, x: Tensor, global_index: Tensor, n_search: int) -> Tensor:
        """Put kept search tokens back at their original positions, zeros where tokens were dropped."""
        ns = self.cfg.num_search_tokens
        if n_search == ns:
            return x  # nothing eliminated: tokens are still in their original order
        full = x.new_zeros(x.shape[0], ns, x.shape[-1])
        return full.scatter(1, global_index.unsqueeze(-1).expand(-1, -1, x.shape[-1]), x)
