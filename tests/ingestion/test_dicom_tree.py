"""DICOM tree reader: decoding, ordering, ground truth, and every bad-input case."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.uid import generate_uid

from medvit.imaging.dicom import decode_dicom
from medvit.ingestion.config import DicomSource


def _series(
    template: pydicom.Dataset,
    folder: Path,
    n: int,
    *,
    patient: str = "MRN-TEST-1",
    order: list[int] | None = None,
) -> list[pydicom.Dataset]:
    """n slices of one series, written in `order` with positions 5 mm apart along z."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid, study_uid = generate_uid(), generate_uid()
    written = []
    for file_index, k in enumerate(order or range(n)):
        ds = copy.deepcopy(template)
        ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = patient, study_uid, series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0, 0, 5.0 * k]
        ds.InstanceNumber = 100 - k  # deliberately disagrees with anatomy
        pixels = template.pixel_array.copy()
        pixels[0, :] = k * 100  # marks the anatomical index in the top row
        ds.set_pixel_data(pixels, "MONOCHROME2", int(template.BitsStored))
        ds.save_as(folder / f"f{file_index:03d}.dcm")
        written.append(ds)
    return written


def test_lossless_compressed_syntaxes_decode_like_the_uncompressed_file(testdata):
    reference = decode_dicom(testdata("MR_small.dcm")).frames
    for name in ("MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm"):
        frames = decode_dicom(testdata(name)).frames
        np.testing.assert_array_equal(frames, reference, err_msg=name)


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("JPGExtended.dcm", (1, 1024, 256)),
        ("693_J2KI.dcm", (1, 512, 512)),
        ("rtdose_rle.dcm", (15, 10, 10)),
    ],
)
def test_lossy_and_multi_frame_compressed_files_decode(testdata, name, shape):
    frames = decode_dicom(testdata(name)).frames
    assert frames.shape == shape and frames.dtype == np.uint8 and frames.min() < frames.max()


def test_slices_sorted_along_the_normal_not_by_instance_number(tmp_path, mr_small, ingest):
    _series(mr_small, tmp_path / "a" / "deep" / "tree", 5, order=[3, 0, 4, 1, 2])
    table, report, store = ingest([DicomSource(name="t", root=tmp_path / "a")], image_size=64)
    assert report.empty and len(table) == 5
    top_rows = [int(store.images[ref][0, 10]) for ref in table.sort_values("slice_index").image_ref]
    assert top_rows == sorted(top_rows) and len(set(top_rows)) == 5


def test_rescale_and_monochrome1_inversion(tmp_path, mr_small):
    mr_small.RescaleSlope, mr_small.RescaleIntercept = 2, -100
    mr_small.save_as(tmp_path / "m2.dcm")
    mr_small.PhotometricInterpretation = "MONOCHROME1"
    mr_small.save_as(tmp_path / "m1.dcm")
    mono2 = decode_dicom(tmp_path / "m2.dcm", "percentile").frames
    mono1 = decode_dicom(tmp_path / "m1.dcm", "percentile").frames
    np.testing.assert_allclose(mono1.astype(int), 255 - mono2.astype(int), atol=1)


def test_window_from_tags(tmp_path, mr_small):
    mr_small.WindowCenter, mr_small.WindowWidth = 1000, 500
    mr_small.save_as(tmp_path / "w.dcm")
    frames = decode_dicom(tmp_path / "w.dcm", "tags").frames
    values = mr_small.pixel_array.astype(float)
    assert np.all(frames[0][values <= 750] == 0) and np.all(frames[0][values >= 1250] == 255)


def test_multi_frame_becomes_one_slice_per_frame(tmp_path, mr_small, ingest):
    stack = np.stack([mr_small.pixel_array] * 3)
    mr_small.NumberOfFrames = 3
    mr_small.PixelData = stack.tobytes()
    (tmp_path / "src").mkdir()
    mr_small.save_as(tmp_path / "src" / "multi.dcm")
    table, report, _ = ingest([DicomSource(name="t", root=tmp_path / "src")])
    assert report.empty
    assert sorted(table.slice_index) == [0, 1, 2] and table.series_id.nunique() == 1


