"""Kedro dataset for one NIfTI image, so label volumes are catalog outputs like any other."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nib
from kedro.io import AbstractDataset


class NiftiImageDataset(AbstractDataset[nib.Nifti1Image, nib.Nifti1Image]):
    """A `.nii`/`.nii.gz` file read and written by nibabel (which compresses by the suffix);
    used inside a PartitionedDataset, one file per series."""

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = Path(filepath)
        self.metadata = metadata

    def load(self) -> nib.Nifti1Image:
        return nib.load(self._filepath)

    def save(self, data: nib.Nifti1Image) -> None:
        self._filepath.parent.mkdir(parents=True, exist_ok=True)
        nib.save(data, self._filepath)

    def _exists(self) -> bool:
        return self._filepath.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}
