"""MLflow glue: values shaped the way MLflow logs them, models in runs of their own, the run's
description and cross-model comparison. Library code never imports MLflow; nodes and hooks do,
through here.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.entities import Metric
from mlflow.models.model import ModelInfo
from pydantic import BaseModel

from medvit.splits import SPLITS, split_counts

logger = logging.getLogger(__name__)

MODEL_TAG = "medvit_model"  # on a model's own child run: which model it holds
REGISTERED_PREFIX = "medvit-"  # registry names: medvit-detector, medvit-teacher, medvit-student
MODEL_ORDER = ("detector", "teacher", "student")
NOTE_TAG = "mlflow.note.content"  # the run description MLflow shows first
COMPARISON_ARTIFACT = "reports/model_comparison.md"
# Headline test metrics of the comparison: (column, metric name in ptp/<model>/test/<name>).
HEADLINE = (
    ("sensitivity (tumour recall)", "sensitivity"),
    ("specificity", "specificity"),
    ("tumour F1", "tumor_f1"),
    ("AUROC", "auroc"),
)


def metric_items(values: Mapping[str, float], step: int = 0) -> dict[str, dict[str, float]]:
    """`{name: value}` → `{name: {"value": v, "step": step}}` for MlflowMetricsHistoryDataset."""
    return {name: {"value": float(value), "step": step} for name, value in values.items()}


def flat_params(value: Any, prefix: str) -> dict[str, Any]:
    """`{"teacher.training.epochs": 8, ...}` for a typed parameter block (a pydantic model or a
    dataclass), so runs can be filtered and compared by any one setting.

    Fields declared `repr=False` (where a cohort's files live: export folders are often named
    after patients) are left out here as they are of the model's repr. An empty block keeps its
    key, so that "no augmentation" is logged rather than absent.
    """
    if isinstance(value, BaseModel):
        fields = type(value).model_fields
        items = [(name, getattr(value, name)) for name, field in fields.items() if field.repr]
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = dataclasses.fields(value)
        items = [(field.name, getattr(value, field.name)) for field in fields if field.repr]
    elif isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, list | tuple) and any(isinstance(v, BaseModel | Mapping) for v in value):
        items = list(enumerate(value))
    else:
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, item in items:
        flat |= flat_params(item, f"{prefix}.{key}")
    return flat or {prefix: value}


def log_artifacts(paths: Iterable[Path], artifact_path: str) -> None:
    """Log files into the active run (kedro-mlflow's), if any: a run without MLflow still works.

    For outputs whose names a library decides at run time (ultralytics' plots), which the catalog
    cannot declare one by one.
    """
    if mlflow.active_run() is None:
        return
    for path in paths:
        mlflow.log_artifact(str(path), artifact_path)


def log_text(text: str, artifact_file: str) -> None:
    """Log a text artifact into the active run, if any (an opt-in report held in memory)."""
    if mlflow.active_run() is not None:
        mlflow.log_text(text, artifact_file)


def log_model_run(name: str, log: Callable[..., ModelInfo]) -> ModelInfo | None:
    """Log a model in a child run of the active run, and register it as `medvit-<name>`.

    `log` is a flavour's `log_model` with everything but `name` and `registered_model_name` bound.
    MLflow 3 links every metric the run holds when a model is logged to that model, so in the
    Kedro run the student would carry ingestion counts and the detector's mAP; in a child run of
    its own it starts with none, and `log_model_metrics` links its own at the end of the run.
    Registered versions point at that child run, and `models:/medvit-<name>/latest` loads the
    newest.
    """
    if mlflow.active_run() is None:
        logger.warning("No active MLflow run: not logging the %s model", name)
        return None
    with mlflow.start_run(run_name=name, nested=True, tags={MODEL_TAG: name}):
        return log(name=name, registered_model_name=REGISTERED_PREFIX + name)


def _own(metrics: Mapping[str, float], model: str) -> list[str]:
    """A model's metric keys: `<kind>/<model>/...` (ptp, slice, det, distill, fit)."""
    return [key for key in metrics if key.split("/")[1:2] == [model]]


def log_model_metrics(client: mlflow.MlflowClient, run: mlflow.entities.Run) -> None:
    """Link each model's own metrics of `run` (every point, as logged) to its logged model.

    The points stay in `run`, so searches and notebooks find one run with every metric; the
    model's child run holds no metrics, and its model page shows its own only.
    """
    children = client.search_runs(
        [run.info.experiment_id],
        f"tags.mlflow.parentRunId = '{run.info.run_id}' and tags.{MODEL_TAG} != ''",
    )
    for child in children:
        models = client.search_logged_models(
            [run.info.experiment_id], f"source_run_id = '{child.info.run_id}'"
        )
        history = [
            point
            for key in _own(run.data.metrics, child.data.tags[MODEL_TAG])
            for point in client.get_metric_history(run.info.run_id, key)
        ]
        for model in models:
            # A rerun in the same MLflow run links again: points already linked are skipped, as
            # the store refuses a (model, metric, timestamp, step) twice.
            seen = {(m.key, m.timestamp, m.step) for m in model.metrics or []}
            linked = {}
            for p in history:
                if (p.key, p.timestamp, p.step) not in seen:
                    linked[(p.key, p.timestamp, p.step)] = Metric(
                        p.key, p.value, p.timestamp, p.step, model_id=model.model_id
                    )
            if linked:
                client.log_batch(run.info.run_id, metrics=list(linked.values()))


def _headline_key(level: str, model: str, name: str) -> str:
    """The slice table calls the tumour F1 `f1`; PTP calls it `tumor_f1`."""
    if level == "slice" and name == "tumor_f1":
        name = "f1"
    return f"{level}/{model}/test/{name}"


def result_level(metrics: Mapping[str, float], model: str) -> str | None:
    """Where a model's headline test results are: `ptp`, else `slice` (a cohort without patient
    identifiers, where PTP is not applicable); None for a model without them, e.g. a multi-label
    classifier, which reports per finding in its own comparison."""
    for level in ("ptp", "slice"):
        if any(_headline_key(level, model, name) in metrics for _, name in HEADLINE):
            return level
    return None


def headline_keys(metrics: Mapping[str, float], model: str) -> list[tuple[str, str]]:
    """(column, metric key) of a model's headline results at its level."""
    level = result_level(metrics, model) or "ptp"
    return [(column, _headline_key(level, model, name)) for column, name in HEADLINE]


def models_with_results(metrics: Mapping[str, float]) -> list[str]:
    """Models with headline test results (PTP, or slice level where PTP does not apply), the
    study's three first."""
    named = {key.split("/")[1] for key in metrics if key.startswith(("ptp/", "slice/"))}
    found = {model for model in named if result_level(metrics, model)}
    return [m for m in MODEL_ORDER if m in found] + sorted(found - set(MODEL_ORDER))


def model_label(metrics: Mapping[str, float], model: str) -> str:
    """The model's name, marked when its figures are per slice rather than per patient."""
    return model if result_level(metrics, model) == "ptp" else f"{model} (slice level)"


def estimate(metrics: Mapping[str, float], key: str) -> str:
    """'0.667 (0.094 to 0.992)'; no bounds logged means the interval was not informative."""
    value = metrics.get(key, math.nan)
    if math.isnan(value):
        return "undefined"
    low, high = metrics.get(f"{key}_ci_low"), metrics.get(f"{key}_ci_high")
    if low is None or high is None:
        return f"{value:.3f} (interval not informative)"
    return f"{value:.3f} ({low:.3f} to {high:.3f})"


def comparison_table(metrics: Mapping[str, float]) -> list[str]:
    """Markdown rows: each model's headline test PTP metrics with intervals, and its latency."""
    header = ["model", *(column for column, _ in HEADLINE), "latency (ms/image)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for model in models_with_results(metrics):
        cells = [estimate(metrics, key) for _, key in headline_keys(metrics, model)]
        latency = metrics.get(f"distill/{model}/latency_ms")
        cells.append("not measured" if latency is None else f"{latency:.3g}")
        lines.append("| " + " | ".join([model_label(metrics, model), *cells]) + " |")
    return lines


COMPARISON_NOTE = (
    "Test patients, thresholds chosen on validation. Intervals: exact (Clopper-Pearson) for"
    " sensitivity and specificity, a patient bootstrap for F1 and AUROC, which is not informative"
    " with few patients of a class. Latency: median single-image forward pass on the machine"
    " that ran the pipeline."
)


def _cohort(splits: pd.DataFrame) -> list[str]:
    counts = split_counts(splits)
    lines = ["| split | patients | tumour | normal | prevalence |", "|---|---|---|---|---|"]
    for name in SPLITS:
        total, tumour = counts[f"{name}/patients"], counts[f"{name}/tumor"]
        if total:
            share = f"{tumour / total:.0%}"
            lines.append(f"| {name} | {total} | {tumour} | {total - tumour} | {share} |")
    test, tumour = counts["test/patients"], counts["test/tumor"]
    if test:
        lines += [
            "",
            f"Test split: {tumour} tumour and {test - tumour} normal patients, a prevalence of"
            f" {tumour / test:.0%}.",
        ]
    return lines


def run_description(
    splits: pd.DataFrame | None, metrics: Mapping[str, float], reports: Iterable[str]
) -> str:
    """The run in plain words: each model's headline test results (first, as MLflow shows the
    description's first lines until "Show more"), the cohort, where the reports are. Empty when
    the run produced none of these."""
    sections = []
    if models_with_results(metrics):
        sections += ["### Test results per model", "", *comparison_table(metrics), ""]
        sections += [COMPARISON_NOTE, ""]
    if splits is not None:
        sections += ["### Cohort (patients per split)", "", *_cohort(splits), ""]
    reports = list(reports)
    if reports:
        sections += ["### Reports (Artifacts tab)", "", *(f"- `{path}`" for path in reports), ""]
    return "\n".join(sections)


def comparison_report(metrics: Mapping[str, float]) -> str | None:
    """The comparison as its own Markdown artifact; None when no model has test results."""
    if not models_with_results(metrics):
        return None
    table = comparison_table(metrics)
    return "\n".join(["# Models compared on test", "", *table, "", COMPARISON_NOTE, ""])