def _bad_tree(tmp_path: Path, mr_small: pydicom.Dataset) -> DicomSource:
    root = tmp_path / "tree"
    good = _series(mr_small, root / "good", 4)
    (root / "notes.txt").write_text("not a dicom file")
    whole = (root / "good" / "f000.dcm").read_bytes()
    (root / "truncated.dcm").write_bytes(whole[: len(whole) // 2])
    no_pixels = copy.deepcopy(good[1])
    del no_pixels.PixelData
    no_pixels.SOPInstanceUID = generate_uid()
    no_pixels.save_as(root / "no_pixels.dcm")
    anonymous = copy.deepcopy(good[1])
    anonymous.PatientID = ""
    anonymous.save_as(root / "no_patient.dcm")
    odd_size = copy.deepcopy(good[2])
    odd_size.SOPInstanceUID = generate_uid()
    odd_size.ImagePositionPatient = [0, 0, 50.0]
    odd_size.set_pixel_data(np.zeros((32, 32), np.uint16), "MONOCHROME2", 16)
    odd_size.save_as(root / "odd_size.dcm")
    mpeg = copy.deepcopy(good[3])
    mpeg.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2: no decoder
    mpeg.SOPInstanceUID = generate_uid()
    del mpeg.PixelData
    mpeg.add_new(0x7FE00010, "OB", pydicom.encaps.encapsulate([b"\x00" * 64]))
    mpeg.save_as(root / "mpeg.dcm", enforce_file_format=True)
    boxes = pd.DataFrame(
        [
            {"sop_instance_uid": good[0].SOPInstanceUID, "x1": 10, "y1": 10, "x2": 20, "y2": 20},
            {"sop_instance_uid": good[1].SOPInstanceUID, "x1": 70, "y1": 50, "x2": 90, "y2": 60},
            {"sop_instance_uid": "1.2.3.4.5.999", "x1": 1, "y1": 1, "x2": 2, "y2": 2},
        ]
    )
    boxes.to_csv(tmp_path / "boxes.csv", index=False)
    return DicomSource(name="bad", root=root, boxes_csv=tmp_path / "boxes.csv")


def test_every_bad_input_is_quarantined_with_its_reason(tmp_path, mr_small, ingest):
    table, report, _ = ingest([_bad_tree(tmp_path, mr_small)], max_bad_fraction=1.0)
    kinds = dict(zip(report.path.map(lambda p: Path(p).name), report.kind, strict=True))
    assert kinds["notes.txt"] == "not_dicom"
    assert kinds["truncated.dcm"] == "truncated"
    assert kinds["no_pixels.dcm"] == "no_pixel_data"
    assert kinds["no_patient.dcm"] == "missing_patient_id"
    assert kinds["odd_size.dcm"] == "mixed_sizes"
    assert kinds["mpeg.dcm"] == "undecodable"
    assert kinds["f001.dcm"] == "bad_annotation"  # box outside the 64x64 image
    assert kinds["boxes.csv"] == "orphan_label"  # box for a SOP that does not exist
    orphan = report.loc[report.kind == "orphan_label", "reason"].iloc[0]
    assert "line 4" in orphan and "1.2.3.4.5.999" not in orphan  # the CSV line, not the UID
    assert "outside" in report.loc[report.kind == "bad_annotation", "reason"].iloc[0]
    assert len(table) == 3  # f000, f002, f003 survive
    boxed = table[table.tumor == 1]
    assert len(boxed) == 1 and [list(b) for b in boxed.boxes.iloc[0]] == [[5.0, 5.0, 10.0, 10.0]]


def test_patient_identifiers_are_pseudonymised(tmp_path, mr_small, ingest):
    _series(mr_small, tmp_path / "s", 2, patient="MRN-SECRET-42")
    table, _, store = ingest([DicomSource(name="t", root=tmp_path / "s")])
    assert table.patient_id.str.startswith("P-").all()
    dumped = table.to_csv() + store.records.to_csv()
    for raw in ("MRN-SECRET-42", str(mr_small.PatientName), mr_small.StudyInstanceUID):
        assert raw not in dumped


def test_missing_root_is_a_clear_error(tmp_path, ingest):
    with pytest.raises(ValueError, match="DICOM root folder not found"):
        ingest([DicomSource(name="t", root=tmp_path / "absent")])


def test_burned_in_annotation_is_quarantined_unless_the_source_allows_it(
    tmp_path, mr_small, ingest
):
    written = _series(mr_small, tmp_path / "s", 3)
    for index, flag in enumerate(("YES", "NO")):
        written[index].BurnedInAnnotation = flag
        written[index].save_as(tmp_path / "s" / f"f{index:03d}.dcm")
    source = DicomSource(name="t", root=tmp_path / "s")
    table, report, _ = ingest([source], max_bad_fraction=1.0)
    assert len(table) == 2 and report.path.tolist() == ["f000.dcm"]
    assert report.kind.tolist() == ["burned_in_annotation"]
    assert "allow_burned_in: true for source 't'" in report.reason.iloc[0]
    table, report, _ = ingest([source.model_copy(update={"allow_burned_in": True})])
    assert len(table) == 3 and report.empty
