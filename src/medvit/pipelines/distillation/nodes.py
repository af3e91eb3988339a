"""Thin nodes of the distillation pipeline: typed parameters in, `medvit.models`/`training` do it.

Every check that can fail (model names, image size, teacher checkpoint, one-class train split)
runs before the first epoch. Per-epoch history goes to the active MLflow run as
`fit/<model>/<metric>` through `medvit.pipelines.fitting.fit_tracked`.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Literal

import mlflow
import numpy as np
import pandas as pd
import timm
import torch
from mlflow.models import infer_signature
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator
from torch import nn

from medvit.evaluation.ptp import SLICE_KEY
from medvit.identity import rows_digest, state_digest, table_digest
from medvit.ingestion.store import SliceStore
from medvit.models import (
    DistillationLoss,
    DistillationTask,
    LossKind,
    StudentSize,
    count_parameters,
    create_student,
    create_teacher,
    latency_ms,
    spec_of,
)
from medvit.models.mae import load_mae_encoder
from medvit.pipelines import tracking
from medvit.pipelines.fitting import fit_tracked
from medvit.splits import slices_in
from medvit.training import (
    ClassificationTask,
    SliceDataset,
    TrainConfig,
    class_weights,
    predict,
    slice_transform,
    tumour_score,
)
from medvit.training.data import Augmentation, balanced_weights

logger = logging.getLogger(__name__)

NORMAL = "normal"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DistillationDataParams(_Strict):
    """`distillation_data`: what both models see, so teacher and student compare like for like."""

    image_size: PositiveInt = 64
    target: Literal["tumor", "tumor_type"] = "tumor"
    imbalance: Literal["sampler", "loss_weights", "none"] = "sampler"
    # What the sampler balances: labels, or each (source, label) cell, so that where tumours and
    # normals come from different archives a model cannot learn the archive from their shares.
    balance: Literal["label", "source_label"] = "label"
    # MONAI bias field, gain, gamma, histogram shift and noise on both models' training views.
    intensity_augmentation: bool = False
    predict_batch_size: PositiveInt = 128

    @model_validator(mode="after")
    def _balance_needs_the_sampler(self) -> DistillationDataParams:
        if self.balance != "label" and self.imbalance != "sampler":
            raise ValueError(
                f"balance: {self.balance} is what the sampler draws; it needs imbalance: sampler "
                f"(got {self.imbalance})"
            )
        return self


class TeacherParams(_Strict):
    """`teacher`: a timm CNN, fine-tuned on slices."""

    architecture: str = "resnet152"
    pretrained: bool = False
    checkpoint: str | None = None
    augmentation: Augmentation = "weak"
    training: TrainConfig = TrainConfig()


class LossParams(_Strict):
    kind: LossKind = "hard"
    tau: float = Field(1.0, gt=0)
    alpha: float = Field(0.5, ge=0, le=1)
    reweight_from_epoch: int = Field(0, ge=0)


class StudentParams(_Strict):
    """`student`: a distilled DeiT; DeiT-LT distils on strongly augmented views.

    `init`: `scratch` (random weights), `mae` (the encoder of `mae_checkpoint`, which the `mae`
    pipeline writes from the brain slices) or the path of another MAE checkpoint.
    """

    size: StudentSize = "tiny"
    init: str = "scratch"
    mae_checkpoint: str = "data/06_models/brain_mae.pt"
    loss: LossParams = LossParams()
    augmentation: Augmentation | None = None  # None: strong for deit_lt, weak otherwise
    training: TrainConfig = TrainConfig()

    @property
    def encoder_checkpoint(self) -> str | None:
        """The MAE checkpoint the student starts from; None from scratch."""
        return {"scratch": None, "mae": self.mae_checkpoint}.get(self.init, self.init)

    @model_validator(mode="after")
    def _checkpoint_exists(self) -> StudentParams:
        """Before the teacher trains for minutes, not when the student starts."""
        path = self.encoder_checkpoint
        if path is not None and not Path(path).is_file():
            hint = " (run `kedro run --pipelines=mae` to write it)" if self.init == "mae" else ""
            raise ValueError(f"student.init: MAE checkpoint {path} does not exist{hint}")
        return self

    @model_validator(mode="after")
    def _augmentation(self) -> StudentParams:
        if self.augmentation is None:
            strong = self.loss.kind == "deit_lt"
            object.__setattr__(self, "augmentation", "strong" if strong else "weak")
        return self


class DistillationInputError(ValueError):
    """Slices or splits that cannot train a classifier."""


def class_names(slices: pd.DataFrame, data: DistillationDataParams) -> list[str]:
    if data.target == "tumor":
        return [NORMAL, "tumor"]
    types = slices.loc[slices["tumor"] == 1, "tumor_type"]
    if types.isna().any() or types.empty:
        raise DistillationInputError(
            "target: tumor_type needs a tumour_type on every tumour slice;"
            f" {int(types.isna().sum())} of {len(types)} have none (use target: tumor)"
        )
    return [NORMAL, *sorted(types.unique())]


def training_slices(
    slices: pd.DataFrame, splits: pd.DataFrame, data: DistillationDataParams
) -> tuple[pd.DataFrame, list[str]]:
    """Slices of train/val/test patients with their split and class index; checks the classes."""
    table = slices_in(slices, splits)
    names = class_names(table, data)
    if data.target == "tumor_type":
        label = table["tumor_type"].map({name: index for index, name in enumerate(names)})
    else:
        label = table["tumor"]
    table["label"] = label.where(table["tumor"] == 1, 0).astype(int)
    for split in ("train", "val"):
        present = sorted(set(table.loc[table["split"] == split, "tumor"]))
        if present != [0, 1]:
            raise DistillationInputError(
                f"the {split} split has slices of class(es) {present} only: a tumour/normal"
                " classifier needs both tumour and normal slices to train and to be selected"
            )
    return table, names


def _dataset(
    table: pd.DataFrame,
    store: SliceStore,
    split: str,
    size: int,
    augmentation: Augmentation,
    intensity: bool = False,
) -> SliceDataset:
    rows = table[table["split"] == split]
    transform = slice_transform(size, augmentation, intensity)
    return SliceDataset(store.images, rows["image_ref"], rows["label"], transform)


def _data_digest(table: pd.DataFrame) -> str:
    """The train and val rows a model learns from and is selected on, in the order it sees them.

    Not the test rows: a model's identity must not depend on how it will be tested.
    """
    rows = table[table["split"].isin(["train", "val"])]
    columns = (*SLICE_KEY, "image_ref", "label", "split")
    return table_digest(rows, [column for column in columns if column in rows])


def _pixel_digest(table: pd.DataFrame, store: SliceStore) -> str:
    """The train and val pixels: a re-ingest with other windowing keeps the table but not them."""
    rows = table[table["split"].isin(["train", "val"])]
    return rows_digest(store.images, rows["image_ref"].to_numpy())


def _imbalance(
    table: pd.DataFrame, n_classes: int, data: DistillationDataParams
) -> tuple[np.ndarray | None, torch.Tensor | None]:
    """(per-sample weights for the sampler, class weights for the loss) of the train rows, per
    `imbalance` and `balance`."""
    train = table[table["split"] == "train"]
    labels = train["label"].to_numpy()
    if data.imbalance == "sampler":
        cells = (train["source"], labels) if data.balance == "source_label" else (labels,)
        return balanced_weights(*cells), None
    if data.imbalance == "loss_weights":
        return None, class_weights(labels, n_classes)
    return None, None


def _fit(
    name: str,
    model: nn.Module,
    task: ClassificationTask,
    table: pd.DataFrame,
    classes: list[str],
    store: SliceStore,
    data: DistillationDataParams,
    augmentation: Augmentation,
    config: TrainConfig,
    sample_weights: np.ndarray | None,
    identity: dict[str, object],
) -> nn.Module:
    """`identity`: what the model's result depends on beyond the data settings here (its
    architecture, loss, teacher); `fit` adds the config and the initial weights, and
    `fit_tracked` keeps the model's whole `fit/<name>/*` record in the run, reused or resumed.
    """
    train = _dataset(
        table, store, "train", data.image_size, augmentation, data.intensity_augmentation
    )
    val = _dataset(table, store, "val", data.image_size, "none")
    result = fit_tracked(
        name,
        model,
        task,
        train,
        val,
        config,
        sample_weights=sample_weights,
        identity={
            "data": _data_digest(table),
            "pixels": _pixel_digest(table, store),
            "labels": {"target": data.target, "classes": classes},
            "imbalance": data.imbalance,
            "image_size": data.image_size,
            "augmentation": augmentation,
            "intensity_augmentation": data.intensity_augmentation,
            **identity,
        },
    )
    return result.model.cpu().eval()


def train_teacher(
    table: pd.DataFrame,
    classes: list[str],
    slice_store: SliceStore,
    data: DistillationDataParams,
    teacher: TeacherParams,
) -> nn.Module:
    torch.manual_seed(teacher.training.seed)  # the teacher's initial weights
    model = create_teacher(
        teacher.architecture,
        len(classes),
        data.image_size,
        pretrained=teacher.pretrained,
        checkpoint=teacher.checkpoint,
    )
    sample_weights, loss_weights = _imbalance(table, len(classes), data)
    task = ClassificationTask(loss_weights)
    return _fit(
        "teacher",
        model,
        task,
        table,
        classes,
        slice_store,
        data,
        teacher.augmentation,
        teacher.training,
        sample_weights,
        {
            "model": {"architecture": teacher.architecture, "pretrained": teacher.pretrained},
            "loss": "cross_entropy",
        },
    )


def train_student(
    table: pd.DataFrame,
    classes: list[str],
    slice_store: SliceStore,
    teacher_model: nn.Module,
    data: DistillationDataParams,
    student: StudentParams,
) -> nn.Module:
    teacher_spec = spec_of(teacher_model)
    if teacher_spec.num_classes != len(classes):
        raise DistillationInputError(
            f"the teacher has {teacher_spec.num_classes} classes; the target has {len(classes)}"
        )
    torch.manual_seed(student.training.seed)  # the student's initial weights
    model = create_student(student.size, len(classes), data.image_size)
    if student.encoder_checkpoint is not None:
        loaded = load_mae_encoder(model, student.encoder_checkpoint)
        logger.info(
            "Student initialised from MAE checkpoint %s (%d tensors; %s adapted)",
            student.encoder_checkpoint,
            len(loaded.loaded),
            ", ".join(loaded.adapted),
        )
    labels = table.loc[table["split"] == "train", "label"].to_numpy()
    sample_weights, loss_weights = _imbalance(table, len(classes), data)
    loss = DistillationLoss(
        student.loss.kind,
        tau=student.loss.tau,
        alpha=student.loss.alpha,
        label_weights=loss_weights,
        distill_weights=class_weights(labels, len(classes)),
        reweight_from_epoch=student.loss.reweight_from_epoch,
    )
    task = DistillationTask(teacher_model, loss)
    return _fit(
        "student",
        model,
        task,
        table,
        classes,
        slice_store,
        data,
        student.augmentation,
        student.training,
        sample_weights,
        {
            "model": {"size": student.size},
            "loss": student.loss,
            "teacher": state_digest(teacher_model.state_dict()),
        },
    )


def predict_slices(
    model: nn.Module,
    table: pd.DataFrame,
    slice_store: SliceStore,
    data: DistillationDataParams,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Val and test slice predictions (`score` = P(tumour)) in the evaluation pipeline's format."""
    config = TrainConfig(batch_size=data.predict_batch_size, progress=False)
    frames = []
    for split in ("val", "test"):
        rows = table[table["split"] == split].reset_index(drop=True)
        outputs = predict(
            model,
            ClassificationTask(),
            _dataset(table, slice_store, split, data.image_size, "none"),
            config,
        )
        frames.append(
            rows[[*SLICE_KEY, "tumor", "source"]].assign(
                score=tumour_score(outputs["probabilities"]).astype(float)
            )
        )
    model.cpu()
    return frames[0], frames[1]


