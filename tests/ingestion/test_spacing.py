"""Pixel spacing and slice spacing reach the slice table, scaled to the stored pixels."""

from __future__ import annotations

from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from medvit.imaging.demo import DemoCohortSpec, write_demo_cohort
from medvit.imaging.intensity import Letterbox
from medvit.ingestion.config import DicomSource, ImageFolderSource, NiftiSource


def test_letterbox_spacing_scales_each_axis_by_its_resize():
    # 80 x 120 source into 60: scale 0.5, stored 40 x 60 pixels of the image
    assert Letterbox(80, 120, 60).spacing((0.5, 0.25)) == [1.0, 0.5]
    assert Letterbox(80, 120, 60).spacing(None) is None


def test_demo_dicom_spacing_and_slice_steps(tmp_path, ingest):
    spec = DemoCohortSpec(n_tumor=1, n_normal=1, slices=5, size=64, multi_fraction=0.0)
    cohort = write_demo_cohort(tmp_path / "demo", spec)
    source = DicomSource(name="d", root=cohort.dicom_dir, patients_csv=cohort.patients_csv)
    table, _, _ = ingest([source], image_size=32)
    source_mm = round(230.0 / 64, 4)  # the demo's field of view over its matrix
    spacing = np.stack(table["pixel_spacing_mm"].to_numpy())
    np.testing.assert_allclose(spacing, source_mm * 2, rtol=1e-6)  # 64 px stored as 32
    assert table["slice_thickness_mm"].eq(5.0).all()  # from positions, equal to the tag here


def test_nifti_zooms_follow_the_axial_slice(tmp_path, ingest):
    root = tmp_path / "n"
    root.mkdir()
    volume = np.random.default_rng(0).normal(100, 10, (40, 20, 3)).astype(np.float32)
    affine = np.diag([0.5, 1.5, 3.0, 1.0])
    nib.save(nib.Nifti1Image(volume, affine), root / "vol.nii.gz")
    pd.DataFrame([{"image": "vol.nii.gz", "patient_id": "P"}]).to_csv(
        root / "manifest.csv", index=False
    )
    table, _, _ = ingest([NiftiSource(name="n", root=root)], image_size=40)
    # axial slices show y (20 voxels of 1.5 mm) down the rows, x (40 of 0.5 mm) across
    assert table["pixel_spacing_mm"].iloc[0].tolist() == [1.5, 0.5]
    assert table["slice_thickness_mm"].eq(3.0).all()


@pytest.mark.parametrize("spacing", [None, 0.8])
def test_image_folder_spacing_is_what_the_source_states(tmp_path, ingest, spacing):
    root = tmp_path / "f"
    (root / "images").mkdir(parents=True)
    cv2.imwrite(str(root / "images/a.png"), np.zeros((80, 80), np.uint8))
    pd.DataFrame([{"image": "images/a.png", "tumor": 0, "fold": 1}]).to_csv(
        root / "manifest.csv", index=False
    )
    source = ImageFolderSource(
        name="f", root=Path(root), label_column=None, group_column="fold", pixel_spacing_mm=spacing
    )
    table, _, _ = ingest([source], image_size=40)
    stored = table["pixel_spacing_mm"].iloc[0]
    assert (stored is None) if spacing is None else (list(stored) == [1.6, 1.6])
    assert table["slice_thickness_mm"].isna().all()
