"""Decoding one DICOM file into frames and geometry, with every failure turned into a reason.

Readers never let a pydicom exception escape: a clinical tree always holds some broken or foreign
files, and the run must go on and list them. `DicomProblem` carries the reason that lands in the
quarantine report.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut

from medvit.imaging.intensity import window_linear, window_percentile


class DicomProblem(Exception):
    """A file that cannot become slices; `kind` groups reasons for counting, the text explains."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind


@dataclass(frozen=True)
class DicomFrames:
    """What ingestion needs of one file: identifiers, geometry and windowed frames in [0, 1]."""

    patient_id: str
    study_uid: str
    series_uid: str
    sop_uid: str
    instance_number: int | None
    positions: list[float | None]
    frames: np.ndarray  # (n_frames, rows, cols) float32 in [0, 1]


def read_dicom(path: Path) -> Dataset:
    try:
        ds = pydicom.dcmread(path)
    except InvalidDicomError as error:
        raise DicomProblem("not_dicom", f"not a DICOM file ({error})") from error
    except (EOFError, OSError, ValueError, KeyError, TypeError) as error:
        raise DicomProblem(
            "truncated", f"unreadable or truncated DICOM ({type(error).__name__}: {error})"
        ) from error
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        raise DicomProblem("no_pixel_data", "no pixel data (not an image object)")
    if not str(ds.get("PatientID", "")).strip():
        raise DicomProblem("missing_patient_id", "missing PatientID")
    return ds


def _decode(ds: Dataset) -> np.ndarray:
    syntax = ds.file_meta.get("TransferSyntaxUID", "unknown")
    try:
        pixels = ds.pixel_array
    except (NotImplementedError, RuntimeError) as error:
        raise DicomProblem(
            "undecodable", f"undecodable transfer syntax {syntax} ({error})"
        ) from error
    except (ValueError, EOFError, AttributeError, TypeError) as error:
        raise DicomProblem("truncated", f"pixel data truncated or corrupt ({error})") from error
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        raise DicomProblem(
            "unsupported", f"colour image ({ds.get('PhotometricInterpretation')}) is not MR/CT"
        )
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    return pixels.reshape(frames, int(ds.Rows), int(ds.Columns))


def _first(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, pydicom.multival.MultiValue):
        return float(value[0]) if len(value) else None
    return float(value)


def _window(ds: Dataset, values: np.ndarray, mode: str) -> np.ndarray:
    center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
    if mode == "tags" and (center is None or width is None):
        raise DicomProblem(
            "no_window", "window: tags requested but WindowCenter/WindowWidth are absent"
        )
    if mode != "percentile" and center is not None and width is not None and width > 0:
        out = window_linear(values, center, width)
    else:
        out = np.stack([window_percentile(frame) for frame in values])
    if ds.get("PhotometricInterpretation") == "MONOCHROME1":
        out = 1.0 - out
    return out


def _normal(ds: Dataset) -> np.ndarray | None:
    orientation = ds.get("ImageOrientationPatient")
    if orientation is None or len(orientation) != 6:
        return None
    row, col = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
    return np.cross(row, col)


def _positions(ds: Dataset, n_frames: int) -> list[float | None]:
    """Position of each frame along the slice normal; None where the file does not say."""
    normal = _normal(ds)
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if n_frames > 1 and per_frame is not None and len(per_frame) == n_frames:
        shared = ds.get("SharedFunctionalGroupsSequence")
        if normal is None and shared and "PlaneOrientationSequence" in shared[0]:
            iop = shared[0].PlaneOrientationSequence[0].ImageOrientationPatient
            normal = np.cross(np.asarray(iop[:3], float), np.asarray(iop[3:], float))
        positions: list[float | None] = []
        for item in per_frame:
            plane = item.get("PlanePositionSequence")
            if normal is None or not plane:
                positions.append(None)
            else:
                positions.append(float(np.dot(normal, np.asarray(plane[0].ImagePositionPatient))))
        return positions
    position = ds.get("ImagePositionPatient")
    if normal is None or position is None or len(position) != 3:
        return [None] * n_frames
    if n_frames == 1:
        return [float(np.dot(normal, np.asarray(position, float)))]
    return [None] * n_frames


def decode_dicom(path: Path, window: str = "auto") -> DicomFrames:
    """Read, rescale (modality LUT), window and, for MONOCHROME1, invert one file."""
    ds = read_dicom(path)
    raw = _decode(ds)
    values = np.asarray(apply_modality_lut(raw, ds), dtype=np.float32)
    instance = ds.get("InstanceNumber")
    return DicomFrames(
        patient_id=str(ds.PatientID).strip(),
        study_uid=str(ds.get("StudyInstanceUID", "")),
        series_uid=str(ds.get("SeriesInstanceUID", "")),
        sop_uid=str(ds.get("SOPInstanceUID", "")),
        instance_number=int(instance) if instance not in (None, "") else None,
        positions=_positions(ds, raw.shape[0]),
        frames=_window(ds, values, window),
    )
