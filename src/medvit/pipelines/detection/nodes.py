"""Thin nodes of the detection pipeline: parameters are checked here, ultralytics does the work.

Metric names follow the contract: `det/detector/<split>/<metric>` for box metrics and
`fit/detector/<metric>` (step = epoch) for the training history.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal

import mlflow
import numpy as np
import pandas as pd
import torch
import ultralytics
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema, TensorSpec
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt, field_validator
from ultralytics.cfg import DEFAULT_CFG_DICT

from medvit.detection.export import ExportPlan, YoloDataset, plan_export, verify_export
from medvit.detection.yolo import (
    predict_slices,
    resolve_device,
    resolve_weights,
    train_detector,
    validate_detector,
)
from medvit.evaluation.ptp import SLICE_KEY
from medvit.ingestion.store import SliceStore
from medvit.pipelines.tracking import log_artifacts, log_model_run, metric_items
from medvit.splits import slices_in

MODEL = "detector"
EVALUATED_SPLITS = ("val", "test")
BOX_COLUMNS = ("image", "x1", "y1", "x2", "y2", "confidence")
# Grey images (n, height, width) of 8-bit pixels in, one row per box out.
DETECTOR_SIGNATURE = ModelSignature(
    inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, -1, -1))]),
    outputs=Schema(
        [ColSpec("long", "image"), *(ColSpec("double", name) for name in BOX_COLUMNS[1:])]
    ),
)


class TrainParams(BaseModel):
    """`detection.train`: ultralytics' own train arguments, plus where the run lives.

    Intensity augmentation is ultralytics' own (`augment.hsv_v`, a brightness gain; hue and
    saturation do nothing to grey slices) rather than a MONAI pre-step: the exported images are
    what ultralytics caches and mosaics, and a pre-step would freeze one draw per file for every
    epoch. Scanner contrast is taken out of the pixels at ingestion (`preprocessing.intensity`).
    """

    model_config = ConfigDict(extra="forbid")

    weights: str = "yolov8n.yaml"
    epochs: PositiveInt = 20
    imgsz: PositiveInt = 128
    batch: PositiveInt = 16
    device: str | int | list[int] = "auto"
    amp: bool = True
    workers: NonNegativeInt = 2
    seed: int = 0
    patience: PositiveInt = 10
    cache: Literal[False, "ram", "disk"] = False
    plots: bool = True
    resume: bool = True
    workdir: str = "data/06_models/detector/ultralytics"
    augment: dict[str, float] = Field(default_factory=dict)

    @field_validator("augment")
    @classmethod
    def _known_hyperparameters(cls, augment: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(augment) - set(DEFAULT_CFG_DICT))
        if unknown:
            raise ValueError(f"not ultralytics train arguments: {', '.join(unknown)}")
        return augment

    def ultralytics_args(self) -> dict[str, Any]:
        """The arguments `YOLO.train` receives (device resolved: this fails without CUDA)."""
        fixed = self.model_dump(exclude={"weights", "resume", "workdir", "augment", "device"})
        return {**fixed, **self.augment, "device": resolve_device(self.device)}

    def inference_args(self) -> dict[str, Any]:
        """What validation and prediction share with training: image size and device."""
        return {"imgsz": self.imgsz, "device": resolve_device(self.device)}


class PredictParams(BaseModel):
    """`detection.predict`: a low confidence floor keeps the slice score a ranking, not a call."""

    model_config = ConfigDict(extra="forbid")

    conf: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.001
    iou: Annotated[float, Field(gt=0.0, le=1.0)] = 0.7
    max_det: PositiveInt = 10
    batch: PositiveInt = 32


class DetectionParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    train: TrainParams = Field(default_factory=TrainParams)
    predict: PredictParams = Field(default_factory=PredictParams)
    log_patient_images: bool = False  # ultralytics' batch mosaics and val images to MLflow

    def prediction_args(self, imgsz: int | None = None) -> dict[str, Any]:
        """ultralytics' predict arguments: training's size and device (or the size a checkpoint
        was trained at), the prediction thresholds."""
        args = self.train.inference_args() | {
            "conf": self.predict.conf,
            "iou": self.predict.iou,
            "max_det": self.predict.max_det,
        }
        return args if imgsz is None else args | {"imgsz": imgsz}


def export_yolo_dataset(
    slices: pd.DataFrame, splits: pd.DataFrame, slice_store: SliceStore
) -> ExportPlan:
    """The plan the `yolo_dataset` folder dataset writes (only what changed)."""
    return plan_export(slices, splits, slice_store.images)


def train(yolo_dataset: YoloDataset, params: DetectionParams) -> tuple[Path, dict]:
    """Train (or resume), after every check that can fail without training."""
    weights = resolve_weights(params.train.weights)
    args = params.train.ultralytics_args()
    verify_export(yolo_dataset)
    trained = train_detector(
        yolo_dataset, weights, args, Path(params.train.workdir), params.train.resume
    )
    log_artifacts(trained.plots(params.log_patient_images), f"{MODEL}/training")
    log_artifacts([trained.best], f"models/{MODEL}")
    history = trained.history()
    metrics = {
        f"fit/{MODEL}/{column}": [
            {"value": float(value), "step": int(epoch)}
            for epoch, value in zip(history["epoch"], history[column], strict=True)
        ]
        for column in history.columns.drop("epoch")
    }
    return trained.best, metrics


def box_metrics(weights: Path, yolo_dataset: YoloDataset, params: DetectionParams) -> dict:
    """Precision, recall, mAP50 and mAP50-95 on val and test, as ultralytics computes them."""
    args = {**params.train.inference_args(), "batch": params.predict.batch}
    values = {}
    for split in EVALUATED_SPLITS:
        metrics = validate_detector(weights, yolo_dataset, split, args, Path(params.train.workdir))
        values.update({f"det/{MODEL}/{split}/{name}": value for name, value in metrics.items()})
    return metric_items(values)


def predict(
    weights: Path,
    slices: pd.DataFrame,
    splits: pd.DataFrame,
    slice_store: SliceStore,
    params: DetectionParams,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Slice predictions for val and test: score = highest box confidence, boxes kept."""
    rows = slices_in(slices, splits, EVALUATED_SPLITS)
    columns = ["split", *SLICE_KEY, "tumor", "source"]
    table = score_slices(weights, rows, columns, slice_store, params)
    return tuple(  # type: ignore[return-value]
        table[table["split"] == split].drop(columns="split").reset_index(drop=True)
        for split in EVALUATED_SPLITS
    )


