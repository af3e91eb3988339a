"""The data_preparation pipeline end to end on a tiny demo cohort, through a real KedroSession."""

from __future__ import annotations

from pathlib import Path

import cv2
import mlflow
import numpy as np
import pandas as pd
import pydicom
import pytest
from mlflow.tracking import MlflowClient

from medvit import pipeline_registry, settings
from medvit.imaging.chest_demo import CHEST_DEMO_FINDINGS
from medvit.ingestion.config import IngestionParams
from medvit.ingestion.findings import finding_column, finding_columns
from medvit.pipelines.data_preparation.pipeline import data_preparation_pipeline
from medvit.pipelines.detection.nodes import DetectionParams
from medvit.pipelines.distillation.nodes import DistillationDataParams, StudentParams, TeacherParams
from medvit.pipelines.external_validation.nodes import ExternalCohortParams
from medvit.pipelines.mae.nodes import MAEParams
from medvit.splits import SplitError, SplitParams, slice_table_fingerprint, slices_in

CONF = Path(__file__).resolve().parents[2] / "conf"

SLICE_CONTRACT = [
    "patient_id",
    "study_id",
    "series_id",
    "slice_index",
    "tumor",
    "boxes",
    "mask_ref",
    "image_ref",
    "source",
]


def test_demo_cohort_is_ingested_split_and_tracked(project, run_kedro, latest_run):
    run_kedro()
    slices = pd.read_parquet(project / "data/03_primary/slices.parquet")
    splits = pd.read_parquet(project / "data/05_model_input/splits.parquet")
    assert set(SLICE_CONTRACT) <= set(slices.columns)
    assert len(slices) == 60 * 6 and slices.patient_id.nunique() == 24
    assert set(slices.groupby("series_id").slice_index.apply(tuple)) == {tuple(range(6))}
    per_patient = slices.groupby("patient_id")[["study_id", "series_id"]].nunique()
    assert sorted(map(tuple, per_patient.to_numpy())) == [(1, 1)] * 12 + [(2, 4)] * 12
    assert (project / "data/08_reporting/ingestion_quarantine.csv").is_file()
    assert splits.groupby("patient_id").split.nunique().max() == 1
    test = splits[splits.split == "test"]
    assert (test.tumor.sum(), (1 - test.tumor).sum()) == (1, 9)

    run = latest_run()
    assert run.data.metrics["ingest/slices"] == len(slices)
    assert run.data.metrics["ingest/quarantined"] == 0
    assert run.data.metrics["ingest/clipped_boxes"] == 0
    assert run.data.tags["patient_disjoint"] == "true"
    assert run.data.metrics["split/test/tumor"] == 1
    assert run.data.tags["kedro_pipeline"] == "data_preparation"
    assert run.data.tags["kedro_env"] == "local"
    assert len(run.data.tags["slice_table_fingerprint"]) == 16
    # the splits name the slice table they were drawn from, as read back from parquet
    assert set(splits.slice_table_fingerprint) == {run.data.tags["slice_table_fingerprint"]}
    assert slice_table_fingerprint(slices) == run.data.tags["slice_table_fingerprint"]
    assert run.data.tags["git_commit"]
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    artifacts = {
        a.path
        for folder in ("reports", "splits")
        for a in client.list_artifacts(run.info.run_id, folder)
    }
    assert artifacts == {"splits/splits.parquet"}  # the quarantine report names files: local


def _raw_identifiers(dicom_root: Path) -> set[str]:
    found = set()
    for path in dicom_root.rglob("*.dcm"):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        found |= {
            str(ds.PatientID),
            str(ds.PatientName),
            str(ds.PatientBirthDate),
            str(ds.AccessionNumber),
            str(ds.StudyInstanceUID),
            str(ds.SeriesInstanceUID),
            str(ds.SOPInstanceUID),
        }
        found |= {str(ds.PatientName).split("^")[0]}
    return {value for value in found if len(value) >= 6}


def _texts(project: Path) -> dict[str, str]:
    """Every output dataset as text (parquet through pandas, the rest as bytes)."""
    texts = {}
    for layer in ("02_intermediate", "03_primary", "04_feature", "05_model_input", "08_reporting"):
        for path in (project / "data" / layer).rglob("*"):
            if path.suffix == ".parquet":
                texts[str(path)] = pd.read_parquet(path).to_csv()
            elif path.is_file() and path.suffix != ".npy":
                texts[str(path)] = path.read_text(errors="ignore")
    return texts


