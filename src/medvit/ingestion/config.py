"""Ingestion parameters, validated at the node boundary so a YAML typo fails before any decoding.

Each source layout is one model, selected by its `type`; switching from the demo cohort to a
user's own data is a change in `conf/local/parameters_data_preparation.yml`, never in code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DicomSource(_Strict):
    """A DICOM tree of any nesting, with optional ground truth keyed by PatientID/SOPInstanceUID.

    `patients_csv`: columns `patient_id` (raw PatientID), `tumor` (0/1).
    `boxes_csv`: columns `sop_instance_uid, x1, y1, x2, y2` in pixels of the DICOM image.
    `masks_dir`: `<SOPInstanceUID>.png`, non-zero = tumour, same size as the image.
    """

    type: Literal["dicom"] = "dicom"
    name: str
    root: Path
    patients_csv: Path | None = None
    boxes_csv: Path | None = None
    masks_dir: Path | None = None
    window: Literal["auto", "tags", "percentile"] = "auto"


class DemoSource(_Strict):
    """The generated demo cohort; its paths come from the `demo_cohort` dataset."""

    type: Literal["demo"] = "demo"
    name: str = "demo"


class ImageFolderSource(_Strict):
    """Images plus a manifest CSV with YOLO label files and optional masks (paths relative to root).

    Patient-disjointness comes from `patient_column`; without patient ids, from `group_column`
    (e.g. the figshare authors' `fold`); with neither, each image is its own unit.
    """

    type: Literal["image_folder"] = "image_folder"
    name: str
    root: Path
    manifest: str = "manifest.csv"
    image_column: str = "image"
    label_column: str | None = "label"
    mask_column: str | None = None
    tumor_column: str | None = "tumor"
    patient_column: str | None = None
    group_column: str | None = None
    tumor_type_column: str | None = None


class NiftiSource(_Strict):
    """NIfTI volumes with optional mask volumes; manifest: `image, mask, patient_id[, tumor]`."""

    type: Literal["nifti"] = "nifti"
    name: str
    root: Path
    manifest: str = "manifest.csv"
    percentiles: tuple[float, float] = (0.5, 99.5)


Source = Annotated[
    DicomSource | DemoSource | ImageFolderSource | NiftiSource, Field(discriminator="type")
]


class IngestionParams(_Strict):
    sources: list[Source] = Field(min_length=1)
    image_size: int = Field(128, ge=16, le=4096)
    workers: int | Literal["auto"] = "auto"
    chunk_size: int = Field(32, ge=1)
    max_bad_fraction: float = Field(0.1, ge=0.0, le=1.0)

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, sources: list[Source]) -> list[Source]:
        names = [source.name for source in sources]
        duplicated = sorted({name for name in names if names.count(name) > 1})
        if duplicated:
            raise ValueError(f"source names must be unique, repeated: {duplicated}")
        return sources

    def worker_count(self) -> int:
        return (os.cpu_count() or 1) if self.workers == "auto" else int(self.workers)
