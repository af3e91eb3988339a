"""No identifying path, name, key or UID leaves the machine: every output and all of MLflow.

The leak test ingests a DICOM export whose folders and files are named after the patients, as
clinical exports often are, with an orphan box row, an orphan patient row, a broken file and a
slice with burned-in annotation, then reads every byte the run left behind.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pydicom
import pytest
import yaml
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from medvit.detection.yolo import TrainedDetector
from medvit.ingestion.config import DemoSource, DicomSource, IngestionParams
from medvit.ingestion.pseudonym import DEMO_KEY, KEY_ENV_VAR, PseudonymKeyError, resolve_key
from medvit.ingestion.units import Quarantined, UnitResult

NAMES = [
    "ZABRISKIE^JANE",
    "QUIMBY^ROSE",
    "FAIRWEATHER^OTTO",
    "PENDERGAST^LUCY",
    "MCALLISTER^HUGO",
    "WINTERBOTTOM^IVY",
    "ABERNATHY^SAUL",
    "LOCKWOOD^NELL",
]
TUMOUR = {0, 1, 2, 3}
LOCAL_ONLY = (
    "data/01_raw/source_path_lookup.parquet",
    "data/08_reporting/ingestion_quarantine.csv",
)


def _write_export(root: Path) -> set[str]:
    """8 patients of 2 slices in `<Surname_Given>_<MRN>/t1/<NAME>_<k>.dcm`, plus a truncated file,
    a burned-in slice and label CSVs with one orphan row each. Returns the raw identifiers."""
    template = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    export = root / "export"
    secrets: set[str] = set()
    patients, boxes = [], []
    for index, name in enumerate(NAMES):
        mrn = f"MRN-{884210 + index}"
        folder = export / f"{name.title().replace('^', '_')}_{mrn}" / "t1"
        folder.mkdir(parents=True)
        study, series = generate_uid(), generate_uid()
        for k in range(2 + (index == 0)):
            ds = copy.deepcopy(template)
            ds.PatientName, ds.PatientID = name, mrn
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.ImagePositionPatient = [0, 0, 5.0 * k]
            ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
            if k == 2:  # Jane's third slice shows her name in the pixels
                ds.BurnedInAnnotation = "YES"
            ds.save_as(folder / f"{name}_{k}.dcm")
            secrets |= {ds.SOPInstanceUID}
            if index in TUMOUR and k == 0:
                boxes.append({"sop_instance_uid": ds.SOPInstanceUID, "x1": 8, "y1": 8, "x2": 30})
        whole = (folder / f"{name}_0.dcm").read_bytes()
        if index == 0:
            (folder / f"{name}_broken.dcm").write_bytes(whole[: len(whole) // 2])
        patients.append({"patient_id": mrn, "tumor": int(index in TUMOUR)})
        secrets |= {name, name.split("^")[0], mrn, study, series}  # given names: too short
    orphan_sop, orphan_mrn = generate_uid(), "MRN-ORPHAN-5150"
    boxes.append({"sop_instance_uid": orphan_sop, "x1": 1, "y1": 1, "x2": 2})
    patients.append({"patient_id": orphan_mrn, "tumor": 0})
    labels = root / "labels"
    labels.mkdir()
    pd.DataFrame(patients).to_csv(labels / "patients.csv", index=False)
    pd.DataFrame(boxes).assign(y2=30).to_csv(labels / "boxes.csv", index=False)
    return secrets | {orphan_sop, orphan_mrn, str(export)}


def _configure(project: Path, root: Path) -> None:
    """The user's own data, the way the README says: conf/local/parameters_data_preparation.yml."""
    source = {
        "type": "dicom",
        "name": "hospital",
        "root": str(root / "export"),
        "patients_csv": str(root / "labels" / "patients.csv"),
        "boxes_csv": str(root / "labels" / "boxes.csv"),
        "window": "percentile",
    }
    params = {"ingestion": {"sources": [source], "max_bad_fraction": 0.5}}
    (project / "conf/local/parameters_data_preparation.yml").write_text(yaml.safe_dump(params))


def _readable(path: Path) -> str:
    """A file's bytes as text, and a parquet file's values too (its pages may be compressed)."""
    text = path.read_bytes().decode("latin-1")
    if path.suffix == ".parquet":
        text += pd.read_parquet(path).to_csv()
    return text.lower()


def _leaks(files: list[Path], secrets: set[str]) -> list[tuple[str, str]]:
    return [
        (str(path), secret)
        for path in files
        for text in [_readable(path)]
        for secret in secrets
        if secret.lower() in text
    ]


def _files(folder: Path, skip: set[Path] = frozenset()) -> list[Path]:
    return [path for path in sorted(folder.rglob("*")) if path.is_file() and path not in skip]


SPLITS = {  # 4 tumour and 4 normal patients: one of each in val and in test
    split: {"tumor_patients": 1, "ratio": {"normal": 1, "tumor": 1}} for split in ("val", "test")
}


