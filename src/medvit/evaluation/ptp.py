"""Patient-to-patient (PTP) evaluation: one tumour/normal call per patient, judged per patient.

"Realism in Action" (arXiv 2401.03302) introduced PTP evaluation without publishing how slice
scores become a patient call; the rules here are that missing definition, made explicit so that a
reported number can be reproduced. The decision threshold is chosen on validation patients and
then applied unchanged to test patients, at the realistic 9 normal : 1 tumour mix of those splits.
See docs/metrics.md for the clinician-facing definitions.

A slice is identified by `SLICE_KEY` (patient, study, series, slice index): `slice_index` is only
unique within its series, and real patients have several studies and series. The unit called is
the patient by default, or each of a patient's studies (`by="study"`, what a radiologist reports);
either way intervals resample whole patients, so a patient's studies and series stay together.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from medvit.evaluation.confusion import (
    NO_CI,
    EvaluationInputError,
    Interval,
    Objective,
    cell_counts,
    confusion_rates,
    exact_interval,
    interval_table,
    prevalence_intervals,
    reweight_to_prevalence,
    select_threshold,
    weighted_ranking_metric,
)

__all__ = [
    "SLICE_KEY",
    "AggregationRule",
    "EvaluationInputError",
    "Unit",
    "aggregate",
    "choose_threshold",
    "flatten_metrics",
    "patient_metrics",
    "patient_table",
    "ptp_not_applicable",
    "validate_slice_predictions",
]

RuleName = Literal["max", "mean_topk", "count", "fraction"]
Unit = Literal["patient", "study"]

SLICE_KEY = ("patient_id", "study_id", "series_id", "slice_index")
PREDICTION_COLUMNS = (*SLICE_KEY, "score")
LABEL_COLUMNS = ("patient_id", "tumor")
UNIT_KEYS: dict[str, tuple[str, ...]] = {
    "patient": ("patient_id",),
    "study": ("patient_id", "study_id"),
}
COUNT_METRICS = ("tp", "fp", "tn", "fn", "n_patients", "n_studies", "n_tumor", "n_normal")
_MAX_NAMED = 10


@dataclass(frozen=True)
class AggregationRule:
    """How a patient's slice scores become one patient score.

    `k` is the top-k size for `mean_topk` and the minimum number of positive slices for `count`;
    `slice_threshold` is what makes a slice positive for `count`, `fraction` and the
    `n_positive_slices` column.
    """

    name: RuleName
    k: int = 1
    slice_threshold: float = 0.5

    def __post_init__(self) -> None:
        if self.name not in get_args(RuleName):
            raise ValueError(f"unknown rule {self.name!r}; use one of {get_args(RuleName)}")
        if isinstance(self.k, bool) or not isinstance(self.k, int | np.integer) or self.k < 1:
            raise ValueError(f"k must be an integer >= 1, got {self.k!r}")
        if not 0 <= self.slice_threshold <= 1:
            raise ValueError(f"slice_threshold must be in [0, 1], got {self.slice_threshold}")

    @property
    def default_threshold(self) -> float:
        """Patient threshold implied by the rule itself, for runs that do not tune on validation.

        `count` means "at least k positive slices"; for the other rules a patient is positive when
        their score reaches the slice threshold (for `max`: when any slice is positive).
        """
        return float(self.k) if self.name == "count" else float(self.slice_threshold)


def _name_patients(patient_ids: Iterable[object]) -> str:
    """Short, sorted list of patient ids for error messages on large cohorts."""
    names = sorted({str(patient_id) for patient_id in patient_ids})
    shown = ", ".join(names[:_MAX_NAMED])
    return shown if len(names) <= _MAX_NAMED else f"{shown} (+{len(names) - _MAX_NAMED} more)"


def _require_columns(frame: pd.DataFrame, columns: Iterable[str], frame_name: str) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise EvaluationInputError(
            f"{frame_name} is missing column(s) {', '.join(missing)}; "
            f"it has {', '.join(map(str, frame.columns)) or 'no columns'}"
        )


def _require_binary(frame: pd.DataFrame, column: str, frame_name: str) -> None:
    bad = ~frame[column].isin([0, 1])
    if bad.any():
        raise EvaluationInputError(
            f"{frame_name}.{column} must be 0 or 1; {int(bad.sum())} bad value(s) for patients "
            f"{_name_patients(frame.loc[bad, 'patient_id'])}"
        )


def _require_valid_scores(frame: pd.DataFrame) -> None:
    if not pd.api.types.is_numeric_dtype(frame["score"]):
        raise EvaluationInputError(f"slice score must be numeric, got dtype {frame['score'].dtype}")
    bad = ~frame["score"].between(0, 1)
    if bad.any():
        raise EvaluationInputError(
            f"{int(bad.sum())} slice score(s) are NaN or outside [0, 1] for patients "
            f"{_name_patients(frame.loc[bad, 'patient_id'])}"
        )


def _require_unique_slices(frame: pd.DataFrame) -> None:
    duplicated = frame.duplicated(list(SLICE_KEY), keep=False)
    if duplicated.any():
        raise EvaluationInputError(
            f"{int(duplicated.sum())} rows share a ({', '.join(SLICE_KEY)}) for patients "
            f"{_name_patients(frame.loc[duplicated, 'patient_id'])}; each slice must be scored "
            "once (a model that drops study_id or series_id merges a patient's series)"
        )


def validate_slice_predictions(frame: pd.DataFrame, *, with_truth: bool = False) -> None:
    """Reject predictions that would make metrics wrong; `with_truth` also checks slice labels."""
    columns = (*PREDICTION_COLUMNS, "tumor") if with_truth else PREDICTION_COLUMNS
    _require_columns(frame, columns, "slice_predictions")
    if frame.empty:
        raise EvaluationInputError("slice_predictions has no rows")
    _require_valid_scores(frame)
    _require_unique_slices(frame)
    if with_truth:
        _require_binary(frame, "tumor", "slice_predictions")


def ptp_not_applicable(units: pd.DataFrame) -> str | None:
    """Why patient-level metrics would mislead on these units (rows of the splits), or None.

    A source without patient identifiers is split by groups (a fold, a set of near-duplicate
    images) or by single images; calling such a unit "a patient" makes a whole fold one case, so
    PTP figures would describe folds, not patients. Units of splits without a `patient_level`
    column (drawn before it existed, or written by hand) count as patients.
    """
    if "patient_level" not in units:
        return None
    grouped = int((~units["patient_level"].astype(bool)).sum())
    if not grouped:
        return None
    return (
        f"{grouped} of {len(units)} units are not patients (folds, near-duplicate groups or "
        "single images of a source without patient identifiers), so patient-level figures "
        "would count those units as patients"
    )


def _validate_labels(patient_labels: pd.DataFrame) -> None:
    _require_columns(patient_labels, LABEL_COLUMNS, "patient_labels")
    duplicated = patient_labels["patient_id"].duplicated(keep=False)
    if duplicated.any():
        raise EvaluationInputError(
            "patient_labels lists patients more than once: "
            f"{_name_patients(patient_labels.loc[duplicated, 'patient_id'])}"
        )
    _require_binary(patient_labels, "tumor", "patient_labels")


def _require_same_patients(predicted: pd.Series, labelled: pd.Series) -> None:
    """Both directions matter: an unscored patient would silently vanish from every metric."""
    unlabelled = set(predicted) - set(labelled)
    if unlabelled:
        raise EvaluationInputError(
            f"predictions for patients with no ground truth: {_name_patients(unlabelled)}"
        )
    unscored = set(labelled) - set(predicted)
    if unscored:
        raise EvaluationInputError(
            f"ground-truth patients with no predictions: {_name_patients(unscored)}"
        )


def _top_k_mean(slices: pd.DataFrame, keys: list[str], rule: AggregationRule) -> pd.Series:
    top = slices.sort_values("score", ascending=False, kind="stable").groupby(keys).head(rule.k)
    return top.groupby(keys)["score"].mean()


_RULE_SCORES: dict[str, Callable[[pd.DataFrame, list[str], AggregationRule], pd.Series]] = {
    "max": lambda slices, keys, _rule: slices.groupby(keys)["score"].max(),
    "mean_topk": _top_k_mean,
    "count": lambda slices, keys, _rule: slices.groupby(keys)["positive"].sum().astype(float),
    "fraction": lambda slices, keys, _rule: slices.groupby(keys)["positive"].mean(),
}


def _unit_keys(by: Unit) -> list[str]:
    if by not in UNIT_KEYS:
        raise ValueError(f"unknown unit {by!r}; aggregate by one of {', '.join(UNIT_KEYS)}")
    return list(UNIT_KEYS[by])


def aggregate(
    slice_predictions: pd.DataFrame, rule: AggregationRule, by: Unit = "patient"
) -> pd.DataFrame:
    """One row per unit, sorted: patient_id[, study_id], score, n_slices, n_positive_slices.

    A unit's score pools the slices of all its series, so a patient with a T1 and a T2 series
    (or two studies) gets one score, not one per series.
    """
    keys = _unit_keys(by)
    validate_slice_predictions(slice_predictions)
    slices = slice_predictions[[*keys, "score"]].assign(
        positive=slice_predictions["score"] >= rule.slice_threshold
    )
    summary = slices.groupby(keys).agg(
        n_slices=("score", "size"), n_positive_slices=("positive", "sum")
    )
    summary["score"] = _RULE_SCORES[rule.name](slices, keys, rule)
    summary = summary.astype({"n_slices": int, "n_positive_slices": int})
    return summary.reset_index()[[*keys, "score", "n_slices", "n_positive_slices"]]


def _scored_patients(
    slice_predictions: pd.DataFrame,
    patient_labels: pd.DataFrame,
    rule: AggregationRule,
    by: Unit,
) -> pd.DataFrame:
    """Scored units with their patient's truth.

    Ground truth is per patient, so each study of a tumour patient counts as a tumour study.
    """
    _validate_labels(patient_labels)
    scores = aggregate(slice_predictions, rule, by)
    _require_same_patients(scores["patient_id"], patient_labels["patient_id"])
    labels = patient_labels[list(LABEL_COLUMNS)].astype({"tumor": int})
    patients = labels.merge(scores, on="patient_id", validate="one_to_many")
    return patients.sort_values(_unit_keys(by), ignore_index=True)


def _require_finite(value: float, name: str) -> None:
    if not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")


def patient_table(
    slice_predictions: pd.DataFrame,
    patient_labels: pd.DataFrame,
    rule: AggregationRule,
    threshold: float,
    by: Unit = "patient",
) -> pd.DataFrame:
    """Per-unit score and call, so every headline number can be traced to named patients.

    Columns: patient_id[, study_id with `by="study"`], tumor, score, decision, n_slices,
    n_positive_slices.
    """
    _require_finite(threshold, "threshold")
    patients = _scored_patients(slice_predictions, patient_labels, rule, by)
    patients["decision"] = (patients["score"] >= threshold).astype(int)
    columns = ["tumor", "score", "decision", "n_slices", "n_positive_slices"]
    return patients[[*_unit_keys(by), *columns]]


def choose_threshold(
    slice_predictions: pd.DataFrame,
    patient_labels: pd.DataFrame,
    rule: AggregationRule,
    objective: Objective = "youden",
    target_sensitivity: float = 0.9,
    by: Unit = "patient",
) -> float:
    """Patient-score threshold tuned on VALIDATION patients; never call this with test data.

    Tuning on test would make test metrics optimistic; the returned value is meant to be applied
    unchanged to test. Candidates are the observed patient scores; ties go to the highest
    threshold. `sensitivity` returns the highest threshold whose sensitivity reaches
    `target_sensitivity`.
    """
    patients = _scored_patients(slice_predictions, patient_labels, rule, by)
    truth = patients["tumor"].to_numpy(dtype=bool)
    return select_threshold(truth, patients["score"].to_numpy(float), objective, target_sensitivity)


def _ptp_estimates(
    counts: np.ndarray,
    auroc: np.ndarray,
    target_prevalence: float,
    n_patients: np.ndarray,
    *,
    studies: bool,
) -> dict[str, np.ndarray]:
    """Rates and counts of the units called; `n_studies` when the unit is the study."""
    rates = confusion_rates(counts)
    sensitivity, specificity = rates["sensitivity"], rates["specificity"]
    ppv_at_prevalence, npv_at_prevalence = reweight_to_prevalence(
        sensitivity, specificity, target_prevalence
    )
    tp, fp, tn, fn = counts.T
    return {
        "tumor_precision": rates["ppv"],
        "tumor_recall": sensitivity,
        "tumor_f1": rates["tumor_f1"],
        "normal_precision": rates["npv"],
        "normal_recall": specificity,
        "normal_f1": rates["normal_f1"],
        "macro_precision": (rates["ppv"] + rates["npv"]) / 2,
        "macro_recall": rates["balanced_accuracy"],
        "macro_f1": (rates["tumor_f1"] + rates["normal_f1"]) / 2,
        "accuracy": rates["accuracy"],
        "sensitivity": sensitivity,
        "specificity": specificity,
        "ppv": rates["ppv"],
        "npv": rates["npv"],
        "balanced_accuracy": rates["balanced_accuracy"],
        "auroc": auroc,
        "ppv_at_prevalence": ppv_at_prevalence,
        "npv_at_prevalence": npv_at_prevalence,
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "n_patients": n_patients,
        **({"n_studies": counts.sum(axis=1)} if studies else {}),
        "n_tumor": tp + fn,
        "n_normal": tn + fp,
    }


def patient_metrics(
    slice_predictions: pd.DataFrame,
    patient_labels: pd.DataFrame,
    rule: AggregationRule,
    threshold: float,
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    target_prevalence: float = 0.10,
    by: Unit = "patient",
) -> pd.DataFrame:
    """Tidy (metric, value, ci_low, ci_high, ci_method) PTP table; undefined metrics are NaN.

    Proportions (sensitivity, specificity, PPV, NPV, accuracy and their per-class aliases) get
    exact Clopper-Pearson intervals, which stay honest at 0 or n of n; PPV and NPV at the target
    prevalence propagate the sensitivity and specificity bounds. The exact interval assumes
    independent units, so when the unit is the study and a patient has several, proportions fall
    back to the bootstrap. F1, balanced accuracy, macro averages and AUROC always get a
    percentile bootstrap over patients resampled with replacement (a patient's studies drawn
    together; a resample in which a metric is undefined is left out for that metric), reported
    as not informative when a class has fewer than 5 patients or every resample agrees. Counts
    have no interval.
    """
    if not 0 < target_prevalence < 1:
        raise ValueError(f"target_prevalence must be in (0, 1), got {target_prevalence}")
    units = patient_table(slice_predictions, patient_labels, rule, threshold, by)
    truth = units["tumor"].to_numpy(dtype=bool)
    score = units["score"].to_numpy(dtype=float)
    clusters, patients = pd.factorize(units["patient_id"], sort=True)
    cells = cell_counts(truth, units["decision"].to_numpy(dtype=bool), clusters, len(patients))

    def estimate(weights: np.ndarray) -> dict[str, np.ndarray]:
        auroc = weighted_ranking_metric(roc_auc_score, truth, score, clusters, weights)
        return _ptp_estimates(
            weights @ cells, auroc, target_prevalence, weights.sum(axis=1), studies=by == "study"
        )

    independent = len(patients) == len(units)
    fixed = _fixed_intervals(cells.sum(axis=0), ci, target_prevalence) if independent else {}
    return interval_table(
        estimate,
        truth,
        clusters,
        n_bootstrap=n_bootstrap,
        seed=seed,
        ci=ci,
        fixed={**dict.fromkeys(COUNT_METRICS, NO_CI), **fixed},
    )


def _fixed_intervals(counts: np.ndarray, ci: float, prevalence: float) -> dict[str, Interval]:
    """Exact intervals of the proportions, from the pooled (tp, fp, tn, fn)."""
    tp, fp, tn, fn = counts
    proportions = {
        ("sensitivity", "tumor_recall"): (tp, tp + fn),
        ("specificity", "normal_recall"): (tn, tn + fp),
        ("ppv", "tumor_precision"): (tp, tp + fp),
        ("npv", "normal_precision"): (tn, tn + fn),
        ("accuracy",): (tp + tn, counts.sum()),
    }
    fixed: dict[str, Interval] = {}
    for names, (successes, trials) in proportions.items():
        fixed |= dict.fromkeys(names, exact_interval(successes, trials, ci))
    fixed["ppv_at_prevalence"], fixed["npv_at_prevalence"] = prevalence_intervals(
        counts, prevalence, ci
    )
    return fixed


def flatten_metrics(table: pd.DataFrame) -> dict[str, float]:
    """Flat metric dict for MLflow; intervals that are NaN are left out rather than logged."""
    flat: dict[str, float] = {}
    for row in table.itertuples(index=False):
        flat[row.metric] = float(row.value)
        for suffix, bound in (("_ci_low", row.ci_low), ("_ci_high", row.ci_high)):
            if np.isfinite(bound):
                flat[row.metric + suffix] = float(bound)
    return flat
