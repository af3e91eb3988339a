"""Shape values the way kedro-mlflow logs them, and log files a library wrote on its own."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import mlflow


def metric_items(values: Mapping[str, float], step: int = 0) -> dict[str, dict[str, float]]:
    """`{name: value}` → `{name: {"value": v, "step": step}}` for MlflowMetricsHistoryDataset."""
    return {name: {"value": float(value), "step": step} for name, value in values.items()}


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
