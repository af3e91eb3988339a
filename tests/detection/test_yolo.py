"""The ultralytics wrapper: checks before training, no integrations, resume, predictions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from medvit.detection.export import DetectionInputError
from medvit.detection.yolo import (
    STATE_FILE,
    TrackedDetectionTrainer,
    predict_slices,
    resolve_device,
    resolve_weights,
    train_detector,
    validate_detector,
)

CHILD = Path(__file__).with_name("live_mlflow_child.py")
TINY = {
    "epochs": 2,
    "imgsz": 64,
    "batch": 8,
    "device": "cpu",
    "workers": 0,
    "seed": 0,
    "plots": False,
    "verbose": False,
    "mosaic": 0.0,
}


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_device_requests_are_checked_before_training():
    assert resolve_device("auto") == "cpu"
    assert resolve_device("CPU") == "cpu"
    for request in ("cuda", "cuda:0", "0", [0, 1], 0):
        with pytest.raises(DetectionInputError, match="no CUDA device"):
            resolve_device(request)


def test_weights_must_exist_unless_ultralytics_knows_them(tmp_path):
    assert resolve_weights("yolov8n.yaml") == "yolov8n.yaml"  # architecture: from scratch
    assert resolve_weights("yolov8n.pt") == "yolov8n.pt"  # a release ultralytics downloads
    checkpoint = tmp_path / "mine.pt"
    checkpoint.write_bytes(b"weights")
    assert resolve_weights(str(checkpoint)) == str(checkpoint.resolve())
    with pytest.raises(DetectionInputError, match=r"models/missing\.pt does not exist"):
        resolve_weights("models/missing.pt")


def _train_outside_pytest(tmp_path: Path, dataset: Path, *flags: str) -> MlflowClient:
    """Run the child script with ultralytics' callback live; its MLflow store, to inspect.

    No PYTEST_*/GITHUB_* variables (either makes ultralytics switch its callbacks off), no
    inherited MLFLOW_* variables, and fresh ultralytics settings, in which mlflow is on.
    """
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PYTEST_", "GITHUB_", "MLFLOW_", "YOLO_"))
    }
    env |= {"YOLO_CONFIG_DIR": str(tmp_path / "ultralytics"), "YOLO_OFFLINE": "1"}
    # One epoch at 32 px without per-epoch validation: the final validation still runs.
    settings = json.dumps({**TINY, "epochs": 1, "imgsz": 32, "val": False})
    command = [sys.executable, str(CHILD), str(dataset), str(tmp_path / "run"), store, settings]
    command += flags
    child = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stderr[-3000:]
    return MlflowClient(store)


def test_ultralytics_mlflow_callback_opens_no_run_and_logs_nothing(tmp_path, exported):
    client = _train_outside_pytest(tmp_path, exported.root)
    experiments = client.search_experiments()
    assert sorted(experiment.name for experiment in experiments) == ["Default", "medvit"]
    runs = client.search_runs([experiment.experiment_id for experiment in experiments])
    assert [run.info.run_name for run in runs] == ["kedro"]  # the one run the child opened
    (run,) = runs
    assert run.data.params == {}  # ultralytics would log its ~100 train arguments here
    assert run.data.metrics == {}
    assert client.list_artifacts(run.info.run_id) == []


@pytest.mark.slow
def test_without_our_skip_the_live_callback_would_log(tmp_path, exported):
    """The control: the same child through ultralytics' own dispatch, so the test above can fail."""
    client = _train_outside_pytest(tmp_path, exported.root, "--without-skip")
    experiments = client.search_experiments()
    assert len(experiments) == 3  # ultralytics adds one named after the run folder's parent
    (run,) = client.search_runs([experiment.experiment_id for experiment in experiments])
    assert "imgsz" in run.data.params
    assert "metrics/mAP50B" in run.data.metrics
    assert client.list_artifacts(run.info.run_id)


@pytest.mark.slow
def test_interrupted_training_resumes_and_predicts(tmp_path, exported, plan, monkeypatch):
    workdir = tmp_path / "run"
    save_model = TrackedDetectionTrainer.save_model

    def interrupt_after_first_epoch(self):
        save_model(self)
        if self.epoch == 0:
            raise KeyboardInterrupt("simulated interruption")

    monkeypatch.setattr(TrackedDetectionTrainer, "save_model", interrupt_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        train_detector(exported, "yolov8n.yaml", TINY, workdir)
    monkeypatch.undo()
    assert (workdir / "weights" / "last.pt").is_file()

    threads = torch.get_num_threads()
    trained = train_detector(exported, "yolov8n.yaml", TINY, workdir)
    assert torch.get_num_threads() == threads  # ultralytics' CPU setting does not leak out
    assert trained.resumed
    assert trained.history()["epoch"].tolist() == [1, 2]  # epoch 1 kept, epoch 2 added
    assert "metrics/mAP50" in trained.history().columns

    fresh = train_detector(exported, "yolov8n.yaml", {**TINY, "seed": 1}, workdir)
    assert not fresh.resumed  # other settings: a new run, not a continuation
    assert json.loads((workdir / STATE_FILE).read_text())["identity"]["train.seed"]

    metrics = validate_detector(
        trained.best, exported, "test", {"imgsz": 64, "batch": 8, "device": "cpu"}, tmp_path
    )
    assert set(metrics) == {"precision", "recall", "mAP50", "mAP50-95"}
    assert all(0.0 <= value <= 1.0 for value in metrics.values())

    refs = plan.items["image_ref"].tolist()[:10]
    scored = list(
        predict_slices(
            trained.best, plan.images, refs, 4, {"imgsz": 64, "conf": 0.001, "device": "cpu"}
        )
    )
    assert len(scored) == 10
    for score, boxes in scored:
        assert 0.0 <= score <= 1.0
        assert score == max((box[4] for box in boxes), default=0.0)


def test_a_folder_that_is_not_a_run_is_never_emptied(tmp_path, exported):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    with pytest.raises(DetectionInputError, match="not a detector run folder"):
        train_detector(exported, "yolov8n.yaml", TINY, precious)
    assert (precious / "thesis.tex").is_file()
