"""DB-SAM's learnable parts (Qin et al., MICCAI 2024, arXiv 2410.04172, architecture figure).

All four are written against channel-last token maps (B, H, W, C), the layout of SAM's ViT, and
start close to the identity where they touch the frozen ViT, so that a pretrained encoder's
features pass through unchanged before training has shaped the adapters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import ConvNormAct, LayerNorm2d, LayerScale, Mlp, SqueezeExcite
from torch import nn
from ultralytics.nn.modules.transformer import MSDeformAttn


class ChannelAttention(nn.Module):
    """The figure's channel attention block after each frozen ViT stage: LayerNorm, depthwise
    3x3, GELU, squeeze-excite (timm's), pointwise 1x1, residual.

    The depthwise convolution adds the local context a ViT pretrained on natural images lacks
    for small lesions; the squeeze-excite re-weights channels for the medical domain. The last
    projection starts at zero, so the block is the identity at initialisation.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.depthwise = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.act = nn.GELU()
        self.excite = SqueezeExcite(dim)
        self.pointwise = nn.Conv2d(dim, dim, 1)
        nn.init.zeros_(self.pointwise.weight)
        nn.init.zeros_(self.pointwise.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.norm(tokens).permute(0, 3, 1, 2)
        x = self.pointwise(self.excite(self.act(self.depthwise(x))))
        return tokens + x.permute(0, 2, 3, 1)


class ConvBranch(nn.Module):
    """The figure's light convolution branch: shallow features from the image itself.

    The released code builds four image-pyramid stems; two suffice here, both ending on (or
    below) the ViT token grid so the cross-attention can align them with the tokens: a stem on
    the image average-pooled to 4x the grid (two 3x3 stride-2 convolutions, to the grid,
    stride 16) and one on the image pooled to 4x half the grid (to stride 32). Each ends in a
    1x1 projection to the ViT width and a LayerNorm, as SAM's neck does. LayerNorm rather than
    BatchNorm throughout: segmentation batches are a handful of slices.
    """

    strides = (16, 32)

    def __init__(self, dim: int, width: int, in_chans: int = 3) -> None:
        super().__init__()
        self.stems = nn.ModuleList(
            nn.Sequential(
                nn.AvgPool2d(stride // 4),
                ConvNormAct(in_chans, width, 3, stride=2, norm_layer=LayerNorm2d, act_layer="gelu"),
                ConvNormAct(width, width, 3, stride=2, norm_layer=LayerNorm2d, act_layer="gelu"),
                nn.Conv2d(width, dim, 1),
                LayerNorm2d(dim),
            )
            for stride in self.strides
        )
        self.level_embed = nn.Parameter(torch.zeros(len(self.strides), dim))
        self.merge = nn.Conv2d(dim * len(self.strides), dim, 1)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """One (B, C, H_l, W_l) map per level, tagged with a learned level embedding."""
        return [
            stem(images) + embed[None, :, None, None]
            for stem, embed in zip(self.stems, self.level_embed, strict=True)
        ]

    def to_grid(self, levels: list[torch.Tensor], grid: tuple[int, int]) -> torch.Tensor:
        """The levels resized to the token grid and merged: F_conv as (B, H, W, C)."""
        resized = [
            level
            if level.shape[-2:] == grid
            else F.interpolate(level, size=grid, mode="bilinear", align_corners=False)
            for level in levels
        ]
        return self.merge(torch.cat(resized, dim=1)).permute(0, 2, 3, 1)


def reference_points(shapes: list[tuple[int, int]], like: torch.Tensor) -> torch.Tensor:
    """Normalised (x, y) centres of every cell of every map, concatenated: (1, N, 1, 2)."""
    points = []
    for height, width in shapes:
        ys = (torch.arange(height, device=like.device, dtype=like.dtype) + 0.5) / height
        xs = (torch.arange(width, device=like.device, dtype=like.dtype) + 0.5) / width
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack([grid_x, grid_y], dim=-1).reshape(-1, 2))
    return torch.cat(points)[None, :, None, :]


class DeformableCrossAttention(nn.Module):
    """Queries attend to a few sampled points of value maps (multi-scale deformable attention,
    ultralytics' pure-PyTorch `MSDeformAttn` from RT-DETR, no compiled op), then a feed-forward
    layer; pre-LayerNorm and residuals around both.

    `layer_scale` gates both residuals with timm's LayerScale from that value (0: the block
    starts as the identity), used on the side that writes into the frozen ViT.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        levels: int,
        points: int = 4,
        mlp_ratio: float = 2.0,
        layer_scale: float | None = None,
    ) -> None:
        super().__init__()
        self.query_norm = nn.LayerNorm(dim)
        self.value_norm = nn.LayerNorm(dim)
        self.attention = MSDeformAttn(dim, n_levels=levels, n_heads=heads, n_points=points)
        self.ffn_norm = nn.LayerNorm(dim)
        self.ffn = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU)
        gate = nn.Identity if layer_scale is None else lambda: LayerScale(dim, layer_scale)
        self.attention_gate, self.ffn_gate = gate(), gate()

    def forward(
        self,
        queries: torch.Tensor,
        query_shapes: list[tuple[int, int]],
        values: torch.Tensor,
        value_shapes: list[tuple[int, int]],
    ) -> torch.Tensor:
        """queries (B, Nq, C) laid out as maps of `query_shapes`; values (B, Nv, C) likewise."""
        attended = self.attention(
            self.query_norm(queries),
            reference_points(query_shapes, queries),
            self.value_norm(values),
            value_shapes,
        )
        x = queries + self.attention_gate(attended)
        return x + self.ffn_gate(self.ffn(self.ffn_norm(x)))


class BilateralCrossAttention(nn.Module):
    """The figure's bilateral cross-attention after each stage: ViT tokens query the
    convolution features and the convolution features query the ViT tokens, both from the
    features as they entered the block, so neither direction sees the other's update first.
    """

    def __init__(self, dim: int, heads: int, conv_levels: int) -> None:
        super().__init__()
        self.vit_queries = DeformableCrossAttention(dim, heads, conv_levels, layer_scale=0.0)
        self.conv_queries = DeformableCrossAttention(dim, heads, 1)

    def forward(
        self, tokens: torch.Tensor, levels: list[torch.Tensor]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        batch, height, width, dim = tokens.shape
        vit_shape = [(height, width)]
        conv_shapes = [tuple(level.shape[-2:]) for level in levels]
        vit = tokens.reshape(batch, height * width, dim)
        conv = torch.cat([level.flatten(2).transpose(1, 2) for level in levels], dim=1)
        new_vit = self.vit_queries(vit, vit_shape, conv, conv_shapes)
        new_conv = self.conv_queries(conv, conv_shapes, vit, vit_shape)
        sizes = [h * w for h, w in conv_shapes]
        new_levels = [
            part.transpose(1, 2).reshape(batch, dim, h, w)
            for part, (h, w) in zip(new_conv.split(sizes, dim=1), conv_shapes, strict=True)
        ]
        return new_vit.reshape(batch, height, width, dim), new_levels


class Fusion(nn.Module):
    """The figure's ViT-convolution fusion block: a per-position, per-channel gate
    `M = sigmoid(FC(GELU(FC(F_vit))) + FC(GELU(FC(F_conv))))`, `F = M F_vit + (1 - M) F_conv`,
    so the decoder takes from each branch what it does best, position by position.
    """

    def __init__(self, dim: int, reduction: int = 4) -> None:
        super().__init__()
        self.vit_gate = Mlp(dim, dim // reduction, act_layer=nn.GELU)
        self.conv_gate = Mlp(dim, dim // reduction, act_layer=nn.GELU)

    def forward(self, vit: torch.Tensor, conv: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.vit_gate(vit) + self.conv_gate(conv))
        return gate * vit + (1 - gate) * conv
