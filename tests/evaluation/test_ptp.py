"""PTP metrics: hand-computed cases, the study's worked example, properties and bad input."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medvit.evaluation.ptp import (
    SLICE_KEY,
    AggregationRule,
    EvaluationInputError,
    aggregate,
    choose_threshold,
    flatten_metrics,
    patient_metrics,
    patient_table,
)

MAX = AggregationRule("max")
METRIC_NAMES = [
    "tumor_precision",
    "tumor_recall",
    "tumor_f1",
    "normal_precision",
    "normal_recall",
    "normal_f1",
    "macro_precision",
    "macro_recall",
    "macro_f1",
    "accuracy",
    "sensitivity",
    "specificity",
    "ppv",
    "npv",
    "balanced_accuracy",
    "auroc",
    "ppv_at_prevalence",
    "npv_at_prevalence",
    "tp",
    "fp",
    "tn",
    "fn",
    "n_patients",
    "n_tumor",
    "n_normal",
]


def frames(patients: dict[str, tuple[int, list[float]]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """{patient_id: (tumor, slice scores)} -> (slice_predictions, patient_labels); one series."""
    slices = pd.DataFrame(
        [
            (patient_id, f"S-{patient_id}", f"R-{patient_id}", index, score)
            for patient_id, (_, scores) in patients.items()
            for index, score in enumerate(scores)
        ],
        columns=[*SLICE_KEY, "score"],
    )
    labels = pd.DataFrame(
        [(patient_id, tumor) for patient_id, (tumor, _) in patients.items()],
        columns=["patient_id", "tumor"],
    )
    return slices, labels


def values(table: pd.DataFrame) -> dict[str, float]:
    return dict(zip(table["metric"], table["value"], strict=True))


@pytest.fixture
def worked_example() -> tuple[pd.DataFrame, pd.DataFrame]:
    """3 tumour + 27 normal patients; every tumour found, exactly one normal flagged."""
    patients = {f"t{i}": (1, [0.1, 0.92, 0.3]) for i in range(3)}
    patients |= {f"n{i:02d}": (0, [0.05, 0.2]) for i in range(26)}
    patients["n26"] = (0, [0.1, 0.7])
    return frames(patients)


def test_worked_example_matches_the_study(worked_example):
    slices, labels = worked_example
    metrics = values(patient_metrics(slices, labels, MAX, 0.5, n_bootstrap=0))
    assert (metrics["tp"], metrics["fp"], metrics["tn"], metrics["fn"]) == (3, 1, 26, 0)
    assert round(metrics["tumor_precision"], 3) == 0.75
    assert round(metrics["tumor_recall"], 3) == 1.0
    assert round(metrics["tumor_f1"], 3) == 0.857
    assert round(metrics["normal_precision"], 3) == 1.0
    assert round(metrics["normal_recall"], 3) == 0.963
    assert round(metrics["normal_f1"], 3) == 0.981


def test_table_has_every_metric_in_order_and_counts_have_no_interval(worked_example):
    table = patient_metrics(*worked_example, MAX, 0.5, n_bootstrap=20)
    assert list(table.columns) == ["metric", "value", "ci_low", "ci_high", "ci_method"]
    assert table["metric"].tolist() == METRIC_NAMES
    counts = table.set_index("metric").loc[["tp", "fp", "tn", "fn", "n_patients"]]
    assert counts[["ci_low", "ci_high"]].isna().all().all()
    assert (counts["ci_method"] == "none").all()
    metrics = values(table)
    assert (metrics["n_patients"], metrics["n_tumor"], metrics["n_normal"]) == (30, 3, 27)


def test_hand_computed_small_case():
    # Scores 0.9 (T), 0.6 (N), 0.4 (T), 0.2 (N) at threshold 0.5: TP 1, FP 1, TN 1, FN 1.
    slices, labels = frames(
        {"a": (1, [0.9]), "b": (0, [0.6]), "c": (1, [0.4, 0.1]), "d": (0, [0.2])}
    )
    metrics = values(patient_metrics(slices, labels, MAX, 0.5, n_bootstrap=0))
    for name in ("sensitivity", "specificity", "ppv", "npv", "accuracy", "macro_f1"):
        assert metrics[name] == pytest.approx(0.5)
    assert metrics["auroc"] == pytest.approx(0.75)  # 3 of 4 tumour/normal pairs ranked right
    # Bayes at 10 % prevalence: 0.05 / (0.05 + 0.45) and 0.45 / (0.45 + 0.05).
    assert metrics["ppv_at_prevalence"] == pytest.approx(0.1)
    assert metrics["npv_at_prevalence"] == pytest.approx(0.9)


def test_prevalence_reweighting_follows_bayes(worked_example):
    metrics = values(
        patient_metrics(*worked_example, MAX, 0.5, n_bootstrap=0, target_prevalence=0.2)
    )
    sensitivity, specificity = metrics["sensitivity"], metrics["specificity"]
    expected = sensitivity * 0.2 / (sensitivity * 0.2 + (1 - specificity) * 0.8)
    assert metrics["ppv_at_prevalence"] == pytest.approx(expected)


def test_aggregation_rules_by_hand():
    slices, _ = frames({"a": (1, [0.9, 0.6, 0.2, 0.55]), "b": (0, [0.1])})
    expected = {
        AggregationRule("max"): [0.9, 0.1],
        AggregationRule("mean_topk", k=2): [0.75, 0.1],  # b has one slice: mean of all
        AggregationRule("count", slice_threshold=0.5): [3.0, 0.0],
        AggregationRule("fraction", slice_threshold=0.5): [0.75, 0.0],
    }
    for rule, scores in expected.items():
        patients = aggregate(slices, rule)
        assert patients["patient_id"].tolist() == ["a", "b"]
        assert patients["score"].tolist() == pytest.approx(scores), rule
        assert patients["n_slices"].tolist() == [4, 1]
        assert patients["n_positive_slices"].tolist() == [3, 0]


def test_count_rule_decides_at_k():
    rule = AggregationRule("count", k=2)
    slices, labels = frames({"a": (1, [0.9, 0.8]), "b": (0, [0.9, 0.1]), "c": (1, [0.2])})
    table = patient_table(slices, labels, rule, rule.default_threshold)
    assert rule.default_threshold == 2.0
    assert table["decision"].tolist() == [1, 0, 0]


def test_rule_rejects_bad_parameters():
    for kwargs in ({"name": "median"}, {"name": "count", "k": 0}, {"name": "max", "k": 1.5}):
        with pytest.raises(ValueError):
            AggregationRule(**kwargs)
    with pytest.raises(ValueError, match="slice_threshold"):
        AggregationRule("fraction", slice_threshold=1.5)


def test_patient_table_is_sorted_with_decisions():
    slices, labels = frames({"b": (0, [0.6]), "a": (1, [0.3, 0.8])})
    table = patient_table(slices, labels, MAX, 0.7)
    assert table.columns.tolist() == [
        "patient_id",
        "tumor",
        "score",
        "decision",
        "n_slices",
        "n_positive_slices",
    ]
    assert table["patient_id"].tolist() == ["a", "b"]
    assert table["decision"].tolist() == [1, 0]
    assert table["n_positive_slices"].tolist() == [1, 1]


def test_choose_threshold_objectives_and_highest_tie():
    # Patient max scores: tumours 0.9, 0.7, 0.4; normals 0.8, 0.3, 0.2, 0.1.
    slices, labels = frames(
        {
            "t1": (1, [0.9]),
            "t2": (1, [0.7]),
            "t3": (1, [0.4]),
            "n1": (0, [0.8]),
            "n2": (0, [0.3]),
            "n3": (0, [0.2]),
            "n4": (0, [0.1]),
        }
    )
    # Youden: 0.9 -> 1/3, 0.7 -> 2/3 - 1/4, 0.4 -> 1 - 1/4 (best); the threshold then sits
    # midway to the next lower observed score, 0.3: the same decisions, the widest margin.
    assert choose_threshold(slices, labels, MAX, "youden") == pytest.approx(0.35)
    assert choose_threshold(slices, labels, MAX, "f1") == pytest.approx(0.35)
    assert choose_threshold(
        slices, labels, MAX, "sensitivity", target_sensitivity=0.6
    ) == pytest.approx(0.55)  # between 0.7 and 0.4
    assert choose_threshold(
        slices, labels, MAX, "sensitivity", target_sensitivity=1.0
    ) == pytest.approx(0.35)
    # Perfect separation: every threshold in (0.3, 0.8] is equally good; the highest decisions
    # win, placed midway in the gap between the classes.
    separable, separable_labels = frames({"t": (1, [0.9]), "u": (1, [0.8]), "n": (0, [0.3])})
    assert choose_threshold(separable, separable_labels, MAX, "youden") == pytest.approx(0.55)
    # The lowest score chosen: nothing below it to share a margin with.
    lowest, lowest_labels = frames({"t": (1, [0.2]), "n": (0, [0.6])})
    assert (
        choose_threshold(lowest, lowest_labels, MAX, "sensitivity", target_sensitivity=1.0) == 0.2
    )


def test_choose_threshold_needs_both_classes():
    slices, labels = frames({"a": (0, [0.2]), "b": (0, [0.6])})
    with pytest.raises(EvaluationInputError, match="only normal"):
        choose_threshold(slices, labels, MAX)


def test_one_class_split_gives_nan_not_errors_or_warnings():
    slices, labels = frames({"a": (0, [0.2]), "b": (0, [0.6]), "c": (0, [0.1])})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = patient_metrics(slices, labels, MAX, 0.5, n_bootstrap=30)
    metrics = values(table)
    for name in ("sensitivity", "tumor_recall", "auroc", "balanced_accuracy", "npv_at_prevalence"):
        assert np.isnan(metrics[name]), name
    assert metrics["specificity"] == pytest.approx(2 / 3)
    assert metrics["ppv"] == 0.0  # one call, and it is wrong
    assert metrics["tumor_f1"] == 0.0
    assert table.set_index("metric").loc["auroc", ["ci_low", "ci_high"]].isna().all()


def test_no_positive_calls_makes_precision_nan():
    slices, labels = frames({"a": (1, [0.2]), "b": (0, [0.1])})
    metrics = values(patient_metrics(slices, labels, MAX, 0.5, n_bootstrap=10))
    assert np.isnan(metrics["tumor_precision"])
    assert metrics["tumor_recall"] == 0.0
    assert metrics["tumor_f1"] == 0.0


def test_flatten_metrics_skips_nan_intervals(worked_example):
    table = patient_metrics(*worked_example, MAX, 0.5, n_bootstrap=20)
    flat = flatten_metrics(table)
    assert flat["tumor_f1"] == pytest.approx(6 / 7)
    assert flat["sensitivity_ci_low"] == pytest.approx(0.025 ** (1 / 3))  # exact, 3 of 3
    assert flat["sensitivity_ci_high"] == 1.0
    assert "tumor_f1_ci_low" not in flat  # 3 tumour patients: the bootstrap is not informative
    assert flat["tp"] == 3.0
    assert "tp_ci_low" not in flat
    assert all(isinstance(value, float) for value in flat.values())


def test_bootstrap_is_seeded(worked_example):
    first = patient_metrics(*worked_example, MAX, 0.5, n_bootstrap=30, seed=7)
    again = patient_metrics(*worked_example, MAX, 0.5, n_bootstrap=30, seed=7)
    pd.testing.assert_frame_equal(first, again)


# --- bad input ---------------------------------------------------------------------------------


def test_predictions_for_unlabelled_patient():
    slices, labels = frames({"a": (1, [0.9]), "ghost": (0, [0.1])})
    with pytest.raises(EvaluationInputError, match="no ground truth: ghost"):
        patient_metrics(slices, labels[labels["patient_id"] == "a"], MAX, 0.5)


def test_labelled_patient_without_predictions():
    slices, labels = frames({"a": (1, [0.9]), "b": (0, [0.1])})
    with pytest.raises(EvaluationInputError, match="no predictions: b"):
        patient_metrics(slices[slices["patient_id"] == "a"], labels, MAX, 0.5)


@pytest.mark.parametrize("bad", [1.5, -0.1, np.nan])
def test_scores_outside_unit_interval_or_nan(bad):
    slices, labels = frames({"a": (1, [0.9, bad]), "b": (0, [0.1])})
    with pytest.raises(EvaluationInputError, match=r"1 slice score\(s\).*patients a"):
        aggregate(slices, MAX)
    with pytest.raises(EvaluationInputError):
        patient_metrics(slices, labels, MAX, 0.5)


def test_missing_columns():
    slices, labels = frames({"a": (1, [0.9])})
    with pytest.raises(EvaluationInputError, match=r"slice_predictions is missing column.*score"):
        aggregate(slices.drop(columns="score"), MAX)
    with pytest.raises(EvaluationInputError, match=r"patient_labels is missing column.*tumor"):
        patient_metrics(slices, labels.drop(columns="tumor"), MAX, 0.5)


def test_duplicated_slices():
    slices, labels = frames({"a": (1, [0.9, 0.2]), "b": (0, [0.1])})
    slices.loc[1, "slice_index"] = 0
    with pytest.raises(
        EvaluationInputError, match=r"patient_id, study_id, series_id, slice_index.*patients a"
    ):
        patient_metrics(slices, labels, MAX, 0.5)


def test_predictions_without_series_are_refused_not_merged():
    slices, labels = frames({"a": (1, [0.9, 0.2]), "b": (0, [0.1])})
    with pytest.raises(EvaluationInputError, match=r"missing column.*series_id"):
        patient_metrics(slices.drop(columns="series_id"), labels, MAX, 0.5)


# --- patients with several studies and series --------------------------------------------------


def followed_up() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Patient `a` (tumour) has a baseline with T1 and T2 and a follow-up with T1, all numbered
    0, 1, 2; the tumour shows on the baseline T2 only. `b` (normal) has one series; `c` (normal)
    a baseline and a follow-up with a false alarm at follow-up."""
    rows = [
        ("a", "S-a1", "R-a1t1", [0.1, 0.3, 0.2]),
        ("a", "S-a1", "R-a1t2", [0.2, 0.9, 0.4]),
        ("a", "S-a2", "R-a2t1", [0.1, 0.2, 0.1]),
        ("b", "S-b1", "R-b1t1", [0.1, 0.2, 0.3]),
        ("c", "S-c1", "R-c1t1", [0.1, 0.1, 0.2]),
        ("c", "S-c2", "R-c2t1", [0.6, 0.1, 0.2]),
    ]
    slices = pd.DataFrame(
        [
            (patient, study, series, index, score)
            for patient, study, series, scores in rows
            for index, score in enumerate(scores)
        ],
        columns=[*SLICE_KEY, "score"],
    )
    labels = pd.DataFrame({"patient_id": ["a", "b", "c"], "tumor": [1, 0, 0]})
    return slices, labels


