"""The detection pipeline on the tiny demo cohort: outputs, MLflow contract, checks up front."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from medvit.evaluation.ptp import SLICE_KEY

ONE_EPOCH = {
    "detection": {
        "train": {"epochs": 1, "imgsz": 64, "batch": 8, "workers": 0, "plots": False},
        "predict": {"batch": 16},
    }
}


@pytest.mark.slow
def test_detector_is_trained_evaluated_and_tracked(
    project, run_kedro, latest_run, check_prediction_keys
):
    run_kedro("data_preparation")
    run_kedro("detection", ONE_EPOCH)
    run = latest_run()
    metrics = run.data.metrics
    for split in ("val", "test"):
        for name in ("precision", "recall", "mAP50", "mAP50-95"):
            assert 0.0 <= metrics[f"det/detector/{split}/{name}"] <= 1.0
        assert f"ptp/detector/{split}/sensitivity" in metrics
        assert f"slice/detector/{split}/auroc" in metrics
    history = MlflowClient().get_metric_history(run.info.run_id, "fit/detector/metrics/mAP50")
    assert [point.step for point in history] == [1]
    artifacts = [a.path for a in MlflowClient().list_artifacts(run.info.run_id, "models/detector")]
    assert artifacts == ["models/detector/best.pt"]
    assert list((project / "data/06_models/detector/best.pt").glob("*/best.pt"))  # versioned

    test = pd.read_parquet(project / "data/07_model_output/detector_test_predictions.parquet")
    splits = pd.read_parquet(project / "data/05_model_input/splits.parquet")
    assert set(test.patient_id) == set(splits.loc[splits.split == "test", "patient_id"])
    assert test.score.between(0, 1).all()
    assert {*SLICE_KEY, "score", "tumor", "boxes"} <= set(test.columns)
    check_prediction_keys("detector")
    names = pd.read_parquet(project / "data/05_model_input/yolo/manifest.parquet")["name"]
    assert names.is_unique and len(names) == 60 * 6  # every series of every patient exported
    assert (project / "data/08_reporting/detector_ptp_report.md").is_file()

    manifest = pd.read_parquet(project / "data/05_model_input/yolo/manifest.parquet")
    mtimes = manifest.set_index("name")["mtime_ns"]
    run_kedro("detection", ONE_EPOCH)  # nothing changed: the export rewrites nothing
    again = pd.read_parquet(project / "data/05_model_input/yolo/manifest.parquet")
    assert again.set_index("name")["mtime_ns"].equals(mtimes)


@pytest.mark.parametrize(
    ("train", "message"),
    [
        ({"weights": "checkpoints/nowhere.pt"}, "nowhere.pt does not exist"),
        pytest.param(
            {"device": "cuda"},
            "no CUDA device",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="needs a CPU-only machine"),
        ),
        ({"augment": {"mosaik": 1.0}}, "not ultralytics train arguments: mosaik"),
    ],
)
def test_bad_settings_fail_before_training(project, run_kedro, train, message):
    run_kedro("data_preparation")
    with pytest.raises(Exception, match=message):
        run_kedro("detection", {"detection": {"train": train}})
    assert not (project / "data/06_models/detector/ultralytics").exists()
