"""The one training loop for every medvit model: `fit(model, task, train, val, TrainConfig)`.

Device, precision, seeding, warmup+cosine AdamW, gradient clipping, per-epoch checkpoints with
resume, early stopping and DDP (under torchrun, or started by `fit` itself for
`TrainConfig.devices`) are handled here once; a `Task` says what the model learns. No Kedro and
no MLflow in here: pass `on_epoch_end` to send metrics anywhere.
"""

from medvit.training.config import EarlyStopping, TrainConfig
from medvit.training.data import (
    EpochSampler,
    SliceDataset,
    class_counts,
    class_weights,
    make_loader,
    slice_transform,
    unlabelled_slices,
)
from medvit.training.loop import FitResult, fit, predict
from medvit.training.runtime import Runtime, init_runtime, select_device
from medvit.training.tasks import ClassificationTask, Task, tumour_score

__all__ = [
    "ClassificationTask",
    "EarlyStopping",
    "EpochSampler",
    "FitResult",
    "Runtime",
    "SliceDataset",
    "Task",
    "TrainConfig",
    "class_counts",
    "class_weights",
    "fit",
    "init_runtime",
    "make_loader",
    "predict",
    "select_device",
    "slice_transform",
    "tumour_score",
    "unlabelled_slices",
]
