"""DeiT distillation losses and the student's training task.

DeiT (Touvron et al., 2021) adds a distillation token whose head learns from a CNN teacher while
the class token learns from labels; at test time the two heads are averaged. Three variants:

- `hard` (DeiT's default): the distillation head is trained on the teacher's argmax,
  `0.5 CE(cls, y) + 0.5 CE(dist, argmax teacher)`.
- `soft`: the distillation head matches the teacher's tempered distribution,
  `(1 - alpha) CE(cls, y) + alpha tau^2 KL(softmax(teacher / tau) || softmax(dist / tau))`.
- `deit_lt` (DeiT-LT, Rangwani et al., CVPR 2024): hard distillation on strongly augmented
  (out-of-distribution for the teacher) images, with the distillation term re-weighted toward
  rare classes from `reweight_from_epoch` on (deferred re-weighting): on imbalanced data the
  teacher's minority calls carry most of what the student has to learn.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from medvit.training.loop import is_cnn
from medvit.training.tasks import Batch, ClassificationTask

LossKind = Literal["hard", "soft", "deit_lt"]


class DistillationLoss(nn.Module):
    """Loss on the (class, distillation) logits of a DeiT given labels and teacher logits."""

    def __init__(
        self,
        kind: LossKind = "hard",
        *,
        tau: float = 1.0,
        alpha: float = 0.5,
        label_weights: torch.Tensor | None = None,
        distill_weights: torch.Tensor | None = None,
        reweight_from_epoch: int = 0,
    ) -> None:
        """`label_weights` weight the class head's cross-entropy (class imbalance by loss);
        `distill_weights` are DeiT-LT's re-weighting of the distillation term."""
        super().__init__()
        if kind == "deit_lt" and distill_weights is None:
            raise ValueError("deit_lt needs distill_weights for its distillation term")
        self.kind, self.tau, self.alpha = kind, tau, alpha
        self.label_weights, self.distill_weights = label_weights, distill_weights
        self.reweight_from_epoch = reweight_from_epoch
        self.epoch = 0

    @staticmethod
    def _weighted_ce(
        logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None
    ) -> torch.Tensor:
        weight = None if weights is None else weights.to(logits.device)
        return F.cross_entropy(logits.float(), target, weight=weight)

    def distill_loss(self, logits: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        if self.kind == "soft":
            return (
                F.kl_div(
                    F.log_softmax(logits.float() / self.tau, dim=1),
                    F.log_softmax(teacher.float() / self.tau, dim=1),
                    reduction="batchmean",
                    log_target=True,
                )
                * self.tau**2
            )
        reweight = self.kind == "deit_lt" and self.epoch >= self.reweight_from_epoch
        weights = self.distill_weights if reweight else None
        return self._weighted_ce(logits, teacher.argmax(dim=1), weights)

    def forward(
        self,
        class_logits: torch.Tensor,
        distill_logits: torch.Tensor,
        target: torch.Tensor,
        teacher_logits: torch.Tensor,
    ) -> torch.Tensor:
        share = self.alpha if self.kind == "soft" else 0.5
        label_loss = self._weighted_ce(class_logits, target, self.label_weights)
        return (1 - share) * label_loss + share * self.distill_loss(distill_logits, teacher_logits)


class DistillationTask(ClassificationTask):
    """Trains a DeiT student against a frozen teacher; validates the averaged heads.

    The teacher runs in eval mode under `torch.inference_mode()` (no autograd graph, no
    batch-norm updates); its logits are cloned out of inference mode so the loss may keep them.
    """

    def __init__(self, teacher: nn.Module, loss: DistillationLoss) -> None:
        super().__init__()
        self.teacher = teacher.eval().requires_grad_(False)
        self.distillation = loss
        self.teacher_channels_last = is_cnn(teacher)
        self._teacher_device: torch.device | None = None

    def on_epoch_start(self, epoch: int) -> None:
        self.distillation.epoch = epoch

    def teacher_logits(self, images: torch.Tensor) -> torch.Tensor:
        """Moved to the batch's device on first use (CNNs in channels_last), kept in eval mode."""
        if self._teacher_device != images.device:
            memory_format = (
                torch.channels_last if self.teacher_channels_last else torch.contiguous_format
            )
            self.teacher.to(images.device, memory_format=memory_format).eval()
            self._teacher_device = images.device
        if self.teacher_channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            logits = self.teacher(images)
        return logits.clone()

    def training_step(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict]:
        images, target = batch
        class_logits, distill_logits = model(images)
        teacher = self.teacher_logits(images)
        loss = self.distillation(class_logits, distill_logits, target, teacher)
        agreement = (distill_logits.argmax(dim=1) == teacher.argmax(dim=1)).float().mean()
        return loss, {"teacher_agreement": agreement.item()}
