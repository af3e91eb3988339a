"""The split request checked against label files alone, before any image is decoded."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest

from medvit.imaging.demo import DemoCohortSpec
from medvit.ingestion.cohort import check_split_request, patient_labels
from medvit.ingestion.config import DemoSource, DicomSource, NiftiSource
from medvit.splits import SplitError, SplitParams

DEMO = DemoCohortSpec(n_tumor=2, n_normal=5)


def _archive(tmp_path: Path, tumours: int, normals: int) -> DicomSource:
    """A tumour archive's patients_csv; its DICOM folder is never opened by the check."""
    labels = [1] * tumours + [0] * normals
    csv = tmp_path / "patients.csv"
    pd.DataFrame({"patient_id": [f"MRN{i}" for i in range(len(labels))], "tumor": labels}).to_csv(
        csv, index=False
    )
    return DicomSource(name="archive", root=tmp_path / "absent", patients_csv=csv)


def _nifti(tmp_path: Path, tumor: list[int | None] | None) -> NiftiSource:
    frame = pd.DataFrame({"image": ["a.nii", "b.nii", "c.nii"], "patient_id": ["p", "p", "q"]})
    if tumor is not None:
        frame["tumor"] = tumor
    frame.to_csv(tmp_path / "manifest.csv", index=False)
    return NiftiSource(name="study", root=tmp_path)


def test_a_tumour_only_archive_fails_with_its_counts_per_source(tmp_path):
    with pytest.raises(SplitError) as failure:
        check_split_request([_archive(tmp_path, 3, 0)], DEMO, SplitParams())
    message = str(failure.value)
    assert message.startswith("test needs 27 normal patients at 9:1 for 3 tumour patients")
    assert message.endswith(
        "The cohort holds 3 tumour and 0 normal patients. "
        "Per source, from the label files: archive: 3 tumour, 0 normal."
    )


def test_sources_add_up_and_a_feasible_request_passes(tmp_path):
    sources = [_archive(tmp_path, 3, 0), DemoSource()]
    with pytest.raises(SplitError, match="archive: 3 tumour, 0 normal; demo: 2 tumour, 5 normal"):
        check_split_request(sources, DEMO, SplitParams())
    natural = {"ratio": None, "fraction": 0.3}
    check_split_request(sources, DEMO, SplitParams(test=natural, val=natural))


def test_labels_known_only_from_pixels_leave_the_check_to_the_split(tmp_path, caplog):
    no_labels = DicomSource(name="unlabelled", root=tmp_path)
    with caplog.at_level(logging.INFO):
        check_split_request([_archive(tmp_path, 3, 0), no_labels], DEMO, SplitParams())
    assert "['unlabelled']" in caplog.text and "checked after ingestion" in caplog.text


def test_nifti_labels_come_from_a_complete_tumour_column(tmp_path):
    assert patient_labels(_nifti(tmp_path, [1, 0, 0]), DEMO).to_dict() == {"p": 1, "q": 0}
    assert patient_labels(_nifti(tmp_path, [1, None, 0]), DEMO) is None
    assert patient_labels(_nifti(tmp_path, None), DEMO) is None
