"""Segmentation metrics: per slice, per series in 3-D, and summaries with intervals over patients.

Per slice, on the stored masks: Dice, HD95 and the normalised surface Dice (NSD) at a tolerance
in millimetres (MONAI's `compute_*` functions). Millimetres need the stored pixel spacing
(`pixel_spacing_mm` of the slice table); where a source does not state it, HD95 is still given in
pixels but every millimetre metric is NaN with the reason written beside it, never a guess.

Edge cases are counted, not hidden. A slice whose truth is empty is never scored (nothing was
prompted there: the caller passes tumour slices only, and a box on a slice without a mask is a
spurious box, counted by the pipeline). An empty prediction against a non-empty truth scores
Dice 0 and NSD 0, while HD95 is undefined there (there is no predicted surface to measure from):
it is NaN, left out of the HD95 mean and counted as `hd95_undefined`.

Per series, the slices are stacked: volume Dice (how DB-SAM scores its 3-D tasks) and the tumour
volume in mL, mask area x pixel spacing^2 x slice spacing, predicted against true, which is the
number a clinician reads. Intervals are a percentile bootstrap over patients (slices and series
of one patient are correlated), through `medvit.evaluation.confusion.interval_table`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import nibabel as nib
import numpy as np
import pandas as pd
import torch
from monai.metrics import compute_hausdorff_distance, compute_surface_dice

from medvit.evaluation.confusion import NO_CI, EvaluationInputError, Interval, interval_table
from medvit.evaluation.ptp import SLICE_KEY

__all__ = [
    "COUNT_METRICS",
    "SplitScores",
    "boxes_hit",
    "choose_box_threshold",
    "evaluate_split",
    "label_volume",
    "mask_scores",
    "pack_mask",
    "series_scores",
    "summary_table",
    "unpack_mask",
]

SERIES_KEY = ("patient_id", "study_id", "series_id")
# Counts carry no interval; every other summary metric is a mean over slices or series.
COUNT_METRICS = (
    "n_slices",
    "n_series",
    "n_patients",
    "empty_predictions",
    "hd95_undefined",
    "no_spacing_slices",
    "prompted_boxes",
    "missed_slices",
    "spurious_boxes",
)
NO_SPACING = "pixel spacing unknown"
EMPTY_PREDICTION = "empty prediction"
NO_THICKNESS = "slice spacing unknown"


def _dice(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    overlap = (pred & truth).sum(axis=(1, 2))
    return 2.0 * overlap / (pred.sum(axis=(1, 2)) + truth.sum(axis=(1, 2)))


def _monai(pred: np.ndarray, truth: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 1, h, w) tensors: one foreground channel, which MONAI scores as include_background."""
    return torch.from_numpy(pred[:, None]), torch.from_numpy(truth[:, None])


def _quiet_hd95(pred: np.ndarray, truth: np.ndarray, spacing: list[list[float]]) -> np.ndarray:
    y_pred, y = _monai(pred, truth)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI warns on empty inputs, which callers filter
        distance = compute_hausdorff_distance(
            y_pred, y, include_background=True, percentile=95, spacing=spacing
        )
    return distance[:, 0].numpy().astype(float)


def _nsd(
    pred: np.ndarray, truth: np.ndarray, spacing: list[list[float]], tolerance_mm: float
) -> np.ndarray:
    y_pred, y = _monai(pred, truth)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = compute_surface_dice(
            y_pred, y, [tolerance_mm], include_background=True, spacing=spacing
        )
    return value[:, 0].numpy().astype(float)


