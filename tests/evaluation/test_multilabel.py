"""Multi-label metrics against values worked out by hand on a four-patient table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from medvit.evaluation.confusion import EvaluationInputError, resample_clusters
from medvit.evaluation.multilabel import (
    choose_finding_thresholds,
    evaluability,
    finding_names,
    multilabel_metrics,
    patient_scores,
    weighted_auroc,
)
from medvit.evaluation.multilabel_report import render_comparison, render_multilabel_report

FINDINGS = ["effusion", "nodule"]


def _predictions() -> pd.DataFrame:
    """Patients a..d; effusion in a and c, nodule in b only (one positive patient)."""
    rows = [
        # patient, study, effusion truth, effusion score, nodule truth, nodule score
        ("a", "s1", 1, 0.9, 0, 0.1),
        ("a", "s2", 0, 0.4, 0, 0.2),
        ("b", "s1", 0, 0.3, 1, 0.8),
        ("c", "s1", 1, 0.6, 0, 0.3),
        ("c", "s2", 1, 0.2, 0, 0.1),
        ("d", "s1", 0, 0.5, 0, 0.4),
    ]
    frame = pd.DataFrame(
        rows,
        columns=[
            "patient_id",
            "study_id",
            "finding_effusion",
            "score_effusion",
            "finding_nodule",
            "score_nodule",
        ],
    )
    return frame.assign(series_id=frame["study_id"] + "x", slice_index=0)


def _value(table: pd.DataFrame, finding: str, level: str, metric: str) -> pd.Series:
    rows = table[(table.finding == finding) & (table.level == level) & (table.metric == metric)]
    assert len(rows) == 1, (finding, level, metric)
    return rows.iloc[0]


def test_finding_names_come_from_truth_columns() -> None:
    assert finding_names(_predictions()) == FINDINGS


def test_patient_scores_max_and_mean() -> None:
    by_max = patient_scores(_predictions(), FINDINGS, "max").set_index("patient_id")
    assert by_max["finding_effusion"].to_dict() == {"a": 1, "b": 0, "c": 1, "d": 0}
    assert by_max["score_effusion"].to_dict() == {"a": 0.9, "b": 0.3, "c": 0.6, "d": 0.5}
    assert by_max["n_images"].to_dict() == {"a": 2, "b": 1, "c": 2, "d": 1}
    by_mean = patient_scores(_predictions(), FINDINGS, "mean").set_index("patient_id")
    assert by_mean.loc["a", "score_effusion"] == pytest.approx(0.65)
    assert by_mean.loc["c", "score_effusion"] == pytest.approx(0.4)


def test_evaluability_names_the_short_class() -> None:
    patients = patient_scores(_predictions(), FINDINGS)
    assert evaluability(patients, FINDINGS, 2) == {
        "effusion": "evaluable",
        "nodule": "not evaluable: 1 positive patient",
    }
    assert evaluability(patients, ["effusion"], 3) == {
        "effusion": "not evaluable: 2 positive patients, 2 negative patients"
    }


def test_thresholds_chosen_on_validation_patients() -> None:
    # Youden on patient max scores: positives 0.9, 0.6, negatives 0.5, 0.3; best cut at 0.6,
    # returned midway to the next lower score 0.5. Nodule has one positive patient: no cut.
    thresholds = choose_finding_thresholds(_predictions(), FINDINGS)
    assert thresholds["effusion"] == pytest.approx(0.55)
    assert np.isnan(thresholds["nodule"])


def test_hand_computed_metrics() -> None:
    table = multilabel_metrics(
        _predictions(), FINDINGS, {"effusion": 0.55, "nodule": np.nan}, n_bootstrap=0
    )
    # Images: positives 0.9, 0.6, 0.2 vs negatives 0.4, 0.3, 0.5: 6 of 9 pairs ordered.
    assert _value(table, "effusion", "image", "auroc").value == pytest.approx(6 / 9)
    # Patients (max): 0.9, 0.6 vs 0.3, 0.5: all 4 pairs ordered; both called at 0.55.
    assert _value(table, "effusion", "patient", "auroc").value == pytest.approx(1.0)
    assert _value(table, "effusion", "patient", "sensitivity").value == 1.0
    assert _value(table, "effusion", "patient", "specificity").value == 1.0
    assert _value(table, "effusion", "patient", "n_positive_patients").value == 2
    assert _value(table, "effusion", "image", "n_positive_images").value == 3
    nodule = _value(table, "nodule", "patient", "auroc")
    assert nodule.status == "not evaluable: 1 positive patient"
    assert _value(table, "nodule", "patient", "sensitivity").status.startswith("no threshold")
    assert np.isnan(_value(table, "nodule", "patient", "sensitivity").value)
    mean = _value(table, "mean", "image", "auroc")
    assert mean.value == pytest.approx(6 / 9)  # nodule excluded, not averaged in as 0 or NaN
    assert mean.status == (
        "mean over 1 of 2 findings; excluded: nodule (not evaluable: 1 positive patient)"
    )
    assert _value(table, "mean", "patient", "auroc").value == pytest.approx(1.0)


def test_mean_rule_changes_patient_auroc() -> None:
    table = multilabel_metrics(
        _predictions(), ["effusion"], {"effusion": 0.5}, rule="mean", n_bootstrap=0
    )
    # Patient means 0.65, 0.4 vs 0.3, 0.5: pairs (0.65 > both) + (0.4 > 0.3) = 3 of 4.
    assert _value(table, "effusion", "patient", "auroc").value == pytest.approx(0.75)


def test_intervals_exact_for_rates_and_bootstrap_for_auroc() -> None:
    table = multilabel_metrics(
        _predictions(), FINDINGS, {"effusion": 0.55, "nodule": np.nan}, n_bootstrap=200
    )
    sensitivity = _value(table, "effusion", "patient", "sensitivity")
    assert sensitivity.ci_method == "clopper-pearson"
    assert sensitivity.ci_low == pytest.approx(0.158, abs=1e-3)  # 2 of 2 at 95%
    assert sensitivity.ci_high == 1.0
    # 2 positive patients: a bootstrap cannot say much, and the table says so in the finding's
    # words, not the brain cohort's tumour and normal patients.
    reason = _value(table, "effusion", "image", "auroc").ci_method
    assert reason == "not informative (2 effusion-positive patients)"


def test_weighted_auroc_matches_sklearn_with_sample_weights() -> None:
    rng = np.random.default_rng(1)
    truth = rng.random(60) < 0.3
    score = np.round(rng.random(60), 1)  # ties, as with calibrated scores
    clusters = rng.integers(0, 20, size=60)
    weights = resample_clusters(20, 5, seed=2)[:, clusters]
    expected = [roc_auc_score(truth, score, sample_weight=w) for w in weights]
    np.testing.assert_allclose(weighted_auroc(truth, score, weights), expected)
    assert np.isnan(weighted_auroc(np.zeros(3, bool), np.ones(3), np.ones((1, 3))))[0]


def test_bad_predictions_are_refused_with_the_column() -> None:
    frame = _predictions()
    with pytest.raises(EvaluationInputError, match="score_nodule"):
        patient_scores(frame.drop(columns="score_nodule"), FINDINGS)
    with pytest.raises(EvaluationInputError, match="outside"):
        patient_scores(frame.assign(score_nodule=1.5), FINDINGS)
    with pytest.raises(EvaluationInputError, match="no threshold"):
        multilabel_metrics(frame, FINDINGS, {"effusion": 0.5})


def test_reports_name_each_finding_with_its_status() -> None:
    table = multilabel_metrics(
        _predictions(), FINDINGS, {"effusion": 0.55, "nodule": np.nan}, n_bootstrap=0
    )
    both = pd.concat([table.assign(split="val"), table.assign(split="test")])
    page = render_multilabel_report(
        "vit_mae", both, {"rule": "max", "threshold_objective": "youden", "min_patients": 2}
    )
    assert "| nodule | 1 | — | — | none | undefined | undefined | not evaluable: 1 pos" in page
    exact = "1.000 (0.158 to 1.000)"  # 2 of 2 patients, Clopper-Pearson
    assert f"| effusion | 2 | 0.667 | 1.000 | 0.55 | {exact} | {exact} | evaluable |" in page
    comparison = render_comparison("MAE vs scratch", {"a": both, "b": both}, "intro")
    assert "| **mean** | 1.000 | 1.000 | mean over 1 of 2 findings" in comparison
