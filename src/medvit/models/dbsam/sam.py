"""SAM's parts from ultralytics, sized by name, and the box-prompted segmenter both models share.

Why ultralytics and not Meta's `segment-anything`: it is already a dependency (the detector),
maintained, and ships SAM's `ImageEncoderViT`, `PromptEncoder`, `MaskDecoder` and
`TwoWayTransformer` under the official checkpoint's key layout, so `sam_b.pt` loads into its
`SAMModel` as a plain state dict. Nothing is vendored.

`PromptedSAM` is also the baseline (MedSAM-v0 style): the ViT frozen, the prompt encoder frozen,
the mask decoder and the neck trained. The neck trains too so that the baseline and DB-SAM differ
only in the dual branch (DB-SAM's fused features need a trainable neck), which is what the
comparison is meant to isolate.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict
from torch import nn
from ultralytics.models.sam.modules.decoders import MaskDecoder
from ultralytics.models.sam.modules.encoders import ImageEncoderViT, PromptEncoder
from ultralytics.models.sam.modules.sam import SAMModel
from ultralytics.models.sam.modules.transformer import TwoWayTransformer

from medvit.models.factory import ModelConfigError

logger = logging.getLogger(__name__)

EncoderName = Literal["tiny", "vit_b"]


@dataclass(frozen=True)
class EncoderSize:
    """One SAM size: the ViT, the prompt/decoder width and DB-SAM's convolution-branch width."""

    image_size: int
    patch_size: int
    width: int
    depth: int
    heads: int
    window_size: int  # 0: global attention in every block
    global_attn_indexes: tuple[int, ...]
    prompt_dim: int
    decoder_mlp: int
    decoder_heads: int
    conv_width: int

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size


ENCODER_SIZES: dict[str, EncoderSize] = {
    # CPU default: a SAM-shaped ViT small enough to train from random init in minutes.
    "tiny": EncoderSize(256, 16, 128, 4, 4, 0, (), 128, 512, 4, 32),
    # SAM ViT-B exactly as `sam_b.pt` holds it (ultralytics' build_sam_vit_b).
    "vit_b": EncoderSize(1024, 16, 768, 12, 12, 14, (2, 5, 8, 11), 256, 2048, 8, 128),
}


class SegmenterConfig(BaseModel):
    """Which SAM and which weights; `checkpoint` is a `sam_b.pt` path (random init when null)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    encoder: EncoderName = "tiny"
    checkpoint: str | None = None

    @property
    def size(self) -> EncoderSize:
        return ENCODER_SIZES[self.encoder]


def build_sam(size: EncoderSize) -> SAMModel:
    """SAM's three parts at `size`, laid out as the official checkpoints are."""
    encoder = ImageEncoderViT(
        img_size=size.image_size,
        patch_size=size.patch_size,
        in_chans=3,
        embed_dim=size.width,
        depth=size.depth,
        num_heads=size.heads,
        mlp_ratio=4,
        out_chans=size.prompt_dim,
        qkv_bias=True,
        norm_layer=partial(nn.LayerNorm, eps=1e-6),
        use_rel_pos=True,
        window_size=size.window_size,
        global_attn_indexes=size.global_attn_indexes,
    )
    prompt_encoder = PromptEncoder(
        embed_dim=size.prompt_dim,
        image_embedding_size=(size.grid, size.grid),
        input_image_size=(size.image_size, size.image_size),
        mask_in_chans=16,
    )
    decoder = MaskDecoder(
        transformer_dim=size.prompt_dim,
        transformer=TwoWayTransformer(
            depth=2,
            embedding_dim=size.prompt_dim,
            mlp_dim=size.decoder_mlp,
            num_heads=size.decoder_heads,
        ),
        num_multimask_outputs=3,
        iou_head_depth=3,
        iou_head_hidden_dim=size.prompt_dim,
    )
    return SAMModel(encoder, prompt_encoder, decoder)


def _shape_of(state: dict[str, torch.Tensor]) -> str | None:
    """ "width W, depth D at S px" of a SAM ViT state dict; None when it is not one."""
    patch = state.get("image_encoder.patch_embed.proj.weight")
    pos = state.get("image_encoder.pos_embed")
    if patch is None or pos is None:
        return None
    depth = len({key.split(".")[2] for key in state if key.startswith("image_encoder.blocks.")})
    return f"width {patch.shape[0]}, depth {depth} at {pos.shape[1] * patch.shape[-1]} px"


