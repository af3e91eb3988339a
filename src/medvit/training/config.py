"""What one training run is, as a validated object: the same fields drive every model.

A run is fully described by this config plus the model, the data and the task, which is what
makes a checkpoint safe to resume: the loop refuses a checkpoint written under another identity
(`medvit.training.checkpoint.run_identity`).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveInt,
    model_validator,
)

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
    `betas` are AdamW's (MAE pretraining uses (0.9, 0.95)).

    `base_lr`, when set, replaces `lr` by the linear scaling rule of MAE and DeiT:
    `lr = base_lr * batch_size * processes / 256`, so a recipe carries over between one GPU and
    many (`batch_size` is per process).

    `devices` trains on several processes with DDP, started from this call through torch's
    elastic launcher (no `torchrun` around Kedro): a list of CUDA device indices, or `auto` for
    every visible GPU (one process when there are none). With `device: cpu` the list's length is
    the number of CPU processes (gloo), which is how tests run the same path. null: one process,
    or whatever `torchrun` started.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: PositiveInt = 10
    batch_size: PositiveInt = 32
    lr: Annotated[float, Field(gt=0)] = 1e-3
    base_lr: Annotated[float, Field(gt=0)] | None = None
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = (
        0.9,
        0.999,
    )
    weight_decay: NonNegativeFloat = 0.05
    layer_decay: Annotated[float, Field(gt=0, le=1)] | None = None
    warmup_epochs: NonNegativeInt = 1
    min_lr_ratio: Annotated[float, Field(ge=0, le=1)] = 0.01
    grad_clip_norm: Annotated[float, Field(gt=0)] | None = 1.0
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    devices: Annotated[list[NonNegativeInt], Field(min_length=1)] | Literal["auto"] | None = None
    precision: Precision = "auto"
    channels_last: bool | Literal["auto"] = "auto"
    num_workers: NonNegativeInt | Literal["auto"] = "auto"
    early_stopping: EarlyStopping | None = None
    checkpoint_dir: str | None = None
    resume: bool = True
    reuse_finished: bool = False
    progress: bool = True

    @model_validator(mode="after")
    def _one_learning_rate(self) -> TrainConfig:
        if self.base_lr is not None and "lr" in self.model_fields_set:
            raise ValueError(
                f"both lr ({self.lr}) and base_lr ({self.base_lr}) are set; give one: base_lr"
                " scales with the batch (lr = base_lr * batch_size * processes / 256)"
            )
        if isinstance(self.devices, list) and len(set(self.devices)) < len(self.devices):
            raise ValueError(f"devices {self.devices} lists a device twice")
        return self

    def learning_rate(self, world_size: int = 1) -> float:
        """The peak learning rate of a run on `world_size` processes."""
        if self.base_lr is None:
            return self.lr
        return self.base_lr * self.batch_size * world_size / 256
