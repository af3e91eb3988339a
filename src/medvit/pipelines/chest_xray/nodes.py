"""Thin nodes of the chest X-ray study: multi-label fine-tuning and the MAE-vs-scratch report.

Both classifiers see the same radiographs, image size, augmentation and training budget
(`chest_finetune`); they differ only in where their weights start (`init`), which is the
comparison the medical MAE study makes.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field, PositiveInt
from torch import nn

from medvit.evaluation.multilabel import MEAN, SCORE_PREFIX
from medvit.evaluation.multilabel_report import render_comparison
from medvit.evaluation.ptp import SLICE_KEY
from medvit.evaluation.report import render_html
from medvit.identity import rows_digest, table_digest
from medvit.ingestion.findings import finding_columns
from medvit.ingestion.store import SliceStore
from medvit.models.multilabel import (
    Init,
    MultiLabelTask,
    create_multilabel_classifier,
    finetune_transform,
)
from medvit.pipelines.fitting import fit_tracked
from medvit.pipelines.tracking import metric_items
from medvit.splits import slices_in
from medvit.training import SliceDataset, TrainConfig, predict

logger = logging.getLogger(__name__)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FinetuneParams(_Strict):
    """`chest_finetune`: what every classifier sees, so that they compare like for like."""

    image_size: PositiveInt = 64
    randaugment_magnitude: int = Field(6, ge=0, le=30)
    pos_weight: bool = False  # True: BCE weighs each finding's positives by its negatives/positives
    predict_batch_size: PositiveInt = 128


class ClassifierParams(_Strict):
    """One classifier (`vit_mae`, `vit_scratch`): where its weights start, and its training."""

    architecture: str = "vit_tiny_patch16_224"
    init: Init = "scratch"
    drop_path_rate: float = Field(0.2, ge=0, lt=1)
    training: TrainConfig = TrainConfig()


class ChestInputError(ValueError):
    """Radiographs or splits that cannot train a multi-label classifier."""


def labelled_slices(
    slices: pd.DataFrame, splits: pd.DataFrame, slice_store: SliceStore
) -> tuple[pd.DataFrame, list[str], SliceStore]:
    """Radiographs of train/val/test patients with their split, the findings they carry, and
    the store of their pixels (passed on as it is, for the classifiers' namespaces)."""
    columns = finding_columns(slices)
    if not columns:
        raise ChestInputError(
            "the slice table has no finding_* columns: ingest the chest cohort with its findings"
            " (chest.ingestion.findings) before fine-tuning"
        )
    table = slices_in(slices, splits)
    for split in ("train", "val"):
        if not (table["split"] == split).any():
            raise ChestInputError(f"the {split} split holds no radiographs")
    train = table.loc[table["split"] == "train", columns]
    absent = [column for column in columns if not train[column].any()]
    if absent:
        logger.warning(
            "No positive training radiograph for %s: the classifiers cannot learn it",
            ", ".join(absent),
        )
    return table, [column.removeprefix("finding_") for column in columns], slice_store


def _dataset(
    table: pd.DataFrame, store: SliceStore, split: str, data: FinetuneParams, train: bool
) -> SliceDataset:
    rows = table[table["split"] == split]
    transform = finetune_transform(
        data.image_size, train=train, magnitude=data.randaugment_magnitude
    )
    labels = rows[finding_columns(rows)].to_numpy(dtype=np.int64)
    return SliceDataset(store.images, rows["image_ref"].to_numpy(), labels, transform)


def _pos_weight(table: pd.DataFrame) -> torch.Tensor:
    """Negatives per positive of each finding among training radiographs (1 where none)."""
    truth = table.loc[table["split"] == "train", finding_columns(table)].to_numpy(dtype=float)
    positives = truth.sum(axis=0)
    weight = np.where(positives > 0, (len(truth) - positives) / np.maximum(positives, 1), 1.0)
    return torch.tensor(weight, dtype=torch.float32)


def train_classifier(
    table: pd.DataFrame,
    findings: list[str],
    slice_store: SliceStore,
    data: FinetuneParams,
    classifier: ClassifierParams,
    mae_model: dict[str, Any] | None = None,
    *,
    name: str,
) -> nn.Module:
    """Fine-tune one classifier (from `mae_model` when `init: mae`); history as `fit/<name>/*`."""
    if (classifier.init == "mae") != (mae_model is not None):
        raise ChestInputError(
            f"{name}: init {classifier.init!r} "
            + ("needs an MAE checkpoint" if mae_model is None else "does not use one")
        )
    torch.manual_seed(classifier.training.seed)  # the head's (and a scratch model's) weights
    model = create_multilabel_classifier(
        classifier.architecture,
        len(findings),
        data.image_size,
        drop_path_rate=classifier.drop_path_rate,
        init=classifier.init,
        mae_encoder=mae_model,
    )
    rows = table[table["split"].isin(["train", "val"])]
    keyed = rows[[*SLICE_KEY, "image_ref", "split", *finding_columns(rows)]]
    result = fit_tracked(
        name,
        model,
        MultiLabelTask(_pos_weight(table) if data.pos_weight else None),
        _dataset(table, slice_store, "train", data, train=True),
        _dataset(table, slice_store, "val", data, train=False),
        classifier.training,
        identity={
            "data": table_digest(keyed),
            "pixels": rows_digest(slice_store.images, rows["image_ref"].to_numpy()),
            "finetune": data,
            "model": classifier.model_dump(exclude={"training"}),
        },
    )
    return result.model.cpu().eval()


def predict_findings(
    model: nn.Module, table: pd.DataFrame, slice_store: SliceStore, data: FinetuneParams
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Val and test predictions: the slice key, `finding_<name>` truth, `score_<name>` = P."""
    config = TrainConfig(batch_size=data.predict_batch_size, progress=False)
    columns = finding_columns(table)
    frames = []
    for split in ("val", "test"):
        rows = table[table["split"] == split].reset_index(drop=True)
        outputs = predict(
            model, MultiLabelTask(), _dataset(table, slice_store, split, data, False), config
        )
        scores = pd.DataFrame(
            outputs["probabilities"].astype(float),
            columns=[SCORE_PREFIX + c.removeprefix("finding_") for c in columns],
        )
        frames.append(pd.concat([rows[[*SLICE_KEY, *columns]], scores], axis=1))
    model.cpu()
    return frames[0], frames[1]


def _test_mean(table: pd.DataFrame, level: str) -> float:
    rows = table[(table["split"] == "test") & (table["finding"] == MEAN)]
    return float(rows.loc[rows["level"] == level, "value"].iloc[0])


def compare_models(
    mae_table: pd.DataFrame,
    scratch_table: pd.DataFrame,
    vit_mae: ClassifierParams,
    vit_scratch: ClassifierParams,
) -> tuple[str, str, dict]:
    """MAE-initialised against the other initialisation, per finding, on test patients and
    images; the mean AUROCs' difference as `chest/mae_minus_<init>/test/<level>_mean_auroc`."""
    other = vit_scratch.init
    intro = (
        f"The study's comparison (Xiao et al., WACV 2023): `vit_mae` ({vit_mae.architecture}"
        f" fine-tuned from the chest MAE encoder) against `vit_scratch`"
        f" ({vit_scratch.architecture}, init: {other}), with the same data, augmentation and budget"
        f" ({vit_mae.training.epochs} and {vit_scratch.training.epochs} epochs). AUROC on test"
        " with 95% patient-bootstrap intervals; thresholds and per-finding sensitivity and"
        " specificity are in each model's multi-label report."
    )
    markdown = render_comparison(
        "Chest X-ray: MAE initialisation against " + other,
        {"vit_mae": mae_table, "vit_scratch": scratch_table},
        intro,
    )
    deltas = {}
    for level in ("patient", "image"):
        difference = _test_mean(mae_table, level) - _test_mean(scratch_table, level)
        deltas[f"chest/mae_minus_{other}/test/{level}_mean_auroc"] = difference
    return markdown, render_html(markdown, "Chest X-ray: MAE vs " + other), metric_items(deltas)