def test_series_sharing_slice_indices_aggregate_into_one_patient():
    slices, labels = followed_up()
    patients = aggregate(slices, MAX)
    assert patients["patient_id"].tolist() == ["a", "b", "c"]
    assert patients["score"].tolist() == [0.9, 0.3, 0.6]  # the max over every series
    assert patients["n_slices"].tolist() == [9, 3, 6]
    table = patient_table(slices, labels, AggregationRule("mean_topk", k=2), 0.5)
    assert table["score"].tolist() == pytest.approx([0.65, 0.25, 0.4])  # top 2 across series
    metrics = values(patient_metrics(slices, labels, MAX, 0.5, n_bootstrap=0))
    assert (metrics["n_patients"], metrics["tp"], metrics["fp"], metrics["tn"]) == (3, 1, 1, 1)
    assert "n_studies" not in metrics


def test_study_level_calls_each_study_with_its_patients_truth():
    slices, labels = followed_up()
    table = patient_table(slices, labels, MAX, 0.5, by="study")
    assert table.columns.tolist()[:3] == ["patient_id", "study_id", "tumor"]
    assert list(zip(table["study_id"], table["tumor"], table["score"], strict=True)) == [
        ("S-a1", 1, 0.9),
        ("S-a2", 1, 0.2),  # the follow-up of a tumour patient is judged as a tumour study
        ("S-b1", 0, 0.3),
        ("S-c1", 0, 0.2),
        ("S-c2", 0, 0.6),
    ]
    assert table["n_slices"].tolist() == [6, 3, 3, 3, 3]
    metrics = values(patient_metrics(slices, labels, MAX, 0.5, n_bootstrap=0, by="study"))
    assert (metrics["n_patients"], metrics["n_studies"]) == (3, 5)
    assert (metrics["tp"], metrics["fn"], metrics["fp"], metrics["tn"]) == (1, 1, 1, 2)
    assert (metrics["n_tumor"], metrics["n_normal"]) == (2, 3)
    assert choose_threshold(slices, labels, MAX, by="study") == pytest.approx(0.75)