def test_no_raw_identifier_leaves_ingestion(project, run_kedro, latest_run, tmp_path):
    run_kedro()
    identifiers = _raw_identifiers(project / "data/01_raw/demo_cohort/dicom")
    assert len(identifiers) > 24 * 3
    texts = _texts(project)
    run = latest_run()
    texts["mlflow params"] = repr(run.data.params)
    texts["mlflow tags"] = repr(run.data.tags)
    texts["mlflow metrics"] = repr(run.data.metrics)
    downloaded = Path(
        mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id,
            dst_path=str(tmp_path / "artifacts"),
            tracking_uri=f"sqlite:///{project / 'mlflow.db'}",
        )
    )
    for path in downloaded.rglob("*"):
        if path.is_file():
            raw = path.read_bytes()
            texts[str(path)] = (
                pd.read_parquet(path).to_csv()
                if path.suffix == ".parquet"
                else raw.decode(errors="ignore")
            )
    leaks = [
        (name, value) for name, text in texts.items() for value in identifiers if value in text
    ]
    assert not leaks


def test_too_many_bad_inputs_fail_the_run_but_keep_the_report(project, run_kedro):
    run_kedro()  # writes the demo cohort
    dicom = project / "data/01_raw/demo_cohort/dicom"
    for path in sorted(dicom.rglob("*.dcm"))[::2]:
        path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(Exception, match="max_bad_fraction"):
        run_kedro(extra={"ingestion": {"max_bad_fraction": 0.1}})
    report = pd.read_csv(project / "data/08_reporting/ingestion_quarantine.csv")
    files = report[report.path.str.endswith(".dcm")]
    assert len(files) == 180  # every cut file, each with its reason
    assert set(files.kind) <= {"truncated", "no_pixel_data"}


def test_a_split_the_label_files_cannot_give_fails_before_the_demo_is_written(project, run_kedro):
    with pytest.raises(SplitError) as failure:
        run_kedro(extra={"demo_cohort": {"n_normal": 0}})
    assert str(failure.value) == (
        "test needs 9 normal patients at 9:1 for 1 tumour patients, but only 0 normal patients "
        "remain; change splits.test.ratio or splits.test.tumor_patients, or add a source of "
        "normal patients. The cohort holds 4 tumour and 0 normal patients. Per source, from the "
        "label files: demo: 4 tumour, 0 normal."
    )
    assert not (project / "data/01_raw/demo_cohort").exists()


