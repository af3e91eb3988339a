"""Decoding one DICOM file into frames and geometry, with every failure turned into a reason.

Readers never let a pydicom exception escape: a clinical tree always holds some broken or foreign
files, and the run must go on and list them. `DicomProblem` carries the reason that lands in the
quarantine report.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi
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
from medvit.imaging.intensity import (
    VOI_FUNCTIONS,
    to_uint8,
    voi_window_problem,
    window_percentile,
)

_STUDY_UID, _SERIES_UID = Tag("StudyInstanceUID"), Tag("SeriesInstanceUID")
_SOP_UID, _INSTANCE_NUMBER = Tag("SOPInstanceUID"), Tag("InstanceNumber")
_ORIENTATION, _POSITION = Tag("ImageOrientationPatient"), Tag("ImagePositionPatient")
_WINDOW_CENTER, _WINDOW_WIDTH = Tag("WindowCenter"), Tag("WindowWidth")
_VOI_FUNCTION, _VOI_LUT = Tag("VOILUTFunction"), Tag("VOILUTSequence")
_PHOTOMETRIC = Tag("PhotometricInterpretation")
_BURNED_IN = Tag("BurnedInAnnotation")
_PIXEL_SPACING, _SLICE_THICKNESS = Tag("PixelSpacing"), Tag("SliceThickness")
_SPACING_BETWEEN_SLICES = Tag("SpacingBetweenSlices")
_MODALITY, _VIEW = Tag("Modality"), Tag("ViewPosition")
# Projection radiography: each image is its own view of the patient, not a slice of a volume.
PROJECTION_MODALITIES = frozenset({"CR", "DX", "MG"})


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
    burned_in: bool  # BurnedInAnnotation YES: identifying text may be part of the pixels
    modality: str
    view: str | None  # ViewPosition (PA, AP, LL...) of a radiograph
    pixel_spacing: tuple[float, float] | None = None  # (row, column) mm of the source pixels
    slice_spacing: float | None = None  # SpacingBetweenSlices, else SliceThickness (mm)

    @property
    def projection(self) -> bool:
        return self.modality in PROJECTION_MODALITIES


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


VoiTransform = Callable[[np.ndarray], np.ndarray]


def _voi_lut(ds: Dataset) -> VoiTransform | None:
    """The first VOI LUT Sequence item as a transform to [0, 1], or None where there is none.

    pydicom's `apply_voi` does the lookup (its clipping of values below the first mapped value
    and past the last entry, its reading of US or OW LUT data); the entries span
    0 .. 2^bits - 1 of the descriptor's bit depth, which maps to [0, 1]. Modality values are
    floored to integers first, as pydicom's cast to an index does, without its float warning.
    """
    sequence = ds.get(_VOI_LUT)
    item = sequence[0] if sequence else None
    if item is None or item.get("LUTDescriptor") is None or item.get("LUTData") is None:
        return None
    bits = int(item.LUTDescriptor[2])
    if bits != 8 and not 10 <= bits <= 16:
        raise DicomProblem(
            "no_window", f"the VOI LUT has {bits} bits per entry (DICOM allows 8 or 10-16)"
        )
    top = float(2**bits - 1)

    def lookup(values: np.ndarray) -> np.ndarray:
        try:
            entries = apply_voi(np.floor(values).astype(np.int64), ds)
        except (ValueError, TypeError, IndexError, AttributeError, struct.error) as error:
            raise DicomProblem("no_window", f"unreadable VOI LUT ({error})") from error
        return (entries / top).astype(np.float32)

    return lookup


def _tag_voi(ds: Dataset) -> VoiTransform:
    """The display transform the file's VOI LUT module asks for, as pydicom's `apply_voi_lut`.

    A VOI LUT Sequence wins over Window Center/Width (pydicom's `prefer_lut`); the window's shape
    is VOILUTFunction's (LINEAR by default, LINEAR_EXACT, SIGMOID); the first of several views is
    used. Raises DicomProblem saying what is missing or invalid.
    """
    lut = _voi_lut(ds)
    if lut is not None:
        return lut
    centers, widths = numbers(ds, _WINDOW_CENTER), numbers(ds, _WINDOW_WIDTH)
    if not (centers and widths):
        raise DicomProblem(
            "no_window", "neither a VOI LUT Sequence nor WindowCenter/WindowWidth is present"
        )
    function = (text(ds, _VOI_FUNCTION) or "LINEAR").upper()
    problem = voi_window_problem(function, widths[0])
    if problem:
        raise DicomProblem("no_window", problem)
    return partial(VOI_FUNCTIONS[function], center=centers[0], width=widths[0])


def _voi(ds: Dataset, mode: str) -> VoiTransform | None:
    """The tags' transform, or None where the window comes from the pixels (percentile)."""
    if mode == "percentile":
        return None
    try:
        return _tag_voi(ds)
    except DicomProblem as problem:
        if mode == "tags":
            raise DicomProblem(problem.kind, f"window: tags requested but {problem}") from None
        return None


def _to_8bit(ds: Dataset, raw: np.ndarray, mode: str) -> np.ndarray:
    """Modality LUT, VOI (LUT or window), MONOCHROME1 inversion and 8-bit cast of every frame.

    With a VOI from the tags every step maps each stored value on its own, so for integer
    pixels the chain runs once per value between the minimum and the maximum (a lookup table)
    instead of once per pixel: the same bytes for a fraction of the float work. A percentile
    window depends on the whole frame and runs on the pixels.
    """
    invert = text(ds, _PHOTOMETRIC) == "MONOCHROME1"
    voi = _voi(ds, mode)
    if voi is None:
        values = _rescaled(ds, raw)
        return _unit_to_8bit(np.stack([window_percentile(frame) for frame in values]), invert)

    def chain(stored: np.ndarray) -> np.ndarray:
        return _unit_to_8bit(voi(_rescaled(ds, stored)), invert)

    if raw.dtype.kind in "iu" and raw.size:
        low, high = int(raw.min()), int(raw.max())
        if high - low < raw.size:
            table = chain(np.arange(low, high + 1).astype(raw.dtype))
            return table.take(np.subtract(raw, low, dtype=np.intp))
    return chain(raw)


def _rescaled(ds: Dataset, stored: np.ndarray) -> np.ndarray:
    return np.asarray(apply_modality_lut(stored, ds), dtype=np.float64)


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


def _pixel_measures(ds: Dataset) -> Dataset:
    """Where an enhanced (multi-frame) object keeps PixelSpacing and SliceThickness: the shared
    functional groups' Pixel Measures; a classic object keeps them at the top level."""
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared and "PixelMeasuresSequence" in shared[0] and _PIXEL_SPACING not in ds:
        return shared[0].PixelMeasuresSequence[0]
    return ds


def _spacing(ds: Dataset) -> tuple[tuple[float, float] | None, float | None]:
    """(row, column) pixel spacing and slice spacing in mm; None where absent or not positive.

    Spacing between slices is what a volume needs; SliceThickness stands in where a file gives
    only that (contiguous slices). Ingestion prefers the spacing of positions along the normal.
    """
    measures = _pixel_measures(ds)
    pixel = numbers(measures, _PIXEL_SPACING)
    between = numbers(ds, _SPACING_BETWEEN_SLICES) or numbers(measures, _SPACING_BETWEEN_SLICES)
    thickness = between or numbers(measures, _SLICE_THICKNESS)
    pixel_spacing = (pixel[0], pixel[1]) if len(pixel) == 2 and min(pixel) > 0 else None
    slice_spacing = abs(thickness[0]) if thickness and thickness[0] != 0 else None
    return pixel_spacing, slice_spacing


def decode_dicom(path: Path, window: str = "auto") -> DicomFrames:
    """Read, rescale (modality LUT), window, for MONOCHROME1 invert, and cast one file to 8 bits."""
    ds = read_dicom(path)
    raw = _decode(ds)
    instance = text(ds, _INSTANCE_NUMBER)
    pixel_spacing, slice_spacing = _spacing(ds)
    return DicomFrames(
        patient_id=str(ds.PatientID).strip(),
        study_uid=text(ds, _STUDY_UID) or "",
        series_uid=text(ds, _SERIES_UID) or "",
        sop_uid=text(ds, _SOP_UID) or "",
        instance_number=int(float(instance)) if instance is not None else None,
        positions=_positions(ds, raw.shape[0]),
        frames=_to_8bit(ds, raw, window),
        burned_in=(text(ds, _BURNED_IN) or "").upper() == "YES",
        pixel_spacing=pixel_spacing,
        slice_spacing=slice_spacing,
        modality=(text(ds, _MODALITY) or "").upper(),
        view=text(ds, _VIEW),
    )
