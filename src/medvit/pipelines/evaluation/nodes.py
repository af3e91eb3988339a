"""Thin nodes of the evaluation pipeline: patient-to-patient (PTP) and slice metrics for one model.

Both thresholds are tuned on validation only and applied unchanged to test (docs/metrics.md), so
every node that sees test data receives thresholds and never chooses them. Nodes that name MLflow
keys take the model as a keyword argument bound when the pipeline is built: a node cannot see its
namespace.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, replace
from functools import partial
from typing import Annotated, Literal

import mlflow
import pandas as pd
from matplotlib.figure import Figure
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt

from medvit.evaluation.confusion import TIDY_COLUMNS, Objective
from medvit.evaluation.plots import confusion_matrix_figure, roc_figure, score_strip_figure
from medvit.evaluation.ptp import (
    AggregationRule,
    Unit,
    choose_threshold,
    flatten_metrics,
    patient_metrics,
    patient_table,
    ptp_not_applicable,
)
from medvit.evaluation.report import Threshold, png_data_uri, render_html, render_report
from medvit.evaluation.slice_metrics import choose_slice_threshold, slice_metrics, within_source
from medvit.pipelines.tracking import metric_items

logger = logging.getLogger(__name__)

Probability = Annotated[float, Field(gt=0.0, lt=1.0)]

# Figure file names as the catalog's "{model}.ptp_*" plot entries write them, relative to the
# report, which sits beside the "{model}/" plot folder on disk and in MLflow alike.
# Captions name the unit drawn: patients (or studies), or slices where PTP is not applicable.
REPORT_FIGURES = {
    "Confusion matrix": "confusion_matrix.png",
    "ROC of {unit} scores": "roc.png",
    "{Unit} scores": "scores.png",
}


class EvaluationParams(BaseModel):
    """`evaluation` in parameters_evaluation.yml; shared by every model so runs stay comparable."""

    model_config = ConfigDict(extra="forbid")

    rule: AggregationRule = AggregationRule("max")
    aggregate_by: Unit = "patient"
    threshold_objective: Objective = "youden"
    target_sensitivity: Annotated[float, Field(gt=0.0, le=1.0)] = 0.9
    slice_threshold_objective: Literal["youden", "f1"] = "youden"
    n_bootstrap: NonNegativeInt = 1000
    seed: int = 0
    ci: Probability = 0.95
    target_prevalence: Probability = 0.10


EVALUATED = ("val", "test")
BY_SOURCE_COLUMNS = ["split", "level", "source", *TIDY_COLUMNS]
PATIENT_COLUMNS = ["patient_id", "tumor", "score", "decision", "n_slices", "n_positive_slices"]
NOT_PATIENTS = "the evaluated units are not patients (folds, near-duplicate groups or images)"


@dataclass(frozen=True)
class Thresholds:
    """Operating points tuned on validation: patient score and slice score.

    `patient` is None when PTP is not applicable to the cohort, with the reason in
    `ptp_not_applicable`: no patient threshold is chosen on units that are not patients.
    """

    patient: float | None
    slice: float
    ptp_not_applicable: str | None = None


def _labels(splits: pd.DataFrame, split: str) -> pd.DataFrame:
    """Patient truth for one split: exactly the patients the model must have scored."""
    return splits.loc[splits["split"] == split, ["patient_id", "tumor"]]


def _no_ptp(splits: pd.DataFrame) -> str | None:
    return ptp_not_applicable(splits[splits["split"].isin(EVALUATED)])


def _test_rows(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["split"] == "test"].drop(columns="split")


def choose_thresholds(
    val_predictions: pd.DataFrame, splits: pd.DataFrame, params: EvaluationParams
) -> Thresholds:
    """Takes no test data at all, so test results cannot leak into the operating point."""
    slice_threshold = choose_slice_threshold(val_predictions, params.slice_threshold_objective)
    reason = _no_ptp(splits)
    if reason:
        logger.warning("Patient-to-patient (PTP) evaluation is not applicable: %s", reason)
        return Thresholds(patient=None, slice=slice_threshold, ptp_not_applicable=reason)
    patient = choose_threshold(
        val_predictions,
        _labels(splits, "val"),
        params.rule,
        params.threshold_objective,
        params.target_sensitivity,
        params.aggregate_by,
    )
    return Thresholds(patient=patient, slice=slice_threshold)


def _by_source(
    predictions: pd.DataFrame,
    labels: pd.DataFrame,
    pooled: dict[str, pd.DataFrame],
    thresholds: Thresholds,
    params: EvaluationParams,
) -> pd.DataFrame:
    """Slice (and, where it applies, PTP) metrics of each source's own slices.

    With one source these are the pooled tables under its name, not computed twice.
    """
    bootstrap = {"n_bootstrap": params.n_bootstrap, "seed": params.seed, "ci": params.ci}

    def ptp(rows: pd.DataFrame) -> pd.DataFrame:
        own = labels[labels["patient_id"].isin(rows["patient_id"])]
        return patient_metrics(
            rows,
            own,
            params.rule,
            thresholds.patient,
            target_prevalence=params.target_prevalence,
            by=params.aggregate_by,
            **bootstrap,
        )

    def by_slice(rows: pd.DataFrame) -> pd.DataFrame:
        return slice_metrics(rows, thresholds.slice, **bootstrap)

    levels = {"slice": by_slice, **({"ptp": ptp} if thresholds.patient is not None else {})}
    sources = predictions["source"].unique()
    tables = [
        pooled[level].assign(source=sources[0])
        if len(sources) == 1
        else within_source(predictions, compute)
        for level, compute in levels.items()
    ]
    return pd.concat(
        [table.assign(level=level) for level, table in zip(levels, tables, strict=True)],
        ignore_index=True,
    )


def evaluate(
    val_predictions: pd.DataFrame,
    test_predictions: pd.DataFrame,
    splits: pd.DataFrame,
    thresholds: Thresholds,
    params: EvaluationParams,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Per-patient (or per-study) calls, PTP and slice metrics, and the same metrics of each
    source (`BY_SOURCE_COLUMNS`), each with a `split` column.

    Validation is reported beside test so that an analyst can see how far the tuned threshold
    carries over to unseen patients. Where PTP is not applicable, the patient calls and PTP
    tables are empty (their columns kept) rather than describing folds as patients.
    """
    bootstrap = {"n_bootstrap": params.n_bootstrap, "seed": params.seed, "ci": params.ci}
    reason = _no_ptp(splits)
    if reason and thresholds.patient is not None:  # thresholds carried from another cohort
        logger.warning("Patient-to-patient (PTP) evaluation is not applicable: %s", reason)
        thresholds = replace(thresholds, patient=None, ptp_not_applicable=reason)
    patients, ptp, slices, by_source = [], [], [], []
    for split, predictions in (("val", val_predictions), ("test", test_predictions)):
        labels = _labels(splits, split)
        pooled = {"slice": slice_metrics(predictions, thresholds.slice, **bootstrap)}
        if thresholds.patient is not None:
            patients.append(
                patient_table(
                    predictions, labels, params.rule, thresholds.patient, params.aggregate_by
                ).assign(split=split)
            )
            pooled["ptp"] = patient_metrics(
                predictions,
                labels,
                params.rule,
                thresholds.patient,
                target_prevalence=params.target_prevalence,
                by=params.aggregate_by,
                **bootstrap,
            )
            ptp.append(pooled["ptp"].assign(split=split))
        slices.append(pooled["slice"].assign(split=split))
        if "source" in predictions:
            by_source.append(
                _by_source(predictions, labels, pooled, thresholds, params).assign(split=split)
            )
        else:
            logger.warning("%s predictions carry no source column: no within-source metrics", split)
    return (
        _split_first(patients, PATIENT_COLUMNS),
        _split_first(ptp, list(TIDY_COLUMNS)),
        _split_first(slices, list(TIDY_COLUMNS)),
        pd.concat(by_source, ignore_index=True)[BY_SOURCE_COLUMNS]
        if by_source
        else pd.DataFrame(columns=BY_SOURCE_COLUMNS),
    )


