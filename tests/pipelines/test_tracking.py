"""What an analyst sees in MLflow: flat parameters, dataset inputs, a run description, models in
runs of their own, registered, each with its own metrics only."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient
from ultralytics import YOLO

from medvit import hooks
from medvit.ingestion.config import DicomSource, IngestionParams
from medvit.pipelines import tracking
from medvit.pipelines.detection.nodes import BOX_COLUMNS, DetectionParams, log_model
from medvit.pipelines.distillation.nodes import TeacherParams


def test_typed_parameters_are_flat_dotted_keys_without_source_locations():
    flat = tracking.flat_params(TeacherParams(), "teacher")
    assert flat["teacher.training.epochs"] == TeacherParams().training.epochs
    assert flat["teacher.architecture"] == "resnet152"
    source = DicomSource(
        name="hospital", root=Path("/exports/Doe_Jane"), boxes_csv=Path("/exports/Doe.csv")
    )
    flat = tracking.flat_params(IngestionParams(sources=[source]), "ingestion")
    assert flat["ingestion.sources.0.name"] == "hospital"
    assert flat["ingestion.sources.0.window"] == "auto"
    assert not [key for key in flat if "root" in key or "csv" in key]
    assert "Doe" not in str(flat)
    assert tracking.flat_params({"augment": {}}, "train") == {"train.augment": {}}


def test_runner_tag_loses_its_address_and_kedro_command_is_what_was_typed(monkeypatch):
    tags = {}
    monkeypatch.setattr(hooks.mlflow, "active_run", lambda: object())
    monkeypatch.setattr(hooks.mlflow, "set_tags", tags.update)
    monkeypatch.setattr(
        hooks.sys, "argv", ["/venv/bin/kedro", "run", "--pipelines=brain_tumor", "--env=gpu"]
    )
    runner = "<kedro.runner.sequential_runner.SequentialRunner object at 0x7f3a2c1d9e50>"
    hooks.RunTagsHook().before_pipeline_run({"runner": runner, "env": "gpu"})
    assert tags["runner"] == "SequentialRunner"
    assert tags["kedro_command"] == "kedro run --pipelines=brain_tumor --env=gpu"
    assert tags["kedro_env"] == "gpu"


def _ptp(model: str, sensitivity: float, bounds: bool = True) -> dict[str, float]:
    metrics = {
        f"ptp/{model}/test/sensitivity": sensitivity,
        f"ptp/{model}/test/specificity": 1.0,
        f"ptp/{model}/test/tumor_f1": 0.8,
        f"ptp/{model}/test/auroc": 0.9,
        f"ptp/{model}/val/sensitivity": 0.5,
    }
    if bounds:
        metrics |= {
            f"ptp/{model}/test/sensitivity_ci_low": 0.292,
            f"ptp/{model}/test/sensitivity_ci_high": 1.0,
        }
    return metrics


def test_description_states_cohort_results_with_intervals_and_reports():
    splits = pd.DataFrame(
        {"patient_id": list("abcdefgh"), "split": ["train"] * 4 + ["test"] * 4, "tumor": [1, 0] * 4}
    )
    metrics = {
        **_ptp("student", 1.0),
        **_ptp("detector", 2 / 3, bounds=False),
        "distill/student/latency_ms": 3.14159,
        "ingest/slices": 360,
    }
    text = tracking.run_description(splits, metrics, ["reports/student_ptp_report.html"])
    assert "| test | 4 | 2 | 2 | 50% |" in text
    assert "Test split: 2 tumour and 2 normal patients, a prevalence of 50%." in text
    rows = [line for line in text.splitlines() if line.startswith(("| detector", "| student"))]
    assert rows[0].startswith("| detector | 0.667 (interval not informative) |")
    assert rows[1] == (
        "| student | 1.000 (0.292 to 1.000) | 1.000 (interval not informative) |"
        " 0.800 (interval not informative) | 0.900 (interval not informative) | 3.14 |"
    )
    assert "- `reports/student_ptp_report.html`" in text
    assert "ingest" not in text
    assert tracking.run_description(None, {"ingest/slices": 1.0}, []) == ""


def _weights(tmp_path: Path) -> Path:
    """An untrained nano YOLO checkpoint: what the pyfunc wraps, without minutes of training."""
    path = tmp_path / "best.pt"
    YOLO("yolov8n.yaml").save(path)
    return path


def test_detector_is_a_registered_pyfunc_model_with_only_its_own_metrics(tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    params = DetectionParams.model_validate({"train": {"imgsz": 64}, "predict": {"batch": 4}})
    with mlflow.start_run() as run:
        mlflow.log_metrics({"ingest/slices": 360, "ptp/detector/test/sensitivity": 1.0})
        log_model(_weights(tmp_path), params)
        mlflow.log_metric("ptp/student/test/sensitivity", 0.5)
        assert mlflow.active_run().info.run_id == run.info.run_id  # the child run has ended
    client = MlflowClient()
    tracking.log_model_metrics(client, client.get_run(run.info.run_id))

    (version,) = client.search_model_versions("name = 'medvit-detector'")
    child = client.get_run(version.run_id)
    assert child.data.tags["mlflow.parentRunId"] == run.info.run_id
    assert child.data.tags[tracking.MODEL_TAG] == "detector"
    assert child.data.metrics == {}
    (logged,) = client.search_logged_models(
        [run.info.experiment_id], f"source_run_id = '{child.info.run_id}'"
    )
    assert {metric.key for metric in logged.metrics} == {"ptp/detector/test/sensitivity"}
    assert client.get_run(run.info.run_id).data.metrics == {
        "ingest/slices": 360,
        "ptp/detector/test/sensitivity": 1.0,
        "ptp/student/test/sensitivity": 0.5,
    }
    assert len(client.get_metric_history(run.info.run_id, "ptp/detector/test/sensitivity")) == 1

    model = mlflow.pyfunc.load_model("models:/medvit-detector/latest")
    inputs = model.metadata.signature.inputs.to_dict()[0]
    assert inputs["tensor-spec"] == {"dtype": "uint8", "shape": (-1, -1, -1)}
    boxes = model.predict(np.zeros((2, 64, 64), dtype=np.uint8))
    assert list(boxes.columns) == list(BOX_COLUMNS)
    assert boxes["image"].isin([0, 1]).all()


def test_a_run_page_reads_like_a_study(project, run_kedro, latest_run):
    run_kedro()  # data_preparation on the tiny demo cohort
    run = latest_run()
    params, tags = run.data.params, run.data.tags
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    assert len(client.search_runs([run.info.experiment_id])) == 1  # one MLflow hook, one run
    assert params["ingestion.image_size"] == "64"
    assert params["ingestion.sources.0.name"] == "demo"
    assert "ingestion" not in params and max(map(len, params.values())) < 100
    assert not [value for value in tags.values() if " object at 0x" in value]
    inputs = {dataset.dataset.name: dataset.dataset for dataset in run.inputs.dataset_inputs}
    assert inputs["slices"].digest == tags["slice_table_fingerprint"]
    assert set(inputs) == {"slices", "splits"}
    assert '"num_rows": 24' in inputs["splits"].profile
    description = tags[tracking.NOTE_TAG]
    assert "| test | 10 | 1 | 9 | 10% |" in description
    assert "Test split: 1 tumour and 9 normal patients, a prevalence of 10%." in description
