"""Confidence intervals: exact bounds computed by hand, propagation, and no zero-width intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import brentq

from medvit.evaluation.confusion import (
    clopper_pearson,
    prevalence_intervals,
    reweight_to_prevalence,
)
from medvit.evaluation.ptp import AggregationRule, flatten_metrics, patient_metrics, patient_table
from medvit.evaluation.report import render_report
from medvit.evaluation.slice_metrics import slice_metrics

MAX = AggregationRule("max")
TAIL = 0.025  # each side of a 95% interval


def cohort(
    n_tumor: int, n_normal: int, *, missed: int = 0, false_alarms: int = 0, studies: int = 1
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Slice predictions and labels: tumour patients score 0.9 on one slice, normals 0.1.

    The first `missed` tumour patients score 0.3 instead and the first `false_alarms` normals 0.7,
    so at threshold 0.5 the counts are TP = n_tumor - missed, FP = false_alarms.
    """
    rows, labels = [], []
    for number in range(n_tumor + n_normal):
        patient, tumour = f"p{number:03d}", number < n_tumor
        wrong = number < missed if tumour else number - n_tumor < false_alarms
        peak = (0.3 if wrong else 0.9) if tumour else (0.7 if wrong else 0.1)
        labels.append((patient, int(tumour)))
        for study in range(studies):
            for slice_index, score in enumerate((0.05, peak, 0.1)):
                slice_tumour = int(tumour and slice_index == 1)
                rows.append((patient, f"st{study}", "se0", slice_index, score, slice_tumour))
    columns = ["patient_id", "study_id", "series_id", "slice_index", "score", "tumor"]
    labels_frame = pd.DataFrame(labels, columns=["patient_id", "tumor"])
    return pd.DataFrame(rows, columns=columns), labels_frame


def rows(table: pd.DataFrame) -> pd.DataFrame:
    return table.set_index("metric")


def exact(successes: float, trials: float, ci: float = 0.95) -> list[float]:
    return [float(bound) for bound in clopper_pearson(successes, trials, ci)]


@pytest.mark.parametrize(
    ("successes", "trials", "low", "high"),
    [
        # x = n: P(X = n | p) = p^n is the lower tail, so low = 0.025^(1/n) and high = 1.
        (3, 3, TAIL ** (1 / 3), 1.0),
        (27, 27, TAIL ** (1 / 27), 1.0),
        # x = 0: P(X = 0 | p) = (1 - p)^n, so high = 1 - 0.025^(1/n) and low = 0.
        (0, 3, 0.0, 1 - TAIL ** (1 / 3)),
        # x = n - 1: high solves P(X <= 26) = 1 - p^27 = 0.025; low solves P(X >= 26) = 0.025.
        (
            26,
            27,
            brentq(lambda p: 27 * p**26 * (1 - p) + p**27 - TAIL, 0.5, 0.99),
            (1 - TAIL) ** (1 / 27),
        ),
    ],
    ids=["3/3", "27/27", "0/3", "26/27"],
)
def test_clopper_pearson_matches_hand_computed_bounds(successes, trials, low, high):
    assert exact(successes, trials) == pytest.approx([low, high], abs=1e-9)


def test_hand_computed_values_are_the_ones_the_issue_quotes():
    assert np.round(exact(3, 3), 2).tolist() == [0.29, 1.0]
    assert np.round(exact(27, 27), 2).tolist() == [0.87, 1.0]
    assert np.round(exact(26, 27), 3).tolist() == [0.810, 0.999]


def test_no_trials_has_no_interval():
    low, high = clopper_pearson(np.array([0, 2]), np.array([0, 4]), 0.95)
    assert np.isnan(low[0]) and np.isnan(high[0])
    assert 0 < low[1] < 0.5 < high[1] < 1


def test_perfect_demo_split_gets_wide_exact_intervals_not_a_point():
    # The demo's test split: 3 tumour + 27 normal patients, every call right.
    table = rows(patient_metrics(*cohort(3, 27), MAX, 0.5, n_bootstrap=200))
    for name in ("sensitivity", "tumor_recall"):
        assert table.loc[name, "value"] == 1.0
        assert table.loc[name, "ci_low"] == pytest.approx(TAIL ** (1 / 3))
        assert table.loc[name, "ci_high"] == 1.0
        assert table.loc[name, "ci_method"] == "clopper-pearson"
    for name in ("specificity", "normal_recall", "npv"):
        assert table.loc[name, "ci_low"] == pytest.approx(TAIL ** (1 / 27))
    assert table.loc["ppv", "ci_low"] == pytest.approx(TAIL ** (1 / 3))  # 3 of 3 calls right
    assert table.loc["accuracy", "ci_low"] == pytest.approx(TAIL ** (1 / 30))
    for name in ("tumor_f1", "macro_f1", "balanced_accuracy", "auroc"):
        assert table.loc[name, "ci_method"] == "not informative (3 tumour patients)", name
        assert table.loc[name, ["ci_low", "ci_high"]].isna().all(), name


