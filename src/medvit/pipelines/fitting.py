"""`medvit.training.fit` with its history in the active MLflow run, for the nodes that train.

Per-epoch metrics go to `fit/<model>/<metric>` (step = epoch, from 1, as the detector's history
does); history the call did not see being trained (a reused run, the epochs before a resume) is
logged afterwards, so every run holds a model's whole record; a reused run is tagged with the run
that trained it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import mlflow
import numpy as np
from torch import nn
from torch.utils.data import Dataset

from medvit.training import FitResult, Task, TrainConfig, fit

logger = logging.getLogger(__name__)


def log_history(model: str, metrics: Mapping[str, float], epoch: int) -> None:
    """`fit/<model>/<metric>` in the active run (none: nothing is logged)."""
    if mlflow.active_run() is not None:
        mlflow.log_metrics({f"fit/{model}/{k}": v for k, v in metrics.items()}, step=epoch + 1)


def fit_tracked(
    name: str,
    model: nn.Module,
    task: Task,
    train: Dataset,
    val: Dataset | None,
    config: TrainConfig,
    *,
    identity: Mapping[str, Any],
    sample_weights: np.ndarray | None = None,
    on_epoch_end: Callable[[dict[str, float], int], None] | None = None,
) -> FitResult:
    """`fit`, logging its history as model `name`; `on_epoch_end` runs after each epoch's log."""

    def epoch_end(metrics: dict[str, float], epoch: int) -> None:
        log_history(name, metrics, epoch)
        if on_epoch_end is not None:
            on_epoch_end(metrics, epoch)

    run = mlflow.active_run()
    result = fit(
        model,
        task,
        train,
        val,
        config,
        sample_weights=sample_weights,
        on_epoch_end=epoch_end,
        identity=identity,
        tracking_run_id=None if run is None else run.info.run_id,
    )
    for epoch, metrics in enumerate(result.unreported):
        log_history(name, metrics, epoch)
    if result.reused and run is not None:
        mlflow.set_tag(f"fit/{name}/reused_from", result.reused_from)
    best = "the last" if result.best_epoch is None else result.best_epoch + 1
    logger.info("%s: weights of epoch %s of %d kept", name, best, len(result.history))
    return result
