"""What one training run is, as a validated object: the same fields drive every model.

A run is fully described by this config plus the model, the data and the task, which is what
makes a checkpoint safe to resume: the loop refuses a checkpoint written under another identity
(`medvit.training.checkpoint.run_identity`).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, NonNegativeInt, PositiveInt

Precision = Literal["auto", "bf16", "fp32"]


class EarlyStopping(BaseModel):
    """Stop when `monitor` (a validation metric) has not improved for `patience` epochs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    monitor: str = "val_auroc"
    mode: Literal["max", "min"] = "max"
    patience: PositiveInt = 5
    min_delta: NonNegativeFloat = 0.0


class TrainConfig(BaseModel):
    """Optimisation, precision, data loading and checkpointing of one run.

    `auto` settings resolve at run time: bf16 autocast and DataLoader workers on CUDA, fp32 and
    in-process loading on CPU (two cores gain nothing from workers competing with the model).
    `checkpoint_dir` holds the resumable state: a rerun after an interruption continues at the
    next epoch; null disables checkpoints (and resume). A rerun of a run that finished trains
    again unless `reuse_finished` is set: silently returning an earlier model is how stale
    results creep in, so taking one is an explicit choice.

    Weight decay spares biases, norms and the tokens/embeddings a timm model lists in
    `no_weight_decay()`; `layer_decay` (ViTs, for fine-tuning a pretrained encoder) scales the
    learning rate of block i of n by `layer_decay ** (n - i)`, so early blocks move least.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: PositiveInt = 10
    batch_size: PositiveInt = 32
    lr: Annotated[float, Field(gt=0)] = 1e-3
    weight_decay: NonNegativeFloat = 0.05
    layer_decay: Annotated[float, Field(gt=0, le=1)] | None = None
    warmup_epochs: NonNegativeInt = 1
    min_lr_ratio: Annotated[float, Field(ge=0, le=1)] = 0.01
    grad_clip_norm: Annotated[float, Field(gt=0)] | None = 1.0
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Precision = "auto"
    channels_last: bool | Literal["auto"] = "auto"
    num_workers: NonNegativeInt | Literal["auto"] = "auto"
    early_stopping: EarlyStopping | None = None
    checkpoint_dir: str | None = None
    resume: bool = True
    reuse_finished: bool = False
    progress: bool = True
