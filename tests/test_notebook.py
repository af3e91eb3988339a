"""The analysts' notebook runs top to bottom on a small project the evaluation pipeline filled,
the way analysts run it: `jupyter nbconvert --execute` from notebooks/, no MLFLOW_TRACKING_URI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mlflow
import nbformat
import numpy as np
import pandas as pd
import pytest
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from kedro.runner import SequentialRunner

from medvit.evaluation.audit import AUDIT_COLUMNS
from medvit.evaluation.ptp import SLICE_KEY
from medvit.pipelines.evaluation import evaluation_pipeline

PROJECT = Path(__file__).resolve().parents[1]
NOTEBOOK = PROJECT / "notebooks/analyst_walkthrough.ipynb"
MODEL = "demo_model"
PATIENTS = {"val": (1, 9), "test": (1, 9)}  # (tumour, normal) at the study's 9 : 1
SLICES = 3


def _cohort() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Slice table (the primary-layer contract) and splits of a tiny val + test cohort."""
    slices, splits = [], []
    for split, (n_tumor, n_normal) in PATIENTS.items():
        for number in range(n_tumor + n_normal):
            patient, tumor = f"{split}-{number:02d}", int(number < n_tumor)
            splits.append((patient, split, tumor, -1))
            for index in range(SLICES):
                slice_tumor = int(tumor and index == 1)
                boxes = [[10.0, 10.0, 20.0, 20.0]] if slice_tumor else []
                slices.append(
                    (patient, f"study-{patient}", f"series-{patient}", index, slice_tumor, boxes)
                )
    columns = ["patient_id", "study_id", "series_id", "slice_index", "tumor", "boxes"]
    table = pd.DataFrame(slices, columns=columns).assign(
        mask_ref=None, image_ref=lambda frame: frame["series_id"], source="synthetic"
    )
    return table, pd.DataFrame(splits, columns=["patient_id", "split", "tumor", "cv_fold"])


def _evaluate(project: Path, slices: pd.DataFrame, splits: pd.DataFrame) -> None:
    """Write the cohort where the catalog expects it and run the model's evaluation on it."""
    for folder in ("03_primary", "05_model_input"):
        (project / "data" / folder).mkdir(parents=True)
    slices.to_parquet(project / "data/03_primary/slices.parquet")
    splits.to_parquet(project / "data/05_model_input/splits.parquet")
    rng = np.random.default_rng(0)
    predictions = slices[[*SLICE_KEY, "tumor", "boxes"]].assign(
        score=np.clip(0.5 * slices["tumor"] + rng.uniform(0, 0.6, len(slices)), 0, 1)
    )
    split_of = predictions["patient_id"].map(splits.set_index("patient_id")["split"])
    bootstrap_project(project)
    runtime_params = {"evaluation": {"n_bootstrap": 20}}
    with KedroSession.create(project_path=project, runtime_params=runtime_params) as session:
        catalog = session.load_context().catalog
        for split in PATIENTS:
            catalog[f"{MODEL}.{split}_predictions"] = predictions[split_of == split]
        catalog["shortcut_audit"] = pd.DataFrame(columns=list(AUDIT_COLUMNS))  # no audit ran
        with mlflow.start_run():
            SequentialRunner().run(evaluation_pipeline(MODEL), catalog)


def _execute_from_notebooks_folder(project: Path) -> nbformat.NotebookNode:
    """The walkthrough for MODEL, executed by nbconvert with notebooks/ as working directory."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    parameters = next(
        number
        for number, cell in enumerate(notebook.cells)
        if "parameters" in cell.metadata.get("tags", [])
    )
    notebook.cells.insert(parameters + 1, nbformat.v4.new_code_cell(f"MODEL = {MODEL!r}"))
    folder = project / "notebooks"
    nbformat.write(notebook, folder / NOTEBOOK.name)
    # Telemetry is off through the environment the kernel inherits (tests/conftest.py).
    done = subprocess.run(
        [
            *(sys.executable, "-m", "nbconvert", "--to", "notebook", "--execute", NOTEBOOK.name),
            *("--output", "executed", "--ExecutePreprocessor.timeout=120"),
        ],
        cwd=folder,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return nbformat.read(folder / "executed.ipynb", as_version=4)


def test_walkthrough_runs_top_to_bottom(project: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # mlflow.yml's default store, as analysts have it
    monkeypatch.chdir(project / "notebooks")
    _evaluate(project, *_cohort())
    notebook = _execute_from_notebooks_folder(project)

    outputs = "\n".join(
        str(output.get("text", "")) + str(output.get("data", {}).get("text/plain", ""))
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )
    assert "60 slices of 20 patients" in outputs
    assert f"ptp/{MODEL}/patient_threshold" in outputs
    assert "macro_f1" in outputs
    images = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if "image/png" in output.get("data", {})
    ]
    assert len(images) == 3
    # The pipeline and the kernel both used the project's store, not one in notebooks/.
    assert (project / "mlflow.db").is_file()
    assert not list(project.glob("notebooks/mlflow.db"))
