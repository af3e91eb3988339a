"""Metrics that cannot hide a source shortcut: within-source figures, and PTP only on patients."""

from __future__ import annotations

import logging

import mlflow
import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog
from kedro.runner import SequentialRunner
from kedro_datasets.pandas import CSVDataset
from kedro_mlflow.io.metrics import MlflowMetricsHistoryDataset
from mlflow.tracking import MlflowClient

from medvit.evaluation.audit import AUDIT_COLUMNS
from medvit.evaluation.ptp import SLICE_KEY, ptp_not_applicable
from medvit.evaluation.slice_metrics import single_label_sources
from medvit.pipelines.evaluation import evaluation_pipeline
from medvit.pipelines.evaluation.nodes import EvaluationParams, Thresholds, evaluate

MODEL = "m"
SLICES = 4
AUDIT = pd.DataFrame(
    [
        ("train", "archive_t", "", "n_tumor", 80.0, ""),
        ("train", "archive_n", "", "n_normal", 80.0, ""),
        ("val", "all", "source", "auroc", 0.97, ""),
    ],
    columns=list(AUDIT_COLUMNS),
)


def _cohort(entangled: bool, seed: int = 0) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Units of two sources. `entangled`: source archive_t holds only tumours, which the "model"
    recognises (high scores), while it scores archive_n's tumours and normals alike; units are
    folds (not patients). Otherwise both sources hold both labels, scored by label, and the
    units are patients."""
    rng = np.random.default_rng(seed)
    splits, predictions = [], {}
    for split in ("train", "val", "test"):
        rows = []
        for source, n_tumor, n_normal in (
            ("archive_t", 8, 0 if entangled else 8),
            ("archive_n", 8, 8),
        ):
            for number in range(n_tumor + n_normal):
                unit, tumor = f"{split}-{source}-{number}", int(number < n_tumor)
                splits.append((unit, split, tumor, not entangled))
                for index in range(SLICES):
                    if entangled:
                        high = source == "archive_t"
                        score = rng.uniform(0.7, 1.0) if high else rng.uniform(0.0, 0.6)
                    else:
                        score = rng.uniform(0.4, 1.0) if tumor else rng.uniform(0.0, 0.6)
                    rows.append((unit, unit, unit, index, tumor, score, source))
        predictions[split] = pd.DataFrame(rows, columns=[*SLICE_KEY, "tumor", "score", "source"])
    columns = ["patient_id", "split", "tumor", "patient_level"]
    return pd.DataFrame(splits, columns=columns), predictions


def _run(splits: pd.DataFrame, predictions: dict[str, pd.DataFrame], tmp_path):
    catalog = DataCatalog(
        {
            f"{MODEL}.evaluation_metrics": MlflowMetricsHistoryDataset(prefix=""),
            f"{MODEL}.ptp_patients": CSVDataset(filepath=str(tmp_path / "patients.csv")),
        }
    )
    catalog["splits"] = splits
    catalog["shortcut_audit"] = AUDIT
    catalog["params:evaluation"] = EvaluationParams(n_bootstrap=20)
    catalog[f"{MODEL}.val_predictions"] = predictions["val"]
    catalog[f"{MODEL}.test_predictions"] = predictions["test"]
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    with mlflow.start_run() as run:
        SequentialRunner().run(evaluation_pipeline(MODEL), catalog)
    return MlflowClient().get_run(run.info.run_id), catalog


def test_entangled_sources_lead_the_report_and_ptp_is_not_applicable_to_folds(tmp_path):
    splits, predictions = _cohort(entangled=True)
    run, catalog = _run(splits, predictions, tmp_path)
    metrics, params = run.data.metrics, run.data.params

    pooled, within = metrics[f"slice/{MODEL}/test/auroc"], f"slice/{MODEL}/test/within"
    assert pooled > 0.7  # earned by recognising archive_t
    assert 0.3 < metrics[f"{within}/archive_n/auroc"] < 0.7  # no better than chance inside
    assert np.isnan(metrics[f"{within}/archive_t/auroc"])  # one label: no AUROC
    assert metrics[f"{within}/archive_t/sensitivity"] == 1.0
    assert metrics[f"{within}/archive_n/n_slices"] == 16 * SLICES
    assert f"slice/{MODEL}/val/within/archive_n/auroc" in metrics

    assert not [name for name in metrics if name.startswith("ptp/")]
    assert params[f"ptp/{MODEL}"] == "not applicable"
    assert f"ptp/{MODEL}/patient_threshold" not in params
    patients = catalog.load(f"{MODEL}.ptp_patients")
    assert patients.empty and "decision" in patients.columns

    report = catalog.load(f"{MODEL}.ptp_report")
    assert report.startswith(f"# Slice-level evaluation: {MODEL} on test")
    assert "Patient-to-patient (PTP) evaluation is not applicable**: 48 of 48 units" in report
    assert report.index("## Within-source metrics") < report.index("## Metrics")
    assert "archive_t holds only tumour slices (validation, test)" in report
    assert "Patient threshold" not in report and "## Patients" not in report
    assert "- **Warning**: trivial features 'source'" in report
    assert f"![ROC of slice scores]({MODEL}/roc.png)" in report


def test_sources_with_both_labels_get_patient_and_slice_figures_each(tmp_path):
    splits, predictions = _cohort(entangled=False)
    run, catalog = _run(splits, predictions, tmp_path)
    metrics = run.data.metrics
    for source in ("archive_t", "archive_n"):
        assert metrics[f"slice/{MODEL}/test/within/{source}/auroc"] > 0.8
        assert metrics[f"ptp/{MODEL}/test/within/{source}/n_patients"] == 16
    assert metrics[f"ptp/{MODEL}/test/n_patients"] == 32
    report = catalog.load(f"{MODEL}.ptp_report")
    assert report.startswith(f"# Patient-to-patient evaluation: {MODEL} on test")
    assert report.index("## Metrics") < report.index("## Within-source metrics")
    assert "entangled" not in report
    assert "### Patients (PTP)" in report and "| archive_n | test | 16 | 8 |" in report


def test_predictions_without_a_source_are_evaluated_and_said_to_lack_one(tmp_path, caplog):
    splits, predictions = _cohort(entangled=False)
    bare = {split: table.drop(columns="source") for split, table in predictions.items()}
    with caplog.at_level(logging.WARNING):
        run, catalog = _run(splits, bare, tmp_path)
    assert "test predictions carry no source column" in caplog.text
    assert not [name for name in run.data.metrics if "/within/" in name]
    assert "The predictions carry no source" in catalog.load(f"{MODEL}.ptp_report")


def test_helpers_name_what_they_find():
    splits, predictions = _cohort(entangled=True)
    assert single_label_sources(predictions["test"]) == {"archive_t": "tumour"}
    assert single_label_sources(predictions["test"].assign(source="one")) == {}
    assert ptp_not_applicable(splits.assign(patient_level=True)) is None
    assert ptp_not_applicable(splits.drop(columns="patient_level")) is None
    assert ptp_not_applicable(splits).startswith("72 of 72 units are not patients")


@pytest.mark.parametrize("unit", ["patient", "slice"])
def test_figures_name_their_unit(unit):
    from medvit.evaluation.plots import roc_figure

    table = pd.DataFrame({"tumor": [0, 0], "score": [0.1, 0.2], "decision": [0, 0]})
    figure = roc_figure(table, "x", unit)
    texts = [text.get_text() for text in figure.axes[0].texts]
    assert texts == [f"ROC undefined:\nonly normal {unit}s"]
    assert figure.axes[0].get_title().endswith(f"{unit.capitalize()}-level ROC")


def test_a_patient_threshold_carried_to_folds_computes_no_ptp(caplog):
    splits, predictions = _cohort(entangled=True)
    carried = Thresholds(patient=0.5, slice=0.5)  # chosen on a patient-level cohort
    bootstrap = EvaluationParams(n_bootstrap=0)
    with caplog.at_level(logging.WARNING):
        patients, ptp, slices, by_source = evaluate(
            predictions["val"], predictions["test"], splits, carried, bootstrap
        )
    assert "PTP) evaluation is not applicable" in caplog.text
    assert patients.empty and ptp.empty and set(by_source["level"]) == {"slice"}
    assert set(slices["split"]) == {"val", "test"}