def _image_folder(root: Path, n_tumor: int, n_normal: int) -> Path:
    """Tiny PNGs with a YOLO box on each tumour image and a tumour column in the manifest."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for index in range(n_tumor + n_normal):
        tumor = int(index < n_tumor)
        cv2.imwrite(str(root / f"images/{index}.png"), rng.integers(0, 255, (32, 32), np.uint8))
        (root / f"labels/{index}.txt").write_text("0 0.5 0.5 0.25 0.25\n" if tumor else "")
        rows.append(
            {"image": f"images/{index}.png", "label": f"labels/{index}.txt", "tumor": tumor}
        )
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root


def _folder_source(root: Path, **settings) -> dict:
    return {
        "type": "image_folder",
        "name": "folder",
        "root": str(root),
        "unit": "image",
        **settings,
    }


def test_without_a_demo_source_nothing_is_written_and_image_units_are_tagged(
    project, run_kedro, latest_run, monkeypatch
):
    monkeypatch.setenv("MEDVIT_PSEUDONYM_KEY", "test-key-for-a-non-demo-source")
    root = _image_folder(project.parent / "folder", n_tumor=3, n_normal=19)
    run_kedro(extra={"ingestion": {"sources": [_folder_source(root)]}})
    assert not (project / "data/01_raw/demo_cohort").exists()
    slices = pd.read_parquet(project / "data/03_primary/slices.parquet")
    assert len(slices) == slices.patient_id.nunique() == 22
    assert latest_run().data.tags["patient_disjoint"] == "false"


def test_labels_known_only_from_the_pixels_are_checked_at_the_split(
    project, run_kedro, monkeypatch
):
    monkeypatch.setenv("MEDVIT_PSEUDONYM_KEY", "test-key-for-a-non-demo-source")
    root = _image_folder(project.parent / "folder", n_tumor=12, n_normal=0)
    source = _folder_source(root, tumor_column=None)  # tumour only through the label files
    with pytest.raises(SplitError) as failure:
        run_kedro(extra={"ingestion": {"sources": [source]}})
    assert str(failure.value).startswith("test needs 9 normal patients at 9:1")
    assert str(failure.value).endswith("The cohort holds 12 tumour and 0 normal patients.")
    assert (project / "data/03_primary/slices.parquet").is_file()  # ingestion ran first


# 24 patients at 64 px: the chest cohort's data preparation, namespaced, in seconds.
CHEST_TINY = {
    "chest": {
        "demo_cohort": {"n_patients": 24, "size": 64, "seed": 3},
        "ingestion": {"image_size": 64, "min_image_size": 32, "workers": 2},
        "splits": {"val": 0.25, "test": 0.25, "min_positive_patients": 2},
    }
}


def test_chest_cohort_is_prepared_by_namespace(project, run_kedro, latest_run, monkeypatch):
    """The same pipeline, namespaced `chest` with multi-label findings: the chest demo as DICOM
    DX, one row per radiograph with view and finding columns, finding-stratified splits with
    their summary, and nothing of the brain cohort's datasets touched."""
    chest = data_preparation_pipeline(namespace="chest", labels="findings")
    monkeypatch.setattr(pipeline_registry, "register_pipelines", lambda: {"chest_data": chest})
    run_kedro("chest_data", extra=CHEST_TINY, tiny=False)

    slices = pd.read_parquet(project / "data/03_primary/chest/slices.parquet")
    splits = pd.read_parquet(project / "data/05_model_input/chest/splits.parquet")
    summary = pd.read_csv(project / "data/08_reporting/chest/split_summary.csv")
    assert set(SLICE_CONTRACT) <= set(slices.columns)
    findings = [finding_column(name) for name in CHEST_DEMO_FINDINGS]
    assert finding_columns(slices) == findings
    dicoms = list((project / "data/01_raw/chest_demo_cohort/dicom").rglob("*.dcm"))
    assert len(slices) == len(dicoms) > 24 and slices["patient_id"].nunique() == 24
    assert (slices["slice_index"] == 0).all() and slices["series_id"].is_unique
    assert set(slices["view"]) == {"PA", "AP"}
    assert (slices["tumor"] == slices[findings].max(axis=1)).all()
    assert splits["split"].value_counts().to_dict() == {"train": 12, "val": 6, "test": 6}
    assert set(splits["patient_id"]) == set(slices["patient_id"])
    assert len(slices_in(slices, splits)) == len(slices)
    assert set(summary["finding"]) == set(findings) and len(summary) == 3 * len(findings)
    assert not (project / "data/03_primary/slices.parquet").exists()

    run = latest_run()
    assert run.data.metrics["ingest/slices"] == len(slices)
    assert run.data.metrics["ingest/quarantined"] == 0
    for finding in findings:
        assert run.data.metrics[f"ingest/{finding}"] == slices[finding].sum()
    test_positives = summary.set_index(["split", "finding"])["positive_patients"]
    for finding in findings:
        assert run.data.metrics[f"split/test/{finding}"] == test_positives["test", finding]
    assert run.data.tags["patient_disjoint"] == "true"
    identifiers = _raw_identifiers(project / "data/01_raw/chest_demo_cohort/dicom")
    texts = _texts(project) | {"mlflow": repr([run.data.params, run.data.metrics])}
    assert not [(name, v) for name, text in texts.items() for v in identifiers if v in text]


def test_brain_mri_public_environment_validates_and_keeps_real_patients_out_of_mlflow():
    """The shipped real-data protocol: every parameter block it overrides still validates, the
    preprocessing against the shortcut is on, and no reconstruction figure of a patient's slice
    goes to MLflow."""
    loader = settings.CONFIG_LOADER_CLASS(
        conf_source=str(CONF), env="brain_mri_public", **settings.CONFIG_LOADER_ARGS
    )
    values = loader["parameters"]
    ingestion = IngestionParams.model_validate(values["ingestion"])
    assert ingestion.preprocessing.crop_foreground and ingestion.preprocessing.intensity != "window"
    assert {s.archive for s in ingestion.sources if s.name.startswith("br35h")} == {"br35h"}
    SplitParams.model_validate(values["splits"])
    DetectionParams.model_validate(values["detection"])
    DistillationDataParams.model_validate(values["distillation_data"])
    TeacherParams.model_validate(values["teacher"])
    StudentParams.model_validate(values["student"])
    ExternalCohortParams.model_validate(values["external_validation"])
    assert MAEParams.model_validate(values["mae"]).log_patient_images is False
