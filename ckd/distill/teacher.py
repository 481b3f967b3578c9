"""A single-modality teacher: the original OSTrack network (one ViT + its own center head), no elimination."""

from __future__ import annotations

from torch import Tensor, nn

from ckd.model.config import CKDConfig
from ckd.model.head import CenterHead
from ckd.model.vit import ViTBranch


class Teacher(nn.Module):
    """`backbone` (a ViTBranch) + `box_head` on its own search features (embed_dim channels)."""

    def __init__(self, cfg: CKDConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = ViTBranch(cfg)
        self.box_head = CenterHead(cfg.embed_dim, cfg.head_channels, cfg.feat_size)

    def forward(
        self, template: Tensor, search: Tensor, search_mask: Tensor | None = None, return_features: bool = True
    ) -> dict[str, Tensor]:
        """Head outputs (score/size/offset maps, pred_boxes) and, with `return_features`, every block's tokens."""
        x = self.backbone.embed(template, search, search_mask)
        feats = []
        for blk in self.backbone.blocks:
            x, _ = blk.attend(x)
            x = blk.feed_forward(x)
            if return_features:
                feats.append(x)
        s = self.backbone.norm(x)[:, self.cfg.num_template_tokens :]
        f = self.cfg.feat_size
        out = self.box_head(s.transpose(1, 2).reshape(s.shape[0], -1, f, f))
        if return_features:
            out["features"] = feats  # type: ignore[assignment]
        return out
