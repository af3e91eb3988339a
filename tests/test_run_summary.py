"""The block every run ends with: MLflow run and how to open it, reports, test PTP per model."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline, node
from kedro_datasets.text import TextDataset

from medvit import run_summary
from medvit.evaluation.ptp import SLICE_KEY, AggregationRule, patient_metrics
from medvit.evaluation.slice_metrics import slice_metrics
from medvit.pipelines.evaluation.nodes import mlflow_metrics
from medvit.run_summary import RunSummaryHook, TrackedRun, headline, report_paths, summary

RUN = TrackedRun(run_id="abc123", experiment_id="7", tracking_uri="sqlite:////p/mlflow.db")


def test_each_model_gets_its_test_numbers_with_intervals_and_patients():
    metrics = {
        "ptp/student/test/sensitivity": 1.0,
        "ptp/student/test/sensitivity_ci_low": 0.2924,
        "ptp/student/test/sensitivity_ci_high": 1.0,
        "ptp/student/test/specificity": 0.962963,
        "ptp/student/test/specificity_ci_low": 0.8103,
        "ptp/student/test/specificity_ci_high": 0.9991,
        "ptp/student/test/tumor_f1": 0.857,  # no interval logged: not informative
        "ptp/student/test/auroc": math.nan,
        "ptp/student/test/n_tumor": 3.0,
        "ptp/student/test/n_normal": 27.0,
        "ptp/student/val/sensitivity": 0.5,  # validation is not the headline
        "ptp/detector/test/sensitivity": 0.667,
        "slice/student/test/sensitivity": 0.5,  # PTP, where it applies, is the headline
        "slice/teacher/test/sensitivity": 0.9,  # no PTP (no patient identifiers): slice level
        "ptp/vit_mae/test/mean_auroc": 0.7,  # multi-label: reported per finding elsewhere
    }
    lines = headline(metrics)
    assert [line.split(":")[0].strip().split(" ")[0] for line in lines] == [
        "detector",
        "teacher",
        "student",
    ]
    assert lines[1].startswith("  teacher (slice level): sensitivity (tumour recall) 0.900")
    assert lines[2] == (
        "  student (3 tumour, 27 normal): sensitivity (tumour recall) 1.000 (0.292 to 1.000), "
        "specificity 0.963 (0.810 to 0.999), tumour F1 0.857 (interval not informative), "
        "AUROC undefined"
    )
    assert lines[0].startswith(
        "  detector: sensitivity (tumour recall) 0.667 (interval not informative)"
    )


def test_the_headline_reads_what_the_evaluation_logs():
    """3 tumour and 27 normal test patients, all called right: exact intervals for the rates,
    none for F1 and AUROC (fewer than 5 tumour patients), as the evaluation pipeline logs them."""
    patients = [(f"p{i:02d}", int(i < 3)) for i in range(30)]
    predictions = pd.DataFrame(
        [(p, f"{p}/s", f"{p}/r", 0, float(tumor), tumor) for p, tumor in patients],
        columns=[*SLICE_KEY, "score", "tumor"],
    )
    labels = pd.DataFrame(patients, columns=["patient_id", "tumor"])
    ptp = patient_metrics(predictions, labels, AggregationRule("max"), 0.5, n_bootstrap=50)
    slices = slice_metrics(predictions, 0.5, n_bootstrap=50)
    logged = mlflow_metrics(ptp.assign(split="test"), slices.assign(split="test"), model="student")
    metrics = {name: item["value"] for name, item in logged.items()}
    assert headline(metrics) == [
        "  student (3 tumour, 27 normal): sensitivity (tumour recall) 1.000 (0.292 to 1.000), "
        "specificity 1.000 (0.872 to 1.000), tumour F1 1.000 (interval not informative), "
        "AUROC 1.000 (interval not informative)"
    ]


def test_a_local_store_says_how_to_open_the_run_and_a_server_links_it():
    text = summary(RUN, {}, [Path("data/08_reporting/student_ptp_report.md")])
    assert text.splitlines() == [
        "Run summary",
        "MLflow run abc123; to open it:",
        "  uv run mlflow ui --backend-store-uri sqlite:////p/mlflow.db --host 127.0.0.1"
        " --port 5000",
        "  then http://127.0.0.1:5000/#/experiments/7/runs/abc123",
        "Reports:",
        "  data/08_reporting/student_ptp_report.md",
    ]
    server = TrackedRun("abc123", "7", "https://mlflow.example.org/")
    assert server.lines() == [
        "MLflow run abc123: https://mlflow.example.org/#/experiments/7/runs/abc123"
    ]
    assert "No MLflow run" in summary(None, {}, [])


def test_reports_are_the_markdown_and_html_files_the_pipeline_wrote(tmp_path):
    catalog = DataCatalog(
        {
            "report": TextDataset(filepath=str(tmp_path / "model_ptp_report.md")),
            "page": TextDataset(filepath=str(tmp_path / "model_ptp_report.html")),
            "table": TextDataset(filepath=str(tmp_path / "patients.csv")),
            "input": TextDataset(filepath=str(tmp_path / "notes.md")),
            "scratch": MemoryDataset(),
        }
    )
    pipeline = Pipeline(
        [
            node(
                lambda text: (text, text, text, text),
                "input",
                ["report", "page", "table", "scratch"],
            ),
        ]
    )
    assert report_paths(pipeline, catalog) == [
        tmp_path / "model_ptp_report.html",
        tmp_path / "model_ptp_report.md",
    ]


def test_a_failed_run_still_says_where_its_mlflow_run_is(monkeypatch, caplog):
    active = SimpleNamespace(info=SimpleNamespace(run_id="r1", experiment_id="3"))
    monkeypatch.setattr(run_summary.mlflow, "active_run", lambda: active)
    monkeypatch.setattr(run_summary.mlflow, "get_tracking_uri", lambda: "sqlite:////p/mlflow.db")
    ui = SimpleNamespace(host="0.0.0.0", port="5001")  # mlflow.yml `ui:`, via kedro-mlflow
    hook = RunSummaryHook()
    hook.after_context_created(SimpleNamespace(mlflow=SimpleNamespace(ui=ui)))
    hook.before_pipeline_run()
    with caplog.at_level(logging.INFO, logger="medvit.run_summary"):
        hook.on_pipeline_error()
    assert caplog.messages == [
        "Run summary (the run failed)\n"
        "MLflow run r1; to open it:\n"
        "  uv run mlflow ui --backend-store-uri sqlite:////p/mlflow.db --host 0.0.0.0 --port 5001\n"
        "  then http://0.0.0.0:5001/#/experiments/3/runs/r1"
    ]
