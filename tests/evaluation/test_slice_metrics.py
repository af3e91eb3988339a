"""Slice-level metrics: hand-computed values, patient-clustered bootstrap, one-class, bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from medvit.evaluation.confusion import resample_clusters
from medvit.evaluation.ptp import EvaluationInputError
from medvit.evaluation.slice_metrics import choose_slice_threshold, slice_metrics


def slices(rows: list[tuple[str, float, int]]) -> pd.DataFrame:
    """[(patient_id, score, tumor)], one series per patient, slices numbered in order."""
    frame = pd.DataFrame(rows, columns=["patient_id", "score", "tumor"])
    frame["study_id"] = "S-" + frame["patient_id"]
    frame["series_id"] = "R-" + frame["patient_id"]
    frame["slice_index"] = frame.groupby("patient_id").cumcount()
    return frame


def values(table: pd.DataFrame) -> dict[str, float]:
    return dict(zip(table["metric"], table["value"], strict=True))


@pytest.fixture
def two_patients() -> pd.DataFrame:
    # Threshold 0.5: TP (a, 0.9), FN (a, 0.4), FP (b, 0.7), TN (b, 0.2), TN (b, 0.1).
    return slices([("a", 0.9, 1), ("a", 0.4, 1), ("b", 0.7, 0), ("b", 0.2, 0), ("b", 0.1, 0)])


def test_hand_computed_metrics(two_patients):
    table = slice_metrics(two_patients, 0.5, n_bootstrap=0)
    assert table["metric"].tolist() == [
        "auroc",
        "auprc",
        "sensitivity",
        "specificity",
        "f1",
        "precision",
        "accuracy",
        "n_slices",
        "n_positive",
    ]
    metrics = values(table)
    assert metrics["sensitivity"] == pytest.approx(0.5)
    assert metrics["specificity"] == pytest.approx(2 / 3)
    assert metrics["precision"] == pytest.approx(0.5)
    assert metrics["f1"] == pytest.approx(0.5)
    assert metrics["accuracy"] == pytest.approx(0.6)
    assert metrics["auroc"] == pytest.approx(5 / 6)  # 0.4 is beaten only by the 0.7 normal
    assert metrics["auprc"] == pytest.approx(1 * 0.5 + (2 / 3) * 0.5)
    assert (metrics["n_slices"], metrics["n_positive"]) == (5, 2)


def test_bootstrap_resamples_whole_patients():
    weights = resample_clusters(n_clusters=4, n_bootstrap=200, seed=0)
    assert weights.shape == (200, 4)
    assert (weights.sum(axis=1) == 4).all()


def test_interval_reflects_patients_not_slices():
    # Ten patients of 50 slices, five with every slice found and five with none: a slice
    # bootstrap would be tight around 0.5 (+-0.03), a patient bootstrap must be about +-0.3.
    found = [(f"hit{number}", 0.9, 1) for number in range(5) for _ in range(50)]
    missed = [(f"miss{number}", 0.1, 1) for number in range(5) for _ in range(50)]
    table = slice_metrics(slices(found + missed), 0.5, n_bootstrap=200).set_index("metric")
    assert table.loc["sensitivity", "ci_method"] == "bootstrap"
    assert table.loc["sensitivity", "ci_low"] <= 0.3
    assert table.loc["sensitivity", "ci_high"] >= 0.7


def test_interval_contains_point_estimate(two_patients):
    frame = pd.concat(
        [two_patients.assign(patient_id=two_patients["patient_id"] + str(i)) for i in range(6)]
    )
    table = slice_metrics(frame, 0.5, n_bootstrap=100)
    # Copies of two patients: sensitivity, specificity and AUROC are the same in every resample
    # (not informative); what mixes both patients' slices varies.
    rates = table[table["ci_method"] == "bootstrap"]
    assert {"precision", "f1", "accuracy"} <= set(rates["metric"])
    assert (rates["ci_low"] <= rates["value"] + 1e-9).all()
    assert (rates["value"] <= rates["ci_high"] + 1e-9).all()


def test_one_class_gives_nan_without_warnings():
    frame = slices([("a", 0.9, 0), ("a", 0.2, 0), ("b", 0.1, 0)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metrics = values(slice_metrics(frame, 0.5, n_bootstrap=20))
    for name in ("auroc", "auprc", "sensitivity"):
        assert np.isnan(metrics[name]), name
    assert metrics["specificity"] == pytest.approx(2 / 3)
    assert metrics["f1"] == metrics["precision"] == 0.0  # one tumour call, and it is wrong


def test_choose_slice_threshold(two_patients):
    # Youden: 0.9 -> 1/2, 0.7 -> 1/2 - 1/3, 0.4 -> 1 - 1/3 (best); midway to the next score, 0.2.
    assert choose_slice_threshold(two_patients, "youden") == pytest.approx(0.3)
    assert choose_slice_threshold(two_patients, "f1") == pytest.approx(0.3)
    with pytest.raises(EvaluationInputError, match="only normal"):
        choose_slice_threshold(two_patients.assign(tumor=0))


def test_bad_input(two_patients):
    with pytest.raises(EvaluationInputError, match=r"missing column.*tumor"):
        slice_metrics(two_patients.drop(columns="tumor"), 0.5)
    with pytest.raises(EvaluationInputError, match="0 or 1"):
        slice_metrics(two_patients.assign(tumor=[1, 1, 0, 0, 3]), 0.5)
    with pytest.raises(EvaluationInputError, match="outside"):
        slice_metrics(two_patients.assign(score=[0.9, 0.4, 7.0, 0.2, 0.1]), 0.5)
    with pytest.raises(EvaluationInputError, match="slice_index"):
        slice_metrics(two_patients.assign(slice_index=0), 0.5)
    with pytest.raises(EvaluationInputError, match="no rows"):
        slice_metrics(two_patients.iloc[:0], 0.5)


def test_series_sharing_slice_indices_are_all_counted_and_resampled_with_their_patient():
    """Each tumour patient's T1 series is found and its T2 series (same slice indices) missed:
    resampling patients keeps both together, so sensitivity is 0.5 in every resample."""
    found = slices([(f"p{number}", 0.9, 1) for number in range(6) for _ in range(3)])
    missed = found.assign(series_id=found["series_id"] + "-t2", score=0.1)
    normal = slices([(f"n{number}", 0.2, 0) for number in range(6) for _ in range(3)])
    table = slice_metrics(pd.concat([found, missed, normal]), 0.5, n_bootstrap=100)
    metrics = table.set_index("metric")
    assert (metrics.loc["n_slices", "value"], metrics.loc["n_positive", "value"]) == (54, 36)
    assert metrics.loc["sensitivity", "value"] == 0.5
    spread = metrics.loc["sensitivity", "ci_high"] - metrics.loc["sensitivity", "ci_low"]
    assert spread == 0 or np.isnan(spread)
