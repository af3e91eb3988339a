"""Run pipelines through a real KedroSession on a tiny demo cohort, in the tmp `project` copy."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from medvit.evaluation.ptp import SLICE_KEY

# 24 patients at 64 px, seconds to write and ingest; one tumour patient in val and test. Half of
# them have two studies of a T1 and a T2-like series, so every pipeline test meets patients whose
# series share slice indices: 12 x 1 + 12 x 4 = 60 series of 6 slices.
TINY_DEMO = {
    "demo_cohort": {
        "n_tumor": 4,
        "n_normal": 20,
        "slices": 6,
        "size": 64,
        "seed": 3,
        "multi_fraction": 0.5,
        "studies": 2,
        "series_per_study": 2,
    },
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
def tiny_local_conf(project: Path) -> Path:
    """The tiny demo parameters as a conf/local file, for a `kedro run` in a subprocess."""
    path = project / "conf/local/parameters_tiny.yml"
    path.write_text(yaml.safe_dump(TINY_DEMO))
    return path


@pytest.fixture
def latest_run(project: Path) -> Callable[[], mlflow.entities.Run]:
    def latest() -> mlflow.entities.Run:
        client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
        experiment = client.get_experiment_by_name("medvit")
        runs = client.search_runs([experiment.experiment_id], order_by=["start_time DESC"])
        # the Kedro run, not the child runs its models are logged in
        return next(run for run in runs if "mlflow.parentRunId" not in run.data.tags)

    return latest


@pytest.fixture
def check_prediction_keys(project: Path) -> Callable[[str], None]:
    """`check(model)`: the model scored every val and test slice once, keyed by the whole slice
    key, including the series of patients with several studies and series."""

    def check(model: str) -> None:
        slices = pd.read_parquet(project / "data/03_primary/slices.parquet")
        splits = pd.read_parquet(project / "data/05_model_input/splits.parquet")
        output = project / "data/07_model_output"
        for split in ("val", "test"):
            predicted = pd.read_parquet(output / f"{model}_{split}_predictions.parquet")
            assert {*SLICE_KEY, "tumor", "score"} <= set(predicted.columns)
            patients = splits.loc[splits["split"] == split, "patient_id"]
            expected = slices[slices["patient_id"].isin(patients)]
            keys = sorted(map(tuple, predicted[list(SLICE_KEY)].to_numpy()))
            assert keys == sorted(map(tuple, expected[list(SLICE_KEY)].to_numpy()))
            series = predicted.groupby("patient_id")["series_id"].nunique()
            assert (series == 4).any(), f"{split}: no patient with two studies of two series"

    return check
