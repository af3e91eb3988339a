"""The synthetic chest X-ray cohort: real DICOM DX of every kind ingestion must handle, a
byte-identical rewrite, and findings a model can learn."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pydicom
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from medvit.imaging.chest_demo import (
    CHEST_DEMO_FINDINGS,
    ChestDemoSpec,
    write_chest_demo,
)
from medvit.imaging.dicom import decode_dicom

SPEC = ChestDemoSpec(n_patients=40, size=64, seed=1)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory):
    return write_chest_demo(tmp_path_factory.mktemp("chest") / "demo", SPEC)


def _digests(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def test_same_spec_gives_identical_bytes(cohort, tmp_path):
    again = write_chest_demo(tmp_path / "again", SPEC)
    assert _digests(again.root) == _digests(cohort.root)
    other = write_chest_demo(tmp_path / "other", ChestDemoSpec(n_patients=40, size=64, seed=2))
    assert _digests(other.root) != _digests(cohort.root)


def test_files_cover_what_real_radiographs_vary_in(cohort):
    headers = [pydicom.dcmread(path) for path in sorted(cohort.dicom_dir.rglob("*.dcm"))]
    assert {ds.Modality for ds in headers} == {"DX"}
    assert {ds.PhotometricInterpretation for ds in headers} == {"MONOCHROME1", "MONOCHROME2"}
    assert {ds.ViewPosition for ds in headers} == {"PA", "AP"}
    assert {int(ds.BitsStored) for ds in headers} == {12, 14, 16}
    assert any("VOILUTSequence" in ds for ds in headers)
    assert {(int(ds.Rows), int(ds.Columns)) for ds in headers} == {(64, 56)}
    studies = pd.Series([ds.StudyInstanceUID for ds in headers]).groupby(
        [ds.PatientID for ds in headers]
    )
    assert studies.nunique().max() > 1  # several studies for some patients
    assert len({ds.SOPInstanceUID for ds in headers}) == len(headers)


def test_truth_lists_every_radiograph_with_nih_strings(cohort):
    truth = pd.read_csv(cohort.findings_csv)
    assert list(truth.columns) == ["sop_instance_uid", "findings"]
    sops = {pydicom.dcmread(p).SOPInstanceUID for p in cohort.dicom_dir.rglob("*.dcm")}
    assert set(truth.sop_instance_uid) == sops
    names = {name for text in truth.findings for name in text.split("|")}
    assert names == {*CHEST_DEMO_FINDINGS, "No Finding"}


def test_monochrome1_and_lut_files_decode_like_the_others(cohort):
    """Whatever the photometric interpretation and VOI, lungs show dark and the mediastinum
    bright once decoded with the file's own display tags."""
    for path in sorted(cohort.dicom_dir.rglob("*.dcm")):
        image = decode_dicom(path, "tags").frames[0].astype(float)
        lungs = image[20:36, 8:16].mean()
        mediastinum = image[20:36, 26:30].mean()
        assert mediastinum > lungs + 40, path


def test_global_findings_are_learnable_from_pixels(tmp_path):
    """A linear model on 32 x 28 pixels tells cardiomegaly and effusion on held-out patients;
    nodules and pneumothoraces are local signs that need a model with spatial capacity."""
    cohort = write_chest_demo(tmp_path / "learn", ChestDemoSpec(n_patients=120, size=64, seed=1))
    truth = pd.read_csv(cohort.findings_csv).set_index("sop_instance_uid")["findings"]
    pixels, labels, patients = [], [], []
    for path in sorted(cohort.dicom_dir.rglob("*.dcm")):
        dicom = decode_dicom(path, "tags")
        small = cv2.resize(dicom.frames[0], (28, 32), interpolation=cv2.INTER_AREA)
        pixels.append(small.ravel() / 255.0)
        labels.append([name in truth[dicom.sop_uid].split("|") for name in CHEST_DEMO_FINDINGS])
        patients.append(path.parts[-3])
    x, y, patients = np.array(pixels), np.array(labels), np.array(patients)
    train = np.isin(patients, np.unique(patients)[:80])
    for k, name in enumerate(CHEST_DEMO_FINDINGS[:2]):
        model = LogisticRegression(max_iter=2000).fit(x[train], y[train, k])
        auroc = roc_auc_score(y[~train, k], model.predict_proba(x[~train])[:, 1])
        assert auroc > 0.9, (name, auroc)


def test_bad_spec_is_refused(tmp_path):
    with pytest.raises(ValueError, match="max_studies"):
        write_chest_demo(tmp_path, ChestDemoSpec(max_studies=4))
    with pytest.raises(ValueError, match="at least 4 patients"):
        write_chest_demo(tmp_path, ChestDemoSpec(size=32))
