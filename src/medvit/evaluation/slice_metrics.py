"""Slice-level detection metrics, reported beside PTP to tell slice quality from patient calls.

Confidence intervals resample PATIENTS, not slices. Neighbouring slices of one patient look alike
and share one tumour, so they are not independent observations; resampling slices would pretend
there are thousands of independent cases and give intervals that are far too narrow. Resampling
whole patients (a cluster bootstrap) keeps each patient's slices together, across all of the
patient's studies and series. Slices are keyed by `SLICE_KEY`, as in PTP.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from medvit.evaluation.confusion import (
    NO_CI,
    EvaluationInputError,
    cell_counts,
    confusion_rates,
    interval_table,
    select_threshold,
    weighted_ranking_metric,
)
from medvit.evaluation.ptp import validate_slice_predictions

__all__ = ["choose_slice_threshold", "single_label_sources", "slice_metrics", "within_source"]

COUNT_METRICS = ("n_slices", "n_positive")


def slice_metrics(
    slice_predictions_with_truth: pd.DataFrame,
    threshold: float,
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> pd.DataFrame:
    """Tidy (metric, value, ci_low, ci_high, ci_method) slice table; called when score >= threshold.

    `n_positive` counts slices whose truth is tumour. Undefined metrics (e.g. AUROC when every
    slice is normal) are NaN. Every interval is the patient (cluster) bootstrap, even for
    proportions: an exact binomial interval would treat correlated slices as independent. It is
    reported as not informative when fewer than 5 patients carry the class a metric depends on,
    or when every resample agrees.
    """
    validate_slice_predictions(slice_predictions_with_truth, with_truth=True)
    truth = slice_predictions_with_truth["tumor"].to_numpy(dtype=bool)
    score = slice_predictions_with_truth["score"].to_numpy(dtype=float)
    clusters, patients = pd.factorize(slice_predictions_with_truth["patient_id"], sort=True)
    cells = cell_counts(truth, score >= threshold, clusters, len(patients))

    def estimate(weights: np.ndarray) -> dict[str, np.ndarray]:
        counts = weights @ cells
        rates = confusion_rates(counts)
        tp, _fp, _tn, fn = counts.T
        return {
            "auroc": weighted_ranking_metric(roc_auc_score, truth, score, clusters, weights),
            "auprc": weighted_ranking_metric(
                average_precision_score, truth, score, clusters, weights
            ),
            "sensitivity": rates["sensitivity"],
            "specificity": rates["specificity"],
            "f1": rates["tumor_f1"],
            "precision": rates["ppv"],
            "accuracy": rates["accuracy"],
            "n_slices": counts.sum(axis=1),
            "n_positive": tp + fn,
        }

    return interval_table(
        estimate,
        truth,
        clusters,
        n_bootstrap=n_bootstrap,
        seed=seed,
        ci=ci,
        fixed=dict.fromkeys(COUNT_METRICS, NO_CI),
        needs={"sensitivity": "tumour", "specificity": "normal", "accuracy": "any"},
    )


def choose_slice_threshold(
    slice_predictions_with_truth: pd.DataFrame, objective: Literal["youden", "f1"] = "youden"
) -> float:
    """Slice-score threshold tuned on VALIDATION slices only; ties go to the highest threshold."""
    validate_slice_predictions(slice_predictions_with_truth, with_truth=True)
    return select_threshold(
        slice_predictions_with_truth["tumor"].to_numpy(dtype=bool),
        slice_predictions_with_truth["score"].to_numpy(dtype=float),
        objective,
    )


def within_source(
    slice_predictions: pd.DataFrame, metrics: Callable[[pd.DataFrame], pd.DataFrame]
) -> pd.DataFrame:
    """`metrics` of each source's own slices, with a leading `source` column.

    Pooled over sources, a model that only tells sources apart scores well whenever sources and
    labels are entangled; within one source, only what separates its tumours from its normals
    counts. A source with a single label gets its defined metrics (sensitivity of a tumour-only
    source) and NaN for the others (AUROC).
    """
    if "source" not in slice_predictions:
        raise EvaluationInputError(
            "slice_predictions has no source column, so metrics cannot be broken down by "
            "source; the model stage must keep the slice table's source column"
        )
    tables = [
        metrics(rows.reset_index(drop=True)).assign(source=source)
        for source, rows in slice_predictions.groupby("source", sort=True)
    ]
    table = pd.concat(tables, ignore_index=True)
    return table[["source", *table.columns.drop("source")]]


def single_label_sources(slice_predictions: pd.DataFrame) -> dict[str, str]:
    """Sources holding slices of one label only ('tumour' or 'normal'), when there are several
    sources: then sources and labels are entangled and pooled figures can reward the source."""
    if "source" not in slice_predictions or slice_predictions["source"].nunique() < 2:
        return {}
    labels = slice_predictions.groupby("source")["tumor"].agg(["min", "max"])
    single = labels[labels["min"] == labels["max"]]
    return {source: ("tumour" if row["max"] else "normal") for source, row in single.iterrows()}
