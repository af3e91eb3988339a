"""Masked autoencoder (He et al., 2022) with a timm ViT encoder, and the hand-over of its encoder.

The encoder is a timm ViT made by name and kept whole as `.encoder`, so its state dict loads into
a timm classifier or the distilled DeiT student under the same keys (no renaming). Masking,
decoder and loss follow facebookresearch/mae; the defaults follow the medical MAE study (Xiao et
al., WACV 2023): 90% of the patches masked, a light decoder. Position embeddings are fixed 2-D
sin-cos in encoder and decoder: with 90% of the patches gone, learned ones would mostly learn
noise, and fixed ones give a fine-tuned classifier a sensible starting point.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
import timm
import torch
from timm.layers import resample_abs_pos_embed
from timm.layers.pos_embed_sincos import build_sincos2d_pos_embed
from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn

from medvit.models.factory import ModelConfigError
from medvit.training.batch_augment import random_resized_crop, resize, to_model_input
from medvit.training.tasks import Batch, Task

MAE_ENCODERS = ("vit_tiny_patch16_224", "vit_small_patch16_224", "vit_base_patch16_224")


class MAEOutput(NamedTuple):
    loss: torch.Tensor  # mean squared error over the masked patches of the batch
    pred: torch.Tensor  # N x L x (patch * patch * channels), every patch predicted
    mask: torch.Tensor  # N x L, 1 = masked (what the loss is computed on)


def random_masking(
    x: torch.Tensor, mask_ratio: float, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep a random `1 - mask_ratio` of each sample's tokens, by sorting per-sample noise.

    x: N x L x D. Returns the kept tokens (N x L_keep x D), the mask (N x L, 1 = removed) and
    the permutation that puts the decoder's tokens back in order.
    """
    n, length, dim = x.shape
    keep = int(length * (1 - mask_ratio))
    noise = torch.rand(n, length, device=x.device, generator=generator)
    ids_shuffle = noise.argsort(dim=1)  # small noise is kept, large is removed
    ids_restore = ids_shuffle.argsort(dim=1)
    ids_keep = ids_shuffle[:, :keep]
    kept = x.gather(1, ids_keep[..., None].expand(-1, -1, dim))
    mask = torch.ones(n, length, device=x.device)
    mask[:, :keep] = 0
    mask = mask.gather(1, ids_restore)  # back to the original token order
    return kept, mask, ids_restore


def sincos_pos_embed(dim: int, grid: int, prefix_tokens: int = 1) -> torch.Tensor:
    """1 x (prefix + grid^2) x dim fixed embedding; prefix tokens (class) get zeros, as in MAE."""
    patches = build_sincos2d_pos_embed([grid, grid], dim)
    return torch.cat([torch.zeros(prefix_tokens, dim), patches])[None]


def _check_mask_ratio(mask_ratio: float) -> None:
    if not 0 < mask_ratio < 1:
        raise ModelConfigError(
            f"mask_ratio {mask_ratio} is outside (0, 1): it is the fraction of patches hidden"
            " from the encoder (the medical MAE study uses 0.9)"
        )


