"""The fast DICOM paths give exactly what the textbook pydicom calls give."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_modality_lut
from pydicom.tag import Tag
from pydicom.uid import ImplicitVRLittleEndian

from medvit.imaging.dicom import decode_dicom
from medvit.imaging.dicom_values import native_pixels, numbers, text, unsigned
from medvit.imaging.intensity import to_uint8, window_linear


def _variant(mr_small: pydicom.Dataset, name: str) -> pydicom.Dataset:
    """MR_small rewritten as another uncompressed layout, high bits filled with garbage."""
    ds = copy.deepcopy(mr_small)
    values = mr_small.pixel_array.astype(np.int32)
    if name == "unsigned_12_bit":
        ds.PixelRepresentation, ds.BitsStored, ds.HighBit = 0, 12, 11
        ds.PixelData = ((values & 0x0FFF) | 0xA000).astype(np.uint16).tobytes()
    elif name == "signed_12_bit":
        ds.BitsStored, ds.HighBit = 12, 11
        ds.PixelData = (((values - 1000) & 0x0FFF) | 0x5000).astype(np.uint16).tobytes()
    elif name == "unsigned_8_bit":
        ds.PixelRepresentation, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 0, 8, 8, 7
        ds.PixelData = (values // 10).astype(np.uint8).tobytes()
    elif name == "implicit_vr":
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    elif name == "three_frames":
        ds.NumberOfFrames = 3
        ds.PixelData = np.stack([values, values + 1, values + 2]).astype(np.int16).tobytes()
    return ds


@pytest.mark.parametrize(
    "name",
    ["as_is", "unsigned_12_bit", "signed_12_bit", "unsigned_8_bit", "implicit_vr", "three_frames"],
)
def test_native_pixels_equal_pydicom_decoder(tmp_path, mr_small, name):
    _variant(mr_small, name).save_as(tmp_path / "f.dcm", enforce_file_format=True)
    fast = native_pixels(pydicom.dcmread(tmp_path / "f.dcm"))
    reference = pydicom.dcmread(tmp_path / "f.dcm").pixel_array
    assert fast is not None and fast.dtype == reference.dtype
    np.testing.assert_array_equal(fast.reshape(reference.shape), reference)


def test_compressed_pixels_are_left_to_pydicom(testdata):
    assert native_pixels(pydicom.dcmread(testdata("MR_small_RLE.dcm"))) is None


def _textbook(ds: pydicom.Dataset, center: float, width: float) -> np.ndarray:
    values = np.asarray(apply_modality_lut(ds.pixel_array, ds), dtype=np.float32)
    unit = window_linear(values, center, width)
    return to_uint8(1.0 - unit if ds.PhotometricInterpretation == "MONOCHROME1" else unit)


@pytest.mark.parametrize("name", ["MR_small.dcm", "CT_small.dcm"])
@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
@pytest.mark.parametrize("window", [(600.0, 1200.0), (-20.5, 81.0)])
def test_lookup_table_window_equals_per_pixel_chain(tmp_path, testdata, name, photometric, window):
    ds = pydicom.dcmread(testdata(name))
    ds.PhotometricInterpretation = photometric
    ds.WindowCenter, ds.WindowWidth = window
    ds.RescaleSlope, ds.RescaleIntercept = 2, -100
    ds.save_as(tmp_path / "w.dcm")
    frames = decode_dicom(tmp_path / "w.dcm", "tags").frames
    np.testing.assert_array_equal(
        frames[0], _textbook(pydicom.dcmread(tmp_path / "w.dcm"), *window)
    )


def test_raw_values_equal_pydicom_values(testdata):
    path = testdata("CT_small.dcm")
    for ds in (pydicom.dcmread(path), _converted(pydicom.dcmread(path))):
        assert text(ds, Tag("SOPInstanceUID")) == str(pydicom.dcmread(path).SOPInstanceUID)
        assert numbers(ds, Tag("ImageOrientationPatient")) == [
            float(v) for v in pydicom.dcmread(path).ImageOrientationPatient
        ]
        assert unsigned(ds, Tag("Rows")) == pydicom.dcmread(path).Rows
        assert numbers(ds, Tag("WindowCenter")) == [] and text(ds, Tag("NumberOfFrames")) is None


def _converted(ds: pydicom.Dataset) -> pydicom.Dataset:
    """The same dataset after pydicom has converted the elements (e.g. by `pixel_array`)."""
    for keyword in ("SOPInstanceUID", "ImageOrientationPatient", "Rows"):
        getattr(ds, keyword)
    return ds


def test_decoded_geometry_and_ids_match_the_tags(mr_small, tmp_path: Path):
    mr_small.save_as(tmp_path / "m.dcm")
    decoded = decode_dicom(tmp_path / "m.dcm")
    normal = np.cross(
        np.asarray(mr_small.ImageOrientationPatient[:3], float),
        np.asarray(mr_small.ImageOrientationPatient[3:], float),
    )
    expected = float(np.dot(normal, np.asarray(mr_small.ImagePositionPatient, float)))
    assert decoded.positions == [pytest.approx(expected)]
    assert decoded.sop_uid == mr_small.SOPInstanceUID
    assert decoded.instance_number == int(mr_small.InstanceNumber)
