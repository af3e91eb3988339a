"""Multi-label classifiers of radiographs, their fine-tuning recipe and their training task.

The recipe follows the medical MAE study (Xiao et al., WACV 2023) for a ViT fine-tuned from an
MAE encoder: average pooling of the patch tokens with `fc_norm` (MAE's encoder was never trained
to summarise into its class token), drop path 0.2, layer-wise LR decay (`TrainConfig.layer_decay`;
0.55 for ViT-S in the study), RandAugment at magnitude 6 and a binary cross-entropy per finding.
A DenseNet-121 (timm) is the CNN baseline the study compares against and trains with the same task.

Augmentation runs on the uint8 tensor (torchvision v2), as the rest of medvit does. No horizontal
flip: laterality is anatomy on a chest radiograph (the heart sits left), unlike on a brain slice.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch import nn
from torchvision.transforms import v2

from medvit.models.factory import ModelConfigError, ModelSpec, build_model
from medvit.models.mae import MaskedAutoencoderViT, load_mae_encoder
from medvit.training.data import slice_transform
from medvit.training.tasks import Batch, Task

logger = logging.getLogger(__name__)

Init = Literal["scratch", "mae", "imagenet"]
MaeSource = MaskedAutoencoderViT | Mapping | str | Path


def is_vit(architecture: str) -> bool:
    return architecture.startswith(("vit_", "deit_"))


def create_multilabel_classifier(
    architecture: str,
    n_findings: int,
    image_size: int,
    *,
    in_chans: int = 1,
    drop_path_rate: float = 0.2,
    init: Init = "scratch",
    mae_encoder: MaeSource | None = None,
) -> nn.Module:
    """A timm classifier with one logit per finding.

    `init`: `scratch` (random), `mae` (the encoder of `mae_encoder`: a trained
    `MaskedAutoencoderViT`, its state or a checkpoint path; ViTs only) or `imagenet` (timm's
    pretrained weights; needs internet). A ViT pools by average with `fc_norm`.
    """
    if init == "mae" and mae_encoder is None:
        raise ModelConfigError("init: mae needs an MAE encoder (a checkpoint or a model)")
    if init == "mae" and not is_vit(architecture):
        raise ModelConfigError(
            f"init: mae initialises ViTs only; {architecture} is not one (use a vit_* model,"
            " or init: scratch / imagenet for a CNN)"
        )
    options: dict[str, bool | int | float | str] = {"drop_path_rate": drop_path_rate}
    if is_vit(architecture):
        options |= {"global_pool": "avg", "fc_norm": True}
    spec = ModelSpec(
        architecture=architecture,
        num_classes=n_findings,
        image_size=image_size,
        in_chans=in_chans,
        timm_kwargs=options,
    )
    model = build_model(spec, pretrained=init == "imagenet")
    if init == "mae":
        loaded = load_mae_encoder(model, mae_encoder)
        logger.info(
            "%s initialised from the MAE encoder: %d tensors loaded, %s adapted, %s left fresh",
            architecture,
            len(loaded.loaded),
            ", ".join(loaded.adapted) or "none",
            ", ".join(loaded.missing) or "none",
        )
    return model


def finetune_transform(image_size: int, *, train: bool, magnitude: int = 6) -> v2.Transform:
    """Training: a small affine and RandAugment (2 ops at `magnitude`) on the uint8 image, then
    the store's resize and normalisation; evaluation: only the latter."""
    evaluation = slice_transform(image_size, "none")
    if not train:
        return evaluation
    return v2.Compose(
        [
            v2.RandomAffine(degrees=10, translate=(0.05, 0.05), scale=(0.9, 1.1)),
            v2.RandAugment(num_ops=2, magnitude=magnitude),
            evaluation,
        ]
    )


def mean_auroc(target: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean over the findings that have both classes among these images; NaN when none has."""
    values = [
        roc_auc_score(target[:, column], probabilities[:, column])
        for column in range(target.shape[1])
        if 0 < target[:, column].sum() < len(target)
    ]
    return float(np.mean(values)) if values else float("nan")


class MultiLabelTask(Task):
    """Binary cross-entropy per finding; judged by the mean image-level AUROC on validation.

    `pos_weight` (one per finding) up-weights positives of rare findings in the loss.
    """

    def __init__(self, pos_weight: torch.Tensor | None = None) -> None:
        self.pos_weight = pos_weight

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        weight = None if self.pos_weight is None else self.pos_weight.to(logits.device)
        return F.binary_cross_entropy_with_logits(logits.float(), target.float(), pos_weight=weight)

    def training_step(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict]:
        images, target = batch
        return self.loss(model(images), target), {}

    def validation_step(self, model: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        images, target = batch
        logits = model(images).float()
        return {
            "probabilities": logits.sigmoid(),
            "loss": F.binary_cross_entropy_with_logits(
                logits, target.float(), reduction="none"
            ).mean(dim=1),
            "target": target,
        }

    def validation_metrics(self, outputs: dict[str, np.ndarray]) -> dict[str, float]:
        """`loss` (unweighted BCE) and `mean_auroc` (the loop prefixes both with `val_`)."""
        return {
            "loss": float(outputs["loss"].mean()),
            "mean_auroc": mean_auroc(outputs["target"], outputs["probabilities"]),
        }