def log_model(model: nn.Module, *, name: str) -> None:
    """An `mlflow.pytorch` model (torch.export "pt2" format) with its signature, registered as
    `medvit-<name>` from a child run of its own (`tracking.log_model_run`), if a run is active.

    The example batch has two images so that the exported graph keeps a dynamic batch size.
    Requirements are pinned from the running versions rather than inferred: inference would
    reload the model in a subprocess, which costs more than training the demo model.
    """
    spec = spec_of(model)
    example = np.zeros((2, spec.in_chans, spec.image_size, spec.image_size), dtype=np.float32)
    with torch.inference_mode():
        output = model.eval()(torch.from_numpy(example)).numpy()
    tracking.log_model_run(
        name,
        partial(
            mlflow.pytorch.log_model,
            model,
            signature=infer_signature(example, output),
            input_example=example,
            pip_requirements=[
                f"torch=={torch.__version__.split('+')[0]}",
                f"timm=={timm.__version__}",
            ],
        ),
    )


def _ptp_test(table: pd.DataFrame, metric: str) -> float:
    rows = table[(table["split"] == "test") & (table["metric"] == metric)]
    return float(rows["value"].iloc[0]) if len(rows) else float("nan")


def _cell(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def compare_models(
    teacher_model: nn.Module,
    student_model: nn.Module,
    teacher_ptp: pd.DataFrame,
    student_ptp: pd.DataFrame,
    teacher_slices: pd.DataFrame,
    student_slices: pd.DataFrame,
) -> tuple[str, dict]:
    """Teacher vs student on test: size, latency per image (batch 1, this machine), F1, AUROC."""
    rows = {}
    for name, model, ptp, slices in (
        ("teacher", teacher_model, teacher_ptp, teacher_slices),
        ("student", student_model, student_ptp, student_slices),
    ):
        rows[name] = {
            "architecture": spec_of(model).architecture,
            "n_params": count_parameters(model),
            "latency_ms": latency_ms(model, spec_of(model).image_size),
            "ptp_tumor_f1": _ptp_test(ptp, "tumor_f1"),
            "ptp_auroc": _ptp_test(ptp, "auroc"),
            "slice_f1": _ptp_test(slices, "f1"),
            "slice_auroc": _ptp_test(slices, "auroc"),
        }
    metrics = {
        f"distill/{name}/{key}": value
        for name, row in rows.items()
        for key, value in row.items()
        if key != "architecture"
    }
    columns = list(rows["teacher"])
    lines = [
        "# Teacher vs student (test split)",
        "",
        "Latency: median of single-image forward passes on the machine that ran the pipeline.",
        "",
        "| model | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
        *(
            f"| {name} | " + " | ".join(_cell(row[column]) for column in columns) + " |"
            for name, row in rows.items()
        ),
        "",
    ]
    return "\n".join(lines), tracking.metric_items(metrics)
