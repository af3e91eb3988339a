"""The evaluation pipeline for one model namespace: the project's catalog, a tmp MLflow store."""

from __future__ import annotations

import logging
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from kedro.io import DataCatalog
from kedro.runner import SequentialRunner
from kedro.validation.type_extractor import TypeExtractor
from kedro_mlflow.io.metrics import MlflowMetricsHistoryDataset
from mlflow.tracking import MlflowClient
from pydantic import ValidationError

from medvit.evaluation.audit import AUDIT_COLUMNS
from medvit.evaluation.ptp import (
    SLICE_KEY,
    EvaluationInputError,
    choose_threshold,
    flatten_metrics,
    patient_metrics,
)
from medvit.evaluation.slice_metrics import choose_slice_threshold, slice_metrics
from medvit.pipelines.evaluation import create_pipeline, evaluation_pipeline
from medvit.pipelines.evaluation.nodes import EvaluationParams

MODEL = "demo_model"
FAST = {"n_bootstrap": 50}
SLICES_PER_PATIENT = 4
PARAMETERS_FILE = Path(__file__).resolve().parents[2] / "conf/base/parameters_evaluation.yml"
# What data preparation's audit hands every report: here a cohort with nothing to warn about.
AUDIT = pd.DataFrame(
    [
        ("train", "demo", "", "n_tumor", 40.0, ""),
        ("train", "demo", "", "n_normal", 400.0, ""),
        ("val", "all", "all", "auroc", 0.55, ""),
    ],
    columns=list(AUDIT_COLUMNS),
)