class MaskedAutoencoderViT(nn.Module):
    """MAE: a timm ViT encoder sees the kept patches, a light decoder predicts the masked ones.

    `norm_pix_loss` regresses each patch's pixels normalised by that patch's mean and variance
    (MAE's better-representation option). The image must be square and at least one patch grid
    of 2 x 2 patches, so that there is something to keep and something to mask.
    """

    def __init__(
        self,
        encoder: str = "vit_small_patch16_224",
        *,
        img_size: int = 224,
        in_chans: int = 1,
        mask_ratio: float = 0.9,
        decoder_dim: int = 512,
        decoder_depth: int = 2,
        decoder_heads: int = 16,
        norm_pix_loss: bool = False,
        **encoder_kwargs: object,
    ) -> None:
        """`encoder_kwargs` go to `timm.create_model` (e.g. `depth=2` for a quick test)."""
        super().__init__()
        _check_mask_ratio(mask_ratio)
        plain_vit = encoder.startswith(("vit_", "deit_")) and "_patch" in encoder
        if not plain_vit or "distilled" in encoder or not timm.is_model(encoder):
            raise ModelConfigError(
                f"MAE encoder {encoder!r} is not a plain timm ViT with a class token; use one of"
                f" {', '.join(MAE_ENCODERS)}"
            )
        patch = int(encoder.split("_patch")[1].split("_")[0])
        patches = (img_size // patch) ** 2
        if img_size % patch or int(patches * (1 - mask_ratio)) < 1:
            fewest = math.ceil(math.sqrt(1 / (1 - mask_ratio))) * patch
            raise ModelConfigError(
                f"image size {img_size} is not a whole grid of {patch} px patches ({encoder}) that"
                f" leaves a visible patch at mask ratio {mask_ratio}; use a multiple of {patch}"
                f" of at least {fewest}"
            )
        self.encoder: VisionTransformer = timm.create_model(
            encoder,
            pretrained=False,
            num_classes=0,
            img_size=img_size,
            in_chans=in_chans,
            **encoder_kwargs,
        )
        self.architecture, self.img_size, self.in_chans = encoder, img_size, in_chans
        self.patch_size, self.mask_ratio, self.norm_pix_loss = patch, mask_ratio, norm_pix_loss
        grid = img_size // patch
        dim = self.encoder.embed_dim
        with torch.no_grad():
            self.encoder.pos_embed.copy_(sincos_pos_embed(dim, grid))
        self.encoder.pos_embed.requires_grad_(False)

        self.decoder_embed = nn.Linear(dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.register_buffer("decoder_pos_embed", sincos_pos_embed(decoder_dim, grid))
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.decoder_blocks = nn.Sequential(
            *(
                Block(decoder_dim, decoder_heads, mlp_ratio=4.0, qkv_bias=True, norm_layer=norm)
                for _ in range(decoder_depth)
            )
        )
        self.decoder_norm = norm(decoder_dim)
        self.decoder_pred = nn.Linear(decoder_dim, patch * patch * in_chans)
        self._init_decoder()

    def _init_decoder(self) -> None:
        """MAE's initialisation: xavier linears, N(0, 0.02) mask token (timm inits the encoder)."""
        nn.init.normal_(self.mask_token, std=0.02)
        for module in [self.decoder_embed, *self.decoder_blocks.modules(), self.decoder_pred]:
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def no_weight_decay(self) -> set[str]:
        """Tokens are spared weight decay (`medvit.training.optim` reads this)."""
        return {"encoder.cls_token", "mask_token"}

    def encoder_state_dict(self) -> dict[str, torch.Tensor]:
        """The encoder's weights under timm's own keys: what `load_mae_encoder` takes."""
        return {name: value.detach().cpu() for name, value in self.encoder.state_dict().items()}

    def patchify(self, images: torch.Tensor) -> torch.Tensor:
        """N x C x H x W -> N x L x (p * p * C), patches in row-major order (as the encoder's)."""
        n, c, h, w = images.shape
        p = self.patch_size
        x = images.reshape(n, c, h // p, p, w // p, p)
        return torch.einsum("nchpwq->nhwpqc", x).reshape(n, (h // p) * (w // p), p * p * c)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        n, length, _ = x.shape
        p, c, grid = self.patch_size, self.in_chans, int(length**0.5)
        x = x.reshape(n, grid, grid, p, p, c)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(n, c, grid * p, grid * p)

    def forward_encoder(
        self, images: torch.Tensor, mask_ratio: float, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        encoder = self.encoder
        x = encoder.patch_embed(images) + encoder.pos_embed[:, 1:]
        x, mask, ids_restore = random_masking(x, mask_ratio, generator)
        cls = (encoder.cls_token + encoder.pos_embed[:, :1]).expand(len(x), -1, -1)
        x = encoder.norm_pre(torch.cat([cls, x], dim=1))
        return encoder.norm(encoder.blocks(x)), mask, ids_restore

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        x = self.decoder_embed(latent)
        n, kept, dim = x.shape
        masked = self.mask_token.expand(n, ids_restore.shape[1] + 1 - kept, -1).to(x.dtype)
        patches = torch.cat([x[:, 1:], masked], dim=1)  # kept tokens first, then mask tokens
        patches = patches.gather(1, ids_restore[..., None].expand(-1, -1, dim))  # unshuffle
        x = torch.cat([x[:, :1], patches], dim=1) + self.decoder_pos_embed
        x = self.decoder_norm(self.decoder_blocks(x))
        return self.decoder_pred(x)[:, 1:]  # drop the class token

    def target(self, images: torch.Tensor) -> torch.Tensor:
        target = self.patchify(images.float())
        if self.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1e-6) ** 0.5
        return target

    def per_sample_loss(
        self, images: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Mean squared error over each sample's masked patches only (visible ones are free)."""
        per_patch = (pred.float() - self.target(images)).pow(2).mean(dim=-1)
        return (per_patch * mask).sum(dim=1) / mask.sum(dim=1)

    def forward(
        self,
        images: torch.Tensor,
        mask_ratio: float | None = None,
        generator: torch.Generator | None = None,
    ) -> MAEOutput:
        """`generator` fixes the mask (validation); by default it draws from torch's RNG."""
        if mask_ratio is None:
            mask_ratio = self.mask_ratio
        else:
            _check_mask_ratio(mask_ratio)
        latent, mask, ids_restore = self.forward_encoder(images, mask_ratio, generator)
        pred = self.forward_decoder(latent, ids_restore)
        # every sample masks the same number of patches: the mean of per-sample losses is the
        # mean over all masked patches of the batch
        loss = self.per_sample_loss(images, pred, mask).mean()
        return MAEOutput(loss, pred, mask)


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel wrapper (the loop hands the task either)."""
    return getattr(model, "module", model)


class MAETask(Task):
    """Self-supervised: reconstruct masked patches of slices; labels in the batch are ignored.

    The batch arrives as stored uint8 slices (`medvit.training.data.unlabelled_slices`) and is
    cropped, flipped, resized and normalised here, on its device, as one batched operation.
    Validation resizes without augmentation and masks with a fixed seed, so `val_loss` compares
    epochs on the same masks; it is the mean squared error over masked patches.
    """

    def __init__(
        self,
        crop_scale: tuple[float, float] = (0.5, 1.0),
        flip: bool = True,
        val_mask_seed: int = 0,
    ) -> None:
        if not 0 < crop_scale[0] <= crop_scale[1] <= 1:
            raise ValueError(f"crop_scale {crop_scale} must satisfy 0 < low <= high <= 1")
        self.crop_scale, self.flip, self.val_mask_seed = tuple(crop_scale), flip, val_mask_seed

    def augment(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        mae = unwrap(model)
        cropped = random_resized_crop(images, mae.img_size, self.crop_scale, flip=self.flip)
        return to_model_input(cropped, mae.in_chans)

    def inputs(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        """Validation view: the whole slice, resized."""
        mae = unwrap(model)
        return to_model_input(resize(images.float(), mae.img_size), mae.in_chans)

    def training_step(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict]:
        return model(self.augment(model, batch[0])).loss, {}

    def validation_step(self, model: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        images = self.inputs(model, batch[0])
        generator = torch.Generator(images.device).manual_seed(self.val_mask_seed)
        output = model(images, generator=generator)
        return {"loss": unwrap(model).per_sample_loss(images, output.pred, output.mask)}

    def validation_metrics(self, outputs: dict[str, np.ndarray]) -> dict[str, float]:
        return {"loss": float(np.mean(outputs["loss"]))}


@dataclass
class EncoderLoad:
    """What `load_mae_encoder` did: keys taken, keys left to the model's own init, keys unused."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # fresh in the model (heads, fc_norm)
    unused: list[str] = field(default_factory=list)  # in the encoder, not in the model (norm)
    adapted: list[str] = field(default_factory=list)  # resized or derived (pos_embed, dist)


# What a classifier may keep fresh, and what of the encoder it may leave out: its heads (and
# the fc_norm of average pooling, which replaces the encoder's final norm).
_FRESH = ("head.", "head_dist.", "fc_norm.")
_DROPPABLE = ("norm.",)


def _encoder_state(source: MaskedAutoencoderViT | Mapping | str | Path) -> tuple[dict, str]:
    """The encoder's state dict and a name for its architecture, from any accepted source."""
    if isinstance(source, MaskedAutoencoderViT):
        return source.encoder_state_dict(), source.architecture
    if isinstance(source, str | Path):
        path = Path(source)
        if not path.is_file():
            raise ModelConfigError(f"MAE checkpoint {path} does not exist")
        source = torch.load(path, map_location="cpu", weights_only=True)
    architecture = str(source.get("architecture", "the MAE encoder"))
    state = dict(source.get("encoder", source.get("model", source)))
    if any(key.startswith("encoder.") for key in state):  # a whole MaskedAutoencoderViT
        state = {
            k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")
        }
    return state, architecture


def _describe(state: Mapping[str, torch.Tensor]) -> str:
    width = state["cls_token"].shape[-1] if "cls_token" in state else "no class token"
    depth = len({key.split(".")[1] for key in state if key.startswith("blocks.")})
    return f"width {width}, {depth} blocks"


def _fit_pos_embed(state: dict, model: VisionTransformer, target: Mapping) -> bool:
    """Resample the encoder's patch positions to the model's grid; prefix tokens share the
    class token's position. False when the widths differ (reported as a mismatch instead)."""
    patches = state["pos_embed"][:, 1:]
    if patches.shape[-1] != target["pos_embed"].shape[-1]:
        return False
    prefix = target["pos_embed"].shape[1] - model.patch_embed.num_patches
    resized = resample_abs_pos_embed(
        patches, list(model.patch_embed.grid_size), num_prefix_tokens=0
    )
    state["pos_embed"] = torch.cat([state["pos_embed"][:, :1].expand(-1, prefix, -1), resized], 1)
    return True


def load_mae_encoder(
    model: VisionTransformer, source: MaskedAutoencoderViT | Mapping | str | Path
) -> EncoderLoad:
    """Initialise a timm ViT classifier or distilled DeiT from an MAE encoder, heads left fresh.

    `source`: a `MaskedAutoencoderViT`, its `encoder_state_dict()`, a dict with an `encoder`
    (or the training loop's `model`) entry and optionally `architecture`, a whole MAE state dict,
    or a path to any of those. The position embedding is resampled to the model's patch grid
    (timm's `resample_abs_pos_embed`); a distilled DeiT's distillation token and its position
    start as copies of the class token's, so both heads begin from the same pretrained summary.
    Anything else that does not fit (width, depth, patch size, channels) raises
    `ModelConfigError` naming both architectures, before any weight is changed.
    """
    state, architecture = _encoder_state(source)
    target = model.state_dict()
    name = getattr(model, "pretrained_cfg", {}).get("architecture", type(model).__name__)
    if "pos_embed" not in target:
        raise ModelConfigError(f"{name} is not a ViT: an MAE encoder initialises ViTs only")
    if "pos_embed" not in state or "cls_token" not in state:
        raise ModelConfigError(
            f"{architecture} has no ViT pos_embed/cls_token: it is not an MAE encoder for {name}"
        )
    report = EncoderLoad()
    if "dist_token" in target:
        state["dist_token"] = state["cls_token"].clone()
        report.adapted.append("dist_token")
    if _fit_pos_embed(state, model, target):
        report.adapted.append("pos_embed")
    problems = [
        f"{key} {tuple(value.shape)} vs {tuple(target[key].shape)}"
        for key, value in state.items()
        if key in target and value.shape != target[key].shape
    ]
    report.missing = sorted(set(target) - set(state))
    report.unused = sorted(set(state) - set(target))
    problems += [
        f"{key} missing from the encoder" for key in report.missing if not key.startswith(_FRESH)
    ]
    problems += [
        f"{key} unknown to the model" for key in report.unused if not key.startswith(_DROPPABLE)
    ]
    if problems:
        raise ModelConfigError(
            f"{architecture} ({_describe(state)}) does not fit {name} ({_describe(target)}):"
            f" {'; '.join(problems[:3])}{'; ...' if len(problems) > 3 else ''}"
        )
    taken = {key: value for key, value in state.items() if key in target}
    model.load_state_dict(taken, strict=False)
    report.loaded = sorted(taken)
    return report