def test_study_level_intervals_resample_patients_with_all_their_studies():
    """Each tumour patient has one study found (0.9) and one missed (0.1, tied with every normal
    study). Drawing whole patients keeps both studies together, so every resample has AUROC
    0.5 + 0.5 * 0.5 = 0.75 exactly: no spread (a zero-width or not informative interval). Drawing
    studies one by one would spread it."""
    rows = []
    for number in range(5):
        for patient, tumour_score in ((f"t{number}", 0.9), (f"n{number}", 0.1)):
            for study, score in (("S1", tumour_score), ("S2", 0.1)):
                rows.append((patient, f"{patient}{study}", f"R-{patient}{study}", 0, score))
    slices = pd.DataFrame(rows, columns=[*SLICE_KEY, "score"])
    labels = pd.DataFrame(
        {"patient_id": [f"{kind}{n}" for n in range(5) for kind in "tn"], "tumor": [1, 0] * 5}
    )
    table = patient_metrics(slices, labels, MAX, 0.5, n_bootstrap=200, by="study")
    auroc = table.set_index("metric").loc["auroc"]
    assert auroc["value"] == 0.75
    spread = auroc["ci_high"] - auroc["ci_low"]
    assert spread == 0 or np.isnan(spread)


def test_unknown_unit_is_refused():
    slices, _ = followed_up()
    with pytest.raises(ValueError, match="aggregate by one of patient, study"):
        aggregate(slices, MAX, by="series")


