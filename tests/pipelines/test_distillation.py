"""The distillation pipeline on the tiny demo cohort: models, predictions, MLflow, bad input."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from medvit import settings
from medvit.models import ModelConfigError
from medvit.pipelines.distillation import create_pipeline
from medvit.pipelines.distillation.nodes import (
    DistillationDataParams,
    DistillationInputError,
    StudentParams,
    TeacherParams,
    _data_digest,
    _pixel_digest,
    train_student,
    train_teacher,
    training_slices,
)
from medvit.splits import with_fingerprint

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
    project, run_kedro, latest_run, check_prediction_keys
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
        check_prediction_keys(model)
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
    splits = pd.DataFrame(splits, columns=["patient_id", "split", "tumor"])
    return slices, with_fingerprint(splits, slices)


def test_training_slices_carry_split_and_class():
    table, classes = training_slices(*_table(), DistillationDataParams())
    assert classes == ["normal", "tumor"]
    assert table.label.tolist() == table.tumor.tolist()
    assert set(table.split) == {"train", "val", "test"}


def test_tumour_type_is_a_multi_class_target_with_normal_first():
    slices, splits = _table()
    types = {"p0": "glioma", "p2": "meningioma", "p4": "glioma"}
    slices["tumor_type"] = slices.patient_id.map(types).where(slices.tumor == 1)
    splits = with_fingerprint(splits, slices)
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
    """Validate what a run's nodes receive: Kedro's loader with the project's merge settings.

    conf/gpu overrides conf/base key by key (settings.py merges parameters softly), so a
    shallow merge of the two files would validate a configuration no run ever sees.
    """
    loader = settings.CONFIG_LOADER_CLASS(
        conf_source=str(CONF), env=env, **settings.CONFIG_LOADER_ARGS
    )
    values = loader["parameters"]
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


def _rerun_setup(tmp_path: Path, epochs: int = 1):
    """The tiny table over random pixels, and settings that train in a second per model."""
    table, classes = training_slices(*_table(), DistillationDataParams())
    pixels = np.random.default_rng(0).integers(0, 256, (len(table), 16, 16), dtype=np.uint8)
    store = SimpleNamespace(images=pixels)  # all the training nodes read of a SliceStore

    def training(model: str, **update) -> dict:
        return {
            **TINY_TRAINING,
            "epochs": epochs,
            "batch_size": 4,
            "device": "cpu",
            "checkpoint_dir": str(tmp_path / model),
            "reuse_finished": True,
            **update,
        }

    return table, classes, store, DistillationDataParams(image_size=16), training


def _teacher(training: dict) -> TeacherParams:
    return TeacherParams(architecture="test_resnet", training=training)  # timm's tiny test CNN


def _decision(caplog: pytest.LogCaptureFixture, train: Callable[[], object]) -> str:
    """What the training loop decided about earlier work: its one log line."""
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="medvit.training.loop"):
        train()
    return next(
        record.getMessage()
        for record in caplog.records
        if "from scratch" in record.getMessage() or "Reusing" in record.getMessage()
    )


def test_student_is_retrained_when_its_teacher_or_its_loss_changes(tmp_path, caplog):
    table, classes, store, data, training = _rerun_setup(tmp_path)
    teacher = train_teacher(table, classes, store, data, _teacher(training("t")))
    other_teacher = copy.deepcopy(teacher)
    with torch.no_grad():
        other_teacher.get_classifier().bias.add_(1.0)
    student = StudentParams(training=training("s"))

    def train(teacher_model, params=student):
        return lambda: train_student(table, classes, store, teacher_model, data, params)

    assert "no earlier run" in _decision(caplog, train(teacher))
    assert "Reusing the finished run" in _decision(caplog, train(teacher))
    assert _decision(caplog, train(other_teacher)).endswith("identity changed: teacher")
    soft = StudentParams(loss={"kind": "soft"}, training=training("s"))
    assert _decision(caplog, train(other_teacher, soft)).endswith("identity changed: loss")


def test_reused_run_names_its_origin_and_carries_its_history(tmp_path, caplog):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    table, classes, store, data, training = _rerun_setup(tmp_path, epochs=2)
    teacher = _teacher(training("t"))
    with mlflow.start_run() as first:
        trained = train_teacher(table, classes, store, data, teacher)
    with mlflow.start_run() as second:
        reused = train_teacher(table, classes, store, data, teacher)
    client = MlflowClient()
    assert client.get_run(second.info.run_id).data.tags["fit/teacher/reused_from"] == (
        first.info.run_id
    )
    assert "fit/teacher/reused_from" not in client.get_run(first.info.run_id).data.tags
    histories = [
        [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "fit/teacher/lr")]
        for run in (first, second)
    ]
    assert sorted(histories[1]) == sorted(histories[0]) and len(histories[0]) == 2
    weights, again = trained.state_dict(), reused.state_dict()
    assert all(torch.equal(weights[name], again[name]) for name in weights)


def test_data_identity_covers_train_and_val_rows_but_not_the_test_split():
    table, _ = training_slices(*_table(), DistillationDataParams())
    digest = _data_digest(table)
    test = table["split"] == "test"
    assert _data_digest(table.assign(image_ref=table.image_ref.where(~test, 99))) == digest
    relabelled = table.copy()
    relabelled.loc[relabelled.index[relabelled["split"] == "val"][0], "label"] = 1  # was 0
    assert _data_digest(relabelled) != digest
    assert _data_digest(table.iloc[::-1]) != digest  # the order the loop sees the rows in


def test_pixel_identity_covers_train_and_val_pixels_but_not_the_test_split():
    table, _ = training_slices(*_table(), DistillationDataParams())
    images = np.zeros((int(table["image_ref"].max()) + 1, 4, 4), dtype=np.uint8)
    digest = _pixel_digest(table, SimpleNamespace(images=images))
    for split, changes in (("test", False), ("train", True)):
        edited = images.copy()
        edited[table.loc[table["split"] == split, "image_ref"].iloc[0]] = 7
        assert (_pixel_digest(table, SimpleNamespace(images=edited)) != digest) is changes
