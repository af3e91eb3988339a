"""Metric engine shared by patient-level (PTP) and slice-level evaluation.

Every metric is computed from weighted confusion counts, so a point estimate (every patient
weighted once) and a bootstrap resample (each patient weighted by how often it was drawn) go through
exactly the same formulas. Resampling is always over patients: a patient is the unit a clinician
decides on, and slices of one patient are correlated. Undefined ratios come out as NaN, never as an
exception or a warning, because small or one-class splits are normal in this project.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Literal

import numpy as np
import pandas as pd

Objective = Literal["youden", "f1", "sensitivity"]
Estimator = Callable[[np.ndarray], dict[str, np.ndarray]]
RankingMetric = Callable[..., float]

TIDY_COLUMNS = ("metric", "value", "ci_low", "ci_high")


class EvaluationInputError(ValueError):
    """Raised for inputs that would make a metric silently wrong rather than merely undefined."""


def cell_counts(
    truth: np.ndarray, decision: np.ndarray, clusters: np.ndarray, n_clusters: int
) -> np.ndarray:
    """Per-patient (tp, fp, tn, fn), so any resample's confusion matrix is one matrix product."""
    cells = np.column_stack(
        [truth & decision, ~truth & decision, ~truth & ~decision, truth & ~decision]
    ).astype(float)
    counts = np.zeros((n_clusters, 4))
    np.add.at(counts, clusters, cells)
    return counts


def ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Elementwise division that is NaN (not inf, no warning) where the denominator is not > 0."""
    numerator, denominator = np.broadcast_arrays(
        np.asarray(numerator, dtype=float), np.asarray(denominator, dtype=float)
    )
    undefined = np.full(numerator.shape, np.nan)
    return np.divide(numerator, denominator, out=undefined, where=denominator > 0)


def confusion_rates(counts: np.ndarray) -> dict[str, np.ndarray]:
    """Rates for each row of an (m, 4) array of (tp, fp, tn, fn); NaN where a rate is undefined.

    F1 uses 2TP / (2TP + FP + FN) so it is 0, not undefined, when a class exists but is never
    called; it is NaN only when the class is absent and never called.
    """
    tp, fp, tn, fn = counts.T
    sensitivity = ratio(tp, tp + fn)
    specificity = ratio(tn, tn + fp)
    return {
        "sensitivity": sensitivity,
        "specificity": specificity,
        "ppv": ratio(tp, tp + fp),
        "npv": ratio(tn, tn + fn),
        "accuracy": ratio(tp + tn, counts.sum(axis=1)),
        "balanced_accuracy": (sensitivity + specificity) / 2,
        "tumor_f1": ratio(2 * tp, 2 * tp + fp + fn),
        "normal_f1": ratio(2 * tn, 2 * tn + fn + fp),
    }


def reweight_to_prevalence(
    sensitivity: np.ndarray, specificity: np.ndarray, prevalence: float
) -> tuple[np.ndarray, np.ndarray]:
    """PPV and NPV by Bayes' rule at a chosen prevalence: a split's own mix may not be realistic."""
    true_pos = sensitivity * prevalence
    false_pos = (1 - specificity) * (1 - prevalence)
    true_neg = specificity * (1 - prevalence)
    false_neg = (1 - sensitivity) * prevalence
    return ratio(true_pos, true_pos + false_pos), ratio(true_neg, true_neg + false_neg)


def weighted_ranking_metric(
    metric: RankingMetric,
    truth: np.ndarray,
    score: np.ndarray,
    clusters: np.ndarray,
    weights: np.ndarray,
) -> np.ndarray:
    """A threshold-free metric (AUROC, AUPRC) per weights row; NaN where one class is missing.

    Integer sample weights give the same curve as duplicating rows, so a resample never has to be
    materialised; the one-class guard is what keeps sklearn from warning or raising.
    """
    values = np.full(len(weights), np.nan)
    for row, cluster_weights in enumerate(weights):
        unit_weights = cluster_weights[clusters]
        kept = unit_weights > 0
        kept_truth = truth[kept]
        if kept_truth.any() and not kept_truth.all():
            values[row] = metric(kept_truth, score[kept], sample_weight=unit_weights[kept])
    return values


def resample_clusters(n_clusters: int, n_bootstrap: int, seed: int) -> np.ndarray:
    """(n_bootstrap, n_clusters) draw counts of patients resampled with replacement."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_clusters, size=(n_bootstrap, n_clusters))
    flat = draws + np.arange(n_bootstrap)[:, None] * n_clusters
    counts = np.bincount(flat.ravel(), minlength=n_bootstrap * n_clusters)
    return counts.reshape(n_bootstrap, n_clusters)


