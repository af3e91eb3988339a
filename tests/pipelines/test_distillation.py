"""The distillation pipeline on the tiny demo cohort: models, predictions, MLflow, bad input."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from medvit.models import ModelConfigError
from medvit.pipelines.distillation import create_pipeline
from medvit.pipelines.distillation.nodes import (
    DistillationDataParams,
    DistillationInputError,
    StudentParams,
    TeacherParams,
    train_teacher,
    training_slices,
)

CONF = Path(__file__).resolve().parents[2] / "conf"
PARAMS = {
    "distillation_data": DistillationDataParams,
    "teacher": TeacherParams,
    "student": StudentParams,
}
TINY_TRAINING = {"epochs": 2, "batch_size": 8, "progress": False, "early_stopping": None}
TINY_MODELS = {
    "distillation_data": {"image_size": 32},
    "teacher": {"training": TINY_TRAINING},
    "student": {"training": TINY_TRAINING},
}


@pytest.mark.slow
def test_teacher_and_student_are_trained_saved_evaluated_and_tracked(
    project, run_kedro, latest_run
):
    run_kedro("data_preparation")
    run_kedro("distillation", TINY_MODELS)
    run = latest_run()
    client = MlflowClient()
    metrics = run.data.metrics
    for model in ("teacher", "student"):
        history = client.get_metric_history(run.info.run_id, f"fit/{model}/train_loss")
        assert sorted(point.step for point in history) == [1, 2]  # epochs count from 1
        assert f"fit/{model}/val_auroc" in metrics
        for split in ("val", "test"):
            assert 0.0 <= metrics[f"ptp/{model}/{split}/tumor_f1"] <= 1.0
            assert f"slice/{model}/{split}/auroc" in metrics
        assert list((project / f"data/06_models/{model}.pt").glob("*/*.pt"))  # versioned
        test = pd.read_parquet(project / f"data/07_model_output/{model}_test_predictions.parquet")
        assert test.score.between(0, 1).all()
        assert {"patient_id", "slice_index", "tumor", "score"} <= set(test.columns)
    assert metrics["distill/student/n_params"] < metrics["distill/teacher/n_params"]
    assert metrics["distill/student/latency_ms"] > 0

    logged = mlflow.search_logged_models(
        experiment_ids=[run.info.experiment_id], output_format="list"
    )
    assert {model.name for model in logged} == {"teacher", "student"}
    student = next(model for model in logged if model.name == "student")
    signature = mlflow.models.get_model_info(student.model_uri).signature
    assert tuple(signature.inputs.to_dict()[0]["tensor-spec"]["shape"]) == (-1, 1, 32, 32)

    report = (project / "data/08_reporting/distillation_comparison.md").read_text()
    assert "deit_tiny_distilled_patch16_224" in report and "resnet18" in report


def _table(tumour_in_train: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, splits = [], []
    for number, (split, tumor) in enumerate(
        [("train", 1), ("train", 0), ("val", 1), ("val", 0), ("test", 1), ("test", 0)]
    ):
        patient = f"p{number}"
        tumor = tumor if split != "train" or tumour_in_train else 0
        splits.append((patient, split, tumor))
        for slice_index in range(3):
            slice_tumor = int(tumor and slice_index == 1)
            rows.append((patient, slice_index, slice_tumor, len(rows), None))
    slices = pd.DataFrame(
        rows, columns=["patient_id", "slice_index", "tumor", "image_ref", "tumor_type"]
    )
    return slices, pd.DataFrame(splits, columns=["patient_id", "split", "tumor"])


def test_training_slices_carry_split_and_class():
    table, classes = training_slices(*_table(), DistillationDataParams())
    assert classes == ["normal", "tumor"]
    assert table.label.tolist() == table.tumor.tolist()
    assert set(table.split) == {"train", "val", "test"}


def test_tumour_type_is_a_multi_class_target_with_normal_first():
    slices, splits = _table()
    types = {"p0": "glioma", "p2": "meningioma", "p4": "glioma"}
    slices["tumor_type"] = slices.patient_id.map(types).where(slices.tumor == 1)
    table, classes = training_slices(slices, splits, DistillationDataParams(target="tumor_type"))
    assert classes == ["normal", "glioma", "meningioma"]
    assert table.groupby("patient_id").label.max().to_dict() == {
        "p0": 1,
        "p1": 0,
        "p2": 2,
        "p3": 0,
        "p4": 1,
        "p5": 0,
    }


@pytest.mark.parametrize(
    ("case", "message"),
    [
        (
            lambda: (*_table(tumour_in_train=False), DistillationDataParams()),
            r"train split has slices of class\(es\) \[0\] only",
        ),
        (
            lambda: (*_table(), DistillationDataParams(target="tumor_type")),
            "tumor_type needs a tumour_type on every tumour slice",
        ),
    ],
    ids=["one-class-train-split", "tumour-type-without-labels"],
)
def test_bad_slices_stop_before_training(case, message):
    with pytest.raises(DistillationInputError, match=message):
        training_slices(*case())


def test_unknown_teacher_stops_before_training():
    table, classes = training_slices(*_table(), DistillationDataParams())
    with pytest.raises(ModelConfigError, match="unknown timm model"):
        train_teacher(
            table, classes, None, DistillationDataParams(), TeacherParams(architecture="resnet_152")
        )


@pytest.mark.parametrize("env", ["base", "gpu"])
def test_parameter_files_validate(env):
    values = {}
    for folder in {"base", env}:
        values |= yaml.safe_load((CONF / folder / "parameters_distillation.yml").read_text())
    for key, model in PARAMS.items():
        model.model_validate(values[key])


def test_deit_lt_distils_on_strong_views_unless_told_otherwise():
    assert StudentParams(loss={"kind": "deit_lt"}).augmentation == "strong"
    assert StudentParams().augmentation == "weak"
    assert StudentParams(loss={"kind": "deit_lt"}, augmentation="weak").augmentation == "weak"


def test_pipeline_evaluates_both_models_under_their_namespaces():
    pipeline = create_pipeline()
    assert {"teacher.ptp_report", "student.ptp_report", "distillation_report"} <= pipeline.outputs()
    assert pipeline.inputs() >= {"slices", "splits", "slice_store", "params:evaluation"}
    assert all("distillation" in node.tags for node in pipeline.nodes)