def score_slices(
    weights: Path,
    rows: pd.DataFrame,
    columns: list[str],
    slice_store: SliceStore,
    params: DetectionParams,
    imgsz: int | None = None,
) -> pd.DataFrame:
    """`rows[columns]` with each slice's `score` (its highest box confidence, 0 without a box)
    and `boxes`; `imgsz`: the size the checkpoint trained at, when it may differ from `params`."""
    scored = list(
        predict_slices(
            weights,
            slice_store.images,
            rows["image_ref"].tolist(),
            params.predict.batch,
            params.prediction_args(imgsz),
        )
    )
    return rows[columns].assign(
        score=[score for score, _ in scored], boxes=[boxes for _, boxes in scored]
    )


class DetectorModel(mlflow.pyfunc.PythonModel):
    """The detector as an MLflow model: grey images (n, height, width) of uint8 in, one row per
    box out: the image's index, the box corners in its pixels and the box confidence.

    An image's tumour score, as the pipeline computes it, is its highest confidence (0 without a
    box). Inference runs on the best device of the machine that loads the model.
    """

    def __init__(self, params: DetectionParams) -> None:
        self.settings = {
            "imgsz": params.train.imgsz,
            "conf": params.predict.conf,
            "iou": params.predict.iou,
            "max_det": params.predict.max_det,
        }
        self.batch = params.predict.batch

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self.weights = Path(context.artifacts["weights"])

    def predict(
        self,
        context: mlflow.pyfunc.PythonModelContext,
        model_input: np.ndarray,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        images = np.asarray(model_input)
        settings = {**self.settings, "device": resolve_device("auto")}
        scored = predict_slices(self.weights, images, range(len(images)), self.batch, settings)
        rows = [(index, *box) for index, (_, boxes) in enumerate(scored) for box in boxes]
        return pd.DataFrame(rows, columns=list(BOX_COLUMNS)).astype({"image": "int64"})


def log_model(weights: Path, params: DetectionParams) -> None:
    """Log the detector as an MLflow pyfunc model with its weights, registered as
    `medvit-detector` (`tracking.log_model_run`); requirements pinned, not inferred, for speed."""
    log_model_run(
        MODEL,
        partial(
            mlflow.pyfunc.log_model,
            python_model=DetectorModel(params),
            artifacts={"weights": str(weights)},
            signature=DETECTOR_SIGNATURE,
            pip_requirements=[
                f"ultralytics=={ultralytics.__version__}",
                f"torch=={torch.__version__.split('+')[0]}",
            ],
        ),
    )
