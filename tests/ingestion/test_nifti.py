"""NIfTI reader: canonical orientation, mask-derived boxes, a real volume from nibabel."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from nibabel.testing import data_path

from medvit.ingestion.config import NiftiSource


def _write(root: Path) -> NiftiSource:
    root.mkdir(parents=True)
    volume = np.random.default_rng(0).normal(100, 10, (40, 40, 6)).astype(np.float32)
    mask = np.zeros(volume.shape, np.uint8)
    mask[10:20, 5:15, 2:4] = 1
    mask[30:35, 30:38, 3] = 1
    nib.save(nib.Nifti1Image(volume, np.eye(4)), root / "vol.nii.gz")
    nib.save(nib.Nifti1Image(mask, np.eye(4)), root / "vol_mask.nii.gz")
    nib.save(nib.Nifti1Image(mask[:, :, :3], np.eye(4)), root / "wrong_mask.nii.gz")
    (root / "broken.nii.gz").write_bytes(b"not gzip at all")
    pd.DataFrame(
        [
            {"image": "vol.nii.gz", "mask": "vol_mask.nii.gz", "patient_id": "NIFTI-1"},
            {"image": "vol.nii.gz", "mask": "wrong_mask.nii.gz", "patient_id": "NIFTI-2"},
            {"image": "broken.nii.gz", "mask": None, "patient_id": "NIFTI-3"},
            {"image": str(Path(data_path) / "anatomical.nii"), "mask": None, "patient_id": "REAL"},
        ]
    ).to_csv(root / "manifest.csv", index=False)
    return NiftiSource(name="nii", root=root)


def test_volumes_become_ordered_slices_with_boxes(tmp_path, ingest):
    table, report, store = ingest([_write(tmp_path / "n")], image_size=40, max_bad_fraction=1.0)
    tumour_series = table.loc[table.tumor == 1, "series_id"].iloc[0]
    synthetic = table[table.series_id == tumour_series].sort_values("slice_index")
    real = table[table.series_id != tumour_series].sort_values("slice_index")
    assert set(report.kind) == {"bad_annotation", "corrupt_image"}
    assert len(synthetic) == 6 and synthetic.tumor.tolist() == [0, 0, 1, 1, 0, 0]
    assert [len(b) for b in synthetic.boxes] == [0, 0, 1, 2, 0, 0]
    assert real.slice_index.tolist() == list(range(len(real))) and len(real) > 1
    assert real.patient_tumor.eq(0).all() and store.images.shape[1:] == (40, 40)


def test_mask_boxes_cover_the_mask(tmp_path, ingest):
    table, _, store = ingest([_write(tmp_path / "n")], image_size=40, max_bad_fraction=1.0)
    row = table[table.tumor == 1].iloc[0]
    mask = np.asarray(store.masks[row.mask_ref])
    ys, xs = np.nonzero(mask)
    ((x1, y1, x2, y2),) = (list(b) for b in row.boxes)
    assert (x1, y1, x2, y2) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
