"""What a model learns, separated from how it is trained: the loop calls a `Task`.

A task turns a batch into a loss (training) and into outputs to score (validation). The
classification task below serves the teacher; the DeiT student, the MAE and DB-SAM bring their
own tasks and reuse the loop unchanged.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score, roc_auc_score
from torch import nn

Batch = tuple[torch.Tensor, ...]


class Task:
    """The interface the loop drives; `on_epoch_start` lets a loss change over epochs."""

    def on_epoch_start(self, epoch: int) -> None:
        """Called before each epoch (also the first epoch after a resume)."""

    def training_step(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict]:
        """The loss to minimise and any extra scalars to log (averaged over the epoch)."""
        raise NotImplementedError

    def validation_step(self, model: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        """Per-sample outputs; the loop concatenates them over batches (and ranks)."""
        raise NotImplementedError

    def validation_metrics(self, outputs: dict[str, np.ndarray]) -> dict[str, float]:
        """Scalars from the concatenated outputs; the loop prefixes them with `val_`."""
        raise NotImplementedError


def tumour_score(probabilities: np.ndarray) -> np.ndarray:
    """P(any tumour): class 0 is "normal", so this holds for binary and tumour-type targets."""
    return 1.0 - probabilities[:, 0]


class ClassificationTask(Task):
    """Cross-entropy on slice labels, class-weighted if asked; judged by tumour-vs-normal AUROC."""

    def __init__(self, class_weights: torch.Tensor | None = None) -> None:
        self.class_weights = class_weights

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        weight = None if self.class_weights is None else self.class_weights.to(logits.device)
        return F.cross_entropy(logits.float(), target, weight=weight)

    def training_step(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict]:
        images, target = batch
        return self.loss(model(images), target), {}

    def validation_step(self, model: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        images, target = batch
        return {"probabilities": model(images).float().softmax(dim=1), "target": target}

    def validation_metrics(self, outputs: dict[str, np.ndarray]) -> dict[str, float]:
        """Loss, accuracy, tumour-vs-normal AUROC and F1 (at 0.5); AUROC is NaN for one class."""
        probabilities, target = outputs["probabilities"], outputs["target"]
        picked = probabilities[np.arange(len(target)), target]
        score = tumour_score(probabilities)
        truth = (target > 0).astype(int)
        both = 0 < truth.sum() < len(truth)
        return {
            "loss": float(-np.log(np.clip(picked, 1e-12, None)).mean()),
            "accuracy": float((probabilities.argmax(axis=1) == target).mean()),
            "auroc": float(roc_auc_score(truth, score)) if both else float("nan"),
            "f1": float(f1_score(truth, score >= 0.5, zero_division=0)),
        }
