"""Child process of test_yolo: train once with ultralytics' MLflow callback live.

Under pytest ultralytics disables its own MLflow callback (`TESTS_RUNNING`), so a test in the
pytest process cannot tell our skip from theirs. This script runs outside pytest, checks that
nothing else disables the callback, opens a run as kedro-mlflow does and trains one epoch
through `medvit.detection.yolo`. With `--without-skip` it trains through ultralytics' own
dispatch instead: the control that shows the callback would have logged.

Usage: python live_mlflow_child.py DATASET_DIR WORKDIR TRACKING_URI SETTINGS_JSON [--without-skip]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import mlflow
import ultralytics.utils
from ultralytics.models.yolo.detect import DetectionTrainer
from ultralytics.utils.callbacks import mlflow as ultralytics_mlflow

from medvit.detection.export import YoloDataset
from medvit.detection.yolo import TrackedDetectionTrainer, train_detector


def main(dataset_dir: str, workdir: str, tracking_uri: str, settings: str, *flags: str) -> None:
    guards = {
        "ultralytics sees a test run (TESTS_RUNNING)": ultralytics.utils.TESTS_RUNNING,
        "ultralytics settings have mlflow off": not ultralytics.utils.SETTINGS["mlflow"],
        "ultralytics found no mlflow package": not ultralytics_mlflow.callbacks,
    }
    active = [reason for reason, on in guards.items() if on]
    if active:
        sys.exit(f"the callback would not run, so the test would prove nothing: {active}")
    if "--without-skip" in flags:
        TrackedDetectionTrainer.run_callbacks = DetectionTrainer.run_callbacks
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("medvit")
    with mlflow.start_run(run_name="kedro"):
        dataset = YoloDataset(Path(dataset_dir))
        train_detector(dataset, "yolov8n.yaml", json.loads(settings), Path(workdir))


if __name__ == "__main__":
    main(*sys.argv[1:])