def load_sam_checkpoint(sam: SAMModel, checkpoint: str | Path, encoder: str) -> None:
    """Load an official SAM checkpoint (`sam_b.pt`), refusing one of another size by name."""
    path = Path(checkpoint)
    if not path.is_file():
        raise ModelConfigError(
            f"SAM checkpoint {path} does not exist: download sam_b.pt (ultralytics assets) there,"
            " or set checkpoint: null to start from random weights"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any unreadable file gets the same advice
        raise ModelConfigError(
            f"SAM checkpoint {path} is not a readable state dict: {error}"
        ) from error
    if not isinstance(state, dict):
        raise ModelConfigError(f"{path} is not a SAM checkpoint: not a state dict")
    if isinstance(state.get("model"), dict):
        state = state["model"]
    found, expected = _shape_of(state), _shape_of(sam.state_dict())
    if found is None:
        raise ModelConfigError(f"{path} is not a SAM checkpoint: no image_encoder weights")
    if found != expected:
        raise ModelConfigError(
            f"SAM checkpoint {path} holds a ViT of {found}, but encoder {encoder!r} is {expected}:"
            " use encoder: vit_b with sam_b.pt, or the checkpoint of the configured size"
        )
    try:
        sam.load_state_dict(state)
    except RuntimeError as error:
        raise ModelConfigError(
            f"SAM checkpoint {path} does not fit encoder {encoder!r}: {str(error)[:300]}"
        ) from error


def patch_tokens(encoder: ImageEncoderViT, images: torch.Tensor) -> torch.Tensor:
    """Patch embedding plus absolute position embedding: (B, grid, grid, width)."""
    tokens = encoder.patch_embed(images)
    return tokens if encoder.pos_embed is None else tokens + encoder.pos_embed


class PromptedSAM(nn.Module):
    """SAM prompted by one box per image; the baseline that trains only the neck and decoder.

    Input: images (B, 1 or 3, H, W) in [0, 1] (the slice store is greyscale: one channel is
    repeated to SAM's three) and boxes (B, 4) xyxy in pixels of that input. Images of another
    size than the encoder's are resized to it and the logits (B, 1, H, W) resized back, so a
    caller never rescales boxes. Intensities are normalised with SAM's own ImageNet statistics,
    which is what a pretrained `sam_b.pt` expects.
    """

    kind = "sam_decoder"

    def __init__(self, config: SegmenterConfig, *, initial_weights: bool = True) -> None:
        """`initial_weights: false` skips the checkpoint (and the random-init warning) for a
        model whose saved weights are loaded next."""
        super().__init__()
        self.config = config
        self.size = config.size
        self.sam = build_sam(self.size)
        if initial_weights and config.checkpoint is not None:
            load_sam_checkpoint(self.sam, config.checkpoint, config.encoder)
        elif initial_weights:
            logger.warning(
                "SAM %s starts from random weights (checkpoint: null): the frozen encoder then"
                " carries no pretrained knowledge; set checkpoint to a sam_b.pt for the study",
                config.encoder,
            )
        self.sam.image_encoder.requires_grad_(False)
        self.sam.image_encoder.neck.requires_grad_(True)
        self.sam.prompt_encoder.requires_grad_(False)
        # one mask per box and no IoU loss: the IoU head would get no gradient (and DDP would
        # wait for one), so it stays as loaded
        self.sam.mask_decoder.iou_prediction_head.requires_grad_(False)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) normalised as SAM was trained, from [0, 1] images of any size."""
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        side = self.size.image_size
        if images.shape[-2:] != (side, side):
            images = F.interpolate(images, size=(side, side), mode="bilinear", antialias=True)
        return (images * 255 - self.sam.pixel_mean) / self.sam.pixel_std

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Image embedding (B, prompt_dim, grid, grid); the frozen ViT builds no autograd graph."""
        encoder = self.sam.image_encoder
        with torch.no_grad():
            tokens = patch_tokens(encoder, images)
            for block in encoder.blocks:
                tokens = block(tokens)
        return encoder.neck(tokens.permute(0, 3, 1, 2))

    def decode(self, embeddings: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """Low-resolution mask logits (B, 1, 4 grid, 4 grid), one box per image.

        ultralytics' decoder repeats every image embedding once per prompt (one image, many
        boxes); here each image has its own box, so each pair is decoded on its own.
        """
        prompt = self.sam.prompt_encoder
        sparse, dense = prompt(points=None, boxes=boxes, masks=None)
        position = prompt.get_dense_pe()
        logits = [
            self.sam.mask_decoder(
                embeddings[i : i + 1], position, sparse[i : i + 1], dense[i : i + 1], False
            )[0]
            for i in range(len(embeddings))
        ]
        return torch.cat(logits)

    def forward(self, images: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        side = self.size.image_size
        scale = boxes.new_tensor([side / width, side / height, side / width, side / height])
        low_res = self.decode(self.embed(self.prepare(images)), boxes.float() * scale)
        return F.interpolate(low_res, size=(height, width), mode="bilinear", align_corners=False)
