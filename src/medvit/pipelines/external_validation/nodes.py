"""Thin nodes of the external validation pipeline: an external cohort, ingested with the training
cohort's settings, scored by trained models that are only ever read.

The whole external cohort is test data. Nothing is chosen on it: the thresholds are the ones the
evaluation template chose on the original validation split (`<model>.thresholds`), and the model's
own input size comes from the model (its spec, or the detector's training arguments), not from
parameters that may have changed since it was trained.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from ultralytics import YOLO

from medvit.datasets.demo_cohort import DemoRequest
from medvit.evaluation.ptp import SLICE_KEY
from medvit.imaging.demo import DemoCohortSpec
from medvit.ingestion.config import IngestionParams, Source
from medvit.ingestion.store import SliceStore
from medvit.models import spec_of
from medvit.pipelines.data_preparation.nodes import patient_units
from medvit.pipelines.detection.nodes import DetectionParams, score_slices
from medvit.pipelines.distillation.nodes import DistillationDataParams
from medvit.splits import slices_in, with_fingerprint
from medvit.training import (
    ClassificationTask,
    SliceDataset,
    TrainConfig,
    predict,
    slice_transform,
    tumour_score,
)

EXTERNAL = "test"  # the split the external cohort is, for the evaluation template
PREDICTION_COLUMNS = [*SLICE_KEY, "source", "tumor"]


class ExternalCohortParams(BaseModel):
    """`external_validation`: the external cohort's sources (any ingestion source type).

    Everything else about ingestion (image size, preprocessing, workers, the bad-input gate) is
    the training cohort's `ingestion` block: a cohort preprocessed differently from training
    would measure the preprocessing, not the model.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    sources: list[Source] = Field(min_length=1)
    demo_cohort: DemoCohortSpec = DemoCohortSpec(seed=1)  # read only by a `type: demo` source


def plan_external_cohort(
    external: ExternalCohortParams, ingestion: IngestionParams
) -> tuple[DemoRequest, IngestionParams]:
    """The training ingestion settings with the external sources, and the demo to write (if a
    source is the demo)."""
    settings = IngestionParams.model_validate(
        {**dict(ingestion), "sources": list(external.sources)}
    )
    return DemoRequest(external.demo_cohort if settings.uses_demo else None), settings


def external_splits(slices: pd.DataFrame) -> pd.DataFrame:
    """Every unit of the external cohort is test: it has no train or val to choose anything on."""
    return with_fingerprint(patient_units(slices).assign(split=EXTERNAL), slices)


def evaluation_splits(splits: pd.DataFrame, external: pd.DataFrame) -> pd.DataFrame:
    """The original validation patients (whose predictions the thresholds were chosen on) and the
    external cohort as test: the rows the evaluation template reads its truth from."""
    val = splits[splits["split"] == "val"]
    return pd.concat([val, external[external["split"] == EXTERNAL]], ignore_index=True)


def _rows(slices: pd.DataFrame, splits: pd.DataFrame) -> pd.DataFrame:
    return slices_in(slices, splits, (EXTERNAL,))


def predict_detector(
    weights: Path,
    slices: pd.DataFrame,
    splits: pd.DataFrame,
    slice_store: SliceStore,
    params: DetectionParams,
) -> pd.DataFrame:
    """Slice scores (highest box confidence) and boxes, at the size the detector trained at."""
    trained_at = (YOLO(str(weights)).ckpt or {}).get("train_args", {}).get("imgsz")
    return score_slices(
        weights, _rows(slices, splits), PREDICTION_COLUMNS, slice_store, params, trained_at
    )


def predict_classifier(
    model: nn.Module,
    slices: pd.DataFrame,
    splits: pd.DataFrame,
    slice_store: SliceStore,
    data: DistillationDataParams,
) -> pd.DataFrame:
    """P(tumour) per slice, resized to the size the model was built for (its spec)."""
    rows = _rows(slices, splits)
    dataset = SliceDataset(
        slice_store.images,
        rows["image_ref"],
        rows["tumor"],
        slice_transform(spec_of(model).image_size, "none"),
    )
    config = TrainConfig(batch_size=data.predict_batch_size, progress=False)
    outputs = predict(model, ClassificationTask(), dataset, config)
    model.cpu()
    return rows[PREDICTION_COLUMNS].assign(
        score=tumour_score(outputs["probabilities"]).astype(float)
    )
