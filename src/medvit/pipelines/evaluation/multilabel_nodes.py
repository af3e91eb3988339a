"""Thin nodes of the multi-label evaluation template: per-finding metrics for one model.

As in the binary template, thresholds are tuned on validation only, and the nodes that see test
data receive them and never choose them. Nodes that name MLflow keys take the model as a keyword
argument bound when the pipeline is built.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt

from medvit.evaluation.confusion import EvaluationInputError
from medvit.evaluation.multilabel import (
    EVALUABLE,
    MEAN,
    choose_finding_thresholds,
    finding_names,
    multilabel_metrics,
)
from medvit.evaluation.multilabel_report import render_multilabel_report
from medvit.evaluation.report import render_html
from medvit.pipelines.tracking import metric_items

LEVEL_PREFIX = {"patient": "ptp", "image": "slice"}  # MLflow's names for the two levels


class MultiLabelEvaluationParams(BaseModel):
    """`multilabel_evaluation`: shared by every multi-label model so their runs compare."""

    model_config = ConfigDict(extra="forbid")

    rule: Literal["max", "mean"] = "max"
    threshold_objective: Literal["youden", "f1"] = "youden"
    min_patients: PositiveInt = 2
    n_bootstrap: NonNegativeInt = 1000
    seed: int = 0
    ci: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.95


def _findings(val_predictions: pd.DataFrame, test_predictions: pd.DataFrame) -> list[str]:
    findings = finding_names(val_predictions)
    if finding_names(test_predictions) != findings:
        raise EvaluationInputError(
            f"validation predictions carry findings {findings}, test predictions"
            f" {finding_names(test_predictions)}: both must come from one model"
        )
    return findings


def choose_thresholds(
    val_predictions: pd.DataFrame, params: MultiLabelEvaluationParams
) -> dict[str, float]:
    """Takes no test data at all, so test results cannot leak into an operating point."""
    return choose_finding_thresholds(
        val_predictions,
        finding_names(val_predictions),
        rule=params.rule,
        objective=params.threshold_objective,
        min_patients=params.min_patients,
    )


def evaluate(
    val_predictions: pd.DataFrame,
    test_predictions: pd.DataFrame,
    thresholds: dict[str, float],
    params: MultiLabelEvaluationParams,
) -> pd.DataFrame:
    """The metric table of both splits (a `split` column): validation beside test."""
    findings = _findings(val_predictions, test_predictions)
    options = params.model_dump(exclude={"threshold_objective"})
    return pd.concat(
        [
            multilabel_metrics(predictions, findings, thresholds, **options).assign(split=split)
            for split, predictions in (("val", val_predictions), ("test", test_predictions))
        ],
        ignore_index=True,
    )


def metric_name(level: str, model: str, split: str, finding: str, metric: str) -> str:
    """`ptp/<model>/<split>/<finding>/<metric>` (patients), `slice/...` (images); the mean
    AUROC as `<level>/<model>/<split>/mean_auroc`."""
    prefix = LEVEL_PREFIX[level]
    leaf = "mean_auroc" if finding == MEAN else f"{finding}/{metric}"
    return f"{prefix}/{model}/{split}/{leaf}"


def mlflow_metrics(table: pd.DataFrame, *, model: str) -> dict[str, dict[str, float]]:
    """Every evaluable finding's metrics with `_ci_low`/`_ci_high`; of a finding that is not
    evaluable in a split only its counts, so that no number stands for a finding that could not
    be judged. `<level>/<model>/<split>/n_findings_evaluable` says how many the mean covers."""
    named: dict[str, float] = {}
    for row in table.itertuples(index=False):
        counts = row.metric.startswith("n_")
        if row.status != EVALUABLE and not counts and row.finding != MEAN:
            continue
        name = metric_name(row.level, model, row.split, row.finding, row.metric)
        named[name] = row.value
        for suffix, bound in (("_ci_low", row.ci_low), ("_ci_high", row.ci_high)):
            if np.isfinite(bound):
                named[name + suffix] = bound
    findings = table[(table["finding"] != MEAN) & (table["metric"] == "auroc")]
    for (split, level), rows in findings.groupby(["split", "level"]):
        named[f"{LEVEL_PREFIX[level]}/{model}/{split}/n_findings_evaluable"] = (
            rows.status == EVALUABLE
        ).sum()
    return metric_items(named)


def report(
    table: pd.DataFrame, params: MultiLabelEvaluationParams, *, model: str
) -> tuple[str, str]:
    """The model's page (thresholds are rows of `table`), Markdown and the same as HTML (MLflow
    renders the latter)."""
    markdown = render_multilabel_report(model, table, params.model_dump())
    return markdown, render_html(markdown, f"{model}: multi-label evaluation")
