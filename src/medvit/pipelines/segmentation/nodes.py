"""Thin nodes of the segmentation pipeline: DB-SAM and its decoder-only SAM baseline, prompted by
true boxes (oracle) and by the detector's boxes, scored by `medvit.evaluation.segmentation`.

Both models train through `medvit.training.fit` under one `training` block, so they get the same
budget; each keeps its best epoch by validation Dice, and the detector's box confidence threshold
is chosen on validation slices. Test slices choose nothing. Nodes that name MLflow keys or files
take the model as a keyword bound when the pipeline is built (a node cannot see its namespace).
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Annotated, Literal

import mlflow
import nibabel as nib
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, NonNegativeInt, PositiveInt
from torch import nn

from medvit.evaluation import segmentation as seg
from medvit.evaluation.plots import contour_figure
from medvit.evaluation.ptp import SLICE_KEY, flatten_metrics
from medvit.evaluation.report import png_data_uri, render_html
from medvit.evaluation.segmentation_report import figure_png, render_report
from medvit.identity import rows_digest, table_digest
from medvit.ingestion.store import SliceStore
from medvit.models.dbsam import (
    SegmentationTask,
    SegmenterConfig,
    SegmenterKind,
    build_segmenter,
    parameter_counts,
)
from medvit.pipelines.fitting import fit_tracked
from medvit.pipelines.tracking import metric_items
from medvit.splits import slices_in
from medvit.training import EarlyStopping, SliceDataset, TrainConfig, predict
from medvit.training.segmentation_data import SegmentationSliceDataset, mask_box

logger = logging.getLogger(__name__)

MODELS: tuple[SegmenterKind, ...] = ("dbsam", "sam_decoder")
EVALUATED_SPLITS = ("val", "test")
PROMPTS = ("oracle", "detector")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SegmentationEvaluationParams(_Strict):
    """How predictions are scored; `tolerance_mm` is the surface Dice's (2 mm: the in-plane
    size of about two clinical MR pixels)."""

    tolerance_mm: Annotated[float, Field(gt=0)] = 2.0
    n_bootstrap: NonNegativeInt = 1000
    seed: int = 0
    ci: Annotated[float, Field(gt=0, lt=1)] = 0.95
    figure_slices: PositiveInt = 6


class SegmentationParams(_Strict):
    """`segmentation` in parameters_segmentation.yml.

    `training` is shared by both models (same data, same budget); each trains in its own
    `checkpoint_root/<model>` folder, resumable. `jitter_px`: box sides move by up to this many
    pixels at the 1024 px scale of MedSAM and DB-SAM (scaled to the stored size), at training only.
    `max_boxes_per_slice`: the detector's most confident boxes that prompt a slice (each prompt
    costs a forward pass; a slice rarely shows more than a few tumours).
    """

    model: SegmenterConfig = SegmenterConfig()
    training: TrainConfig = TrainConfig(
        epochs=3, batch_size=4, lr=1e-3, weight_decay=0.01, warmup_epochs=1
    )
    checkpoint_root: str | None = "data/06_models/checkpoints/segmentation"
    jitter_px: NonNegativeFloat = 20.0
    predict_batch_size: PositiveInt = 32
    max_boxes_per_slice: PositiveInt = 3
    evaluation: SegmentationEvaluationParams = SegmentationEvaluationParams()
    label_volume_splits: list[Literal["val", "test"]] = ["test"]


class SegmentationInputError(ValueError):
    """Slices or predictions that cannot train or be scored."""


def segmentation_slices(slices: pd.DataFrame, splits: pd.DataFrame) -> pd.DataFrame:
    """Every slice of train/val/test patients with its split; models learn and are scored on the
    ones with a true mask (`mask_ref`), detector boxes may land on any of them."""
    table = slices_in(slices, splits)
    for split in ("train", "val"):
        masked = table[(table["split"] == split) & table["mask_ref"].notna()]
        if masked.empty:
            raise SegmentationInputError(
                f"the {split} split has no slice with a tumour mask (mask_ref): a segmenter needs "
                "masks to train and to choose its epoch; give the source masks (masks_dir, "
                "mask_column or NIfTI mask volumes)"
            )
    return table


def _masked(table: pd.DataFrame, split: str) -> pd.DataFrame:
    return table[(table["split"] == split) & table["mask_ref"].notna()].reset_index(drop=True)


def _dataset(
    table: pd.DataFrame, store: SliceStore, split: str, jitter_px: float
) -> SegmentationSliceDataset:
    """Tumour slices with masks at the stored size, so losses and Dice are those of the stored
    masks (the model resizes to its encoder's size and back); prompts from the masks."""
    rows = _masked(table, split)
    return SegmentationSliceDataset(
        store.images,
        store.masks,
        rows["image_ref"].to_numpy(dtype=np.int64),
        rows["mask_ref"].to_numpy(dtype=np.int64),
        None,
        jitter_px,
        store.images.shape[-1],
    )


def train(
    table: pd.DataFrame, slice_store: SliceStore, params: SegmentationParams, *, model: str
) -> nn.Module:
    """Train (or resume, or reuse) one segmenter; the weights of its best validation Dice."""
    torch.manual_seed(params.training.seed)  # the trainable parts' initial weights
    network = build_segmenter(model, params.model)
    config = params.training.model_copy(
        update={
            "early_stopping": params.training.early_stopping
            or EarlyStopping(monitor="val_dice", mode="max", patience=params.training.epochs),
            "checkpoint_dir": None
            if params.checkpoint_root is None
            else f"{params.checkpoint_root}/{model}",
        }
    )
    rows = table[table["split"].isin(["train", "val"]) & table["mask_ref"].notna()]
    result = fit_tracked(
        model,
        network,
        SegmentationTask(),
        _dataset(table, slice_store, "train", params.jitter_px),
        _dataset(table, slice_store, "val", 0.0),
        config,
        identity={
            "data": table_digest(rows, [*SLICE_KEY, "image_ref", "mask_ref", "split"]),
            "pixels": rows_digest(slice_store.images, rows["image_ref"].to_numpy()),
            "masks": rows_digest(slice_store.masks, rows["mask_ref"].to_numpy(dtype=np.int64)),
            "model": {"kind": model, "config": params.model},
            "jitter_px": params.jitter_px,
        },
    )
    return result.model.cpu().eval()


def log_parameter_counts(network: nn.Module, *, model: str) -> None:
    """`seg/<model>/parameters_trainable` and `_frozen` as run parameters: what the method costs."""
    counts = parameter_counts(network)
    logger.info("%s parameters: %s", model, counts)
    if mlflow.active_run() is not None:
        mlflow.log_params({f"seg/{model}/parameters_{k}": v for k, v in counts.items()})


def detector_boxes(
    val_predictions: pd.DataFrame, test_predictions: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The slice key and `boxes` ([x1, y1, x2, y2, confidence], stored pixels) of the detector's
    val and test predictions: what prompts the segmenters."""
    tables = []
    for split, predictions in (("val", val_predictions), ("test", test_predictions)):
        if "boxes" not in predictions:
            raise SegmentationInputError(
                f"the detector's {split} predictions have no `boxes` column: rerun the detection "
                "pipeline, whose predictions keep every box with its confidence"
            )
        tables.append(predictions[[*SLICE_KEY, "boxes"]].reset_index(drop=True))
    return tables[0], tables[1]


def box_threshold(
    table: pd.DataFrame, detector_val_boxes: pd.DataFrame, slice_store: SliceStore
) -> float:
    """The detector box confidence that prompts the segmenters, chosen on validation slices."""
    val = _with_boxes(table[table["split"] == "val"], detector_val_boxes)
    truth = _truth_of(val, slice_store)
    threshold = seg.choose_box_threshold(val["detector_boxes"].tolist(), truth)
    logger.info("Detector boxes of confidence >= %.3g prompt the segmenters", threshold)
    return threshold


def _with_boxes(rows: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
    """The slices with the detector's boxes (`detector_boxes`); every slice must be predicted."""
    boxes = predictions[[*SLICE_KEY, "boxes"]].rename(columns={"boxes": "detector_boxes"})
    merged = rows.merge(boxes, on=list(SLICE_KEY), how="left", validate="one_to_one")
    missing = merged["detector_boxes"].isna()
    if missing.any():
        raise SegmentationInputError(
            f"{int(missing.sum())} of {len(merged)} slices have no detector prediction: run the "
            "detection pipeline on the same slice table and splits first"
        )
    merged["detector_boxes"] = [[list(box) for box in boxes] for boxes in merged["detector_boxes"]]
    return merged


def _truth_of(rows: pd.DataFrame, store: SliceStore) -> list[np.ndarray | None]:
    return [
        None if pd.isna(ref) else np.asarray(store.masks[int(ref)]) > 0 for ref in rows["mask_ref"]
    ]


class _Prompts(SliceDataset):
    """(image, empty mask, box) per prompt, for `predict` with the segmentation task: the mask
    is not known (a detector box may sit on a slice without one) and its scores are not read.
    A SliceDataset, so DataLoader workers reopen the memmap rather than receive a copy."""

    def __init__(self, images: np.ndarray, refs: np.ndarray, boxes: np.ndarray) -> None:
        super().__init__(images, refs, np.zeros(len(refs), dtype=np.int64), transform=None)
        self.boxes = boxes

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        pixels = np.asarray(self.images[self.refs[index]], np.float32) / 255.0
        image = torch.from_numpy(pixels)[None]
        return image, torch.zeros_like(image), torch.from_numpy(self.boxes[index])


def _prompts(
    rows: pd.DataFrame, prompt: str, threshold: float, max_boxes: int, store: SliceStore
) -> pd.DataFrame:
    """One row per box prompt: the slice's index in `rows`, the box and its confidence (the
    oracle: one box around the true mask, as in training; the detector: its `max_boxes` most
    confident boxes of at least `threshold`)."""
    items = []
    for position, row in enumerate(rows.itertuples(index=False)):
        if prompt == "oracle":
            if pd.isna(row.mask_ref):
                continue
            boxes = [[*mask_box(np.asarray(store.masks[int(row.mask_ref)]) > 0), 1.0]]
        else:
            kept = sorted((b for b in row.detector_boxes if b[4] >= threshold), key=lambda b: -b[4])
            boxes = kept[:max_boxes]
        items += [(position, [float(v) for v in box[:4]], float(box[4])) for box in boxes]
    return pd.DataFrame(items, columns=["position", "box", "confidence"])


def predict_masks(
    network: nn.Module,
    table: pd.DataFrame,
    slice_store: SliceStore,
    detector_val_boxes: pd.DataFrame,
    detector_test_boxes: pd.DataFrame,
    threshold: float,
    params: SegmentationParams,
) -> pd.DataFrame:
    """Predicted masks of val and test slices, per prompt source: one row per slice with at
    least one prompt (`prompt`, the slice key, `boxes`, `mask` packed by `seg.pack_mask`); the
    union of a slice's box predictions is its mask."""
    config = TrainConfig(
        batch_size=params.predict_batch_size, device=params.training.device, progress=False
    )
    frames = []
    for split, detected in zip(
        EVALUATED_SPLITS, (detector_val_boxes, detector_test_boxes), strict=True
    ):
        rows = _with_boxes(table[table["split"] == split], detected)
        for prompt in PROMPTS:
            prompts = _prompts(rows, prompt, threshold, params.max_boxes_per_slice, slice_store)
            if prompts.empty:
                continue
            refs = rows["image_ref"].to_numpy()[prompts["position"].to_numpy()]
            boxes = np.asarray(prompts["box"].tolist(), dtype=np.float32)
            outputs = predict(
                network,
                SegmentationTask(return_masks=True),
                _Prompts(slice_store.images, refs, boxes),
                config,
            )
            prompts["mask"] = list(outputs["mask"][:, 0].astype(bool))
            for position, group in prompts.groupby("position", sort=True):
                union = np.logical_or.reduce(np.stack(group["mask"].to_list()))
                frames.append(
                    {
                        "split": split,
                        "prompt": prompt,
                        **{key: rows.iloc[position][key] for key in SLICE_KEY},
                        "boxes": [
                            [*b, c] for b, c in zip(group["box"], group["confidence"], strict=True)
                        ],
                        "mask": seg.pack_mask(union),
                    }
                )
    network.cpu()
    columns = ["split", "prompt", *SLICE_KEY, "boxes", "mask"]
    return pd.DataFrame(frames, columns=columns)


def evaluate(
    masks: pd.DataFrame,
    table: pd.DataFrame,
    slice_store: SliceStore,
    params: SegmentationParams,
    *,
    model: str,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict]:
    """Per slice scores, per series volumes and the summary of each split and prompt source,
    with the summary as MLflow metrics `seg/<model>/<split>/<prompt>_<metric>`."""
    scored, series, summaries = [], [], []
    evaluation = params.evaluation
    for split in EVALUATED_SPLITS:
        rows = table[table["split"] == split].reset_index(drop=True)
        truth = _truth_of(rows, slice_store)
        for prompt in PROMPTS:
            predicted = masks[(masks["split"] == split) & (masks["prompt"] == prompt)]
            result = seg.evaluate_split(
                rows, truth, predicted, evaluation.tolerance_mm, slice_store.masks.shape[-2:]
            )
            summary = seg.summary_table(
                result.slices,
                result.series,
                result.counts,
                n_bootstrap=evaluation.n_bootstrap,
                seed=evaluation.seed,
                ci=evaluation.ci,
            )
            tags = {"split": split, "prompt": prompt}
            scored.append(result.slices.assign(**tags))
            series.append(result.series.assign(**tags))
            summaries.append(summary.assign(**tags))
    summary = pd.concat(summaries, ignore_index=True)
    metrics = {}
    for (split, prompt), group in summary.groupby(["split", "prompt"]):
        flat = flatten_metrics(group)
        metrics |= {f"seg/{model}/{split}/{prompt}_{key}": v for key, v in flat.items()}
    return (
        pd.concat(scored, ignore_index=True),
        pd.concat(series, ignore_index=True),
        summary,
        metric_items(metrics),
    )


def label_volumes(
    masks: pd.DataFrame, table: pd.DataFrame, slice_store: SliceStore, params: SegmentationParams
) -> dict[str, nib.Nifti1Image]:
    """Per series of `label_volume_splits`, the detector-prompted prediction as a NIfTI label
    volume (1 = tumour) aligned voxel for voxel with the series' stored slices (orientation:
    `seg.label_volume`). Keys `<patient>/<study>_<series>` (pseudonyms)."""
    splits = params.label_volume_splits
    detected = masks[(masks["prompt"] == "detector") & masks["split"].isin(splits)]
    shape = slice_store.masks.shape[-2:]
    volumes = {}
    for key, series in table[table["split"].isin(splits)].groupby(list(seg.SERIES_KEY)):
        predicted = detected.merge(series[list(SLICE_KEY)], on=list(SLICE_KEY))
        volumes[f"{key[0]}/{key[1]}_{key[2]}"] = seg.label_volume(series, predicted, shape)
    return volumes


def _figure(
    model: str,
    masks: pd.DataFrame,
    table: pd.DataFrame,
    slice_store: SliceStore,
    count: int,
) -> Figure:
    test = masks[masks["split"] == "test"]
    rows = _masked(table, "test")
    chosen = seg.figure_slices(rows, count, slice_store.masks)
    panels = []
    for row in chosen.itertuples(index=False):
        key = {k: getattr(row, k) for k in SLICE_KEY}
        shape = slice_store.masks.shape[-2:]
        predicted = {}
        for prompt in PROMPTS:
            hit = test[(test["prompt"] == prompt)].merge(pd.DataFrame([key]), on=list(SLICE_KEY))
            predicted[prompt] = (
                seg.unpack_mask(hit["mask"].iloc[0], shape) if len(hit) else np.zeros(shape, bool)
            )
        panels.append(
            (
                np.asarray(slice_store.images[int(row.image_ref)]),
                np.asarray(slice_store.masks[int(row.mask_ref)]) > 0,
                predicted,
                f"{row.patient_id[:8]} slice {row.slice_index}",
            )
        )
    return contour_figure(panels, f"{model}, test patients")


def report(
    dbsam_summary: pd.DataFrame,
    sam_decoder_summary: pd.DataFrame,
    dbsam_series: pd.DataFrame,
    dbsam_masks: pd.DataFrame,
    sam_decoder_masks: pd.DataFrame,
    dbsam_model: nn.Module,
    sam_decoder_model: nn.Module,
    table: pd.DataFrame,
    slice_store: SliceStore,
    threshold: float,
    params: SegmentationParams,
) -> tuple[str, str, Figure, Figure]:
    """Markdown and HTML pages comparing both models under both prompt sources, with figures of
    predicted against true contours on test slices (one per model)."""
    figures = {
        model: _figure(model, masks, table, slice_store, params.evaluation.figure_slices)
        for model, masks in (("dbsam", dbsam_masks), ("sam_decoder", sam_decoder_masks))
    }
    counts = {
        model: parameter_counts(network)
        for model, network in (("dbsam", dbsam_model), ("sam_decoder", sam_decoder_model))
    }
    page = partial(
        render_report,
        {"dbsam": dbsam_summary, "sam_decoder": sam_decoder_summary},
        dbsam_series,
        counts,
        threshold,
        params.model_dump(mode="json"),
    )
    markdown = page({f"Contours, {m}": f"segmentation/{m}_contours.png" for m in figures})
    inline = page({f"Contours, {m}": png_data_uri(figure_png(f)) for m, f in figures.items()})
    html = render_html(inline, "Tumour segmentation")
    return markdown, html, figures["dbsam"], figures["sam_decoder"]