def test_one_miss_and_one_false_alarm_by_hand():
    table = rows(patient_metrics(*cohort(3, 27, missed=1, false_alarms=1), MAX, 0.5, n_bootstrap=0))
    bounds = table[["ci_low", "ci_high"]]
    assert bounds.loc["sensitivity"].tolist() == pytest.approx(exact(2, 3))
    assert bounds.loc["specificity"].tolist() == pytest.approx(exact(26, 27))
    assert bounds.loc["ppv"].tolist() == pytest.approx(exact(2, 3))  # 2 of 3 tumour calls right
    assert bounds.loc["npv"].tolist() == pytest.approx(exact(26, 27))  # 1 of 27 normal calls wrong


def test_prevalence_bounds_carry_the_sensitivity_and_specificity_bounds():
    # tp, fp, tn, fn: sensitivity 3/3, specificity 26/27.
    counts = np.array([3, 1, 26, 0])
    ppv, npv = prevalence_intervals(counts, 0.1, 0.95)
    # Each part at sqrt(0.95): independent parts, so both hold together with probability 0.95.
    sens_low, sens_high = clopper_pearson(3, 3, np.sqrt(0.95))
    spec_low, spec_high = clopper_pearson(26, 27, np.sqrt(0.95))
    assert sens_low == pytest.approx(((1 - np.sqrt(0.95)) / 2) ** (1 / 3))
    lows = reweight_to_prevalence(sens_low, spec_low, 0.1)
    highs = reweight_to_prevalence(sens_high, spec_high, 0.1)
    assert [ppv.low, npv.low] == pytest.approx([float(bound) for bound in lows])
    assert [ppv.high, npv.high] == pytest.approx([float(bound) for bound in highs])
    assert npv.high == 1.0  # no tumour patient missed is consistent with a perfect NPV
    point_ppv, point_npv = reweight_to_prevalence(1.0, 26 / 27, 0.1)
    assert ppv.low < point_ppv < ppv.high
    assert npv.low < point_npv <= npv.high
    assert ppv.method == npv.method == "clopper-pearson, propagated"


def test_perfect_separation_is_not_informative_even_with_enough_patients():
    table = rows(patient_metrics(*cohort(10, 10), MAX, 0.5, n_bootstrap=200))
    assert table.loc["auroc", "ci_method"] == "not informative (every resample gives 1.000)"
    assert table.loc["sensitivity", "ci_low"] == pytest.approx(TAIL ** (1 / 10))


def test_an_informative_sample_keeps_its_bootstrap_interval():
    slices, labels = cohort(10, 10, missed=2, false_alarms=3)
    table = rows(patient_metrics(slices, labels, MAX, 0.5, n_bootstrap=200))
    for name in ("tumor_f1", "balanced_accuracy", "auroc"):
        value, low, high, method = table.loc[name, ["value", "ci_low", "ci_high", "ci_method"]]
        assert method == "bootstrap", name
        assert low < value < high, name


def test_several_studies_per_patient_fall_back_to_the_patient_bootstrap():
    # Two studies of one patient are not independent units: no exact binomial over studies.
    slices, labels = cohort(6, 6, missed=1, studies=2)
    table = rows(patient_metrics(slices, labels, MAX, 0.5, n_bootstrap=200, by="study"))
    assert table.loc["n_studies", "value"] == 24
    assert table.loc["sensitivity", "ci_method"] == "bootstrap"
    single = rows(patient_metrics(*cohort(6, 6, missed=1), MAX, 0.5, n_bootstrap=0, by="study"))
    assert single.loc["sensitivity", "ci_method"] == "clopper-pearson"


def test_slice_intervals_stay_clustered_and_flag_few_tumour_patients():
    slices, _ = cohort(3, 27, false_alarms=2)
    table = rows(slice_metrics(slices, 0.5, n_bootstrap=200))
    assert table.loc["sensitivity", "ci_method"] == "not informative (3 tumour patients)"
    assert table.loc["specificity", "ci_method"] == "bootstrap"  # 30 patients with normal slices
    assert table.loc["specificity", "ci_low"] < table.loc["specificity", "value"]


def test_uninformative_intervals_are_not_logged():
    flat = flatten_metrics(patient_metrics(*cohort(3, 27), MAX, 0.5, n_bootstrap=50))
    assert flat["sensitivity_ci_low"] == pytest.approx(TAIL ** (1 / 3))
    assert flat["sensitivity_ci_high"] == 1.0
    assert "auroc_ci_low" not in flat
    assert "tumor_f1_ci_high" not in flat


def test_report_names_methods_and_never_prints_a_zero_width_interval():
    slices, labels = cohort(3, 27)
    metrics = patient_metrics(slices, labels, MAX, 0.5, n_bootstrap=200)
    patients = patient_table(slices, labels, MAX, 0.5)
    page = render_report("demo", "test", metrics, patients, {}, {"rule": "max"})
    assert "1.000 to 1.000" not in page
    assert "| sensitivity | 1.000 | 0.292 to 1.000 (clopper-pearson) |" in page
    assert "| auroc | 1.000 | not informative (3 tumour patients) |" in page
    assert "Clopper-Pearson" in page and "bootstrap" in page
