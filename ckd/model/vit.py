"""One ViT student branch (OSTrack `vit_base_patch16_224_ce` layout), stepped block by block.

State-dict names follow the official checkpoint: `patch_embed.proj`, `pos_embed_z`, `pos_embed_x`,
`blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}`, `norm`; `cls_token` and the 197-token
`pos_embed` exist only so official checkpoints load strictly (they are unused).

A block is split in two halves so the network can eliminate candidates *between* them
(after the attention residual, before the MLP) using both branches' attention at once.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ckd.model.config import CKDConfig


class DropPath(nn.Module):
    """Stochastic depth per sample (identity at inference)."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


def linear_2d(layer: nn.Linear, x: Tensor) -> Tensor:
    """`layer` on (B, N, C) tokens as one 2-D product: the same math, but ONNX export then writes a single `Gemm`
    with its bias, which INT8 runtimes run as one fused kernel (ONNX Runtime `QGemm`: product, bias and
    dequantization in one pass) instead of MatMul + DequantizeLinear + Add."""
    return layer(x.reshape(-1, x.shape[-1])).reshape(*x.shape[:-1], layer.out_features)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return the projected output and the attention probabilities (B, heads, N, N)."""
        b, n, c = x.shape
        qkv = linear_2d(self.qkv, x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(b, n, c)
        return linear_2d(self.proj, out), attn


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return linear_2d(self.fc2, self.act(linear_2d(self.fc1, x)))


class Block(nn.Module):
    def __init__(self, cfg: CKDConfig, drop_path: float = 0.0) -> None:
        super().__init__()
        dim = cfg.embed_dim
        self.norm1 = nn.LayerNorm(dim, eps=cfg.layer_norm_eps)
        self.attn = Attention(dim, cfg.num_heads)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=cfg.layer_norm_eps)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio))

    def attend(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """First half: attention residual. Returns tokens and attention probabilities."""
        out, attn = self.attn(self.norm1(x))
        return x + self.drop_path(out), attn

    def feed_forward(self, x: Tensor) -> Tensor:
        """Second half: MLP residual."""
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    def __init__(self, cfg: CKDConfig) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, cfg.embed_dim, kernel_size=cfg.patch_size, stride=cfg.patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # B, N, C


class ViTBranch(nn.Module):
    """A student backbone: patch embedding, positional embeddings, blocks, final norm."""

    def __init__(self, cfg: CKDConfig) -> None:
        super().__init__()
        c = cfg.embed_dim
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c))  # unused, kept for checkpoint layout
        self.pos_embed = nn.Parameter(torch.zeros(1, 197, c))  # unused, kept for checkpoint layout
        self.pos_embed_z = nn.Parameter(torch.zeros(1, cfg.num_template_tokens, c))
        self.pos_embed_x = nn.Parameter(torch.zeros(1, cfg.num_search_tokens, c))
        self.patch_embed = PatchEmbed(cfg)
        rates = torch.linspace(0, cfg.drop_path, cfg.depth).tolist()
        self.blocks = nn.ModuleList(Block(cfg, r) for r in rates)
        self.norm = nn.LayerNorm(c, eps=cfg.layer_norm_eps)
        nn.init.trunc_normal_(self.pos_embed_z, std=0.02)
        nn.init.trunc_normal_(self.pos_embed_x, std=0.02)
        self.apply(_init_weights)

    def embed(self, template: Tensor, search: Tensor, search_mask: Tensor | None = None) -> Tensor:
        """Template-first token sequence ("direct" mode). `search_mask` (B, Ns) zeroes masked search patches
        before the position embedding (masked modeling in training)."""
        z = self.patch_embed(template)
        x = self.patch_embed(search)
        if search_mask is not None:
            x = x * (~search_mask).unsqueeze(-1).to(x.dtype)
        return torch.cat([z + self.pos_embed_z, x + self.pos_embed_x], dim=1)


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
