"""DB-SAM, its factory beside the decoder-only baseline, and what a saved segmenter is.

DB-SAM (Qin et al., MICCAI 2024) keeps SAM's ViT frozen and splits it into four stages of equal
depth; after each stage a channel attention block adapts the tokens and a bilateral
cross-attention block exchanges information with a light convolution branch run on the image;
a fusion block gates the two branches before SAM's (trainable) neck and mask decoder.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import nn

from medvit.models.dbsam.blocks import BilateralCrossAttention, ChannelAttention, ConvBranch, Fusion
from medvit.models.dbsam.sam import PromptedSAM, SegmenterConfig, patch_tokens
from medvit.models.factory import ModelConfigError

SegmenterKind = Literal["dbsam", "sam_decoder"]
STAGES = 4


class DBSAM(PromptedSAM):
    """Dual-branch adapted SAM; same input and output as `PromptedSAM`."""

    kind = "dbsam"

    def __init__(self, config: SegmenterConfig, *, initial_weights: bool = True) -> None:
        super().__init__(config, initial_weights=initial_weights)
        size = self.size
        if size.depth % STAGES:
            raise ModelConfigError(
                f"encoder {config.encoder!r} has {size.depth} blocks, not divisible into"
                f" {STAGES} stages of equal depth"
            )
        per_stage = size.depth // STAGES
        self.stage_ends = [per_stage * (stage + 1) for stage in range(STAGES)]
        self.channel_attention = nn.ModuleList(ChannelAttention(size.width) for _ in range(STAGES))
        self.conv_branch = ConvBranch(size.width, size.conv_width)
        self.cross_attention = nn.ModuleList(
            BilateralCrossAttention(size.width, size.heads, len(ConvBranch.strides))
            for _ in range(STAGES)
        )
        self.fusion = Fusion(size.width)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """The first stage runs without autograd: nothing trainable comes before it."""
        encoder = self.sam.image_encoder
        with torch.no_grad():
            tokens = patch_tokens(encoder, images)
        levels = self.conv_branch(images)
        start = 0
        for stage, end in enumerate(self.stage_ends):
            with torch.set_grad_enabled(torch.is_grad_enabled() and stage > 0):
                for block in encoder.blocks[start:end]:
                    tokens = block(tokens)
            tokens = self.channel_attention[stage](tokens)
            tokens, levels = self.cross_attention[stage](tokens, levels)
            start = end
        fused = self.fusion(tokens, self.conv_branch.to_grid(levels, tokens.shape[1:3]))
        return encoder.neck(fused.permute(0, 3, 1, 2))


_KINDS: dict[str, type[PromptedSAM]] = {"dbsam": DBSAM, "sam_decoder": PromptedSAM}


def build_segmenter(
    kind: SegmenterKind, config: SegmenterConfig | Mapping[str, Any] | None = None
) -> PromptedSAM:
    """DB-SAM or the decoder-only SAM baseline: `forward(images, boxes) -> logits (B,1,H,W)`."""
    if kind not in _KINDS:
        raise ModelConfigError(f"unknown segmenter {kind!r}; choose one of {sorted(_KINDS)}")
    if not isinstance(config, SegmenterConfig):
        config = SegmenterConfig.model_validate(config or {})
    return _KINDS[kind](config)


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Trainable and frozen parameters: what an adapter method costs and what it leaves alone."""
    counts = {"trainable": 0, "frozen": 0}
    for parameter in model.parameters():
        counts["trainable" if parameter.requires_grad else "frozen"] += parameter.numel()
    return counts


def segmenter_payload(model: PromptedSAM) -> dict:
    """A saved segmenter: kind, config and CPU weights (read by `segmenter_from_payload`)."""
    state = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
    return {"kind": model.kind, "config": model.config.model_dump(), "state_dict": state}


def segmenter_from_payload(payload: dict) -> PromptedSAM:
    """Rebuilt without re-reading the SAM checkpoint: the saved weights already hold it."""
    config = SegmenterConfig.model_validate(payload["config"])
    model = _KINDS[payload["kind"]](config, initial_weights=False)
    model.load_state_dict(payload["state_dict"])
    return model.eval()
