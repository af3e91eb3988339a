"""The ultralytics wrapper: checks before training, no integrations, resume, predictions."""

from __future__ import annotations

import json

import mlflow
import pytest
import torch

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


def _trainer_module_callback(module: str, calls: list[str]):
    def callback(trainer) -> None:
        calls.append(module)

    callback.__module__ = module
    return callback


def test_integration_callbacks_are_skipped():
    calls: list[str] = []
    trainer = TrackedDetectionTrainer.__new__(TrackedDetectionTrainer)
    modules = [
        "ultralytics.utils.callbacks.mlflow",
        "ultralytics.utils.callbacks.platform",
        "ultralytics.utils.events",
        "ultralytics.utils.callbacks.base",
        "medvit.somewhere",
    ]
    trainer.callbacks = {"on_fit_epoch_end": [_trainer_module_callback(m, calls) for m in modules]}
    trainer.run_callbacks("on_fit_epoch_end")
    assert calls == ["ultralytics.utils.callbacks.base", "medvit.somewhere"]


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
    assert mlflow.active_run() is None  # ultralytics opened no run of its own

    fresh = train_detector(exported, "yolov8n.yaml", {**TINY, "seed": 1}, workdir)
    assert not fresh.resumed  # other settings: a new run, not a continuation
    assert json.loads((workdir / STATE_FILE).read_text())["fingerprint"]

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
