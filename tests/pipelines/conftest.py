"""Run pipelines through a real KedroSession on a tiny demo cohort, in the tmp `project` copy."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import mlflow
import pytest
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

# 24 patients of 6 slices at 64 px: seconds to write and ingest; one tumour patient in val and test.
TINY_DEMO = {
    "demo_cohort": {"n_tumor": 4, "n_normal": 20, "slices": 6, "size": 64, "seed": 3},
    "ingestion": {"image_size": 64, "workers": 2},
    "splits": {
        "test": {"tumor_patients": 1, "ratio": {"normal": 9, "tumor": 1}},
        "val": {"tumor_patients": 1, "ratio": {"normal": 9, "tumor": 1}},
    },
}


@pytest.fixture
def run_kedro(project: Path) -> Callable[..., None]:
    """`run_kedro(pipeline, extra)`: the tiny demo parameters (or the project defaults, with
    `tiny=False`), deep-merged with `extra`."""

    def run(
        pipeline: str = "data_preparation", extra: dict | None = None, tiny: bool = True
    ) -> None:
        bootstrap_project(project)
        merged = OmegaConf.merge(TINY_DEMO if tiny else {}, extra or {})
        params = OmegaConf.to_container(merged)
        with KedroSession.create(project_path=project, runtime_params=params) as session:
            session.run(pipeline_names=[pipeline])

    return run


@pytest.fixture
def latest_run(project: Path) -> Callable[[], mlflow.entities.Run]:
    def latest() -> mlflow.entities.Run:
        client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
        experiment = client.get_experiment_by_name("medvit")
        return client.search_runs([experiment.experiment_id], order_by=["start_time DESC"])[0]

    return latest