def cohort(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Splits, val and test predictions: 2 + 18 val and 3 + 27 test patients (9 normal : 1 tumour).

    Normal slices score up to 0.7, tumour slices from 0.5, and one normal patient per split has a
    tumour-like artefact slice, so no threshold is perfect; train patients in `splits` have no
    predictions and must be ignored. Every other patient has a second study (a follow-up) and
    every patient's 4 slices are 2 series of 2, numbered 0 and 1 in both, as real exports are.
    """
    rng = np.random.default_rng(seed)
    splits, predictions = [], {}
    for split, n_tumor, n_normal in (("train", 4, 6), ("val", 2, 18), ("test", 3, 27)):
        rows = []
        for number in range(n_tumor + n_normal):
            patient, tumor = f"{split}-{number:02d}", int(number < n_tumor)
            splits.append((patient, split, tumor, 0 if split == "train" else -1))
            for position in range(SLICES_PER_PATIENT):
                slice_tumor = int(tumor and position in (1, 2))
                artefact = number == n_tumor and position == 0
                score = rng.uniform(0.5, 0.95) if slice_tumor or artefact else rng.uniform(0, 0.7)
                study = f"{patient}/{1 + position // 2 * (number % 2)}"
                series = f"{patient}/{position // 2}"
                rows.append((patient, study, series, position % 2, score, slice_tumor, []))
        predictions[split] = pd.DataFrame(
            rows, columns=[*SLICE_KEY, "score", "tumor", "boxes"]
        ).assign(source="demo")
    table = pd.DataFrame(splits, columns=["patient_id", "split", "tumor", "cv_fold"])
    return table, predictions["val"], predictions["test"]


def _labels(splits: pd.DataFrame, split: str) -> pd.DataFrame:
    return splits.loc[splits["split"] == split, ["patient_id", "tumor"]]


def _run_in_project(
    project: Path,
    splits: pd.DataFrame,
    val: pd.DataFrame,
    test: pd.DataFrame,
    evaluation: dict = FAST,
) -> tuple[mlflow.entities.Run, EvaluationParams]:
    """The namespaced pipeline on the project's catalog, as a model stage would compose it."""
    (project / "data/05_model_input").mkdir(parents=True, exist_ok=True)
    splits.to_parquet(project / "data/05_model_input/splits.parquet")
    bootstrap_project(project)
    runtime = {"evaluation": evaluation}
    with KedroSession.create(project_path=project, runtime_params=runtime) as session:
        catalog = session.load_context().catalog
        catalog[f"{MODEL}.val_predictions"] = val
        catalog[f"{MODEL}.test_predictions"] = test
        catalog["shortcut_audit"] = AUDIT
        with mlflow.start_run() as run:
            SequentialRunner().run(evaluation_pipeline(MODEL), catalog)
        params = catalog.load("params:evaluation")
    return _client(project).get_run(run.info.run_id), params


def _client(project: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{project / 'mlflow.db'}")


def _expected_metrics(
    splits: pd.DataFrame, val: pd.DataFrame, test: pd.DataFrame, params: EvaluationParams
) -> dict[str, float]:
    rule, bootstrap = params.rule, {"n_bootstrap": params.n_bootstrap, "seed": params.seed}
    threshold = choose_threshold(val, _labels(splits, "val"), rule, params.threshold_objective)
    slice_threshold = choose_slice_threshold(val, params.slice_threshold_objective)
    expected = {}
    for split, predictions in (("val", val), ("test", test)):
        ptp = patient_metrics(predictions, _labels(splits, split), rule, threshold, **bootstrap)
        slices = slice_metrics(predictions, slice_threshold, **bootstrap)
        for level, table in (("ptp", ptp), ("slice", slices)):
            expected |= {
                f"{level}/{MODEL}/{split}/{name}": value
                for name, value in flatten_metrics(table).items()
            }
    return expected


def test_metrics_params_and_artifacts_reach_mlflow_and_disk(project):
    splits, val, test = cohort()
    run, params = _run_in_project(project, splits, val, test)
    assert isinstance(params, EvaluationParams)  # validated by Kedro from the node's type hint
    assert params.n_bootstrap == FAST["n_bootstrap"]

    metrics = run.data.metrics
    assert {
        "ptp/demo_model/test/tumor_f1",
        "ptp/demo_model/test/sensitivity_ci_low",
        "ptp/demo_model/test/macro_f1",
        "slice/demo_model/val/auroc",
        "slice/demo_model/test/specificity_ci_high",
    } <= metrics.keys()
    # 3 tumour patients in test: no bootstrap interval for AUROC and slice AUPRC is logged.
    assert not {"ptp/demo_model/test/auroc_ci_low", "slice/demo_model/test/auprc_ci_high"} & set(
        metrics
    )
    pooled = {name: value for name, value in metrics.items() if "/within/" not in name}
    assert pooled == pytest.approx(_expected_metrics(splits, val, test, params), nan_ok=True)
    assert (metrics["ptp/demo_model/test/n_patients"], metrics["ptp/demo_model/test/n_tumor"]) == (
        30,
        3,
    )
    assert metrics["slice/demo_model/val/n_slices"] == 20 * SLICES_PER_PATIENT

    threshold = choose_threshold(val, _labels(splits, "val"), params.rule)
    assert float(run.data.params["ptp/demo_model/patient_threshold"]) == threshold
    assert float(run.data.params["slice/demo_model/slice_threshold"]) == choose_slice_threshold(val)
    assert run.data.params["ptp/demo_model/rule"] == "max"
    assert run.data.params["ptp/demo_model/aggregate_by"] == "patient"
    assert float(run.data.params["ptp/demo_model/target_prevalence"]) == 0.1

    patients = pd.read_csv(project / "data/08_reporting/demo_model_ptp_patients.csv")
    test_patients = patients[patients["split"] == "test"]
    assert sorted(test_patients["patient_id"]) == sorted(_labels(splits, "test")["patient_id"])
    assert (test_patients["decision"] == (test_patients["score"] >= threshold)).all()
    assert list(patients.columns) == [
        "split",
        "patient_id",
        "tumor",
        "score",
        "decision",
        "n_slices",
        "n_positive_slices",
    ]

    report = (project / "data/08_reporting/demo_model_ptp_report.md").read_text()
    assert report.startswith("# Patient-to-patient evaluation: demo_model on test")
    assert "![ROC of patient scores](demo_model/roc.png)" in report
    figures = {"confusion_matrix.png", "roc.png", "scores.png"}
    assert {path.name for path in (project / "data/08_reporting/demo_model").iterdir()} == figures

    client = _client(project)
    logged = {artifact.path for artifact in client.list_artifacts(run.info.run_id, "reports")}
    assert {
        "reports/demo_model_ptp_patients.csv",
        "reports/demo_model_ptp_report.md",
        "reports/demo_model_ptp_report.html",
        "reports/demo_model_by_source_metrics.csv",
    } <= logged
    # one source: its within-source figures are the pooled ones, said once, not tabled twice
    assert report.count("One source (demo): the pooled metrics above") == 1
    assert "### Slices" not in report
    assert (
        metrics["slice/demo_model/test/within/demo/auroc"] == metrics["slice/demo_model/test/auroc"]
    )
    assert "## Shortcut audit (data preparation)" in report
    html = (project / "data/08_reporting/demo_model_ptp_report.html").read_text()
    assert html.count('<img src="data:image/png;base64,') == len(figures)
    assert "Patient threshold = " in report and "validation value" in report
    plots = client.list_artifacts(run.info.run_id, "reports/demo_model")
    assert {artifact.path for artifact in plots} == {f"reports/demo_model/{f}" for f in figures}


def test_study_level_evaluation_calls_each_study(project):
    splits, val, test = cohort()
    run, params = _run_in_project(project, splits, val, test, {**FAST, "aggregate_by": "study"})
    assert params.aggregate_by == "study"
    assert run.data.params["ptp/demo_model/aggregate_by"] == "study"
    metrics = run.data.metrics
    # 30 test patients (3 tumour), every other one with a follow-up: 45 studies, 4 of them tumour.
    assert metrics["ptp/demo_model/test/n_patients"] == 30
    assert metrics["ptp/demo_model/test/n_studies"] == 45
    assert metrics["ptp/demo_model/test/n_tumor"] == 4
    assert metrics["slice/demo_model/test/n_slices"] == 30 * SLICES_PER_PATIENT

    studies = pd.read_csv(project / "data/08_reporting/demo_model_ptp_patients.csv")
    assert list(studies.columns[:3]) == ["split", "patient_id", "study_id"]
    assert studies.groupby("split").size().to_dict() == {"test": 45, "val": 30}
    report = (project / "data/08_reporting/demo_model_ptp_report.md").read_text()
    assert "| patient_id | study_id | tumor |" in report.split("## Studies")[1]


def test_thresholds_are_chosen_on_validation_only(project):
    splits, val, test = cohort()
    first, _ = _run_in_project(project, splits, val, test)
    inverted, _ = _run_in_project(project, splits, val, test.assign(score=1 - test["score"]))
    for name in ("ptp/demo_model/patient_threshold", "slice/demo_model/slice_threshold"):
        assert inverted.data.params[name] == first.data.params[name]
    for name in ("ptp/demo_model/val/macro_f1", "slice/demo_model/val/auroc"):
        assert inverted.data.metrics[name] == first.data.metrics[name]
    assert inverted.data.metrics["ptp/demo_model/test/auroc"] != pytest.approx(
        first.data.metrics["ptp/demo_model/test/auroc"]
    )


def _bare_catalog(splits: pd.DataFrame, val: pd.DataFrame, test: pd.DataFrame) -> DataCatalog:
    """Inputs in memory, every output a MemoryDataset but the metrics, which go to MLflow."""
    catalog = DataCatalog({f"{MODEL}.evaluation_metrics": MlflowMetricsHistoryDataset(prefix="")})
    catalog["splits"] = splits
    catalog["shortcut_audit"] = AUDIT
    catalog["params:evaluation"] = EvaluationParams(**FAST)
    catalog[f"{MODEL}.val_predictions"] = val
    catalog[f"{MODEL}.test_predictions"] = test
    return catalog


def test_undefined_metrics_are_logged_as_nan_and_reported_as_undefined(tmp_path):
    splits, val, test = cohort()
    normal_only = splits[~((splits["split"] == "test") & (splits["tumor"] == 1))]
    test = test[test["patient_id"].isin(normal_only["patient_id"])]
    catalog = _bare_catalog(normal_only, val, test)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    with mlflow.start_run() as run:
        SequentialRunner().run(evaluation_pipeline(MODEL), catalog)
    metrics = MlflowClient().get_run(run.info.run_id).data.metrics
    assert np.isnan(metrics["ptp/demo_model/test/sensitivity"])
    assert np.isnan(metrics["slice/demo_model/test/auroc"])
    assert "ptp/demo_model/test/sensitivity_ci_low" not in metrics
    assert metrics["ptp/demo_model/test/specificity"] >= 0
    assert "| sensitivity | undefined |" in catalog.load(f"{MODEL}.ptp_report")


def _drop_patient(frame: pd.DataFrame, patient: str) -> pd.DataFrame:
    return frame[frame["patient_id"] != patient]


def _val_without_tumours(splits, val, test):
    tumours = ["val-00", "val-01"]
    return splits[~splits["patient_id"].isin(tumours)], val[~val["patient_id"].isin(tumours)], test


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (
            lambda s, v, t: (s, _drop_patient(v, "val-05"), t),
            "ground-truth patients with no predictions: val-05",
        ),
        (
            lambda s, v, t: (s, v, pd.concat([t, t.head(1).assign(patient_id="ghost")])),
            "predictions for patients with no ground truth: ghost",
        ),
        (
            lambda s, v, t: (s, v, t.assign(score=t["score"].where(t.index != 7, 1.5))),
            r"outside \[0, 1\] for patients test-01",
        ),
        (_val_without_tumours, "threshold selection needs tumour and normal"),
    ],
    ids=["unscored-val-patient", "unknown-test-patient", "score-out-of-range", "one-class-val"],
)
def test_bad_input_stops_with_the_patients_named(corrupt, message):
    catalog = _bare_catalog(*corrupt(*cohort()))
    with pytest.raises(EvaluationInputError, match=message):
        SequentialRunner().run(evaluation_pipeline(MODEL), catalog)