def percentile_interval(samples: np.ndarray, ci: float) -> tuple[float, float]:
    """Percentile interval over the resamples where the metric was defined."""
    defined = samples[np.isfinite(samples)]
    if defined.size == 0:
        return np.nan, np.nan
    tail = (1 - ci) / 2
    low, high = np.quantile(defined, [tail, 1 - tail])
    return float(low), float(high)


def bootstrap_table(
    estimate: Estimator,
    n_clusters: int,
    *,
    n_bootstrap: int,
    seed: int,
    ci: float,
    without_ci: Collection[str],
) -> pd.DataFrame:
    """Tidy (metric, value, ci_low, ci_high) table; counts in `without_ci` get NaN intervals."""
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be >= 0, got {n_bootstrap}")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    point = estimate(np.ones((1, n_clusters)))
    samples = estimate(resample_clusters(n_clusters, n_bootstrap, seed)) if n_bootstrap else {}
    rows = []
    for name, value in point.items():
        if name in without_ci or not samples:
            low, high = np.nan, np.nan
        else:
            low, high = percentile_interval(samples[name], ci)
        rows.append((name, float(value[0]), low, high))
    return pd.DataFrame(rows, columns=list(TIDY_COLUMNS))


def require_both_classes(truth: np.ndarray, what: str) -> None:
    """Threshold selection trades sensitivity against specificity, which needs both classes."""
    if truth.all() or not truth.any():
        present = "tumour" if truth.any() else "normal"
        raise EvaluationInputError(
            f"threshold selection needs tumour and normal {what}; got only {present} "
            f"({truth.size} {what})"
        )


def select_threshold(
    truth: np.ndarray,
    score: np.ndarray,
    objective: Objective = "youden",
    target_sensitivity: float = 0.9,
) -> float:
    """Best decision threshold (positive when score >= threshold) among the observed scores.

    Candidates are scanned from the highest down and the first best one wins, so ties go to the
    highest threshold: the most specific of equally good operating points. Youden's J is compared
    in exact integer form so that float rounding cannot break ties arbitrarily.

    The threshold returned sits midway between that score and the next lower observed one: the
    same decisions on these cases, with the widest margin on both sides for new ones. The edge
    itself would be the lowest positive score seen, and a new tumour case falls below the lowest
    of k seen ones with probability 1/(k+1): one in three with two validation tumour patients.
    """
    require_both_classes(truth, "cases")
    if not 0 < target_sensitivity <= 1:
        raise ValueError(f"target_sensitivity must be in (0, 1], got {target_sensitivity}")
    thresholds = np.unique(score)[::-1]
    n_pos, n_neg = int(truth.sum()), int((~truth).sum())
    tp = n_pos - np.searchsorted(np.sort(score[truth]), thresholds, side="left")
    fp = n_neg - np.searchsorted(np.sort(score[~truth]), thresholds, side="left")
    if objective == "youden":
        gain = tp * n_neg - fp * n_pos
    elif objective == "f1":
        gain = 2 * tp / (2 * tp + fp + (n_pos - tp))
    elif objective == "sensitivity":
        gain = tp / n_pos >= target_sensitivity  # division, not product: 7/10 == 0.7
    else:
        raise ValueError(f"unknown objective {objective!r}; use 'youden', 'f1' or 'sensitivity'")
    best = int(np.argmax(gain))
    if best + 1 == thresholds.size:
        return float(thresholds[best])
    return float((thresholds[best] + thresholds[best + 1]) / 2)
