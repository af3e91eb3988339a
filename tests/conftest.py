"""Shared test setup: no telemetry, a clean MLflow state per test, tiny projects in tmp dirs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import mlflow
import pytest

from medvit.console import quiet_third_parties

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

PROJECT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _quiet_third_parties() -> None:
    """pytest runs each test under a fresh copy of the warning filters that predates importing
    medvit: install the third-party filters again, so the warnings summary lists only ours."""
    quiet_third_parties()


@pytest.fixture(autouse=True)
def _clean_mlflow_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start with no active run and no process-wide tracking URI or experiment.

    kedro-mlflow sets these globally and reuses an active run instead of opening its own, so one
    test's run would otherwise swallow the next test's metrics.
    """
    # Forget (not end) a run left over: its store may already be deleted with its tmp dir.
    mlflow.tracking.fluent._active_run_stack.get().clear()
    monkeypatch.setattr(mlflow.tracking._tracking_service.utils, "_tracking_uri", None)
    monkeypatch.setattr(mlflow.tracking.fluent, "_active_experiment_id", None)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MEDVIT_PSEUDONYM_KEY", raising=False)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of conf/ and pyproject.toml with its own data/ and SQLite MLflow store."""
    root = tmp_path / "project"
    (root / "notebooks").mkdir(parents=True)
    shutil.copy(PROJECT / "pyproject.toml", root)
    shutil.copytree(PROJECT / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    (root / "conf" / "local").mkdir()
    (root / "src").mkdir()  # Kedro requires the folder; medvit is imported from the venv
    monkeypatch.chdir(root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    return root
