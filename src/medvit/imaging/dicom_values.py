"""Reading the few DICOM values ingestion needs straight from the parsed bytes.

pydicom turns each element into a Python value on first access (hooks, validation, a `DSfloat`
or `UID` object), about 10 µs per element, and `Dataset.pixel_array` reads some fifteen of them
and sets up a decoder: together more than parsing the whole file. For the identifiers, geometry
and window tags (plain ASCII numbers and UIDs) and for uncompressed little-endian monochrome
pixels, the raw bytes give the same values for a fraction of that (see `benchmarks/ingestion.py`).
Anything else (compressed syntaxes, colour, sequences, text in a character set) stays with
pydicom.
"""

from __future__ import annotations

import numpy as np
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag, Tag
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

_NATIVE_SYNTAXES = {ExplicitVRLittleEndian, ImplicitVRLittleEndian}

SAMPLES_PER_PIXEL = Tag("SamplesPerPixel")
NUMBER_OF_FRAMES = Tag("NumberOfFrames")
ROWS, COLUMNS = Tag("Rows"), Tag("Columns")
BITS_ALLOCATED, BITS_STORED = Tag("BitsAllocated"), Tag("BitsStored")
PIXEL_REPRESENTATION = Tag("PixelRepresentation")
PIXEL_DATA = Tag("PixelData")


def text(ds: Dataset, tag: BaseTag) -> str | None:
    """An ASCII element (UI, IS, DS, CS) as stored, backslash-separated when multi-valued."""
    element = ds.get_item(tag)
    value = None if element is None else element.value
    if value is None:
        return None
    if isinstance(element, RawDataElement):
        value = value.decode("ascii", "replace").strip(" \x00")
    elif isinstance(value, MultiValue):
        value = "\\".join(str(item) for item in value)
    return str(value) or None


def numbers(ds: Dataset, tag: BaseTag) -> list[float]:
    """A DS/IS element as floats; empty where absent."""
    value = text(ds, tag)
    return [] if value is None else [float(item) for item in value.split("\\")]


def unsigned(ds: Dataset, tag: BaseTag) -> int | None:
    """A US element (Rows, BitsAllocated...)."""
    element = ds.get_item(tag)
    if element is None or element.value is None:
        return None
    if isinstance(element, RawDataElement):
        order = "little" if element.is_little_endian else "big"
        return int.from_bytes(element.value[:2], order) if len(element.value) >= 2 else None
    return int(element.value)


def native_pixels(ds: Dataset) -> np.ndarray | None:
    """Frames x rows x cols stored values of an uncompressed little-endian monochrome file.

    Same array as pydicom's decoder, unused high bits masked (or sign-extended) as it does;
    None where the file is anything else, so the caller falls back to `pixel_array`. Raises
    ValueError when the pixel data is shorter than the image it declares.
    """
    if ds.file_meta.get("TransferSyntaxUID") not in _NATIVE_SYNTAXES:
        return None
    samples, rows, cols = (unsigned(ds, tag) for tag in (SAMPLES_PER_PIXEL, ROWS, COLUMNS))
    bits, stored = unsigned(ds, BITS_ALLOCATED), unsigned(ds, BITS_STORED)
    signed = unsigned(ds, PIXEL_REPRESENTATION)
    frames = text(ds, NUMBER_OF_FRAMES) or "1"
    data = ds.get_item(PIXEL_DATA)
    if (
        not frames.isdigit()
        or samples != 1
        or bits not in (8, 16, 32)
        or signed not in (0, 1)
        or not stored
        or stored > bits
        or not rows
        or not cols
        or int(frames) < 1
        or data is None
        or not isinstance(data.value, bytes)
    ):
        return None
    dtype = np.dtype(f"<{'i' if signed else 'u'}{bits // 8}")
    shape = (int(frames), rows, cols)
    pixels = np.frombuffer(data.value, dtype, count=int(np.prod(shape))).reshape(shape)
    if stored < bits:
        shift = bits - stored
        pixels = np.right_shift(np.left_shift(pixels, shift), shift)
    return pixels
