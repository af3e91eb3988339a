"""Segmentation metrics against values worked out by hand on toy masks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medvit.evaluation.confusion import EvaluationInputError
from medvit.evaluation.segmentation import (
    EMPTY_PREDICTION,
    NO_SPACING,
    boxes_hit,
    choose_box_threshold,
    evaluate_split,
    label_volume,
    mask_scores,
    pack_mask,
    series_scores,
    summary_table,
    unpack_mask,
)


def _masks(n: int = 1) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((n, 12, 12), bool), np.zeros((n, 12, 12), bool)


def test_single_pixels_four_columns_apart():
    pred, truth = _masks()
    pred[0, 5, 5] = truth[0, 5, 9] = True
    # every surface point is 4 columns from the other mask: 4 px, 2 mm at 0.5 mm per column
    scores = mask_scores(pred, truth, [(1.0, 0.5)], tolerance_mm=1.0).iloc[0]
    assert (scores.dice, scores.hd95_px, scores.hd95_mm, scores.nsd) == (0.0, 4.0, 2.0, 0.0)
    wide = mask_scores(pred, truth, [(1.0, 0.5)], tolerance_mm=2.5).iloc[0]
    assert wide.nsd == 1.0  # within 2.5 mm: both surfaces count


def test_identical_and_half_overlapping_masks():
    pred, truth = _masks(2)
    pred[0, 2:6, 2:6] = truth[0, 2:6, 2:6] = True
    truth[1, 2:4, 2:6] = True  # 8 pixels
    pred[1, 2:4, 2:4] = True  # 4 of them
    scores = mask_scores(pred, truth, [(1.0, 1.0)] * 2, tolerance_mm=1.0)
    assert scores.dice.tolist() == pytest.approx([1.0, 2 * 4 / (4 + 8)])
    assert scores.hd95_mm[0] == 0.0 and scores.nsd[0] == 1.0
    # truth columns 4 and 5 lie 1 and 2 px from the prediction's last column: 95th percentile 2
    assert scores.hd95_px[1] == 2.0
    assert scores[["pred_px", "true_px", "overlap_px"]].iloc[1].tolist() == [4, 8, 4]


def test_empty_prediction_scores_zero_and_leaves_hd95_undefined():
    pred, truth = _masks()
    truth[0, 3:6, 3:6] = True
    scores = mask_scores(pred, truth, [(1.0, 1.0)], tolerance_mm=1.0).iloc[0]
    assert scores.dice == 0.0 and scores.nsd == 0.0
    assert np.isnan(scores.hd95_mm) and np.isnan(scores.hd95_px)
    assert scores.note == EMPTY_PREDICTION


def test_unknown_spacing_gives_pixels_only_with_the_reason():
    pred, truth = _masks()
    pred[0, 5, 5] = truth[0, 5, 9] = True
    scores = mask_scores(pred, truth, [None], tolerance_mm=1.0).iloc[0]
    assert scores.hd95_px == 4.0 and np.isnan(scores.hd95_mm) and np.isnan(scores.nsd)
    assert scores.note == NO_SPACING


def test_an_empty_truth_is_refused():
    pred, truth = _masks()
    pred[0, 1, 1] = True
    with pytest.raises(EvaluationInputError, match="empty true mask"):
        mask_scores(pred, truth, [(1.0, 1.0)], tolerance_mm=1.0)


def _slices() -> pd.DataFrame:
    """Patient A: one series of two slices; patient B: one series whose spacing is unknown."""
    return pd.DataFrame(
        {
            "patient_id": ["A", "A", "B"],
            "study_id": ["s", "s", "t"],
            "series_id": ["a", "a", "b"],
            "pixel_spacing_mm": [[0.5, 0.5], [0.5, 0.5], None],
            "slice_thickness_mm": [4.0, 4.0, np.nan],
            "pred_px": [100, 0, 10],
            "true_px": [80, 20, 10],
            "overlap_px": [80, 0, 10],
        }
    )


def test_series_volume_dice_and_millilitres():
    series = series_scores(_slices()).set_index("series_id")
    # A: 2 * 80 / (100 + 100); voxels of 0.5 x 0.5 x 4 mm = 1 uL
    assert series.loc["a", "volume_dice"] == pytest.approx(0.8)
    assert series.loc["a", "true_ml"] == pytest.approx(0.1)
    assert series.loc["a", "pred_ml"] == pytest.approx(0.1)
    assert series.loc["b", "volume_dice"] == 1.0
    assert np.isnan(series.loc["b", "true_ml"]) and series.loc["b", "volume_note"] == NO_SPACING


def test_series_without_truth_is_not_scored():
    spurious = _slices().assign(true_px=[0, 0, 10], overlap_px=[0, 0, 10])
    assert series_scores(spurious)["series_id"].tolist() == ["b"]


def test_summary_means_counts_and_intervals_over_patients():
    slices = pd.DataFrame(
        {
            "patient_id": [f"P{i}" for i in range(6)] * 2,
            "dice": [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0],
            "hd95_mm": [1.0] * 6 + [np.nan] + [2.0] * 5,
            "hd95_px": [1.0] * 6 + [np.nan] + [2.0] * 5,
            "nsd": [1.0] * 12,
            "pred_px": [5] * 6 + [0] + [5] * 5,
            "note": [""] * 6 + [EMPTY_PREDICTION] + [""] * 5,
        }
    )
    series = pd.DataFrame(
        {
            "patient_id": [f"P{i}" for i in range(6)],
            "volume_dice": [0.5] * 6,
            "volume_abs_error_ml": [1.0] * 6,
            "true_ml": [2.0] * 6,
            "pred_ml": [3.0] * 6,
        }
    )
    table = summary_table(
        slices, series, {"missed_slices": 1}, n_bootstrap=200, seed=0, ci=0.95
    ).set_index("metric")
    assert table.loc["dice", "value"] == pytest.approx(np.mean(slices.dice))
    assert table.loc["hd95_mm", "value"] == pytest.approx((6 * 1.0 + 5 * 2.0) / 11)  # NaN left out
    assert table.loc["hd95_undefined", "value"] == 1
    assert table.loc["empty_predictions", "value"] == 1
    assert table.loc["missed_slices", "value"] == 1
    assert table.loc["n_patients", "value"] == 6
    low, high = table.loc["dice", ["ci_low", "ci_high"]]
    assert low < table.loc["dice", "value"] < high
    assert table.loc["dice", "ci_method"] == "bootstrap"
    assert table.loc["volume_dice", "ci_method"].startswith("not informative")  # all equal
    assert table.loc["n_slices", "ci_method"] == "none"


def test_mask_packing_round_trips_and_boxes_holding_tumour_are_hits():
    mask = np.zeros((7, 9), bool)
    mask[2:4, 3:8] = True
    assert (unpack_mask(pack_mask(mask), mask.shape) == mask).all()
    hits = boxes_hit([[3, 2, 4, 3], [0, 0, 2, 2], [7.5, 3.5, 9, 7]], mask)
    assert hits.tolist() == [True, False, True]
    assert not boxes_hit([[3, 2, 4, 3]], None).any()


def test_box_threshold_maximises_f1_on_the_given_slices():
    truth = np.zeros((10, 10), bool)
    truth[2:5, 2:5] = True
    boxes = [
        [[2, 2, 5, 5, 0.9], [7, 7, 9, 9, 0.3]],  # a hit, and a weak spurious box
        [[1, 1, 3, 3, 0.6]],  # spurious (no mask on this slice)
        [[2, 2, 4, 4, 0.4]],  # the second tumour slice, found only at 0.4
    ]
    # 0.9: P 1, R 1/2 (F1 .67); 0.6: P 1/2, R 1/2; 0.4: P 2/3, R 1 (F1 .8); 0.3: P 1/2, R 1
    assert choose_box_threshold(boxes, [truth, None, truth]) == 0.4


def test_split_scores_count_missed_and_spurious_without_scoring_them_as_zero():
    shape = (10, 10)
    truth = np.zeros(shape, bool)
    truth[2:5, 2:5] = True
    key = {"patient_id": "P", "study_id": "s", "series_id": "a"}
    rows = pd.DataFrame(
        [
            {**key, "slice_index": i, "pixel_spacing_mm": [1.0, 1.0], "slice_thickness_mm": 2.0}
            for i in range(3)
        ]
    )
    predicted = pd.DataFrame(
        [
            {**key, "slice_index": 0, "boxes": [[2, 2, 5, 5, 0.9]], "mask": pack_mask(truth)},
            {**key, "slice_index": 2, "boxes": [[6, 6, 9, 9, 0.8]], "mask": pack_mask(~truth)},
        ]
    )
    # slice 0: found; slice 1: tumour, no box (missed); slice 2: no tumour, a box (spurious)
    result = evaluate_split(rows, [truth, truth, None], predicted, 1.0, shape)
    assert result.slices["dice"].tolist() == [1.0, 0.0]
    assert result.counts == {"prompted_boxes": 2, "missed_slices": 1, "spurious_boxes": 1}
    (series,) = result.series.itertuples(index=False)
    # 9 + 9 true pixels; 9 found + 91 spurious predicted: 2 * 9 / (100 + 18)
    assert series.volume_dice == pytest.approx(18 / 118)
    assert series.true_ml == pytest.approx(18 * 2 / 1000)


def test_label_volume_overlays_the_stored_slices():
    shape = (4, 6)
    mask = np.zeros(shape, bool)
    mask[1, 4] = True
    series = pd.DataFrame(
        {"slice_index": [1, 0], "pixel_spacing_mm": [[0.5, 0.8]] * 2, "slice_thickness_mm": 3.0}
    )
    predicted = pd.DataFrame({"slice_index": [1], "mask": [pack_mask(mask)]})
    image = label_volume(series, predicted, shape)
    data = np.asarray(image.dataobj)
    assert data.shape == (6, 4, 2) and data[4, 1, 1] == 1 and data.sum() == 1
    assert np.allclose(np.diag(image.affine), [-0.8, -0.5, 3.0, 1.0])
