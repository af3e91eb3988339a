"""Ingestion parameters, validated at the node boundary so a YAML typo fails before any decoding.

Each source layout is one model, selected by its `type`; switching from the demo cohort to a
user's own data is a change in `conf/local/parameters_data_preparation.yml`, never in code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from medvit.ingestion.findings import Vocabulary


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Where a cohort lives stays out of every repr, and so out of the MLflow params (kedro-mlflow logs
# `str(params)`): exports often name folders after patients.
Location = Annotated[Path, Field(repr=False)]
OptionalLocation = Annotated[Path | None, Field(repr=False)]


class DicomSource(_Strict):
    """A DICOM tree of any nesting, with optional ground truth keyed by PatientID/SOPInstanceUID.

    `patients_csv`: columns `patient_id` (raw PatientID), `tumor` (0/1).
    `boxes_csv`: columns `sop_instance_uid, x1, y1, x2, y2` in pixels of the DICOM image.
    `masks_dir`: `<SOPInstanceUID>.png`, non-zero = tumour, same size as the image.
    `findings_csv`: columns `sop_instance_uid, findings` (`A|B` strings, `No Finding` = none),
    one row per radiograph: the multi-label truth of projection images (DX/CR). An image it does
    not list is quarantined as unlabelled.
    `allow_burned_in`: use slices marked `BurnedInAnnotation: YES` (text such as a name may be
    in the pixels), quarantined otherwise; set it only once their pixels have been checked.
    """

    type: Literal["dicom"] = "dicom"
    name: str
    root: Location
    patients_csv: OptionalLocation = None
    boxes_csv: OptionalLocation = None
    masks_dir: OptionalLocation = None
    findings_csv: OptionalLocation = None
    window: Literal["auto", "tags", "percentile"] = "auto"
    allow_burned_in: bool = False


class DemoSource(_Strict):
    """The generated demo cohort (brain MRI or chest X-ray, whichever the pipeline's
    `demo_cohort` dataset holds); its paths come from that dataset."""

    type: Literal["demo"] = "demo"
    name: str = "demo"


class ImageFolderSource(_Strict):
    """Images plus a manifest CSV with YOLO label files and optional masks (paths relative to root).

    Patient-disjointness comes from `patient_column`; without patient ids, from `group_column`
    (e.g. the figshare authors' `fold`). With neither, slices of one patient could land in both
    train and test, so the source is refused unless it says `unit: image`: then each image is its
    own unit, a warning is logged and the run is tagged `patient_disjoint=false`.

    Radiographs: `view_column` names the view (PA/AP/LL); findings come either from
    `findings_column` (NIH's `A|B` strings) or, with `findings_as_columns`, from one 0/1 column
    per configured finding, named as the finding. Either way `tumor` becomes "any finding", so
    chest manifests set `label_column` and `tumor_column` to null.
    """

    type: Literal["image_folder"] = "image_folder"
    name: str
    root: Location
    manifest: str = "manifest.csv"
    image_column: str = "image"
    label_column: str | None = "label"
    mask_column: str | None = None
    tumor_column: str | None = "tumor"
    patient_column: str | None = None
    group_column: str | None = None
    tumor_type_column: str | None = None
    view_column: str | None = None
    findings_column: str | None = None
    findings_as_columns: bool = False
    unit: Literal["patient", "image"] = "patient"
    # The `source` its slices are reported under (shortcut audit, within-source metrics, split
    # rules), default its name: folders of one archive (Br35H ships its tumour and no-tumour
    # images apart) share one, so that the archive's tumours are compared with its normals.
    archive: str | None = None
    # mm per source pixel, square pixels: image files carry no spacing, so millimetre metrics
    # (HD95, surface Dice, volumes) are reported as unavailable unless the source states it.
    pixel_spacing_mm: Annotated[float, Field(gt=0)] | None = None

    @property
    def has_findings(self) -> bool:
        return self.findings_column is not None or self.findings_as_columns

    @property
    def radiographs(self) -> bool:
        """Images with a view or findings are radiographs: each is a study and a one-slice
        series of its own, while the slices of an MRI folder share their patient's series."""
        return self.has_findings or self.view_column is not None

    @model_validator(mode="after")
    def _one_finding_format(self) -> Self:
        if self.findings_column is not None and self.findings_as_columns:
            raise ValueError(
                f"image_folder source {self.name!r} sets both findings_column and "
                "findings_as_columns; findings come from one or the other"
            )
        if self.has_findings and self.tumor_column is not None:
            raise ValueError(
                f"image_folder source {self.name!r} has findings, which define `tumor` (any "
                "finding); set tumor_column: null"
            )
        return self

    @model_validator(mode="after")
    def _patient_disjoint_unit(self) -> Self:
        grouped = self.patient_column is not None or self.group_column is not None
        if self.unit == "patient" and not grouped:
            raise ValueError(
                f"image_folder source {self.name!r} names neither a patient_column nor a "
                "group_column, so slices of one patient could land in both train and test; "
                "name the column of the manifest that holds patient ids (patient_column) or "
                "patient-disjoint groups (group_column), or set `unit: image` to split image by "
                "image knowingly"
            )
        if self.unit == "image" and grouped:
            raise ValueError(
                f"image_folder source {self.name!r} sets `unit: image` but also a patient or "
                "group column; drop one of the two"
            )
        return self


class NiftiSource(_Strict):
    """NIfTI volumes with optional mask volumes; manifest: `image, mask, patient_id[, tumor]`."""

    type: Literal["nifti"] = "nifti"
    name: str
    root: Location
    manifest: str = "manifest.csv"
    percentiles: tuple[float, float] = (0.5, 99.5)


Source = Annotated[
    DicomSource | DemoSource | ImageFolderSource | NiftiSource, Field(discriminator="type")
]


class Preprocessing(_Strict):
    """What every stored slice goes through after decoding, for every source alike.

    The defaults store slices as read (windowed, letterboxed). Cohorts assembled from several
    archives need more: `crop_foreground` removes the background and letterbox bars whose extent
    depends on the source's image size, `intensity` standardises each image so brightness does not
    encode the scanner. Done here, once, so every model (the YOLO export too) reads the same
    pixels at training and at inference.
    """

    crop_foreground: bool = False
    foreground_threshold: float = Field(0.1, gt=0.0, lt=1.0)
    crop_margin: float = Field(0.02, ge=0.0, le=0.5)
    intensity: Literal["window", "percentile", "zscore"] = "window"
    percentiles: tuple[float, float] = (1.0, 99.0)
    zscore_clip: float = Field(3.0, gt=0.0)

    @field_validator("percentiles")
    @classmethod
    def _ordered(cls, percentiles: tuple[float, float]) -> tuple[float, float]:
        low, high = percentiles
        if not 0.0 <= low < high <= 100.0:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles}")
        return percentiles


class IngestionParams(_Strict):
    sources: list[Source] = Field(min_length=1)
    image_size: int = Field(128, ge=16, le=4096)
    preprocessing: Preprocessing = Field(default_factory=Preprocessing)
    workers: int | Literal["auto"] = "auto"
    chunk_size: int = Field(32, ge=1)
    max_bad_fraction: float = Field(0.1, ge=0.0, le=1.0)
    # Radiographs: the multi-label vocabulary (slice table columns `finding_<snake_case name>`),
    # the manifest spellings of "no finding" and of "not labelled" (rows quarantined).
    findings: list[str] = []
    no_finding: list[str] = ["No Finding"]
    unlabelled: list[str] = []
    # Views kept (others quarantined, e.g. a lateral LL where frontal is wanted); images without
    # a view (MR, CT, NIfTI) are not affected. null keeps every view.
    views: list[str] | None = ["PA", "AP"]
    # Shorter side, in source pixels, below which an image is quarantined as too small.
    min_image_size: int = Field(1, ge=1)
    # The quarantine report names files (identifying): local only unless asked for.
    log_quarantine_report: bool = False

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, sources: list[Source]) -> list[Source]:
        names = [source.name for source in sources]
        duplicated = sorted({name for name in names if names.count(name) > 1})
        if duplicated:
            raise ValueError(f"source names must be unique, repeated: {duplicated}")
        return sources

    def vocabulary(self) -> Vocabulary:
        return Vocabulary(tuple(self.findings), tuple(self.no_finding), tuple(self.unlabelled))

    @model_validator(mode="after")
    def _findings_configured(self) -> Self:
        self.vocabulary()  # distinct names
        needing = [
            source.name
            for source in self.sources
            if (isinstance(source, ImageFolderSource) and source.has_findings)
            or (isinstance(source, DicomSource) and source.findings_csv is not None)
        ]
        if needing and not self.findings:
            raise ValueError(
                f"source(s) {needing} carry findings but ingestion.findings lists none; list "
                "the findings to keep (e.g. NIH's Atelectasis, Cardiomegaly, ...)"
            )
        return self

    @property
    def uses_demo(self) -> bool:
        return any(isinstance(source, DemoSource) for source in self.sources)

    @property
    def patient_disjoint(self) -> bool:
        """False when a source splits image by image (`unit: image`): tagged on the run."""
        return not any(
            isinstance(source, ImageFolderSource) and source.unit == "image"
            for source in self.sources
        )

    @property
    def patient_level_sources(self) -> dict[str, bool]:
        """Per source: whether its units are patients. An image folder without a patient column
        splits by groups (e.g. folds) or single images, on which patient-level (PTP) metrics
        mean nothing."""
        levels: dict[str, bool] = {}
        for source in self.sources:
            reported = getattr(source, "archive", None) or source.name
            patients = not isinstance(source, ImageFolderSource) or bool(source.patient_column)
            levels[reported] = levels.get(reported, True) and patients
        return levels

    def worker_count(self) -> int:
        return (os.cpu_count() or 1) if self.workers == "auto" else int(self.workers)