def _split_first(tables: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    """The tables stacked, `split` first; with none, an empty table that keeps its columns."""
    if not tables:
        return pd.DataFrame(columns=["split", *columns])
    table = pd.concat(tables, ignore_index=True)
    return table[["split", *table.columns.drop("split")]]


def mlflow_metrics(
    ptp_table: pd.DataFrame,
    slice_table: pd.DataFrame,
    by_source: pd.DataFrame | None = None,
    *,
    model: str,
) -> dict[str, dict[str, float]]:
    """`ptp/<model>/<split>/<metric>` and `slice/<model>/<split>/<metric>`, plus `_ci_low/_ci_high`;
    per source `slice/<model>/<split>/within/<source>/<metric>` (and `ptp/...` where PTP applies).

    Undefined metrics stay NaN: MLflow stores NaN, and a missing key would read as "not computed"
    rather than "undefined for this split". Where PTP is not applicable there are no `ptp/`
    metrics at all (the run's `ptp/<model>` parameter says so).
    """
    named: dict[str, float] = {}
    for level, table in (("ptp", ptp_table), ("slice", slice_table)):
        for split, rows in table.groupby("split", sort=False):
            named |= {
                f"{level}/{model}/{split}/{name}": value
                for name, value in flatten_metrics(rows).items()
            }
    if by_source is not None:
        for (level, split, source), rows in by_source.groupby(["level", "split", "source"]):
            named |= {
                f"{level}/{model}/{split}/within/{source}/{name}": value
                for name, value in flatten_metrics(rows).items()
            }
    return metric_items(named)


def run_params(
    thresholds: Thresholds, params: EvaluationParams, *, model: str
) -> dict[str, str | int | float]:
    """What a reader needs to reproduce a call from a patient's slice scores, named per model.

    Where PTP is not applicable, `ptp/<model>` says so in place of the patient-level settings.
    """
    ptp, slice_level = f"ptp/{model}", f"slice/{model}"
    slice_params = {
        f"{slice_level}/slice_threshold_objective": params.slice_threshold_objective,
        f"{slice_level}/slice_threshold": thresholds.slice,
    }
    if thresholds.patient is None:
        return {ptp: "not applicable", **slice_params}
    return {
        f"{ptp}/aggregate_by": params.aggregate_by,
        f"{ptp}/rule": params.rule.name,
        f"{ptp}/rule_k": params.rule.k,
        f"{ptp}/rule_slice_threshold": params.rule.slice_threshold,
        f"{ptp}/threshold_objective": params.threshold_objective,
        f"{ptp}/patient_threshold": thresholds.patient,
        f"{ptp}/target_prevalence": params.target_prevalence,
        **slice_params,
    }


def log_params(values: dict[str, str | int | float]) -> None:
    """Write params to the active MLflow run: kedro-mlflow has datasets for metrics, not params.

    Without an active run (tracking disabled for the pipeline, a bare runner) this only warns:
    `mlflow.log_params` would otherwise start a stray run of its own.
    """
    if mlflow.active_run() is None:
        logger.warning("No active MLflow run: not logging %s", ", ".join(values))
        return
    mlflow.log_params(values)


def _threshold_notes(thresholds: Thresholds, params: EvaluationParams) -> list[Threshold]:
    unit = params.aggregate_by
    slice_threshold = Threshold(
        "Slice threshold",
        thresholds.slice,
        "for the slice-level metrics only, a slice is called tumour when its score is at least",
        f"the {params.slice_threshold_objective} objective on validation slices",
    )
    if thresholds.patient is None:
        return [slice_threshold]
    return [
        Threshold(
            f"{unit.capitalize()} threshold",
            thresholds.patient,
            f"a {unit} is called tumour when their {unit} score (rule `{params.rule.name}` over"
            " their slice scores) is at least",
            f"the {params.threshold_objective} objective on validation {unit}s",
        ),
        slice_threshold,
    ]


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _figures(
    patients: pd.DataFrame,
    test_predictions: pd.DataFrame,
    thresholds: Thresholds,
    params: EvaluationParams,
    model: str,
) -> dict[str, Figure]:
    """Test units' figures: patients (or studies), or slices where PTP is not applicable."""
    if thresholds.patient is None:
        unit, threshold = "slice", thresholds.slice
        table = test_predictions.assign(decision=(test_predictions["score"] >= threshold) * 1)
    else:
        unit, threshold, table = params.aggregate_by, thresholds.patient, _test_rows(patients)
    subject = f"{model}, test {unit}s"
    captions = [c.format(unit=unit, Unit=unit.capitalize()) for c in REPORT_FIGURES]
    return dict(
        zip(
            captions,
            (
                confusion_matrix_figure(table, subject, unit),
                roc_figure(table, subject, unit),
                score_strip_figure(table, threshold, subject, unit),
            ),
            strict=True,
        )
    )


def report(
    patients: pd.DataFrame,
    ptp_table: pd.DataFrame,
    slice_table: pd.DataFrame,
    by_source: pd.DataFrame,
    shortcut_audit: pd.DataFrame,
    test_predictions: pd.DataFrame,
    thresholds: Thresholds,
    logged_params: dict[str, str | int | float],
    params: EvaluationParams,
    *,
    model: str,
) -> tuple[str, str, Figure, Figure, Figure]:
    """The analysts' page for the test split, validation beside it: Markdown, the same page as
    HTML with its figures inline, and the figures of test patients (saved beside the Markdown).

    The page leads with PTP, or with slice metrics and the reason where PTP is not applicable;
    within-source figures come first when sources and labels are entangled; the shortcut audit
    of data preparation is part of every page. One node draws the figures and writes both pages
    because a saved figure cannot be loaded back.
    """
    if ptp_table.empty and thresholds.patient is not None:  # see `evaluate`
        thresholds = replace(thresholds, patient=None, ptp_not_applicable=NOT_PATIENTS)
    figures = _figures(patients, test_predictions, thresholds, params, model)
    no_ptp = thresholds.ptp_not_applicable
    page = partial(
        render_report,
        model,
        "test",
        slice_table if no_ptp else ptp_table,
        _test_rows(patients),
        params={**logged_params, "n_bootstrap": params.n_bootstrap, "ci": params.ci},
        thresholds=_threshold_notes(thresholds, params),
        by_source=by_source,
        audit=shortcut_audit,
        ptp_not_applicable=no_ptp,
    )
    files = dict(zip(figures, REPORT_FIGURES.values(), strict=True))
    markdown = page({caption: f"{model}/{files[caption]}" for caption in figures})
    inline = page({caption: png_data_uri(_png(figure)) for caption, figure in figures.items()})
    title = "slice-level" if no_ptp else "patient-to-patient"
    html = render_html(inline, f"{model}: {title} evaluation on test")
    return markdown, html, *figures.values()