def test_no_name_path_or_uid_leaves_ingestion(
    project, run_kedro, latest_run, tmp_path, monkeypatch
):
    monkeypatch.setenv(KEY_ENV_VAR, "a-test-key-that-is-not-the-demo-one")
    secrets = _write_export(tmp_path / "hospital")
    _configure(project, tmp_path / "hospital")
    run_kedro(extra={"splits": SPLITS})

    run = latest_run()
    report = pd.read_csv(project / "data/08_reporting/ingestion_quarantine.csv")
    lookup = pd.read_parquet(project / LOCAL_ONLY[0])
    # The inputs really were identifying, and the local files still let a user find them.
    assert (
        lookup.path.str.contains("Zabriskie_Jane_MRN-884210/t1/ZABRISKIE^JANE_", regex=False).sum()
        == 4
    )
    assert set(report.kind) == {"truncated", "burned_in_annotation", "orphan_label"}
    assert (
        report.path.str.endswith(("ZABRISKIE^JANE_broken.dcm", "ZABRISKIE^JANE_2.dcm")).sum() == 2
    )
    assert run.data.metrics["ingest/quarantined/burned_in_annotation"] == 1
    assert run.data.metrics["ingest/quarantined/orphan_label"] == 2
    assert run.data.metrics["ingest/slices"] == 16  # the demo cohort is not a source
    # the parameters were logged as flat keys, minus paths
    assert run.data.params["ingestion.sources.0.name"] == "hospital"
    assert not [key for key in run.data.params if key.endswith(("root", "_csv"))]
    artifacts = Path(
        mlflow.artifacts.download_artifacts(
            run.info.artifact_uri, dst_path=str(tmp_path / "artifacts")
        )
    )
    assert (artifacts / "splits/splits.parquet").is_file()
    assert not (artifacts / "reports").exists()  # the quarantine report is not logged by default

    skip = {project / path for path in LOCAL_ONLY} | set((project / "conf").rglob("*"))
    assert _leaks([project / LOCAL_ONLY[0]], {"ZABRISKIE"})  # the check can see a leak
    leaks = _leaks(_files(project, skip) + _files(artifacts), secrets)
    assert (project / "mlflow.db").is_file() and not leaks

    while mlflow.active_run():  # kedro-mlflow leaves its (node-level nested) runs open
        mlflow.end_run()
    run_kedro(extra={"splits": SPLITS, "ingestion": {"log_quarantine_report": True}})
    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    opted_in = client.list_artifacts(latest_run().info.run_id, "reports")
    assert [artifact.path for artifact in opted_in] == ["reports/ingestion_quarantine.csv"]


def test_the_demo_key_is_refused_for_real_data(monkeypatch, caplog):
    real = [DemoSource(), DicomSource(name="hospital", root=Path("/data/export"))]
    with pytest.raises(
        PseudonymKeyError, match=r"conf/local/credentials\.yml.*\$MEDVIT_PSEUDONYM_KEY"
    ):
        resolve_key(None, real)
    with pytest.raises(PseudonymKeyError, match="hospital"):
        resolve_key(DEMO_KEY, real)  # typed in on purpose: still public
    assert resolve_key("secret", real) == "secret"
    monkeypatch.setenv(KEY_ENV_VAR, "from-env")
    assert resolve_key(None, real) == "from-env"
    monkeypatch.delenv(KEY_ENV_VAR)
    with caplog.at_level(logging.WARNING):
        assert resolve_key(None, [DemoSource()]) == DEMO_KEY
    assert "demo key" in caplog.text


def test_source_locations_stay_out_of_the_logged_parameters():
    source = DicomSource(
        name="hospital", root=Path("/exports/Doe_Jane"), boxes_csv=Path("/exports/Doe.csv")
    )
    shown = str(IngestionParams(sources=[source]))  # what kedro-mlflow logs
    assert "hospital" in shown and "Doe" not in shown and source.root.name == "Doe_Jane"


def test_patient_images_of_ultralytics_are_logged_only_when_asked(tmp_path):
    names = ["results.png", "BoxPR_curve.png", "confusion_matrix_normalized.png", "labels.jpg"]
    patients = [
        "train_batch0.jpg",
        "train_batch42.jpg",
        "val_batch0_labels.jpg",
        "val_batch1_pred.jpg",
    ]
    for name in names + patients:
        (tmp_path / name).write_bytes(np.zeros(4, np.uint8).tobytes())
    trained = TrainedDetector(save_dir=tmp_path, best=tmp_path / "best.pt", resumed=False)
    assert sorted(p.name for p in trained.plots()) == sorted(names)
    assert sorted(p.name for p in trained.plots(patient_images=True)) == sorted(names + patients)


def test_a_library_message_quoting_a_path_gets_the_file_key():
    result = UnitResult(8)
    result.reject("Doe_Jane/1.dcm", "truncated", "EOF in /exports/Doe_Jane/1.dcm (Doe_Jane/1.dcm)")
    result.key_files(lambda path: f"F-{len(path)}", Path("/exports"))
    assert result.quarantine == [Quarantined("F-14", "truncated", "EOF in F-14 (F-14)")]
