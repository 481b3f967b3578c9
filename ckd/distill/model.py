"""The training model: two single-modality teachers, the CKD student network, and projections where widths differ.

`forward(batch, ...)` returns every loss term of the current stage, so DDP wraps one module:

- "teacher": each teacher learns from its own tracking losses (used to pretrain the demo teachers).
- "ckd" (stage 1): fused tracking + 0.01 * style + 0.1 * content + both teachers' tracking losses.
- "mce" (stage 2): fused tracking only, elimination on at the given keep ratio, backbones frozen.

Only `student` (a CKDNet) is kept for inference.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ckd.distill.losses import content_loss, gaussian_heatmap, style_loss, tracking_loss
from ckd.distill.teacher import Teacher
from ckd.errors import CKDError
from ckd.model.config import CKDConfig
from ckd.model.network import CKDNet

STAGES = ("teacher", "ckd", "mce")
UNUSED = ("cls_token", "pos_embed")  # layout-only parameters, never trained


def layer_map(student_depth: int, teacher_depth: int) -> list[int]:
    """Teacher block paired with each student block: evenly spaced, last with last (identity for equal depth)."""
    return [round((i + 1) * teacher_depth / student_depth) - 1 for i in range(student_depth)]


class DistillModel(nn.Module):
    def __init__(self, student_cfg: CKDConfig, teacher_cfg: CKDConfig, weights: dict[str, float] | None = None) -> None:
        super().__init__()
        if (student_cfg.template_size, student_cfg.search_size, student_cfg.patch_size) != (
            teacher_cfg.template_size,
            teacher_cfg.search_size,
            teacher_cfg.patch_size,
        ):
            raise CKDError("teacher and student must use the same crop sizes and patch size")
        self.student_cfg, self.teacher_cfg = student_cfg, teacher_cfg
        self.student = CKDNet(student_cfg)
        self.teacher_rgb = Teacher(teacher_cfg)
        self.teacher_tir = Teacher(teacher_cfg)
        self.pairs = layer_map(student_cfg.depth, teacher_cfg.depth)
        cs, ct = student_cfg.embed_dim, teacher_cfg.embed_dim
        if cs != ct:  # learned projections student -> teacher width, one per student layer and modality
            self.proj_rgb = nn.ModuleList(nn.Linear(cs, ct) for _ in range(student_cfg.depth))
            self.proj_tir = nn.ModuleList(nn.Linear(cs, ct) for _ in range(student_cfg.depth))
        else:
            self.proj_rgb = self.proj_tir = None
        self.w = {"giou": 2.0, "l1": 5.0, "focal": 1.0, "style": 0.01, "content": 0.1, "teacher": 1.0}
        self.w.update(weights or {})
        self.style_variant = "channel"

    def init_students_from_teachers(self) -> None:
        """Official init: every branch starts from the same weights; the fused head from the RGB head with its
        first convs duplicated along the input channels. Only possible when the architectures match."""
        if self.student_cfg.embed_dim != self.teacher_cfg.embed_dim or self.student_cfg.depth != self.teacher_cfg.depth:
            raise CKDError("students can start from the teachers only when widths and depths match")
        with torch.no_grad():
            self.student.rgb_branch.load_state_dict(self.teacher_rgb.backbone.state_dict())
            self.student.tir_branch.load_state_dict(self.teacher_tir.backbone.state_dict())
            head = self.teacher_rgb.box_head.state_dict()
            own = self.student.box_head.state_dict()
            for k, v in head.items():
                if own[k].shape == v.shape:
                    own[k].copy_(v)
                elif v.ndim == 4 and own[k].shape[1] == 2 * v.shape[1] and own[k].shape[0] == v.shape[0]:
                    own[k].copy_(torch.cat([v, v], dim=1))
            self.student.box_head.load_state_dict(own)

    def set_stage(self, stage: str, freeze_teachers: bool = False) -> None:
        """requires_grad and train/eval per stage: frozen parts run in eval mode (no drop path, fixed BN)."""
        if stage not in STAGES:
            raise CKDError(f"unknown stage {stage!r}; choose from {', '.join(STAGES)}")
        self.stage = stage
        self.train()
        trainable = {
            "teacher": [self.teacher_rgb, self.teacher_tir],
            "ckd": [self.student] + ([] if freeze_teachers else [self.teacher_rgb, self.teacher_tir]),
            "mce": [self.student.box_head],
        }[stage]
        if stage == "ckd" and self.proj_rgb is not None:
            trainable += [self.proj_rgb, self.proj_tir]
        for p in self.parameters():
            p.requires_grad_(False)
        for m in trainable:
            for p in m.parameters():
                p.requires_grad_(True)
        for name, p in self.named_parameters():
            if name.rsplit(".", 1)[-1] in UNUSED:
                p.requires_grad_(False)
        for m in (self.student.rgb_branch, self.student.tir_branch, self.teacher_rgb, self.teacher_tir):
            if not any(p.requires_grad for p in m.parameters()):
                m.eval()
        self.freeze_teachers = freeze_teachers

    def _track(
        self, out: dict[str, Tensor], box: Tensor, heatmap: Tensor, prefix: str, present: Tensor | None
    ) -> dict[str, Tensor]:
        parts = tracking_loss(out, box, heatmap, self.w["giou"], self.w["l1"], self.w["focal"], present)
        return {f"{prefix}/{k}": v for k, v in parts.items()}

    def _project(self, feats: list[Tensor], proj: nn.ModuleList | None) -> list[Tensor]:
        return feats if proj is None else [p(f) for p, f in zip(proj, feats, strict=True)]

    def forward(
        self, batch: dict[str, Tensor], search_mask: Tensor | None = None, keep_ratio: float = 1.0
    ) -> dict[str, Tensor]:
        """Loss terms of the current stage (`set_stage` first); the sum to minimise is `total`."""
        box = batch["box"]
        heatmap = gaussian_heatmap(box, self.student_cfg.feat_size)
        present = batch["present"] > 0 if "present" in batch else None
        if present is not None:
            heatmap = heatmap * present.to(heatmap.dtype)[:, None, None, None]
        losses: dict[str, Tensor] = {}
        total = box.new_zeros(())
        if self.stage in ("teacher", "ckd"):
            grad = self.stage == "teacher" or not self.freeze_teachers
            with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
                mask_t = search_mask if self.stage == "teacher" else None
                out_v = self.teacher_rgb(batch["template_rgb"], batch["search_rgb"], mask_t, self.stage == "ckd")
                out_i = self.teacher_tir(batch["template_tir"], batch["search_tir"], mask_t, self.stage == "ckd")
            losses.update(self._track(out_v, box, heatmap, "teacher_rgb", present))
            losses.update(self._track(out_i, box, heatmap, "teacher_tir", present))
            if grad:
                total = total + self.w["teacher"] * (losses["teacher_rgb/total"] + losses["teacher_tir/total"])
        if self.stage in ("ckd", "mce"):
            out = self.student(
                batch["template_rgb"],
                batch["template_tir"],
                batch["search_rgb"],
                batch["search_tir"],
                keep_ratio=1.0 if self.stage == "ckd" else keep_ratio,
                search_mask=search_mask if self.stage == "ckd" else None,
                return_features=self.stage == "ckd",
            )
            losses.update(self._track(out, box, heatmap, "fused", present))
            total = total + losses["fused/total"]
        if self.stage == "ckd":
            fr, ft = out["features_rgb"], out["features_tir"]
            style = sum(style_loss(a, b, self.style_variant) for a, b in zip(fr, ft, strict=True))
            pr, pt = self._project(fr, self.proj_rgb), self._project(ft, self.proj_tir)
            tv, ti = out_v["features"], out_i["features"]
            content = sum(content_loss(tv[j], pr[i]) + content_loss(ti[j], pt[i]) for i, j in enumerate(self.pairs))
            losses["style"], losses["content"] = style, content
            total = total + self.w["style"] * style + self.w["content"] * content
        losses["total"] = total
        return losses
