"""The MAE template on the brain slices, and the DeiT student started from its checkpoint."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from medvit.models.mae import MaskedAutoencoderViT
from medvit.pipelines.distillation.nodes import (
    DistillationDataParams,
    StudentParams,
    train_student,
    training_slices,
)
from medvit.pipelines.mae import create_pipeline, mae_pretraining_pipeline
from medvit.pipelines.mae.nodes import MAEParams, mae_from_payload, mae_payload, pretrain_mae
from medvit.splits import with_fingerprint

TINY_MAE = {
    "mae": {
        "model": {"image_size": 64, "decoder_dim": 32, "decoder_depth": 1, "decoder_heads": 2},
        "figure_every": 1,
        "n_figure_images": 2,
        "training": {"epochs": 2, "batch_size": 16, "progress": False, "warmup_epochs": 0},
    }
}


def test_template_namespaces_its_outputs_and_reads_the_cohort_given():
    brain = create_pipeline()
    assert brain.inputs() == {"slices", "slice_store", "splits", "params:mae"}
    assert "brain_mae_model" in brain.all_outputs() and "brain.mae_report" in brain.outputs()
    chest = mae_pretraining_pipeline("chest", params="params:chest_mae")
    assert chest.inputs() == {
        "chest.slices",
        "chest.slice_store",
        "chest.splits",
        "params:chest_mae",
    }


def _cohort() -> tuple[pd.DataFrame, pd.DataFrame, SimpleNamespace]:
    """8 patients of 4 slices of 64 px: train, val and test, tumour and normal in each."""
    rows, splits = [], []
    for number, (split, tumor) in enumerate(
        [*[("train", 1), ("train", 0)] * 2, ("val", 1), ("val", 0), ("test", 1), ("test", 0)]
    ):
        patient = f"p{number}"
        splits.append((patient, split, tumor))
        for index in range(4):
            rows.append((patient, "s", "x", index, int(tumor and index == 1), len(rows), None))
    slices = pd.DataFrame(
        rows,
        columns=[
            "patient_id", "study_id", "series_id", "slice_index", "tumor", "image_ref",
            "tumor_type",
        ],
    )  # fmt: skip
    splits = pd.DataFrame(splits, columns=["patient_id", "split", "tumor"])
    pixels = np.random.default_rng(0).integers(0, 256, (len(slices), 64, 64), dtype=np.uint8)
    return slices, with_fingerprint(splits, slices), SimpleNamespace(images=pixels)


def test_pretraining_never_sees_test_patients_and_saves_a_rebuildable_mae(tmp_path):
    slices, splits, store = _cohort()
    training = {**TINY_MAE["mae"]["training"], "epochs": 1, "device": "cpu"}
    params = MAEParams(**{**TINY_MAE["mae"], "figure_every": 0, "training": training})
    test_refs = slices.loc[slices.patient_id.isin(["p6", "p7"]), "image_ref"]
    store.images[test_refs.to_numpy()] = 0  # what the MAE learns must not depend on them...
    payload = pretrain_mae(slices, store, splits, params, name="brain")
    store.images[test_refs.to_numpy()] = 255  # ...so changing them changes nothing
    again = pretrain_mae(slices, store, splits, params, name="brain")
    assert all(torch.equal(payload["model"][k], again["model"][k]) for k in payload["model"])
    mae = mae_from_payload(payload)
    assert isinstance(mae, MaskedAutoencoderViT) and mae.img_size == 64
    assert mae_payload(mae, params.model)["architecture"] == "vit_tiny_patch16_224"


def test_student_starts_from_the_mae_encoder(tmp_path):
    slices, splits, store = _cohort()
    mae = MaskedAutoencoderViT("vit_tiny_patch16_224", img_size=64, decoder_dim=32,
                               decoder_depth=1, decoder_heads=2)  # fmt: skip
    checkpoint = tmp_path / "brain_mae.pt"
    torch.save(mae_payload(mae, MAEParams().model.model_copy(update={"image_size": 64})),
               checkpoint)  # fmt: skip
    data = DistillationDataParams(image_size=32)
    table, classes = training_slices(slices, splits, data)
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(32 * 32, 2))
    teacher.medvit_spec = SimpleNamespace(num_classes=2)
    training = {"epochs": 1, "batch_size": 8, "progress": False, "device": "cpu", "lr": 1e-12}
    student = StudentParams(init="mae", mae_checkpoint=str(checkpoint), training=training)
    model = train_student(table, classes, store, teacher, data, student)
    encoder = mae.encoder.state_dict()
    state = model.state_dict()
    # one step at lr 1e-12 leaves the MAE weights where they were loaded
    assert torch.allclose(state["blocks.3.attn.qkv.weight"], encoder["blocks.3.attn.qkv.weight"])
    assert torch.allclose(state["dist_token"], encoder["cls_token"], atol=1e-6)
    with pytest.raises(ValueError, match=r"does not exist \(run `kedro run --pipelines=mae`"):
        StudentParams(init="mae", mae_checkpoint=str(tmp_path / "missing.pt"))


@pytest.mark.slow
def test_mae_pipeline_on_brain_slices_logs_history_and_figures(project, run_kedro, latest_run):
    run_kedro("data_preparation")
    run_kedro("mae", TINY_MAE)
    assert Path(project / "data/06_models/brain_mae.pt").is_file()
    assert (project / "data/08_reporting/brain/mae_reconstruction.png").is_file()
    run = latest_run()
    assert "fit/brain_mae/val_loss" in run.data.metrics
    figures = [a.path for a in MlflowClient().list_artifacts(run.info.run_id, "brain_mae")]
    assert figures == [
        "brain_mae/reconstruction_epoch_0001.png",
        "brain_mae/reconstruction_epoch_0002.png",
    ]