def mask_scores(
    pred: np.ndarray,
    truth: np.ndarray,
    spacing_mm: Sequence[Sequence[float] | None],
    tolerance_mm: float,
) -> pd.DataFrame:
    """One row per slice: `dice`, `hd95_px`, `hd95_mm`, `nsd`, the pixel counts behind them
    (`pred_px`, `true_px`, `overlap_px`) and `note`, why a metric is undefined ('' if none).

    `pred`, `truth`: (n, h, w) masks (non-zero = tumour); `spacing_mm`: (row, column) mm of a
    pixel per slice, or None where unknown. Raises EvaluationInputError for an empty truth.
    """
    pred, truth = np.asarray(pred) > 0, np.asarray(truth) > 0
    if pred.shape != truth.shape or pred.ndim != 3:
        raise EvaluationInputError(
            f"predicted masks {pred.shape} and true masks {truth.shape} must both be (n, h, w)"
        )
    if len(spacing_mm) != len(pred):
        raise EvaluationInputError(f"{len(spacing_mm)} spacings for {len(pred)} slices")
    if tolerance_mm <= 0:
        raise ValueError(f"tolerance_mm must be > 0, got {tolerance_mm}")
    empty_truth = np.flatnonzero(~truth.any(axis=(1, 2)))
    if empty_truth.size:
        raise EvaluationInputError(
            f"{empty_truth.size} slice(s) (positions {empty_truth[:5].tolist()}) have an empty "
            "true mask: only tumour slices are scored; count a prediction there as spurious"
        )
    known = np.array([s is not None and np.all(np.isfinite(s)) for s in spacing_mm], dtype=bool)
    spacing = [
        list(map(float, s)) if ok else [1.0, 1.0] for s, ok in zip(spacing_mm, known, strict=True)
    ]
    found = pred.any(axis=(1, 2))
    frame = pd.DataFrame(
        {
            "pred_px": pred.sum(axis=(1, 2)),
            "true_px": truth.sum(axis=(1, 2)),
            "overlap_px": (pred & truth).sum(axis=(1, 2)),
            "dice": _dice(pred, truth),
            "hd95_px": np.nan,
            "hd95_mm": np.nan,
            "nsd": np.where(found, np.nan, 0.0),
            "note": "",
        }
    )
    if found.any():
        rows = np.flatnonzero(found)
        unit = [[1.0, 1.0]] * rows.size
        frame.loc[rows, "hd95_px"] = _quiet_hd95(pred[rows], truth[rows], unit)
        measured = rows[known[rows]]
        if measured.size:
            mm = [spacing[i] for i in measured]
            frame.loc[measured, "hd95_mm"] = _quiet_hd95(pred[measured], truth[measured], mm)
            frame.loc[measured, "nsd"] = _nsd(pred[measured], truth[measured], mm, tolerance_mm)
    notes = np.where(~found, EMPTY_PREDICTION, np.where(~known, NO_SPACING, ""))
    frame["note"] = notes
    frame.loc[~known, "nsd"] = np.nan  # a tolerance in mm means nothing without the spacing
    return frame


def series_scores(slices: pd.DataFrame) -> pd.DataFrame:
    """Per series (`SERIES_KEY`): volume Dice over its stacked slices and tumour volumes in mL.

    `slices`: one row per slice with a prediction or a truth (a spurious box's slice has
    `true_px` 0), with `pred_px`, `true_px`, `overlap_px`, `pixel_spacing_mm` and
    `slice_thickness_mm`. Volumes are NaN with `volume_note` where the spacing is unknown.
    """
    rows = slices.assign(
        _area=[np.nan if s is None else float(np.prod(s)) for s in slices["pixel_spacing_mm"]],
        _thickness=slices["slice_thickness_mm"].astype(float),
    )
    voxel_ml = rows["_area"] * rows["_thickness"] / 1000.0
    rows = rows.assign(_pred_ml=rows["pred_px"] * voxel_ml, _true_ml=rows["true_px"] * voxel_ml)
    grouped = rows.groupby(list(SERIES_KEY), sort=True)
    sums = grouped[["pred_px", "true_px", "overlap_px"]].sum()
    series = sums.assign(
        **{
            "volume_dice": 2.0 * sums["overlap_px"] / (sums["pred_px"] + sums["true_px"]),
            "true_ml": grouped["_true_ml"].sum(min_count=1),
            "pred_ml": grouped["_pred_ml"].sum(min_count=1),
            "_unknown_area": grouped["_area"].apply(lambda a: a.isna().any()),
            "_unknown_thickness": grouped["_thickness"].apply(lambda t: t.isna().any()),
        }
    )
    unknown = series["_unknown_area"] | series["_unknown_thickness"]
    series.loc[unknown, ["true_ml", "pred_ml"]] = np.nan
    series["volume_error_ml"] = series["pred_ml"] - series["true_ml"]
    series["volume_abs_error_ml"] = series["volume_error_ml"].abs()
    series["volume_note"] = np.where(
        series["_unknown_area"],
        NO_SPACING,
        np.where(series["_unknown_thickness"], NO_THICKNESS, ""),
    )
    # A series without any true mask has no volume Dice; its predictions are spurious boxes.
    series = series[series["true_px"] > 0]
    return series.drop(columns=["_unknown_area", "_unknown_thickness"]).reset_index()


