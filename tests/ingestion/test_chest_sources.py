"""Chest radiographs through the shared ingestion: DICOM DX with findings, NIH-style image
folders, views, minimum size, unknown findings, and the two real chest sets."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pydicom
import pytest

from medvit.imaging.chest_demo import CHEST_DEMO_FINDINGS, ChestDemoSpec, write_chest_demo
from medvit.ingestion.config import DicomSource, ImageFolderSource, IngestionParams
from medvit.ingestion.dicom_tree import SourceConfigError
from medvit.ingestion.findings import finding_column, finding_columns
from medvit.ingestion.pseudonym import Pseudonymiser

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
NIH = SHARED / "chest_xray_nih"
COVID = SHARED / "chest_xray"
NIH_FINDINGS = [
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
    "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening",
    "Hernia",
]  # fmt: skip
FOLDER = {"label_column": None, "tumor_column": None, "patient_column": "patient_id"}


def test_finding_names_map_to_snake_case_columns():
    assert finding_column("Pleural_Thickening") == "finding_pleural_thickening"
    assert finding_column("COVID-19") == "finding_covid_19"
    table = pd.DataFrame(columns=["patient_id", "finding_b", "tumor", "finding_a"])
    assert finding_columns(table) == ["finding_b", "finding_a"]


@pytest.fixture
def demo(tmp_path: Path):
    return write_chest_demo(tmp_path / "demo", ChestDemoSpec(n_patients=6, size=64, seed=4))


def _dx_source(demo) -> DicomSource:
    return DicomSource(
        name="dx", root=demo.dicom_dir, findings_csv=demo.findings_csv, window="tags"
    )


def test_dicom_dx_radiographs_become_one_slice_series_with_findings(ingest, demo):
    files = sorted(demo.dicom_dir.rglob("*.dcm"))
    lateral = pydicom.dcmread(files[0])
    lateral.ViewPosition = "LL"
    lateral.save_as(files[0])
    burned = pydicom.dcmread(files[1])
    burned.BurnedInAnnotation = "YES"
    burned.save_as(files[1])

    table, report, _ = ingest([_dx_source(demo)], findings=list(CHEST_DEMO_FINDINGS), image_size=64)

    assert len(table) == len(files) - 2
    assert (table["slice_index"] == 0).all() and table["series_id"].is_unique
    assert set(table["view"]) <= {"PA", "AP"}
    assert finding_columns(table) == [finding_column(n) for n in CHEST_DEMO_FINDINGS]
    assert (table[finding_columns(table)].dtypes == "int8").all()
    truth = pd.read_csv(demo.findings_csv)
    pseudo = Pseudonymiser("test-key")  # the ingest fixture's key
    truth["instance_id"] = [pseudo("instance", f"{sop}/0") for sop in truth.sop_instance_uid]
    merged = table.merge(truth, on="instance_id", validate="one_to_one")
    assert len(merged) == len(table)
    for name in CHEST_DEMO_FINDINGS:
        assert (merged[finding_column(name)] == merged.findings.str.contains(name)).all()
    assert (table["tumor"] == table[finding_columns(table)].max(axis=1)).all()
    kinds = dict(zip(report["path"], report["kind"], strict=True))
    assert kinds[str(files[0].relative_to(demo.dicom_dir))] == "excluded_view"
    assert kinds[str(files[1].relative_to(demo.dicom_dir))] == "burned_in_annotation"
    reason = report.loc[report["kind"] == "excluded_view", "reason"].iloc[0]
    assert "LL" in reason and "ingestion.views" in reason


def test_lateral_views_are_kept_when_configured(ingest, demo):
    files = sorted(demo.dicom_dir.rglob("*.dcm"))
    lateral = pydicom.dcmread(files[0])
    lateral.ViewPosition = "LL"
    lateral.save_as(files[0])
    table, report, _ = ingest([_dx_source(demo)], findings=list(CHEST_DEMO_FINDINGS), views=None)
    assert len(table) == len(files) and report.empty
    assert "LL" in set(table["view"])


def test_unknown_finding_in_the_dicom_truth_names_the_known_ones(ingest, demo):
    truth = pd.read_csv(demo.findings_csv)
    truth.loc[0, "findings"] = "Cardiomegaly|Dextrocardia"
    truth.to_csv(demo.findings_csv, index=False)
    with pytest.raises(SourceConfigError, match=r"unknown finding 'Dextrocardia'.*Cardiomegaly"):
        ingest([_dx_source(demo)], findings=list(CHEST_DEMO_FINDINGS))


def _folder(root: Path, rows: list[dict], sizes: dict[str, tuple[int, int]] | None = None) -> None:
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for row in rows:
        shape = (sizes or {}).get(row["image"], (48, 40))
        cv2.imwrite(str(root / row["image"]), rng.integers(0, 255, shape, dtype=np.uint8))
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)


NIH_ROWS = [
    {"image": "images/a.png", "patient_id": 1, "view": "PA", "findings": "Effusion|Nodule"},
    {"image": "images/b.png", "patient_id": 1, "view": "ap", "findings": "No Finding"},
    {"image": "images/c.png", "patient_id": 2, "view": "LL", "findings": "Nodule"},
    {"image": "images/d.png", "patient_id": 3, "view": "PA", "findings": "effusion"},
    {"image": "images/e.png", "patient_id": 3, "view": "PA", "findings": ""},
]


def test_image_folder_with_finding_strings(ingest, tmp_path):
    _folder(tmp_path / "nih", NIH_ROWS, {"images/d.png": (20, 16)})
    source = ImageFolderSource(
        name="nih", root=tmp_path / "nih", view_column="view", findings_column="findings", **FOLDER
    )
    table, report, _ = ingest(
        [source], findings=["Effusion", "Nodule"], min_image_size=32, max_bad_fraction=1.0
    )
    assert sorted(zip(report["path"], report["kind"], strict=True)) == [
        ("images/c.png", "excluded_view"),
        ("images/d.png", "too_small"),
        ("images/e.png", "unlabelled"),  # an empty cell is not "no finding"
    ]
    too_small = report.set_index("kind").loc["too_small", "reason"]
    assert "20x16" in too_small and "min_image_size=32" in too_small
    table = table.sort_values("view")
    assert table["view"].tolist() == ["AP", "PA"]
    assert table[["finding_effusion", "finding_nodule", "tumor"]].values.tolist() == [
        [0, 0, 0],
        [1, 1, 1],
    ]
    assert table["patient_id"].nunique() == 1 and table["study_id"].nunique() == 2


def test_image_folder_with_one_column_per_finding(ingest, tmp_path):
    rows = [
        {"image": "images/a.png", "patient_id": 1, "Effusion": 1, "Pleural Thickening": 0},
        {"image": "images/b.png", "patient_id": 2, "Effusion": 0, "Pleural Thickening": 1},
    ]
    _folder(tmp_path / "cols", rows)
    source = ImageFolderSource(
        name="cols", root=tmp_path / "cols", findings_as_columns=True, **FOLDER
    )
    table, _, _ = ingest([source], findings=["Effusion", "Pleural_Thickening"])
    assert table.sort_values("finding_effusion")[
        ["finding_effusion", "finding_pleural_thickening"]
    ].values.tolist() == [[0, 1], [1, 0]]
    assert table["view"].isna().all()


def test_unknown_finding_in_a_manifest_names_line_and_known_findings(ingest, tmp_path):
    _folder(tmp_path / "nih", NIH_ROWS)
    source = ImageFolderSource(
        name="nih", root=tmp_path / "nih", findings_column="findings", **FOLDER
    )
    with pytest.raises(SourceConfigError, match=r"line 2: unknown finding 'Nodule'.*Effusion"):
        ingest([source], findings=["Effusion"])


def test_findings_need_a_vocabulary_and_replace_the_tumour_column(tmp_path):
    with pytest.raises(ValueError, match=r"ingestion\.findings lists none"):
        IngestionParams(
            sources=[ImageFolderSource(name="x", root=tmp_path, findings_column="f", **FOLDER)]
        )
    with pytest.raises(ValueError, match="tumor_column: null"):
        ImageFolderSource(
            name="x", root=tmp_path, findings_column="f", patient_column="p", label_column=None
        )


@pytest.mark.skipif(not NIH.is_dir(), reason=f"real NIH chest X-rays absent ({NIH})")
def test_real_nih_manifest_strings_and_columns_agree(ingest, tmp_path):
    manifest = pd.read_csv(NIH / "manifest.csv")
    subset = manifest.groupby("view").head(12)  # PA and AP, several findings
    subset.to_csv(tmp_path / "manifest.csv", index=False)
    (tmp_path / "images").symlink_to(NIH / "images")
    by_string = ImageFolderSource(
        name="nih", root=tmp_path, view_column="view", findings_column="findings", **FOLDER
    )
    table, report, _ = ingest([by_string], findings=NIH_FINDINGS, image_size=64)
    assert report.empty and len(table) == len(subset)
    assert table["patient_id"].nunique() == subset["patient_id"].nunique()
    assert table["view"].value_counts().to_dict() == subset["view"].value_counts().to_dict()
    expected = subset[NIH_FINDINGS].sum().to_numpy()
    assert (
        table[[finding_column(name) for name in NIH_FINDINGS]].sum().to_numpy() == expected
    ).all()
    by_columns = by_string.model_copy(update={"findings_column": None, "findings_as_columns": True})
    again, _, _ = ingest([by_columns], findings=NIH_FINDINGS, image_size=64)
    columns = ["instance_id", *finding_columns(table)]
    pd.testing.assert_frame_equal(
        table[columns].sort_values("instance_id", ignore_index=True),
        again[columns].sort_values("instance_id", ignore_index=True),
    )


@pytest.mark.skipif(not COVID.is_dir(), reason=f"real COVID chest X-rays absent ({COVID})")
def test_real_covid_set_maps_its_own_labels(ingest, tmp_path):
    manifest = pd.read_csv(COVID / "manifest.csv")
    subset = manifest.groupby("finding").head(3)
    subset.to_csv(tmp_path / "manifest.csv", index=False)
    (tmp_path / "images").symlink_to(COVID / "images")
    source = ImageFolderSource(
        name="covid", root=tmp_path, view_column="view", findings_column="finding", **FOLDER
    )
    findings = ["COVID-19", "SARS", "ARDS", "Streptococcus", "Pneumocystis"]
    table, report, _ = ingest(
        [source],
        findings=findings,
        no_finding=["No Finding"],
        unlabelled=["Unknown"],
        views=["PA", "AP", "AP Supine"],
        image_size=64,
        max_bad_fraction=0.5,
    )
    unknown = (subset["finding"] == "Unknown").sum()
    assert (report["kind"] == "unlabelled").sum() == unknown > 0
    assert len(table) == len(subset) - unknown
    assert table["finding_covid_19"].sum() == (subset["finding"] == "COVID-19").sum()
    normal = subset["finding"].str.lower() == "no finding"
    assert (table["tumor"] == 0).sum() == normal.sum()
