"""External validation: models trained on the tiny demo cohort, then scored on a second cohort
from another "scanner" (an image folder, brighter) without being retrained or rewritten."""

from __future__ import annotations

import pickle
from pathlib import Path

import cv2
import mlflow
import numpy as np
import pandas as pd
import pytest
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from medvit.identity import file_digest
from medvit.pipelines.external_validation import create_pipeline
from medvit.pipelines.external_validation.nodes import evaluation_splits, external_splits

TINY_TRAINING = {"epochs": 1, "batch_size": 8, "progress": False, "early_stopping": None}
TINY_MODELS = {
    "distillation_data": {"image_size": 32},
    "teacher": {"architecture": "resnet18", "training": TINY_TRAINING},
    "student": {"training": TINY_TRAINING},
    "evaluation": {"n_bootstrap": 20},
}
MODELS = ("detector", "teacher", "student")
# The detector's external stage is the same wiring; its training would double the test's time.
SCORED = ("teacher", "student")
GAIN = 1.6  # the other scanner is brighter


def _scanner_cohort(root: Path, n: int = 6, size: int = 80) -> dict:
    """`n` tumour and `n` normal patients of one slice each: a head on noise, a bright blob in
    the tumour slices, all at another gain than the demo; an image_folder source for them."""
    rng = np.random.default_rng(5)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    yy, xx = np.mgrid[:size, :size]
    rows = []
    for index in range(2 * n):
        tumour = index < n
        head = ((xx - size / 2) / 30) ** 2 + ((yy - size / 2) / 34) ** 2 <= 1
        image = rng.normal(8, 3, (size, size)) + head * 90
        label = ""
        if tumour:
            cx, cy = rng.integers(30, 50, 2)
            image[(xx - cx) ** 2 + (yy - cy) ** 2 <= 36] = 150
            label = f"0 {cx / size:.4f} {cy / size:.4f} {12 / size:.4f} {12 / size:.4f}\n"
        name = f"case{index:02d}"
        cv2.imwrite(str(root / f"images/{name}.png"), (image * GAIN).clip(0, 255).astype(np.uint8))
        (root / f"labels/{name}.txt").write_text(label)
        rows.append((f"images/{name}.png", f"labels/{name}.txt", int(tumour), name))
    pd.DataFrame(rows, columns=["image", "label", "tumor", "case"]).to_csv(
        root / "manifest.csv", index=False
    )
    return {
        "type": "image_folder",
        "name": "scanner_b",
        "root": str(root),
        "patient_column": "case",
    }


def _model_files(project: Path) -> dict[str, str]:
    return {
        str(path.relative_to(project)): file_digest(path)
        for path in sorted((project / "data/06_models").rglob("*"))
        if path.is_file()
    }


@pytest.mark.slow
def test_trained_models_are_validated_on_another_scanner_without_being_touched(
    project, run_kedro, latest_run, tmp_path, monkeypatch
):
    run_kedro("data_preparation")
    run_kedro("distillation", TINY_MODELS)
    trained = latest_run()
    before = _model_files(project)
    assert any("teacher.pt" in name for name in before)
    assert any("student.pt" in name for name in before)

    monkeypatch.setenv("MEDVIT_PSEUDONYM_KEY", "external-validation-test-key")
    source = _scanner_cohort(tmp_path / "scanner_b")
    params = OmegaConf.to_container(
        OmegaConf.merge(
            {"ingestion": {"image_size": 64}},  # the tiny demo's: the training cohort's settings
            TINY_MODELS,
            {"external_validation": {"sources": [source]}},
        )
    )
    while mlflow.active_run():  # kedro-mlflow leaves its (node-level nested) runs open
        mlflow.end_run()
    bootstrap_project(project)
    with KedroSession.create(project_path=project, runtime_params=params) as session:
        tags = ["external_cohort", *(f"external_{model}" for model in SCORED)]
        session.run(pipeline_names=["external_validation"], tags=tags)

    assert _model_files(project) == before  # nothing retrained, nothing rewritten
    run = latest_run()
    assert run.info.run_id != trained.info.run_id
    assert run.data.tags["kedro_pipeline"] == "external_validation"
    metrics, params = run.data.metrics, run.data.params
    external = pd.read_parquet(project / "data/05_model_input/external_splits.parquet")
    assert set(external["split"]) == {"test"} and len(external) == 12
    for model in SCORED:
        assert 0.0 <= metrics[f"slice/external_{model}/test/auroc"] <= 1.0
        scored = pd.read_parquet(
            project / f"data/07_model_output/external_{model}_test_predictions.parquet"
        )
        assert len(scored) == 12 and set(scored["source"]) == {"scanner_b"}
        # the operating points chosen on the original validation split, applied unchanged
        with (project / f"data/07_model_output/{model}_thresholds.pkl").open("rb") as file:
            chosen = pickle.load(file)
        assert float(params[f"slice/external_{model}/slice_threshold"]) == pytest.approx(
            chosen.slice
        )
        assert float(trained.data.params[f"slice/{model}/slice_threshold"]) == pytest.approx(
            chosen.slice
        )
    artifacts = {item.path for item in MlflowClient().list_artifacts(run.info.run_id, "reports")}
    assert "reports/external_student_ptp_report.md" in artifacts


def test_the_external_cohort_is_all_test_and_validation_comes_from_training():
    slices = pd.DataFrame(
        {
            "patient_id": ["a", "a", "b"],
            "patient_tumor": [1, 1, 0],
            "group": [None, None, None],
            "source": ["scanner_b"] * 3,
        }
    )
    splits = external_splits(slices)
    assert splits.set_index("patient_id")["split"].to_dict() == {"a": "test", "b": "test"}
    training = pd.DataFrame({"patient_id": ["t", "v"], "split": ["train", "val"], "tumor": [1, 0]})
    merged = evaluation_splits(training, splits)
    assert sorted(zip(merged["patient_id"], merged["split"], strict=True)) == [
        ("a", "test"),
        ("b", "test"),
        ("v", "val"),
    ]


def test_models_thresholds_and_validation_predictions_are_only_read():
    pipeline = create_pipeline()
    read = {"detector.weights", "teacher_model", "student_model", "splits"}
    read |= {f"{model}.{item}" for model in MODELS for item in ("thresholds", "val_predictions")}
    assert read <= pipeline.inputs()
    assert not read & pipeline.all_outputs()
    assert not [node.name for node in pipeline.nodes if node.name.endswith("choose_thresholds")]
