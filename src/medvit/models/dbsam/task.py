"""The segmentation task for the one training loop: box-prompted masks, MedSAM's loss.

A batch is (images, masks, boxes) as `medvit.training.segmentation_data` yields them. The loss is
MONAI's Dice + cross-entropy on sigmoid logits with squared predictions in the Dice denominator,
the loss MedSAM and DB-SAM train with. Validation scores each slice's Dice at logit 0.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.losses import DiceCELoss
from monai.metrics import compute_dice
from torch import nn

from medvit.training.tasks import Batch, Task


class SegmentationTask(Task):
    """`return_masks` adds the predicted masks (uint8, input resolution) to the validation
    outputs, for prediction; training leaves it off so validation holds only per-slice scores."""

    def __init__(self, return_masks: bool = False) -> None:
        self.loss = DiceCELoss(sigmoid=True, squared_pred=True)
        self.return_masks = return_masks

    def training_step(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict]:
        images, masks, boxes = batch
        return self.loss(model(images, boxes).float(), masks), {}

    def validation_step(self, model: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        images, masks, boxes = batch
        logits = model(images, boxes).float()
        predicted = (logits > 0).float()
        outputs = {
            "dice": compute_dice(predicted, masks, ignore_empty=False)[:, 0],
            "loss": torch.stack(
                [
                    self.loss(logit[None], mask[None])
                    for logit, mask in zip(logits, masks, strict=True)
                ]
            ),
        }
        if self.return_masks:
            outputs["mask"] = predicted.to(torch.uint8)
        return outputs

    def validation_metrics(self, outputs: dict[str, np.ndarray]) -> dict[str, float]:
        """Mean Dice and loss over slices (the loop names them `val_dice`, `val_loss`)."""
        return {"dice": float(np.mean(outputs["dice"])), "loss": float(np.mean(outputs["loss"]))}
