"""The last lines of every run: where its MLflow run is, its reports, each model's test PTP.

After a long run the console holds thousands of lines; the answers an analyst came for are at the
end, in one block, written through logging so that a log file gets them too. MLflow glue: the
headline numbers are read back from the run's own `ptp/<model>/test/*` metrics, which is what the
MLflow UI shows, so the console and the UI cannot disagree.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from kedro.framework.hooks import hook_impl
from kedro.io import DataCatalog
from kedro.pipeline import Pipeline
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from medvit.pipelines.tracking import estimate, headline_keys, model_label, models_with_results

logger = logging.getLogger(__name__)

REPORT_SUFFIXES = (".md", ".html")


def headline(metrics: Mapping[str, float]) -> list[str]:
    """One line per model with test PTP metrics: the metric, its 95% interval, the patients."""
    lines = []
    for model in models_with_results(metrics):
        keys = headline_keys(metrics, model)
        parts = [f"{label} {estimate(metrics, key)}" for label, key in keys]
        prefix = keys[0][1].rsplit("/", 1)[0] + "/"
        tumor, normal = metrics.get(prefix + "n_tumor"), metrics.get(prefix + "n_normal")
        counts = (
            "" if tumor is None or normal is None else f" ({tumor:.0f} tumour, {normal:.0f} normal)"
        )
        lines.append(f"  {model_label(metrics, model)}{counts}: " + ", ".join(parts))
    return lines


@dataclass(frozen=True)
class TrackedRun:
    """The MLflow run a Kedro run logged to, and where its UI serves it."""

    run_id: str
    experiment_id: str
    tracking_uri: str
    host: str = "127.0.0.1"
    port: str = "5000"

    @property
    def served(self) -> bool:
        """A tracking server already serves its own UI; a local store needs `mlflow ui`."""
        return self.tracking_uri.startswith(("http://", "https://"))

    def lines(self) -> list[str]:
        page = f"#/experiments/{self.experiment_id}/runs/{self.run_id}"
        if self.served:
            return [f"MLflow run {self.run_id}: {self.tracking_uri.rstrip('/')}/{page}"]
        return [
            f"MLflow run {self.run_id}; to open it:",
            f"  uv run mlflow ui --backend-store-uri {self.tracking_uri} --host {self.host}"
            f" --port {self.port}",
            f"  then http://{self.host}:{self.port}/{page}",
        ]


def report_paths(pipeline: Pipeline, catalog: DataCatalog) -> list[Path]:
    """Files the run wrote for people to read: every Markdown or HTML output of the pipeline."""
    paths = []
    for name in sorted(pipeline.all_outputs()):
        if name not in catalog:
            continue
        filepath = catalog.get(name)._describe().get("filepath")
        if filepath is not None and Path(str(filepath)).suffix in REPORT_SUFFIXES:
            paths.append(Path(str(filepath)))
    return paths


def summary(
    run: TrackedRun | None,
    metrics: Mapping[str, float],
    reports: Iterable[Path],
    title: str = "Run summary",
) -> str:
    lines = [title]
    lines += run.lines() if run is not None else ["No MLflow run (tracking is off for this run)"]
    reports = list(reports)
    if reports:
        lines += ["Reports:", *(f"  {path}" for path in reports)]
    models = headline(metrics)
    if models:
        lines += ["Test patients (PTP), 95% intervals:", *models]
    return "\n".join(lines)


class RunSummaryHook:
    """Logs `summary` once the pipeline has finished and kedro-mlflow has closed its run.

    The run is remembered when the pipeline starts (kedro-mlflow, a plugin, is called first and
    has opened it by then) and read back by id at the end, because kedro-mlflow's own
    `after_pipeline_run` ends it before this hook is called.
    """

    def __init__(self) -> None:
        self._run: TrackedRun | None = None
        self._ui: dict[str, str] = {}

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        """Where `kedro mlflow ui` would serve, from kedro-mlflow's config (mlflow.yml `ui:`)."""
        ui = getattr(getattr(context, "mlflow", None), "ui", None)
        self._ui = {} if ui is None else {"host": str(ui.host), "port": str(ui.port)}

    @hook_impl
    def before_pipeline_run(self) -> None:
        active = mlflow.active_run()
        self._run = (
            None
            if active is None
            else TrackedRun(
                run_id=active.info.run_id,
                experiment_id=active.info.experiment_id,
                tracking_uri=mlflow.get_tracking_uri(),
                **self._ui,
            )
        )

    @hook_impl(trylast=True)
    def after_pipeline_run(self, pipeline: Pipeline, catalog: DataCatalog) -> None:
        metrics = {}
        if self._run is not None:
            client = MlflowClient(self._run.tracking_uri)
            try:
                metrics = client.get_run(self._run.run_id).data.metrics
            except MlflowException as error:  # a server gone since: the run itself succeeded
                logger.warning("The run summary has no metrics: %s", error)
        logger.info(summary(self._run, metrics, report_paths(pipeline, catalog)))

    @hook_impl(trylast=True)
    def on_pipeline_error(self) -> None:
        """A failed run still says where its MLflow run (with what it logged so far) is."""
        logger.info(summary(self._run, {}, [], title="Run summary (the run failed)"))