SLICE_MEANS = ("dice", "hd95_mm", "hd95_px", "nsd")
SERIES_MEANS = ("volume_dice", "volume_abs_error_ml", "true_ml", "pred_ml")


def _weighted_means(
    values: np.ndarray, clusters: np.ndarray, n_clusters: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-patient sums and counts of each column, ignoring NaN: a resample's mean is then
    (weights @ sums) / (weights @ counts), one matrix product per metric."""
    defined = np.isfinite(values)
    sums = np.zeros((n_clusters, values.shape[1]))
    counts = np.zeros((n_clusters, values.shape[1]))
    np.add.at(sums, clusters, np.where(defined, values, 0.0))
    np.add.at(counts, clusters, defined.astype(float))
    return sums, counts


def summary_table(
    slices: pd.DataFrame,
    series: pd.DataFrame,
    counts: dict[str, float],
    *,
    n_bootstrap: int,
    seed: int,
    ci: float,
) -> pd.DataFrame:
    """Tidy (metric, value, ci_low, ci_high, ci_method): means of the slice and series metrics,
    each unit weighted once, with a bootstrap over patients; `counts` and the edge-case counts
    as they are, without interval.

    The slice means weight every slice equally (a patient with more tumour slices weighs more,
    as in MedSAM's and DB-SAM's slice-level tables); the bootstrap resamples whole patients.
    """
    if slices.empty:
        raise EvaluationInputError("no tumour slice to score: the split has no true mask")
    patients = pd.Index(sorted(set(slices["patient_id"])))  # series: those with tumour slices
    slice_clusters = patients.get_indexer(slices["patient_id"])
    series_clusters = patients.get_indexer(series["patient_id"])
    slice_sums, slice_counts = _weighted_means(
        slices[list(SLICE_MEANS)].to_numpy(float), slice_clusters, len(patients)
    )
    series_sums, series_counts = _weighted_means(
        series[list(SERIES_MEANS)].to_numpy(float), series_clusters, len(patients)
    )
    sums = np.hstack([slice_sums, series_sums])
    totals = np.hstack([slice_counts, series_counts])
    names = [*SLICE_MEANS, *SERIES_MEANS]
    fixed_counts = {
        "n_slices": len(slices),
        "n_series": len(series),
        "n_patients": len(patients),
        "empty_predictions": int((slices["pred_px"] == 0).sum()),
        "hd95_undefined": int(slices["hd95_px"].isna().sum()),
        "no_spacing_slices": int((slices["note"] == NO_SPACING).sum()),
        **counts,
    }

    def estimate(weights: np.ndarray) -> dict[str, np.ndarray]:
        with np.errstate(invalid="ignore", divide="ignore"):
            means = (weights @ sums) / (weights @ totals)
        values = {name: means[:, i] for i, name in enumerate(names)}
        values.update({name: np.full(len(weights), float(v)) for name, v in fixed_counts.items()})
        return values

    fixed: dict[str, Interval] = {name: NO_CI for name in fixed_counts}
    return interval_table(
        estimate,
        np.ones(len(slices), dtype=bool),
        slice_clusters,
        n_bootstrap=n_bootstrap,
        seed=seed,
        ci=ci,
        fixed=fixed,
        needs=dict.fromkeys(names, "tumour"),
    )


def pack_mask(mask: np.ndarray) -> bytes:
    """A binary mask as bits: a 128 x 128 mask is 2 KiB in the predicted-masks table."""
    return np.packbits(np.asarray(mask, dtype=bool).ravel()).tobytes()


def unpack_mask(data: bytes, shape: tuple[int, int]) -> np.ndarray:
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=int(np.prod(shape)))
    return bits.reshape(shape).astype(bool)


def boxes_hit(boxes: Sequence[Sequence[float]], truth: np.ndarray | None) -> np.ndarray:
    """Whether each box holds at least one true tumour pixel; a box that holds none (or lies on
    a slice without a mask) is spurious: it prompts a segmentation of nothing."""
    hits = np.zeros(len(boxes), dtype=bool)
    if truth is None or not truth.any():
        return hits
    height, width = truth.shape
    for i, box in enumerate(boxes):
        x1, y1 = max(int(np.floor(box[0])), 0), max(int(np.floor(box[1])), 0)
        x2, y2 = min(int(np.ceil(box[2])), width), min(int(np.ceil(box[3])), height)
        hits[i] = x2 > x1 and y2 > y1 and bool(truth[y1:y2, x1:x2].any())
    return hits


def choose_box_threshold(
    boxes: Sequence[Sequence[Sequence[float]]], truth: Sequence[np.ndarray | None]
) -> float:
    """The detector confidence that maximises F1 on these (validation) slices.

    Precision: kept boxes that hold tumour; recall: tumour slices with such a box (a slice is
    segmented when one box finds it). Each candidate is a box confidence seen here; the lowest
    of equally good ones is taken (more recall). Boxes are [x1, y1, x2, y2, confidence].
    Without any box the threshold is infinite: nothing prompts, and the misses are counted.
    """
    confidence, hit, slice_of = [], [], []
    for index, (slice_boxes, mask) in enumerate(zip(boxes, truth, strict=True)):
        confidence += [float(box[4]) for box in slice_boxes]
        hit += boxes_hit(slice_boxes, mask).tolist()
        slice_of += [index] * len(slice_boxes)
    tumour_slices = sum(mask is not None and bool(mask.any()) for mask in truth)
    if tumour_slices == 0:
        raise EvaluationInputError("no validation slice has a tumour mask: no box threshold")
    if not confidence:
        return math.inf  # no box to keep: every tumour slice is then counted as missed
    confidence, hit, slice_of = np.array(confidence), np.array(hit), np.array(slice_of)
    best, best_f1 = float(confidence.max()), -1.0
    for candidate in np.unique(confidence)[::-1]:
        kept = confidence >= candidate
        precision = hit[kept].mean()
        recall = len(np.unique(slice_of[kept & hit])) / tumour_slices
        f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
        if f1 >= best_f1:
            best, best_f1 = float(candidate), f1
    return best


@dataclass(frozen=True)
class SplitScores:
    """A split's scores under one prompt source: per tumour slice, per series, and the counts."""

    slices: pd.DataFrame
    series: pd.DataFrame
    counts: dict[str, int]


def evaluate_split(
    rows: pd.DataFrame,
    truth: Sequence[np.ndarray | None],
    predicted: pd.DataFrame,
    tolerance_mm: float,
    shape: tuple[int, int],
) -> SplitScores:
    """Score a split's predictions (`predicted`: slice key, `boxes`, packed `mask`) against its
    slices (`rows`, aligned with `truth`, None where a slice has no mask).

    Every tumour slice is scored, with an empty prediction where no box prompted it (counted as
    missed). A box on a slice without tumour is spurious: counted, never scored as Dice 0, and
    its predicted pixels count against the volume of its series.
    """
    key = list(SLICE_KEY)
    geometry = rows.reset_index(drop=True)[[*key, "pixel_spacing_mm", "slice_thickness_mm"]]
    merged = geometry.merge(
        predicted[[*key, "boxes", "mask"]], on=key, how="left", validate="one_to_one"
    )
    has_truth = np.array([t is not None and bool(t.any()) for t in truth])
    boxes = [[] if not isinstance(b, list | np.ndarray) else list(b) for b in merged["boxes"]]
    hits = [boxes_hit(b, t) for b, t in zip(boxes, truth, strict=True)]
    pred = (
        np.stack(
            [
                np.zeros(shape, bool) if not isinstance(m, bytes) else unpack_mask(m, shape)
                for m in merged["mask"]
            ]
        )
        if len(merged)
        else np.zeros((0, *shape), bool)
    )
    tumour = np.flatnonzero(has_truth)
    if tumour.size == 0:
        raise EvaluationInputError("no slice of this split has a tumour mask: nothing to score")
    spacing = [None if s is None else list(s) for s in merged.loc[tumour, "pixel_spacing_mm"]]
    scores = mask_scores(pred[tumour], np.stack([truth[i] for i in tumour]), spacing, tolerance_mm)
    slices = pd.concat([merged.loc[tumour, key].reset_index(drop=True), scores], axis=1)
    spurious_only = np.flatnonzero(~has_truth & pred.any(axis=(1, 2)))
    volume_rows = pd.concat(
        [
            merged.loc[tumour, [*SERIES_KEY, "pixel_spacing_mm", "slice_thickness_mm"]]
            .reset_index(drop=True)
            .assign(**scores[["pred_px", "true_px", "overlap_px"]]),
            merged.loc[spurious_only, [*SERIES_KEY, "pixel_spacing_mm", "slice_thickness_mm"]]
            .reset_index(drop=True)
            .assign(pred_px=pred[spurious_only].sum(axis=(1, 2)), true_px=0, overlap_px=0),
        ],
        ignore_index=True,
    )
    counts = {
        "prompted_boxes": int(sum(len(b) for b in boxes)),
        "missed_slices": int(sum(not hits[i].any() for i in tumour)),
        "spurious_boxes": int(sum((~h).sum() for h in hits)),
    }
    return SplitScores(slices, series_scores(volume_rows), counts)


def label_volume(
    series: pd.DataFrame, predicted: pd.DataFrame, shape: tuple[int, int]
) -> nib.Nifti1Image:
    """One series' predicted masks as a uint8 NIfTI label volume (1 = tumour).

    Voxel (i, j, k) is column i, row j of the stored slice with `slice_index` k, so it overlays
    the series' stored slices exactly. The affine scales by the stored pixel spacing and the
    slice spacing (identity where unknown, then in pixels) and assumes the radiological display
    ingestion gives DICOM slices: columns run to the patient's left, rows to posterior, slices
    inferior to superior (LPS+ in DICOM, hence the two negated axes in NIfTI's RAS+). The stored
    slices are letterboxed and keep no scanner origin (nothing identifying leaves ingestion),
    so the volume sits at the origin rather than at the scanner position.
    """
    ordered = series.sort_values("slice_index")
    volume = np.zeros((shape[1], shape[0], len(ordered)), dtype=np.uint8)
    position = {index: k for k, index in enumerate(ordered["slice_index"])}
    for row in predicted.itertuples(index=False):
        volume[:, :, position[row.slice_index]] = unpack_mask(row.mask, shape).T
    spacing = ordered["pixel_spacing_mm"].iloc[0]
    thickness = ordered["slice_thickness_mm"].iloc[0]
    row_mm, col_mm = (1.0, 1.0) if spacing is None else (float(spacing[0]), float(spacing[1]))
    slice_mm = 1.0 if pd.isna(thickness) else float(thickness)
    image = nib.Nifti1Image(volume, np.diag([-col_mm, -row_mm, slice_mm, 1.0]))
    image.header.set_xyzt_units("mm")
    return image


def figure_slices(rows: pd.DataFrame, count: int, masks: np.ndarray) -> pd.DataFrame:
    """Up to `count` tumour slices to draw, spread over patients: each patient's largest
    tumour slice first, then their next largest, so one patient does not fill the figure."""
    area = [int((np.asarray(masks[int(ref)]) > 0).sum()) for ref in rows["mask_ref"]]
    ranked = rows.assign(_area=area).sort_values(["patient_id", "_area"], ascending=[True, False])
    ranked["_rank"] = ranked.groupby("patient_id").cumcount()
    return ranked.sort_values(["_rank", "patient_id"]).head(count).drop(columns=["_area", "_rank"])
