"""Reader for NIfTI volumes with mask volumes, one volume per unit of work.

Volumes are brought to the closest canonical (RAS+) orientation so the third axis always runs
inferior to superior, whatever the scanner wrote; boxes are derived from the mask's connected
components in each axial slice.
"""

from __future__ import annotations

from typing import Any

import nibabel as nib
import numpy as np

from medvit.imaging.intensity import window_percentile
from medvit.ingestion.config import NiftiSource
from medvit.ingestion.dicom_tree import read_csv
from medvit.ingestion.pseudonym import Pseudonymiser
from medvit.ingestion.units import Rejected, UnitResult, mask_boxes


def units(source: NiftiSource, chunk_size: int) -> list[list[dict[str, Any]]]:
    frame = read_csv(source.root / source.manifest, ["image", "patient_id"])
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    return [[row] for row in rows]


def paths(_: NiftiSource, unit: list[dict[str, Any]]) -> list[str]:
    return [str(row["image"]) for row in unit]


# NIfTI's spatial units code; "unknown" is read as millimetres, the format's convention.
_MM_PER_UNIT = {"mm": 1.0, "unknown": 1.0, "meter": 1000.0, "micron": 0.001}


def _zooms_mm(image: nib.Nifti1Image) -> tuple[float, float, float] | None:
    """Voxel size along the canonical (x, y, z) axes in mm; None where the header's units are
    not spatial or a size is not positive."""
    unit = image.header.get_xyzt_units()[0]
    zooms = [float(zoom) * _MM_PER_UNIT.get(unit, np.nan) for zoom in image.header.get_zooms()[:3]]
    if len(zooms) != 3 or not all(np.isfinite(zooms)) or min(zooms) <= 0:
        return None
    return zooms[0], zooms[1], zooms[2]


def _volume(path: str) -> tuple[np.ndarray, tuple[float, float, float] | None]:
    """The canonical volume and its voxel size in mm (None where unknown)."""
    try:
        image = nib.as_closest_canonical(nib.load(path))
        data = np.asarray(image.dataobj, dtype=np.float32)
    except (OSError, ValueError, EOFError, nib.filebasedimages.ImageFileError) as error:
        message = str(error).replace(path, "the file")  # a mask's path is not the row's key
        raise Rejected(
            "corrupt_image", f"unreadable NIfTI ({type(error).__name__}: {message})"
        ) from error
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise Rejected("unsupported", f"{data.ndim}-D image; only 3-D volumes are supported")
    return data, _zooms_mm(image)


def _axial(volume: np.ndarray, z: int) -> np.ndarray:
    """Radiological display of an RAS+ slice: anterior at the top."""
    return np.ascontiguousarray(np.rot90(volume[:, :, z]))


def _ingest_volume(
    source: NiftiSource, row: dict[str, Any], result: UnitResult, pseudo: Pseudonymiser
) -> None:
    image_path = source.root / str(row["image"])
    if not image_path.is_file():
        raise Rejected("missing_image", "manifest names a volume that does not exist")
    volume, zooms = _volume(str(image_path))
    mask = None
    if row.get("mask"):
        mask_path = source.root / str(row["mask"])
        if not mask_path.is_file():
            raise Rejected("missing_mask", "its mask volume does not exist")
        mask, _ = _volume(str(mask_path))
        if mask.shape != volume.shape:
            raise Rejected(
                "bad_annotation", f"mask shape {mask.shape} != image shape {volume.shape}"
            )
    windowed = window_percentile(volume, *source.percentiles)
    raw_patient = str(row["patient_id"])
    record = {
        "source": source.name,
        "path": str(row["image"]),
        "patient_id": pseudo("patient", raw_patient),
        "study_id": pseudo("study", f"{raw_patient}/{row['image']}"),
        "series_id": pseudo("series", f"{raw_patient}/{row['image']}"),
        "instance_number": None,
        "patient_tumor": int(float(row["tumor"])) if row.get("tumor") is not None else None,
        "slice_thickness_mm": None if zooms is None else zooms[2],
    }
    # An axial slice shows y down the rows and x across the columns (`_axial`).
    spacing = None if zooms is None else (zooms[1], zooms[0])
    for z in range(volume.shape[2]):
        mask_slice = _axial(mask, z) if mask is not None else None
        has_tumor = mask_slice is not None and bool(mask_slice.any())
        result.add_slice(
            {
                **record,
                "frame": z,
                # in mm where the header gives the size (the table measures slice steps from
                # positions); without it the frame number orders the slices
                "position": None if zooms is None else z * zooms[2],
                "instance_id": pseudo("instance", f"{row['image']}/{z}"),
            },
            _axial(windowed, z),
            mask_boxes(mask_slice) if has_tumor else [],
            mask_slice if has_tumor else None,
            spacing,
        )


def process(
    source: NiftiSource,
    _: None,
    rows: list[dict[str, Any]],
    pseudo: Pseudonymiser,
    result: UnitResult,
) -> UnitResult:
    """Fill `result` (empty, set up with the store's size and preprocessing)."""
    for row in rows:
        try:
            _ingest_volume(source, row, result, pseudo)
        except Rejected as rejected:
            result.reject(str(row["image"]), rejected.kind, str(rejected))
    return result
