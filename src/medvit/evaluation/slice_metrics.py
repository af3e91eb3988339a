"""Slice-level detection metrics, reported beside PTP to tell slice quality from patient calls.

Confidence intervals resample PATIENTS, not slices. Neighbouring slices of one patient look alike
and share one tumour, so they are not independent observations; resampling slices would pretend
there are thousands of independent cases and give intervals that are far too narrow. Resampling
whole patients (a cluster bootstrap) keeps each patient's slices together, across all of the
patient's studies and series. Slices are keyed by `SLICE_KEY`, as in PTP.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from medvit.evaluation.confusion import (
    NO_CI,
    cell_counts,
    confusion_rates,
    interval_table,
    select_threshold,
    weighted_ranking_metric,
)
from medvit.evaluation.ptp import validate_slice_predictions

__all__ = ["choose_slice_threshold", "slice_metrics"]

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
