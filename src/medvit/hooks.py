"""MLflow hooks: runs traceable to code, configuration and cohort, and readable by an analyst."""

from __future__ import annotations

import logging
import re
import shlex
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from kedro.framework.hooks import hook_impl
from kedro.io import CatalogProtocol
from kedro_mlflow.framework.hooks.mlflow_hook import MlflowHook

from medvit.identity import table_digest
from medvit.pipelines import tracking
from medvit.splits import slice_table_fingerprint

logger = logging.getLogger(__name__)

SLICE_TABLE = "slices"
SPLITS = "splits"
RUN_TAGS = "run_tags"  # a node output of {tag: value} for the run (e.g. patient_disjoint)
# `str()` of an object without a repr, as Kedro passes the runner: `<...SequentialRunner object
# at 0x7f...>` differs between identical runs and says nothing; its class name is what matters.
ADDRESS = re.compile(r"<(?:[\w.]+\.)?(\w+) object at 0x[0-9a-fA-F]+>")


def _git_commit() -> str:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip()


def _typed_command() -> str | None:
    """The command line as typed (`kedro run --pipeline=brain_tumor ...`), when Kedro's CLI (or
    `python -m kedro`) started the run; None for a session opened from Python."""
    program = Path(sys.argv[0])
    if program.name == "kedro" or program.parent.name == "kedro":
        return shlex.join(["kedro", *sys.argv[1:]])
    return None


class FlatParamsMlflowHook(MlflowHook):
    """kedro-mlflow's hook, logging a typed (pydantic) parameter block as flat dotted keys.

    kedro-mlflow flattens dicts but logs a pydantic model as one `str()`: a 460-character
    `teacher` value that runs cannot be filtered or compared by. Registered in settings.py in
    place of the plugin's own instance (DISABLE_HOOKS_FOR_PLUGINS).
    """

    def _log_param(self, name: str, value: Any) -> None:
        for key, item in tracking.flat_params(value, name).items():
            super()._log_param(key, item)


class RunTagsHook:
    """Tags each run with git commit, pipeline and Kedro env, and the slice table's fingerprint,
    and logs the slice table and splits as the run's dataset inputs.

    Registered in settings.py before the MLflow hook, so pluggy calls it after that hook has
    opened the run. The slice table is fingerprinted when saved, and when loaded only if the run
    has no fingerprint yet: every later load of a run reads what was saved or first loaded, and a
    100k-row table takes about a second to hash.
    """

    def __init__(self) -> None:
        self._recorded: set[tuple[str, str]] = set()  # (run id, dataset) already logged

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any]) -> None:
        if mlflow.active_run() is None:
            return
        tags = {
            "git_commit": _git_commit(),
            "kedro_pipeline": ",".join(run_params.get("pipeline_names") or [])
            or run_params.get("pipeline_name")
            or "__default__",
            "kedro_env": run_params.get("env") or "local",
        }
        tags |= {
            key: ADDRESS.sub(r"\1", value)
            for key, value in run_params.items()
            if isinstance(value, str) and ADDRESS.search(value)
        }
        if command := _typed_command():
            tags["kedro_command"] = command
        mlflow.set_tags(tags)

    def _record(self, dataset_name: str, data: Any, saved: bool) -> None:
        run = mlflow.active_run()
        kind = dataset_name.rpartition(".")[2]  # a namespaced cohort's too, e.g. `chest.slices`
        if dataset_name.startswith("params:") or kind not in (SLICE_TABLE, SPLITS) or run is None:
            return
        key = (run.info.run_id, dataset_name)
        if not saved and key in self._recorded:
            return
        self._recorded.add(key)
        if kind == SLICE_TABLE:
            digest = slice_table_fingerprint(data)
            prefix = dataset_name[: -len(kind)].replace(".", "/")
            mlflow.set_tag(f"{prefix}slice_table_fingerprint", digest)
        else:
            digest = table_digest(data)
        _log_input(data, dataset_name, digest)

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any) -> None:
        self._record(dataset_name, data, saved=True)
        if dataset_name == RUN_TAGS and mlflow.active_run() is not None:
            mlflow.set_tags(data)

    @hook_impl
    def after_dataset_loaded(self, dataset_name: str, data: Any) -> None:
        self._record(dataset_name, data, saved=False)


def _log_input(table: pd.DataFrame, name: str, digest: str) -> None:
    """The table as an MLflow dataset input: name, digest, schema and row count, no values.

    The schema is shown, never enforced, so MLflow's hint that integer columns cannot hold missing
    values at inference time does not apply to it.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="Hint: Inferred schema contains integer", category=UserWarning
        )
        dataset = mlflow.data.from_pandas(table, name=name, digest=digest)
        mlflow.log_input(dataset, context="training")


class RunDescriptionHook:
    """At the end of a run: its description, the cross-model comparison, each model's metrics.

    Registered before the MLflow hook, so it runs after that hook has ended the run, and works
    through the client on the run id it saw open.
    """

    def __init__(self) -> None:
        self._run_id: str | None = None

    @hook_impl
    def before_pipeline_run(self) -> None:
        run = mlflow.active_run()
        self._run_id = None if run is None else run.info.run_id

    @hook_impl
    def after_pipeline_run(self, catalog: CatalogProtocol) -> None:
        if self._run_id is None:
            return
        client = mlflow.MlflowClient()
        run = client.get_run(self._run_id)
        splits = catalog.load(SPLITS) if catalog.exists(SPLITS) else None
        reports = [
            artifact.path
            for artifact in client.list_artifacts(run.info.run_id, "reports")
            if artifact.path.endswith((".html", ".md"))
        ]
        metrics = run.data.metrics
        if (comparison := tracking.comparison_report(metrics)) is not None:
            client.log_text(run.info.run_id, comparison, tracking.COMPARISON_ARTIFACT)
            reports.append(tracking.COMPARISON_ARTIFACT)
        description = tracking.run_description(splits, metrics, reports)
        if description:
            client.set_tag(run.info.run_id, tracking.NOTE_TAG, description)
        tracking.log_model_metrics(client, run)
        logger.info("MLflow run %s: description and model metrics written", run.info.run_id)
