"""The chest_xray pipeline end to end on a tiny synthetic cohort, its parameters, real NIH data."""

from __future__ import annotations

import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from kedro.io import CatalogConfigResolver
from kedro.pipeline import Node, Pipeline

from medvit import settings
from medvit.evaluation.multilabel import MEAN
from medvit.ingestion.config import ImageFolderSource, IngestionParams
from medvit.ingestion.store import open_store, write_store
from medvit.ingestion.stream import stream_units
from medvit.ingestion.table import build_slice_table
from medvit.pipelines.chest_xray import create_pipeline
from medvit.pipelines.chest_xray.nodes import (
    ChestInputError,
    ClassifierParams,
    FinetuneParams,
    labelled_slices,
    predict_findings,
    train_classifier,
)
from medvit.pipelines.data_preparation.nodes import split_patients_by_finding
from medvit.pipelines.evaluation.multilabel_nodes import (
    MultiLabelEvaluationParams,
    choose_thresholds,
    evaluate,
    mlflow_metrics,
)
from medvit.pipelines.mae.nodes import MAEParams
from medvit.splits import FindingSplitParams, with_fingerprint

CONF = Path(__file__).resolve().parents[2] / "conf"
NIH = Path(__file__).resolve().parents[2].parent / "shared/data/chest_xray_nih"
NIH_FINDINGS = [
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
    "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening",
    "Hernia",
]  # fmt: skip
TINY_TRAINING = {"epochs": 1, "batch_size": 8, "progress": False, "warmup_epochs": 0}
TINY_CHEST = {
    "chest": {
        "demo_cohort": {"n_patients": 40, "size": 64, "max_studies": 2},
        "ingestion": {"image_size": 64, "workers": 1, "min_image_size": 48},
        "splits": {"val": 0.25, "test": 0.25},
    },
    "chest_mae": {
        "model": {"image_size": 64, "decoder_dim": 32, "decoder_depth": 1, "decoder_heads": 2},
        "figure_every": 1,
        "n_figure_images": 2,
        "training": {**TINY_TRAINING, "epochs": 2},
    },
    "chest_finetune": {"image_size": 32},
    "vit_mae": {"training": TINY_TRAINING},
    "vit_scratch": {"training": TINY_TRAINING},
    "multilabel_evaluation": {"n_bootstrap": 20},
}
PARAMS = {
    "chest_mae": MAEParams,
    "chest_finetune": FinetuneParams,
    "vit_mae": ClassifierParams,
    "vit_scratch": ClassifierParams,
    "multilabel_evaluation": MultiLabelEvaluationParams,
}


@pytest.mark.slow
def test_chest_xray_runs_end_to_end_and_compares_mae_with_scratch(project, run_kedro, latest_run):
    run_kedro("chest_xray", TINY_CHEST, tiny=False)
    reports = project / "data/08_reporting"
    comparison = (reports / "chest_xray_comparison.md").read_text()
    assert "vit_mae" in comparison and "vit_scratch" in comparison and "**mean**" in comparison
    assert (reports / "chest/mae_reconstruction.png").is_file()
    table = pd.read_csv(reports / "vit_mae_multilabel_metrics.csv")
    assert set(table["split"]) == {"val", "test"} and MEAN in set(table["finding"])
    assert {"cardiomegaly", "effusion", "nodule", "pneumothorax"} <= set(table["finding"])
    test = pd.read_parquet(project / "data/07_model_output/vit_scratch_test_predictions.parquet")
    assert test["score_effusion"].between(0, 1).all() and "finding_effusion" in test
    metrics = latest_run().data.metrics
    for model in ("vit_mae", "vit_scratch"):
        assert (
            f"ptp/{model}/test/mean_auroc" in metrics
            or np.isnan(table.query("finding == 'mean' and split == 'test'")["value"]).all()
        )
        assert f"fit/{model}/val_mean_auroc" in metrics
    assert "fit/chest_mae/val_loss" in metrics
    assert "chest/mae_minus_scratch/test/patient_mean_auroc" in metrics