def test_bad_labels():
    slices, labels = frames({"a": (1, [0.9]), "b": (0, [0.1])})
    with pytest.raises(EvaluationInputError, match=r"0 or 1.*patients b"):
        patient_metrics(slices, labels.assign(tumor=[1, 2]), MAX, 0.5)
    doubled = pd.concat([labels, labels.iloc[[0]]])
    with pytest.raises(EvaluationInputError, match="more than once: a"):
        patient_metrics(slices, doubled, MAX, 0.5)


def test_evaluation_input_error_is_a_value_error():
    assert issubclass(EvaluationInputError, ValueError)


# --- properties --------------------------------------------------------------------------------

SCORES = st.sampled_from([0.0, 0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 0.9, 1.0]) | st.floats(0, 1)
FAST = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def cohorts(draw: st.DrawFn) -> tuple[pd.DataFrame, pd.DataFrame]:
    n_patients = draw(st.integers(2, 10))
    patients = {
        f"p{index}": (
            draw(st.integers(0, 1)),
            draw(st.lists(SCORES, min_size=1, max_size=5)),
        )
        for index in range(n_patients)
    }
    return frames(patients)


@FAST
@given(cohort=cohorts(), seed=st.integers(0, 2**16))
def test_patient_metrics_ignore_row_order(cohort, seed):
    slices, labels = cohort
    rng = np.random.default_rng(seed)
    shuffled_slices = slices.iloc[rng.permutation(len(slices))]
    shuffled_labels = labels.iloc[rng.permutation(len(labels))]
    rule = AggregationRule("mean_topk", k=2)
    expected = patient_metrics(slices, labels, rule, 0.5, n_bootstrap=20)
    actual = patient_metrics(shuffled_slices, shuffled_labels, rule, 0.5, n_bootstrap=20)
    pd.testing.assert_frame_equal(actual, expected)


