"""Multi-label (per-finding) evaluation of radiographs: image and patient AUROC, operating points.

A chest radiograph can show several findings at once, so every finding is judged as its own
binary problem, at two levels:

- image level: each radiograph's score for the finding against its label;
- patient level: a patient's score is the max (or mean) of their radiographs' scores and the
  truth is "any radiograph positive", because a clinician decides about the patient.

Intervals resample PATIENTS (a cluster bootstrap through `medvit.evaluation.confusion`): a
patient's radiographs are correlated, and resampling images would give intervals far too narrow.
Operating points (one threshold per finding, on the patient score) are chosen on validation
patients only and applied unchanged to test, where sensitivity and specificity get exact
Clopper-Pearson intervals as in PTP.

Rare findings are normal in chest data: a split may hold one positive patient of a finding, or
none. Such a finding is *not evaluable* in that split: its rows carry a `status` that says so
(e.g. "not evaluable: 1 positive patient") and it is left out of the mean AUROC, whose own
status names what was excluded. Nothing is set to 0 and nothing is dropped without saying so (the
study's code set failed AUROCs to 0 and averaged them in).

Predictions are one row per radiograph keyed by `SLICE_KEY`, with a 0/1 truth column
`finding_<name>` and a score in [0, 1] column `score_<name>` per finding.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import pandas as pd

from medvit.evaluation.confusion import (
    NO_CI,
    EvaluationInputError,
    Interval,
    cell_counts,
    confusion_rates,
    exact_interval,
    interval_table,
    ratio,
    select_threshold,
)
from medvit.evaluation.ptp import SLICE_KEY
from medvit.ingestion.findings import PREFIX

__all__ = [
    "EVALUABLE",
    "FINDING_PREFIX",
    "MEAN",
    "SCORE_PREFIX",
    "choose_finding_thresholds",
    "evaluability",
    "finding_names",
    "multilabel_metrics",
    "patient_scores",
    "validate_multilabel_predictions",
    "weighted_auroc",
]

FINDING_PREFIX = PREFIX  # the slice table's truth columns, `finding_<name>`
SCORE_PREFIX = "score_"
MEAN = "mean"  # the `finding` of the mean-AUROC rows
EVALUABLE = "evaluable"
PatientRule = Literal["max", "mean"]
ThresholdObjective = Literal["youden", "f1"]
COLUMNS = ("finding", "level", "metric", "value", "ci_low", "ci_high", "ci_method", "status")
COUNT_METRICS = ("n_images", "n_patients", "n_positive_images", "n_positive_patients")
_ROW_CHUNK = 200  # bootstrap rows per vectorised AUROC pass: bounds memory on large test sets


def finding_names(table: pd.DataFrame) -> list[str]:
    """The findings a table carries truth for, in column order (`finding_cardiomegaly` ...)."""
    return [c.removeprefix(FINDING_PREFIX) for c in table.columns if c.startswith(FINDING_PREFIX)]


def validate_multilabel_predictions(frame: pd.DataFrame, findings: Sequence[str]) -> None:
    """Reject predictions that would make a metric silently wrong, naming what to fix."""
    if not findings:
        raise EvaluationInputError("no findings to evaluate: the table has no finding_* columns")
    needed = [
        *SLICE_KEY,
        *(FINDING_PREFIX + f for f in findings),
        *(SCORE_PREFIX + f for f in findings),
    ]
    missing = [column for column in needed if column not in frame.columns]
    if missing:
        raise EvaluationInputError(
            f"predictions are missing column(s) {', '.join(missing)}; each finding needs a 0/1"
            f" '{FINDING_PREFIX}<name>' and a '{SCORE_PREFIX}<name>' column in [0, 1]"
        )
    if frame.empty:
        raise EvaluationInputError("predictions have no rows")
    duplicated = frame.duplicated(list(SLICE_KEY)).sum()
    if duplicated:
        raise EvaluationInputError(f"{duplicated} radiograph(s) are scored more than once")
    for finding in findings:
        truth, score = frame[FINDING_PREFIX + finding], frame[SCORE_PREFIX + finding]
        if not truth.isin([0, 1]).all():
            raise EvaluationInputError(f"{FINDING_PREFIX}{finding} must be 0 or 1")
        bad = ~pd.to_numeric(score, errors="coerce").between(0, 1)
        if bad.any():
            raise EvaluationInputError(
                f"{int(bad.sum())} {SCORE_PREFIX}{finding} value(s) are NaN or outside [0, 1]"
            )


def patient_scores(
    predictions: pd.DataFrame, findings: Sequence[str], rule: PatientRule = "max"
) -> pd.DataFrame:
    """One row per patient (sorted): `n_images`, truth (any radiograph positive) and score
    (max or mean of the radiographs' scores) per finding."""
    if rule not in ("max", "mean"):
        raise ValueError(f"unknown patient rule {rule!r}; use 'max' or 'mean'")
    validate_multilabel_predictions(predictions, findings)
    grouped = predictions.groupby("patient_id", sort=True)
    truth = grouped[[FINDING_PREFIX + f for f in findings]].max().astype(int)
    scores = grouped[[SCORE_PREFIX + f for f in findings]].agg(rule).astype(float)
    counts = grouped.size().rename("n_images")
    return pd.concat([counts, truth, scores], axis=1).reset_index()


def evaluability(patients: pd.DataFrame, findings: Sequence[str], min_patients: int) -> dict:
    """`EVALUABLE`, or why not, per finding: each class needs `min_patients` patients."""
    if min_patients < 1:
        raise ValueError(f"min_patients must be >= 1, got {min_patients}")
    status = {}
    for finding in findings:
        positive = int(patients[FINDING_PREFIX + finding].sum())
        negative = len(patients) - positive
        short = [
            f"{count} {kind} patient{'' if count == 1 else 's'}"
            for count, kind in ((positive, "positive"), (negative, "negative"))
            if count < min_patients
        ]
        status[finding] = f"not evaluable: {', '.join(short)}" if short else EVALUABLE
    return status


def weighted_auroc(truth: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUROC for each row of per-unit `weights` (m, n); NaN where a class has no weight.

    The Mann-Whitney form (a tied positive-negative pair counts one half) with integer weights
    equals sklearn's `roc_auc_score(..., sample_weight=w)`, but every bootstrap row is computed
    in one vectorised pass: a resample of 1,000 rows x 14 findings x 2 levels x 2 splits would
    otherwise be 56,000 sklearn calls.
    """
    truth = np.asarray(truth, dtype=bool)
    order = np.argsort(score, kind="stable")
    sorted_score = np.asarray(score, dtype=float)[order]
    starts = np.flatnonzero(np.r_[True, np.diff(sorted_score) > 0])  # groups of tied scores
    positive = truth[order]
    values = np.empty(len(weights))
    for first in range(0, len(weights), _ROW_CHUNK):
        rows = np.asarray(weights[first : first + _ROW_CHUNK], dtype=float)[:, order]
        pos = np.add.reduceat(rows * positive, starts, axis=1)
        neg = np.add.reduceat(rows * ~positive, starts, axis=1)
        below = np.cumsum(neg, axis=1) - neg
        pairs = (pos * (below + 0.5 * neg)).sum(axis=1)
        values[first : first + _ROW_CHUNK] = ratio(pairs, pos.sum(axis=1) * neg.sum(axis=1))
    return values


def choose_finding_thresholds(
    val_predictions: pd.DataFrame,
    findings: Sequence[str],
    *,
    rule: PatientRule = "max",
    objective: ThresholdObjective = "youden",
    min_patients: int = 2,
) -> dict[str, float]:
    """Patient-score threshold per finding, tuned on VALIDATION patients only; NaN (no operating
    point) for a finding that is not evaluable on validation. Never call this with test data."""
    patients = patient_scores(val_predictions, findings, rule)
    status = evaluability(patients, findings, min_patients)
    return {
        finding: select_threshold(
            patients[FINDING_PREFIX + finding].to_numpy(dtype=bool),
            patients[SCORE_PREFIX + finding].to_numpy(dtype=float),
            objective,
        )
        if status[finding] == EVALUABLE
        else float("nan")
        for finding in findings
    }


def _tidy(table: pd.DataFrame, finding: str, level: str, status: str) -> pd.DataFrame:
    return table.assign(finding=finding, level=level, status=status)[list(COLUMNS)]


def _image_rows(
    predictions: pd.DataFrame,
    finding: str,
    clusters: np.ndarray,
    bootstrap: Mapping,
    status: str,
) -> pd.DataFrame:
    truth = predictions[FINDING_PREFIX + finding].to_numpy(dtype=bool)
    score = predictions[SCORE_PREFIX + finding].to_numpy(dtype=float)
    positive = np.bincount(clusters, weights=truth)

    def estimate(weights: np.ndarray) -> dict[str, np.ndarray]:
        return {
            "auroc": weighted_auroc(truth, score, weights[:, clusters]),
            "n_images": weights @ np.bincount(clusters).astype(float),
            "n_positive_images": weights @ positive,
        }

    fixed = dict.fromkeys(("n_images", "n_positive_images"), NO_CI)
    table = interval_table(
        estimate, truth, clusters, fixed=fixed, classes=_classes(finding), **bootstrap
    )
    return _tidy(table, finding, "image", status)


def _classes(finding: str) -> tuple[str, str]:
    """How an interval's reason names the patients of a finding ("2 effusion-positive patients")."""
    return f"{finding}-positive", f"{finding}-negative"


def _patient_rows(
    patients: pd.DataFrame,
    finding: str,
    threshold: float,
    bootstrap: Mapping,
    status: str,
) -> pd.DataFrame:
    truth = patients[FINDING_PREFIX + finding].to_numpy(dtype=bool)
    score = patients[SCORE_PREFIX + finding].to_numpy(dtype=float)
    units = np.arange(len(patients))
    operating = bool(np.isfinite(threshold))
    cells = cell_counts(truth, score >= threshold, units, len(units))

    def estimate(weights: np.ndarray) -> dict[str, np.ndarray]:
        rates = confusion_rates(weights @ cells)
        undefined = np.full(len(weights), np.nan)
        return {
            "auroc": weighted_auroc(truth, score, weights),
            "sensitivity": rates["sensitivity"] if operating else undefined,
            "specificity": rates["specificity"] if operating else undefined,
            "threshold": np.full(len(weights), threshold),
            "n_patients": weights.sum(axis=1),
            "n_positive_patients": weights @ truth.astype(float),
        }

    tp, fp, tn, fn = cells.sum(axis=0)
    ci = bootstrap["ci"]
    fixed: dict[str, Interval] = {
        **dict.fromkeys(("threshold", "n_patients", "n_positive_patients"), NO_CI),
        "sensitivity": exact_interval(tp, tp + fn, ci) if operating else NO_CI,
        "specificity": exact_interval(tn, tn + fp, ci) if operating else NO_CI,
    }
    table = interval_table(
        estimate, truth, units, fixed=fixed, classes=_classes(finding), **bootstrap
    )
    rows = _tidy(table, finding, "patient", status)
    if not operating:
        at_threshold = rows["metric"].isin(["sensitivity", "specificity", "threshold"])
        rows.loc[at_threshold, "status"] = "no threshold: not evaluable on validation"
    return rows


def _mean_rows(
    predictions: pd.DataFrame,
    patients: pd.DataFrame,
    evaluable: list[str],
    excluded: Mapping[str, str],
    clusters: np.ndarray,
    bootstrap: Mapping,
) -> pd.DataFrame:
    """Mean AUROC over the evaluable findings, each resample averaging the same findings."""
    n_findings = len(evaluable) + len(excluded)
    status = f"mean over {len(evaluable)} of {n_findings} findings"
    if excluded:
        status += "; excluded: " + "; ".join(f"{f} ({why})" for f, why in excluded.items())
    units = np.arange(len(patients))
    levels = (("image", predictions, clusters), ("patient", patients, units))
    frames = []
    for level, table, unit_clusters in levels:

        def estimate(weights: np.ndarray, table=table, unit_clusters=unit_clusters) -> dict:
            if not evaluable:
                return {"auroc": np.full(len(weights), np.nan)}
            per_finding = [
                weighted_auroc(
                    table[FINDING_PREFIX + f].to_numpy(dtype=bool),
                    table[SCORE_PREFIX + f].to_numpy(dtype=float),
                    weights[:, unit_clusters],
                )
                for f in evaluable
            ]
            return {"auroc": np.mean(per_finding, axis=0)}

        any_finding = np.ones(len(table), dtype=bool)  # the mean's interval needs patients only
        result = interval_table(
            estimate, any_finding, unit_clusters, fixed={}, needs={"auroc": "any"}, **bootstrap
        )
        frames.append(_tidy(result, MEAN, level, status))
    return pd.concat(frames, ignore_index=True)


def multilabel_metrics(
    predictions: pd.DataFrame,
    findings: Sequence[str],
    thresholds: Mapping[str, float],
    *,
    rule: PatientRule = "max",
    min_patients: int = 2,
    n_bootstrap: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> pd.DataFrame:
    """Tidy table `finding, level, metric, value, ci_low, ci_high, ci_method, status` of one split.

    Per finding: image-level AUROC and counts; patient-level AUROC, sensitivity and specificity
    at the validation `thresholds`, the threshold itself and counts. Finding `mean`: the mean
    AUROC at each level over the findings evaluable in this split (status names the excluded).
    AUROC intervals are the patient bootstrap (one set of resamples for every finding, so the
    mean's interval is coherent), not informative below 5 patients of a class.
    """
    unknown = sorted(set(findings) - set(thresholds))
    if unknown:
        raise EvaluationInputError(f"no threshold for finding(s) {', '.join(unknown)}")
    patients = patient_scores(predictions, findings, rule)
    status = evaluability(patients, findings, min_patients)
    clusters = pd.Index(patients["patient_id"]).get_indexer(predictions["patient_id"])
    bootstrap = {"n_bootstrap": n_bootstrap, "seed": seed, "ci": ci}
    frames = []
    for finding in findings:
        frames.append(_image_rows(predictions, finding, clusters, bootstrap, status[finding]))
        frames.append(
            _patient_rows(patients, finding, thresholds[finding], bootstrap, status[finding])
        )
    evaluable = [f for f in findings if status[f] == EVALUABLE]
    excluded = {f: status[f] for f in findings if status[f] != EVALUABLE}
    frames.append(_mean_rows(predictions, patients, evaluable, excluded, clusters, bootstrap))
    return pd.concat(frames, ignore_index=True)