@pytest.mark.parametrize("env", ["base", "gpu", "chest_xray_nih"])
def test_parameter_files_validate(env):
    loader = settings.CONFIG_LOADER_CLASS(
        conf_source=str(CONF), env=env, **settings.CONFIG_LOADER_ARGS
    )
    values = loader["parameters"]
    for key, model in PARAMS.items():
        model.model_validate(values[key])
    ingestion = IngestionParams.model_validate(values["chest"]["ingestion"])
    if env == "chest_xray_nih":  # the study's vocabulary, and no real patient's image in MLflow
        assert [f.lower() for f in ingestion.findings] == [f.lower() for f in NIH_FINDINGS]
        assert values["chest_mae"]["log_patient_images"] is False


def test_pipeline_wires_both_models_and_the_comparison():
    pipeline = create_pipeline()
    outputs = pipeline.outputs()
    assert {"vit_mae.multilabel_report", "vit_scratch.multilabel_report"} <= outputs
    assert {"chest_xray_report", "chest.mae_report"} <= outputs
    trained_from_mae = next(n for n in pipeline.nodes if n.name == "vit_mae.train")
    assert "chest_mae_model" in trained_from_mae.inputs
    scratch = next(n for n in pipeline.nodes if n.name == "vit_scratch.train")
    assert "chest_mae_model" not in scratch.inputs


