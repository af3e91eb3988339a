"""Thin nodes of the evaluation pipeline: patient-to-patient (PTP) and slice metrics for one model.

Both thresholds are tuned on validation only and applied unchanged to test (docs/metrics.md), so
every node that sees test data receives thresholds and never chooses them. Nodes that name MLflow
keys take the model as a keyword argument bound when the pipeline is built: a node cannot see its
namespace.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Literal

import mlflow
import pandas as pd
from matplotlib.figure import Figure
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt

from medvit.evaluation.confusion import Objective
from medvit.evaluation.plots import confusion_matrix_figure, roc_figure, score_strip_figure
from medvit.evaluation.ptp import (
    AggregationRule,
    Unit,
    choose_threshold,
    flatten_metrics,
    patient_metrics,
    patient_table,
)
from medvit.evaluation.report import Threshold, png_data_uri, render_html, render_report
from medvit.evaluation.slice_metrics import choose_slice_threshold, slice_metrics
from medvit.pipelines.tracking import metric_items

logger = logging.getLogger(__name__)

Probability = Annotated[float, Field(gt=0.0, lt=1.0)]

# Figure file names as the catalog's "{model}.ptp_*" plot entries write them, relative to the
# report, which sits beside the "{model}/" plot folder on disk and in MLflow alike.
REPORT_FIGURES = {
    "Confusion matrix": "confusion_matrix.png",
    "ROC of patient scores": "roc.png",
    "Patient scores": "scores.png",
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


@dataclass(frozen=True)
class Thresholds:
    """Operating points tuned on validation: patient score and slice score."""

    patient: float
    slice: float


def _labels(splits: pd.DataFrame, split: str) -> pd.DataFrame:
    """Patient truth for one split: exactly the patients the model must have scored."""
    return splits.loc[splits["split"] == split, ["patient_id", "tumor"]]


def _test_rows(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["split"] == "test"].drop(columns="split")


def choose_thresholds(
    val_predictions: pd.DataFrame, splits: pd.DataFrame, params: EvaluationParams
) -> Thresholds:
    """Takes no test data at all, so test results cannot leak into the operating point."""
    return Thresholds(
        patient=choose_threshold(
            val_predictions,
            _labels(splits, "val"),
            params.rule,
            params.threshold_objective,
            params.target_sensitivity,
            params.aggregate_by,
        ),
        slice=choose_slice_threshold(val_predictions, params.slice_threshold_objective),
    )


def evaluate(
    val_predictions: pd.DataFrame,
    test_predictions: pd.DataFrame,
    splits: pd.DataFrame,
    thresholds: Thresholds,
    params: EvaluationParams,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Per-patient (or per-study) calls, PTP and slice metrics, each with a `split` column.

    Validation is reported beside test so that an analyst can see how far the tuned threshold
    carries over to unseen patients.
    """
    bootstrap = {"n_bootstrap": params.n_bootstrap, "seed": params.seed, "ci": params.ci}
    patients, ptp, slices = [], [], []
    for split, predictions in (("val", val_predictions), ("test", test_predictions)):
        labels = _labels(splits, split)
        patients.append(
            patient_table(
                predictions, labels, params.rule, thresholds.patient, params.aggregate_by
            ).assign(split=split)
        )
        ptp.append(
            patient_metrics(
                predictions,
                labels,
                params.rule,
                thresholds.patient,
                target_prevalence=params.target_prevalence,
                by=params.aggregate_by,
                **bootstrap,
            ).assign(split=split)
        )
        slices.append(slice_metrics(predictions, thresholds.slice, **bootstrap).assign(split=split))
    patient_calls = pd.concat(patients, ignore_index=True)
    patient_calls = patient_calls[["split", *patient_calls.columns.drop("split")]]
    return patient_calls, pd.concat(ptp, ignore_index=True), pd.concat(slices, ignore_index=True)


def mlflow_metrics(
    ptp_table: pd.DataFrame, slice_table: pd.DataFrame, *, model: str
) -> dict[str, dict[str, float]]:
    """`ptp/<model>/<split>/<metric>` and `slice/<model>/<split>/<metric>`, plus `_ci_low/_ci_high`.

    Undefined metrics stay NaN: MLflow stores NaN, and a missing key would read as "not computed"
    rather than "undefined for this split".
    """
    named: dict[str, float] = {}
    for level, table in (("ptp", ptp_table), ("slice", slice_table)):
        for split, rows in table.groupby("split", sort=False):
            named |= {
                f"{level}/{model}/{split}/{name}": value
                for name, value in flatten_metrics(rows).items()
            }
    return metric_items(named)


def run_params(
    thresholds: Thresholds, params: EvaluationParams, *, model: str
) -> dict[str, str | int | float]:
    """What a reader needs to reproduce a call from a patient's slice scores, named per model."""
    ptp, slice_level = f"ptp/{model}", f"slice/{model}"
    return {
        f"{ptp}/aggregate_by": params.aggregate_by,
        f"{ptp}/rule": params.rule.name,
        f"{ptp}/rule_k": params.rule.k,
        f"{ptp}/rule_slice_threshold": params.rule.slice_threshold,
        f"{ptp}/threshold_objective": params.threshold_objective,
        f"{ptp}/patient_threshold": thresholds.patient,
        f"{ptp}/target_prevalence": params.target_prevalence,
        f"{slice_level}/slice_threshold_objective": params.slice_threshold_objective,
        f"{slice_level}/slice_threshold": thresholds.slice,
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
    return [
        Threshold(
            f"{unit.capitalize()} threshold",
            thresholds.patient,
            f"a {unit} is called tumour when their {unit} score (rule `{params.rule.name}` over"
            " their slice scores) is at least",
            f"the {params.threshold_objective} objective on validation {unit}s",
        ),
        Threshold(
            "Slice threshold",
            thresholds.slice,
            "for the slice-level metrics only, a slice is called tumour when its score is at least",
            f"the {params.slice_threshold_objective} objective on validation slices",
        ),
    ]


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def report(
    patients: pd.DataFrame,
    ptp_table: pd.DataFrame,
    thresholds: Thresholds,
    logged_params: dict[str, str | int | float],
    params: EvaluationParams,
    *,
    model: str,
) -> tuple[str, str, Figure, Figure, Figure]:
    """The analysts' page for the test split, validation beside it: Markdown, the same page as
    HTML with its figures inline, and the figures of test patients (saved beside the Markdown).

    One node draws the figures and writes both pages because a saved figure cannot be loaded back.
    """
    test = _test_rows(patients)
    subject = f"{model}, test {params.aggregate_by}s"
    figures = dict(
        zip(
            REPORT_FIGURES,
            (
                confusion_matrix_figure(test, subject),
                roc_figure(test, subject),
                score_strip_figure(test, thresholds.patient, subject),
            ),
            strict=True,
        )
    )
    page = partial(
        render_report,
        model,
        "test",
        ptp_table,
        test,
        params={**logged_params, "n_bootstrap": params.n_bootstrap, "ci": params.ci},
        thresholds=_threshold_notes(thresholds, params),
    )
    markdown = page({caption: f"{model}/{REPORT_FIGURES[caption]}" for caption in figures})
    inline = page({caption: png_data_uri(_png(figure)) for caption, figure in figures.items()})
    html = render_html(inline, f"{model}: patient-to-patient evaluation on test")
    return markdown, html, *figures.values()