def test_each_model_gets_its_own_namespace_around_shared_inputs(caplog):
    teacher, student = evaluation_pipeline("teacher"), evaluation_pipeline("student")
    assert teacher.inputs() == {
        "teacher.val_predictions",
        "teacher.test_predictions",
        "splits",
        "shortcut_audit",
        "params:evaluation",
    }
    assert {"teacher.evaluation_metrics", "teacher.ptp_report"} <= teacher.outputs()
    assert all(node.tags == {"evaluation"} for node in (teacher + student).nodes)
    assert create_pipeline().inputs() == {
        "val_predictions",
        "test_predictions",
        "splits",
        "shortcut_audit",
        "params:evaluation",
    }
    with caplog.at_level(logging.WARNING):
        types = TypeExtractor({"both": teacher + student}).extract_types_from_pipelines()
    assert types == {"evaluation": EvaluationParams}
    assert not caplog.records  # the model-bound nodes keep their type hints


def test_parameter_file_validates_and_rejects_unknown_rules():
    configured = yaml.safe_load(PARAMETERS_FILE.read_text())["evaluation"]
    assert EvaluationParams.model_validate(configured) == EvaluationParams()
    with pytest.raises(ValidationError, match=r"rule\.name"):
        EvaluationParams.model_validate({**configured, "rule": {"name": "median"}})
    with pytest.raises(ValidationError, match="bootstraps"):
        EvaluationParams.model_validate({**configured, "bootstraps": 10})