def test_namespaces_own_their_dotted_datasets_and_data_flows_forward(monkeypatch):
    """What test_discovery checks of brain_tumor, for chest_xray: no dotted-name warning, a
    dotted dataset used only in its namespace, and past data preparation (checked by its own
    tests) a layer for every dataset and no step backwards."""
    monkeypatch.setattr(Node, "__dotted_dataset_name_warned__", False, raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipeline = create_pipeline()
    assert not [w.message for w in caught if "contain '.'" in str(w.message)]
    for dataset in pipeline.datasets():
        if "." in dataset and not dataset.startswith("params:"):
            users = {n.namespace for n in pipeline.nodes if dataset in {*n.inputs, *n.outputs}}
            assert users == {dataset.split(".")[0]}, dataset
    loader = settings.CONFIG_LOADER_CLASS(conf_source=str(CONF), **settings.CONFIG_LOADER_ARGS)
    resolver = CatalogConfigResolver(loader["catalog"], loader["credentials"])
    order = ("raw", "intermediate", "primary", "feature", "model_input", "models")
    order += ("model_output", "reporting")
    ours = Pipeline([n for n in pipeline.nodes if "data_preparation" not in n.tags])
    layer = {
        dataset: resolver.resolve_pattern(dataset).get("metadata", {}).get("kedro-viz", {})
        for dataset in ours.datasets()
        if not dataset.startswith("params:")
    }
    layer = {dataset: value.get("layer") for dataset, value in layer.items()}
    assert not [dataset for dataset, value in layer.items() if value not in order]
    backwards = [
        (node.name, source, target)
        for node in ours.nodes
        for source in node.inputs
        if not source.startswith("params:")
        for target in node.outputs
        if order.index(layer[source]) > order.index(layer[target])
    ]
    assert not backwards


def _cohort(n_patients: int = 16) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two radiographs per patient; 2 of the 4 val (and test) patients have each finding."""
    rows, splits = [], []
    for number in range(n_patients):
        split = ("train", "train", "val", "test")[number % 4]
        patient = f"p{number:02d}"
        splits.append((patient, split, 0))
        effusion, nodule = (number // 4) % 2, int(number % 8 < 4)
        for study in range(2):
            rows.append(
                (patient, f"s{study}", f"s{study}x", 0, len(rows), effusion, nodule * study)
            )
    slices = pd.DataFrame(
        rows,
        columns=[
            "patient_id",
            "study_id",
            "series_id",
            "slice_index",
            "image_ref",
            "finding_effusion",
            "finding_nodule",
        ],
    )
    splits = pd.DataFrame(splits, columns=["patient_id", "split", "tumor"])
    return slices, with_fingerprint(splits, slices)


def test_fine_tune_predict_and_evaluate_without_kedro():
    slices, splits = _cohort()
    pixels = np.random.default_rng(0).integers(0, 256, (len(slices), 32, 32), dtype=np.uint8)
    table, findings, store = labelled_slices(slices, splits, SimpleNamespace(images=pixels))
    assert findings == ["effusion", "nodule"]
    data = FinetuneParams(image_size=32, pos_weight=True)
    params = ClassifierParams(training={**TINY_TRAINING, "device": "cpu"})
    torch.manual_seed(0)
    model = train_classifier(table, findings, store, data, params, name="vit_scratch")
    val, test = predict_findings(model, table, store, data)
    assert len(test) == (table["split"] == "test").sum()
    evaluation = MultiLabelEvaluationParams(n_bootstrap=10)
    metrics = evaluate(val, test, choose_thresholds(val, evaluation), evaluation)
    named = mlflow_metrics(metrics, model="vit_scratch")
    assert "ptp/vit_scratch/test/effusion/auroc" in named
    assert "slice/vit_scratch/test/mean_auroc" in named
    assert named["ptp/vit_scratch/test/n_findings_evaluable"]["value"] == 2


def test_bad_configuration_stops_before_training():
    slices, splits = _cohort()
    with pytest.raises(ChestInputError, match="no finding_"):
        labelled_slices(slices.drop(columns=["finding_effusion", "finding_nodule"]), splits, None)
    table, findings, store = labelled_slices(slices, splits, None)
    mae = ClassifierParams(init="mae")
    with pytest.raises(ChestInputError, match="needs an MAE checkpoint"):
        train_classifier(table, findings, store, FinetuneParams(), mae, name="vit_mae")


@pytest.mark.skipif(not NIH.is_dir(), reason=f"real NIH radiographs not found at {NIH}")
def test_real_nih_radiographs_ingest_fine_tune_and_evaluate(tmp_path):
    """40 NIH patients through the manifest path of ingestion, finding-stratified splits, one
    fine-tuning epoch and the multi-label evaluation: real pixels, real (skewed) labels."""
    manifest = pd.read_csv(NIH / "manifest.csv")
    patients = manifest["patient_id"].drop_duplicates().sample(40, random_state=0)
    manifest[manifest["patient_id"].isin(patients)].to_csv(tmp_path / "manifest.csv", index=False)
    (tmp_path / "images").symlink_to(NIH / "images")
    source = ImageFolderSource(
        name="nih",
        root=tmp_path,
        view_column="view",
        findings_column="findings",
        label_column=None,
        tumor_column=None,
        patient_column="patient_id",
    )
    params = IngestionParams(sources=[source], findings=NIH_FINDINGS, image_size=64, workers=1)
    write_store(tmp_path / "store", stream_units([source], params, "test-key"))
    store = open_store(tmp_path / "store")
    slices, quarantined = build_slice_table(
        store.records, store.quarantine, params.views, params.min_image_size
    )
    assert quarantined.empty
    splits, _, _ = split_patients_by_finding(slices, FindingSplitParams(val=0.25, test=0.25))
    table, findings, store = labelled_slices(slices, splits, store)
    assert findings[:2] == ["atelectasis", "cardiomegaly"] and len(findings) == 14
    data = FinetuneParams(image_size=32)
    params = ClassifierParams(training={**TINY_TRAINING, "device": "cpu"})
    model = train_classifier(table, findings, store, data, params, name="vit_scratch")
    val, test = predict_findings(model, table, store, data)
    evaluation = MultiLabelEvaluationParams(n_bootstrap=10)
    metrics = evaluate(val, test, choose_thresholds(val, evaluation), evaluation)
    auroc = metrics[(metrics["metric"] == "auroc") & (metrics["finding"] != MEAN)]
    # 10 test patients cannot hold 2 positives of every finding: the rare ones say so
    assert auroc["status"].str.startswith("not evaluable").any()
    assert (auroc["status"] == "evaluable").any()
