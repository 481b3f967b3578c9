"""OSTrack CENTER head: score, offset and size towers over the search feature map, and box decoding."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _sigmoid(x: Tensor) -> Tensor:
    return torch.clamp(x.sigmoid(), min=1e-4, max=1 - 1e-4)


class CenterHead(nn.Module):
    """Three towers (ctr, offset, size) of Conv3x3+BN+ReLU x4 (c, c/2, c/4, c/8) and a 1x1 conv."""

    def __init__(self, in_channels: int, channels: int, feat_size: int) -> None:
        super().__init__()
        self.feat_size = feat_size
        widths = [in_channels, channels, channels // 2, channels // 4, channels // 8]
        for tower, out in (("ctr", 1), ("offset", 2), ("size", 2)):
            for i in range(4):
                setattr(self, f"conv{i + 1}_{tower}", _conv_bn_relu(widths[i], widths[i + 1]))
            setattr(self, f"conv5_{tower}", nn.Conv2d(widths[4], out, 1))

    def _tower(self, name: str, x: Tensor) -> Tensor:
        for i in range(1, 6):
            x = getattr(self, f"conv{i}_{name}")(x)
        return x

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """x: (B, C, F, F) -> score_map (B,1,F,F), size_map, offset_map (B,2,F,F), pred_boxes (B,1,4)."""
        score_map = _sigmoid(self._tower("ctr", x))
        offset_map = self._tower("offset", x)
        size_map = _sigmoid(self._tower("size", x))
        boxes = decode_boxes(score_map, size_map, offset_map)
        return {"score_map": score_map, "size_map": size_map, "offset_map": offset_map, "pred_boxes": boxes[:, None]}


def decode_boxes(score_map: Tensor, size_map: Tensor, offset_map: Tensor) -> Tensor:
    """(cx, cy, w, h) normalised to the search crop: centre = (argmax cell + offset) / F, size at that cell."""
    b, _, f, _ = score_map.shape
    idx = score_map.flatten(1).argmax(dim=1, keepdim=True)  # B, 1
    idx_y = torch.div(idx, f, rounding_mode="floor").to(score_map.dtype)
    idx_x = (idx % f).to(score_map.dtype)
    gather = idx.unsqueeze(1).expand(b, 2, 1)
    size = size_map.flatten(2).gather(2, gather).squeeze(-1)
    offset = offset_map.flatten(2).gather(2, gather).squeeze(-1)
    cx = (idx_x + offset[:, :1]) / f
    cy = (idx_y + offset[:, 1:]) / f
    return torch.cat([cx, cy, size], dim=1)
