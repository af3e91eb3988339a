"""Metric engine shared by patient-level (PTP) and slice-level evaluation.

Every metric is computed from weighted confusion counts, so a point estimate (every patient
weighted once) and a bootstrap resample (each patient weighted by how often it was drawn) go through
exactly the same formulas. Resampling is always over patients: a patient is the unit a clinician
decides on, and slices of one patient are correlated. Undefined ratios come out as NaN, never as an
exception or a warning, because small or one-class splits are normal in this project.

The percentile bootstrap collapses to a point when every resample gives the same value: 3 of 3
tumour patients found gives "1.000 to 1.000" for sensitivity although an exact 95% interval is
0.29 to 1.00. Patient-level proportions therefore get the exact (Clopper-Pearson) binomial
interval, and bootstrap intervals of degenerate samples are reported as not informative rather
than as a zero-width interval. `ci_method` names, per metric, which one a table holds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy.stats import beta

Objective = Literal["youden", "f1", "sensitivity"]
Estimator = Callable[[np.ndarray], dict[str, np.ndarray]]
RankingMetric = Callable[..., float]

TIDY_COLUMNS = ("metric", "value", "ci_low", "ci_high", "ci_method")
EXACT = "clopper-pearson"
PROPAGATED = "clopper-pearson, propagated"
BOOTSTRAP = "bootstrap"
NOT_INFORMATIVE = "not informative"
NO_INTERVAL = "none"
# Below this many patients of a class a bootstrap over patients can only redraw the same few and
# its percentiles say little about new patients.
MIN_CLASS_UNITS = 5


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


@dataclass(frozen=True)
class Interval:
    """A metric's confidence bounds and the method that gave them (`ci_method` in tables)."""

    low: float
    high: float
    method: str


NO_CI = Interval(np.nan, np.nan, NO_INTERVAL)


def clopper_pearson(
    successes: np.ndarray, trials: np.ndarray, ci: float
) -> tuple[np.ndarray, np.ndarray]:
    """Exact binomial bounds; NaN where there are no trials.

    Unlike a percentile bootstrap they stay wide at 0 or n successes: 3/3 gives 0.29 to 1.00.
    """
    successes, trials = np.broadcast_arrays(
        np.asarray(successes, dtype=float), np.asarray(trials, dtype=float)
    )
    tail = (1 - ci) / 2
    failures = trials - successes
    # The beta quantiles are only evaluated where their shape parameters are positive.
    low = np.where(successes > 0, beta.ppf(tail, np.maximum(successes, 1), failures + 1), 0.0)
    high = np.where(failures > 0, beta.ppf(1 - tail, successes + 1, np.maximum(failures, 1)), 1.0)
    defined = trials > 0
    return np.where(defined, low, np.nan), np.where(defined, high, np.nan)


def exact_interval(successes: float, trials: float, ci: float) -> Interval:
    low, high = clopper_pearson(successes, trials, ci)
    return Interval(float(low), float(high), EXACT)


def prevalence_intervals(
    counts: np.ndarray, prevalence: float, ci: float
) -> tuple[Interval, Interval]:
    """PPV and NPV at `prevalence` from the exact bounds of sensitivity and specificity.

    Both are increasing in sensitivity and in specificity, so the low (high) bounds of the two
    give the low (high) bound. Sensitivity and specificity come from disjoint patients, hence are
    independent: each at level sqrt(ci) makes the pair of intervals hold together with
    probability ci, and the derived interval at least that.
    """
    tp, fp, tn, fn = np.asarray(counts, dtype=float)
    level = np.sqrt(ci)
    sens_low, sens_high = clopper_pearson(tp, tp + fn, level)
    spec_low, spec_high = clopper_pearson(tn, tn + fp, level)
    ppv_low, npv_low = reweight_to_prevalence(sens_low, spec_low, prevalence)
    ppv_high, npv_high = reweight_to_prevalence(sens_high, spec_high, prevalence)
    return (
        Interval(float(ppv_low), float(ppv_high), PROPAGATED),
        Interval(float(npv_low), float(npv_high), PROPAGATED),
    )


Needs = Literal["tumour", "normal", "both", "any"]


def class_support(
    truth: np.ndarray, clusters: np.ndarray, classes: tuple[str, str] = ("tumour", "normal")
) -> dict[Needs, tuple[str, int]]:
    """How many patients a bootstrap can redraw for each class a metric may depend on.

    A patient counts for a class when any of its units (slices, studies) is of that class.
    `classes` names the positive and negative class in the reasons a report prints.
    """
    n_clusters = int(clusters.max()) + 1 if clusters.size else 0
    tumour_units = np.bincount(clusters, weights=truth, minlength=n_clusters)
    all_units = np.bincount(clusters, minlength=n_clusters)
    tumour = (f"{classes[0]} patients", int((tumour_units > 0).sum()))
    normal = (f"{classes[1]} patients", int((tumour_units < all_units).sum()))
    return {
        "tumour": tumour,
        "normal": normal,
        "both": min(tumour, normal, key=lambda support: support[1]),
        "any": ("patients", n_clusters),
    }


def _bootstrap_interval(samples: np.ndarray, ci: float, support: tuple[str, int]) -> Interval:
    """Percentile interval, or a stated reason why it would mislead.

    A zero-width interval (every resample equal, as under perfect separation) and one built on a
    class of fewer than MIN_CLASS_UNITS patients would read as certainty the sample cannot give.
    """
    label, size = support
    if size < MIN_CLASS_UNITS:
        return Interval(np.nan, np.nan, f"{NOT_INFORMATIVE} ({size} {label})")
    low, high = percentile_interval(samples, ci)
    if high - low <= 1e-12:
        return Interval(np.nan, np.nan, f"{NOT_INFORMATIVE} (every resample gives {low:.3f})")
    return Interval(low, high, BOOTSTRAP)


def interval_table(
    estimate: Estimator,
    truth: np.ndarray,
    clusters: np.ndarray,
    *,
    n_bootstrap: int,
    seed: int,
    ci: float,
    fixed: Mapping[str, Interval],
    needs: Mapping[str, Needs] | None = None,
    classes: tuple[str, str] = ("tumour", "normal"),
) -> pd.DataFrame:
    """Tidy (metric, value, ci_low, ci_high, ci_method) table from per-unit truth and patients.

    Metrics in `fixed` keep the interval given there (exact bounds, or NO_CI for counts); every
    other one gets a bootstrap over the patients in `clusters`, judged against the patients of
    the class it `needs` (both classes unless named).
    """
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be >= 0, got {n_bootstrap}")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    support = class_support(truth, clusters, classes)
    n_clusters = support["any"][1]
    point = estimate(np.ones((1, n_clusters)))
    samples = estimate(resample_clusters(n_clusters, n_bootstrap, seed)) if n_bootstrap else {}
    rows = []
    for name, value in point.items():
        if name in fixed:
            interval = fixed[name]
        elif samples:
            needed = support[(needs or {}).get(name, "both")]
            interval = _bootstrap_interval(samples[name], ci, needed)
        else:
            interval = NO_CI
        rows.append((name, float(value[0]), interval.low, interval.high, interval.method))
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