@FAST
@given(cohort=cohorts(), threshold=SCORES)
def test_interval_contains_point_estimate(cohort, threshold):
    table = patient_metrics(*cohort, MAX, threshold, n_bootstrap=50).set_index("metric")
    for name in ("accuracy", "sensitivity", "specificity", "ppv", "npv"):
        value, low, high = table.loc[name, ["value", "ci_low", "ci_high"]]
        if np.isfinite(low):
            assert low - 1e-9 <= value <= high + 1e-9, name


@FAST
@given(cohort=cohorts(), thresholds=st.lists(SCORES, min_size=2, max_size=5))
def test_recall_never_rises_with_threshold(cohort, thresholds):
    recalls = [
        values(patient_metrics(*cohort, MAX, threshold, n_bootstrap=0))["tumor_recall"]
        for threshold in sorted(thresholds)
    ]
    defined = [recall for recall in recalls if np.isfinite(recall)]
    assert all(later <= earlier for earlier, later in itertools.pairwise(defined))


@FAST
@given(cohort=cohorts(), k=st.integers(1, 6))
def test_max_is_at_least_mean_of_top_k(cohort, k):
    slices, _ = cohort
    top = aggregate(slices, AggregationRule("max"))["score"].to_numpy()
    mean = aggregate(slices, AggregationRule("mean_topk", k=k))["score"].to_numpy()
    assert np.all(top >= mean - 1e-12)
