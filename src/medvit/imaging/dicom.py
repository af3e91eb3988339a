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
from pydicom.tag import Tag

from medvit.imaging.dicom_values import (
    COLUMNS,
    ROWS,
    SAMPLES_PER_PIXEL,
    native_pixels,
    numbers,
    text,
    unsigned,
)
from medvit.imaging.intensity import to_uint8, window_linear, window_percentile

_STUDY_UID, _SERIES_UID = Tag("StudyInstanceUID"), Tag("SeriesInstanceUID")
_SOP_UID, _INSTANCE_NUMBER = Tag("SOPInstanceUID"), Tag("InstanceNumber")
_ORIENTATION, _POSITION = Tag("ImageOrientationPatient"), Tag("ImagePositionPatient")
_WINDOW_CENTER, _WINDOW_WIDTH = Tag("WindowCenter"), Tag("WindowWidth")
_PHOTOMETRIC = Tag("PhotometricInterpretation")


class DicomProblem(Exception):
    """A file that cannot become slices; `kind` groups reasons for counting, the text explains."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind


@dataclass(frozen=True)
class DicomFrames:
    """What ingestion needs of one file: identifiers, geometry and windowed 8-bit frames."""

    patient_id: str
    study_uid: str
    series_uid: str
    sop_uid: str
    instance_number: int | None
    positions: list[float | None]
    frames: np.ndarray  # (n_frames, rows, cols) uint8, 0 = bottom and 255 = top of the window


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
    try:
        pixels = native_pixels(ds)
        if pixels is None:
            pixels = ds.pixel_array
    except (NotImplementedError, RuntimeError) as error:
        syntax = ds.file_meta.get("TransferSyntaxUID", "unknown")
        raise DicomProblem(
            "undecodable", f"undecodable transfer syntax {syntax} ({error})"
        ) from error
    except (ValueError, EOFError, AttributeError, TypeError) as error:
        raise DicomProblem("truncated", f"pixel data truncated or corrupt ({error})") from error
    if (unsigned(ds, SAMPLES_PER_PIXEL) or 1) != 1:
        raise DicomProblem(
            "unsupported", f"colour image ({ds.get('PhotometricInterpretation')}) is not MR/CT"
        )
    return pixels.reshape(-1, unsigned(ds, ROWS), unsigned(ds, COLUMNS))


def _linear_window(ds: Dataset, mode: str) -> tuple[float, float] | None:
    """(center, width) from the tags, or None where the window comes from the pixels."""
    centers, widths = numbers(ds, _WINDOW_CENTER), numbers(ds, _WINDOW_WIDTH)
    if mode == "tags" and not (centers and widths):
        raise DicomProblem(
            "no_window", "window: tags requested but WindowCenter/WindowWidth are absent"
        )
    if mode != "percentile" and centers and widths and widths[0] > 0:
        return centers[0], widths[0]
    return None


def _to_8bit(ds: Dataset, raw: np.ndarray, mode: str) -> np.ndarray:
    """Modality LUT, window, MONOCHROME1 inversion and 8-bit cast of every frame.

    With a window from the tags every step maps each stored value on its own, so for integer
    pixels the chain runs once per value between the minimum and the maximum (a lookup table)
    instead of once per pixel: the same bytes for a fraction of the float work. A percentile
    window depends on the whole frame and runs on the pixels.
    """
    invert = text(ds, _PHOTOMETRIC) == "MONOCHROME1"
    window = _linear_window(ds, mode)
    if window is None:
        values = _rescaled(ds, raw)
        return _unit_to_8bit(np.stack([window_percentile(frame) for frame in values]), invert)

    def chain(stored: np.ndarray) -> np.ndarray:
        return _unit_to_8bit(window_linear(_rescaled(ds, stored), *window), invert)

    if raw.dtype.kind in "iu" and raw.size:
        low, high = int(raw.min()), int(raw.max())
        if high - low < raw.size:
            table = chain(np.arange(low, high + 1).astype(raw.dtype))
            return table.take(np.subtract(raw, low, dtype=np.intp))
    return chain(raw)


def _rescaled(ds: Dataset, stored: np.ndarray) -> np.ndarray:
    return np.asarray(apply_modality_lut(stored, ds), dtype=np.float32)


def _unit_to_8bit(unit: np.ndarray, invert: bool) -> np.ndarray:
    return to_uint8(1.0 - unit if invert else unit)


def _cross(a: list[float], b: list[float]) -> list[float]:
    """Plain floats: numpy's cross product costs more than this whole function for 3 values."""
    return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]


def _along(normal: list[float], position: list[float]) -> float:
    return normal[0] * position[0] + normal[1] * position[1] + normal[2] * position[2]


def _normal(orientation: list[float]) -> list[float] | None:
    if len(orientation) != 6:
        return None
    return _cross([float(v) for v in orientation[:3]], [float(v) for v in orientation[3:]])


def _positions(ds: Dataset, n_frames: int) -> list[float | None]:
    """Position of each frame along the slice normal; None where the file does not say."""
    normal = _normal(numbers(ds, _ORIENTATION))
    if n_frames > 1 and "PerFrameFunctionalGroupsSequence" in ds:
        per_frame = ds.PerFrameFunctionalGroupsSequence
        if len(per_frame) == n_frames:
            shared = ds.get("SharedFunctionalGroupsSequence")
            if normal is None and shared and "PlaneOrientationSequence" in shared[0]:
                normal = _normal(shared[0].PlaneOrientationSequence[0].ImageOrientationPatient)
            positions: list[float | None] = []
            for item in per_frame:
                plane = item.get("PlanePositionSequence")
                if normal is None or not plane:
                    positions.append(None)
                else:
                    position = [float(v) for v in plane[0].ImagePositionPatient]
                    positions.append(_along(normal, position))
            return positions
    position = numbers(ds, _POSITION)
    if normal is None or len(position) != 3 or n_frames != 1:
        return [None] * n_frames
    return [_along(normal, position)]


def decode_dicom(path: Path, window: str = "auto") -> DicomFrames:
    """Read, rescale (modality LUT), window, for MONOCHROME1 invert, and cast one file to 8 bits."""
    ds = read_dicom(path)
    raw = _decode(ds)
    instance = text(ds, _INSTANCE_NUMBER)
    return DicomFrames(
        patient_id=str(ds.PatientID).strip(),
        study_uid=text(ds, _STUDY_UID) or "",
        series_uid=text(ds, _SERIES_UID) or "",
        sop_uid=text(ds, _SOP_UID) or "",
        instance_number=int(float(instance)) if instance is not None else None,
        positions=_positions(ds, raw.shape[0]),
        frames=_to_8bit(ds, raw, window),
    )
