"""CKD training losses, one small function each, computed as the official code does.

Tracking (OSTrack): CenterNet focal loss on a Gaussian heatmap of the target centre, GIoU and L1 on the
(x1, y1, x2, y2) box normalised to the search crop. Distillation: style (channel statistics shared by the two
students) and content (instance-normalised features, teacher detached). Masked modeling draws one patch mask
shared by both modalities.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def gaussian_radius(w: Tensor, h: Tensor, min_overlap: float = 0.7) -> Tensor:
    """CenterNet's radius so a box shifted by it still has IoU >= `min_overlap` (three quadratic cases, min)."""
    b1 = h + w
    c1 = w * h * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + torch.sqrt(b1**2 - 4 * c1)) / 2
    b2 = 2 * (h + w)
    c2 = (1 - min_overlap) * w * h
    r2 = (b2 + torch.sqrt(b2**2 - 16 * c2)) / 2
    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (h + w)
    c3 = (min_overlap - 1) * w * h
    r3 = (b3 + torch.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return torch.minimum(r1, torch.minimum(r2, r3))


def gaussian_heatmap(boxes: Tensor, feat_size: int) -> Tensor:
    """OSTrack `generate_heatmap`: (B, 4) x,y,w,h normalised to the crop -> (B, 1, F, F) targets, peak exactly 1.

    Centre cell = round(centre * F); radius = int(gaussian_radius(w*F, h*F, 0.7)); sigma = (2r+1)/6;
    values below eps * max are zeroed, as CenterNet's `gaussian2D`.
    """
    b = boxes.shape[0]
    out = torch.zeros(b, 1, feat_size, feat_size, dtype=torch.float32)
    scaled = boxes.detach().float().cpu() * feat_size
    centres = (scaled[:, :2] + scaled[:, 2:] / 2).round().long()
    radii = gaussian_radius(scaled[:, 2], scaled[:, 3]).clamp(min=0).long()
    eps = torch.finfo(torch.float32).eps
    for i in range(b):
        r = int(radii[i])
        sigma = (2 * r + 1) / 6
        k = torch.arange(-r, r + 1, dtype=torch.float32)
        g = torch.exp(-(k[None, :] ** 2 + k[:, None] ** 2) / (2 * sigma * sigma))
        g[g < eps * g.max()] = 0
        cx, cy = int(centres[i, 0]), int(centres[i, 1])
        left, right = min(cx, r), min(feat_size - cx, r + 1)
        top, bottom = min(cy, r), min(feat_size - cy, r + 1)
        if left + right <= 0 or top + bottom <= 0:
            continue  # centre outside the grid: no positive cell
        region = out[i, 0, cy - top : cy + bottom, cx - left : cx + right]
        torch.maximum(region, g[r - top : r + bottom, r - left : r + right], out=region)
    return out.to(boxes.device)


def focal_loss(pred: Tensor, target: Tensor, alpha: float = 2.0, beta: float = 4.0) -> Tensor:
    """CenterNet focal loss summed over the batch and divided by the number of positive (== 1) cells."""
    pos = target.eq(1).to(pred.dtype)
    neg = target.lt(1).to(pred.dtype)
    pred = pred.clamp(min=1e-12)
    pos_loss = (torch.log(pred) * (1 - pred) ** alpha * pos).sum()
    neg_loss = (torch.log(1 - pred) * pred**alpha * (1 - target) ** beta * neg).sum()
    num_pos = pos.sum()
    if num_pos == 0:
        return -neg_loss
    return -(pos_loss + neg_loss) / num_pos


def cxcywh_to_xyxy(b: Tensor) -> Tensor:
    cx, cy, w, h = b.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def xywh_to_xyxy(b: Tensor) -> Tensor:
    x, y, w, h = b.unbind(-1)
    return torch.stack([x, y, x + w, y + h], dim=-1)


def giou_loss(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Mean (1 - GIoU) of matched (N, 4) x1,y1,x2,y2 boxes, and the per-box IoU (no gradient needed)."""
    area_p = (pred[:, 2] - pred[:, 0]) * (pred[:, 3] - pred[:, 1])
    area_t = (target[:, 2] - target[:, 0]) * (target[:, 3] - target[:, 1])
    lt = torch.maximum(pred[:, :2], target[:, :2])
    rb = torch.minimum(pred[:, 2:], target[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=1)
    union = area_p + area_t - inter
    iou = inter / union
    lt_c = torch.minimum(pred[:, :2], target[:, :2])
    rb_c = torch.maximum(pred[:, 2:], target[:, 2:])
    area_c = (rb_c - lt_c).clamp(min=0).prod(dim=1)
    giou = iou - (area_c - union) / area_c
    return (1 - giou).mean(), iou


def tracking_loss(
    out: dict[str, Tensor],
    gt_box: Tensor,
    heatmap: Tensor,
    w_giou: float = 2.0,
    w_l1: float = 5.0,
    w_focal: float = 1.0,
    present: Tensor | None = None,
) -> dict[str, Tensor]:
    """OSTrack `compute_losses` for one head: gt_box (B, 4) x,y,w,h normalised to the search crop.

    `present` (B,) bool marks samples that show the target. The others (negatives: their heatmap is all zero, their
    box the estimate the crop was cut around) enter the focal loss and `keep_loss`, weighted as L1."""
    pred = cxcywh_to_xyxy(out["pred_boxes"].reshape(-1, 4))
    gt = xywh_to_xyxy(gt_box).clamp(0.0, 1.0)
    keep = gt_box.new_zeros(())
    if present is not None:
        if not present.all():
            keep = keep_loss(out["size_map"][~present], out["offset_map"][~present], gt_box[~present])
        pred, gt = pred[present], gt[present]
    if len(gt):
        giou, iou = giou_loss(pred, gt)
        l1 = F.l1_loss(pred, gt)
    else:
        giou = iou = l1 = gt.new_zeros(())
    if torch.isnan(giou):
        giou = giou.new_zeros(())
    focal = focal_loss(out["score_map"], heatmap)
    total = w_giou * giou + w_l1 * (l1 + keep) + w_focal * focal
    return {"total": total, "giou": giou, "l1": l1, "focal": focal, "keep": keep, "iou": iou.detach().mean()}


def keep_loss(size_map: Tensor, offset_map: Tensor, box: Tensor) -> Tensor:
    """Negatives: every cell regresses the estimate the crop was cut around (`box`, x,y,w,h in crop units): mean L1
    of all offsets (to the kept centre, from each cell) and sizes. Whichever cell the tracker then picks when the
    target has gone, its box is the one it had: it holds instead of drifting, shrinking or growing."""
    f = size_map.shape[-1]
    cells = torch.arange(f, device=box.device, dtype=box.dtype)
    centre = (box[:, :2] + box[:, 2:] / 2) * f  # (n, 2) in cells
    want_x = (centre[:, 0, None, None] - cells[None, None, :]).expand(-1, f, -1)
    want_y = (centre[:, 1, None, None] - cells[None, :, None]).expand(-1, -1, f)
    want_size = box[:, 2:, None, None].expand_as(size_map)
    return F.l1_loss(size_map, want_size) + F.l1_loss(offset_map, torch.stack([want_x, want_y], dim=1))


def style_loss(x: Tensor, y: Tensor, variant: str = "channel") -> Tensor:
    """Style distillation between the two students' (B, N, C) features: mean((mu_x-mu_y)^2 + (sd_x-sd_y)^2).

    "channel": per-channel statistics over tokens (official); "token": per-token statistics over channels.
    Unbiased std; gradients flow into both inputs.
    """
    dim = 1 if variant == "channel" else 2
    mx, my = x.mean(dim=dim), y.mean(dim=dim)
    sx, sy = x.std(dim=dim), y.std(dim=dim)
    return ((mx - my) ** 2 + (sx - sy) ** 2).mean()


def instance_norm_tokens(x: Tensor, eps: float = 1e-5) -> Tensor:
    """InstanceNorm1d (no affine) of (B, N, C) features: each channel normalised over the tokens (content)."""
    return F.instance_norm(x.transpose(1, 2), eps=eps).transpose(1, 2)


def content_loss(teacher: Tensor, student: Tensor) -> Tensor:
    """Content distillation: MSE between the instance-normalised features, the teacher side detached."""
    return F.mse_loss(instance_norm_tokens(student), instance_norm_tokens(teacher.detach()))


def random_search_mask(batch: int, tokens: int, p: float, generator: torch.Generator | None = None) -> Tensor:
    """Masked modeling: (B, Ns) bool, each search patch masked with probability p; one mask for both modalities."""
    if p <= 0:
        return torch.zeros(batch, tokens, dtype=torch.bool)
    return torch.rand(batch, tokens, generator=generator) < p
