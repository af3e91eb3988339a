"""The fast DICOM paths give exactly what the textbook pydicom calls give."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.tag import Tag
from pydicom.uid import ImplicitVRLittleEndian

from medvit.imaging.dicom import DicomProblem, decode_dicom
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


def _with_voi(ds: pydicom.Dataset, case: str) -> pydicom.Dataset:
    """A VOI LUT module of each kind pydicom's `apply_voi_lut` handles, on a real image.

    No file bundled with pydicom carries a VOI LUT Sequence or a VOILUTFunction (its `vlut_04.dcm`
    is downloaded on demand), so the module is added to MR_small / CT_small as a scanner would.
    """
    values = np.asarray(apply_modality_lut(ds.pixel_array, ds))
    first = int(values.min()) + 100  # values below the first mapped one take entry 0
    entries = int(values.max() - values.min()) - 300  # values past the last take the last
    if case.startswith("lut"):
        bits = 8 if case == "lut_8_bit" else 16
        ramp = np.linspace(0.0, 1.0, entries) ** 0.5 * (2**bits - 1)
        item = pydicom.Dataset()
        # US, or SS where the first mapped value is negative (PS3.3 C.11.2.1.1)
        item.add_new(Tag("LUTDescriptor"), "SS" if first < 0 else "US", [entries, first, bits])
        if case == "lut_ow":
            item.add_new(Tag("LUTData"), "OW", ramp.astype("<u2").tobytes())
        else:
            item.add_new(Tag("LUTData"), "US", ramp.astype(int).tolist())
        ds.VOILUTSequence = [item]
        ds.WindowCenter, ds.WindowWidth = 10.0, 5.0  # ignored: the LUT wins, as in pydicom
        return ds
    function, width = {
        "linear": ("LINEAR", 700.0),
        "linear_width_1": ("LINEAR", 1.0),
        "linear_exact": ("LINEAR_EXACT", 700.5),
        "sigmoid": ("SIGMOID", 400.0),
    }[case]
    ds.WindowCenter, ds.WindowWidth = float(np.median(values)), width
    ds.VOILUTFunction = function
    return ds


def _pydicom_unit(ds: pydicom.Dataset) -> np.ndarray:
    """pydicom's `apply_voi_lut` output mapped to [0, 1]: LUT entries over their bit depth, a
    window over its output range (found by windowing values far outside it)."""
    values = apply_modality_lut(ds.pixel_array, ds)
    if "VOILUTSequence" in ds:
        bits = ds.VOILUTSequence[0].LUTDescriptor[2]
        return apply_voi_lut(values, ds) / (2**bits - 1)
    y_min, y_max = apply_voi_lut(np.array([-1e9, 1e9]), ds)
    return (apply_voi_lut(values, ds) - y_min) / (y_max - y_min)


@pytest.mark.filterwarnings("ignore:overflow encountered in exp", "ignore:Applying a VOI LUT")
@pytest.mark.parametrize(
    "case",
    ["lut_16_bit", "lut_8_bit", "lut_ow", "linear", "linear_width_1", "linear_exact", "sigmoid"],
)
@pytest.mark.parametrize("name", ["MR_small.dcm", "CT_small.dcm"])
def test_voi_lut_module_follows_pydicom(tmp_path, testdata, name, case):
    _with_voi(pydicom.dcmread(testdata(name)), case).save_as(tmp_path / "v.dcm")
    frames = decode_dicom(tmp_path / "v.dcm", "tags").frames
    expected = to_uint8(_pydicom_unit(pydicom.dcmread(tmp_path / "v.dcm")))
    assert len(np.unique(expected)) > 1  # the case exercises the function, not a constant
    np.testing.assert_array_equal(frames[0], expected)


def test_voi_lut_inverts_monochrome1(tmp_path, testdata):
    ds = _with_voi(pydicom.dcmread(testdata("MR_small.dcm")), "lut_16_bit")
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(tmp_path / "m1.dcm")
    frames = decode_dicom(tmp_path / "m1.dcm", "tags").frames
    expected = to_uint8(1.0 - _pydicom_unit(pydicom.dcmread(tmp_path / "m1.dcm")))
    np.testing.assert_array_equal(frames[0], expected)


@pytest.mark.parametrize(
    ("function", "width", "reason"),
    [("GAMMA", 400.0, "VOILUTFunction 'GAMMA'"), ("LINEAR", 0.5, "below 1")],
)
def test_unusable_window_is_named_or_left_to_percentiles(
    tmp_path, testdata, function, width, reason
):
    ds = pydicom.dcmread(testdata("MR_small.dcm"))
    ds.WindowWidth, ds.VOILUTFunction = width, function
    ds.save_as(tmp_path / "bad.dcm")
    with pytest.raises(DicomProblem, match=f"window: tags requested but .*{reason}"):
        decode_dicom(tmp_path / "bad.dcm", "tags")
    auto = decode_dicom(tmp_path / "bad.dcm", "auto").frames
    percentile = decode_dicom(tmp_path / "bad.dcm", "percentile").frames
    np.testing.assert_array_equal(auto, percentile)
