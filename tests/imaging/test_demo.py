"""The demo cohort must read like a clinical DICOM export whose ground truth matches its pixels."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from PIL import Image
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage
from scipy.ndimage import binary_dilation

from medvit.imaging.demo import DemoCohort, DemoCohortSpec, write_demo_cohort

# Half of each class has two studies of a T1 post-contrast and a T2-like series.
SPEC = DemoCohortSpec(n_tumor=4, n_normal=4, slices=8, size=64, seed=3, multi_fraction=0.5)
N_SERIES = 4 * 1 + 4 * SPEC.studies * SPEC.series_per_study
T1, T2 = "T1 post-contrast (synthetic)", "T2 (synthetic)"

REQUIRED_TAGS = [
    "PatientID", "PatientName", "PatientBirthDate", "PatientSex", "AccessionNumber",
    "InstitutionName", "StudyDate", "SeriesDate", "ContentDate", "StudyTime",
    "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID", "StudyID",
    "SeriesNumber", "InstanceNumber", "SeriesDescription", "ImagePositionPatient",
    "ImageOrientationPatient", "PixelSpacing", "SliceThickness", "SpacingBetweenSlices",
    "SamplesPerPixel", "PhotometricInterpretation", "Rows", "Columns", "BitsAllocated",
    "BitsStored", "HighBit", "PixelRepresentation", "RescaleSlope", "RescaleIntercept",
    "RescaleType", "WindowCenter", "WindowWidth", "PixelData",
]  # fmt: skip


@dataclass(frozen=True)
class Slice:
    path: Path
    ds: pydicom.Dataset

    @property
    def z(self) -> float:
        return float(self.ds.ImagePositionPatient[2])

    @property
    def pixels(self) -> np.ndarray:
        return self.ds.pixel_array.astype(float)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> DemoCohort:
    return write_demo_cohort(tmp_path_factory.mktemp("demo"), SPEC)


@pytest.fixture(scope="module")
def series(cohort: DemoCohort) -> dict[str, list[Slice]]:
    """SeriesInstanceUID -> slices in anatomical order."""
    found: dict[str, list[Slice]] = {}
    for path in sorted(cohort.dicom_dir.rglob("*.dcm")):
        ds = pydicom.dcmread(path)
        found.setdefault(str(ds.SeriesInstanceUID), []).append(Slice(path, ds))
    return {uid: sorted(items, key=lambda s: s.z) for uid, items in found.items()}


@pytest.fixture(scope="module")
def patients(series: dict[str, list[Slice]]) -> dict[str, list[list[Slice]]]:
    """PatientID -> that patient's series, ordered by study date and series number."""
    found: dict[str, list[list[Slice]]] = {}
    for slices in series.values():
        found.setdefault(str(slices[0].ds.PatientID), []).append(slices)
    order = lambda slices: (slices[0].ds.StudyDate, int(slices[0].ds.SeriesNumber))  # noqa: E731
    return {patient: sorted(items, key=order) for patient, items in found.items()}


@pytest.fixture(scope="module")
def boxes(cohort: DemoCohort) -> pd.DataFrame:
    return pd.read_csv(cohort.boxes_csv, dtype={"sop_instance_uid": str})


@pytest.fixture(scope="module")
def labels(cohort: DemoCohort) -> dict[str, int]:
    frame = pd.read_csv(cohort.patients_csv, dtype={"patient_id": str})
    assert list(frame.columns) == ["patient_id", "tumor"]
    return dict(zip(frame.patient_id, frame.tumor, strict=True))


def test_layout_paths(cohort: DemoCohort) -> None:
    assert cohort.dicom_dir == cohort.root / "dicom"
    assert cohort.patients_csv == cohort.root / "patients.csv"
    assert cohort.boxes_csv == cohort.root / "boxes.csv"
    assert cohort.masks_dir == cohort.root / "masks"
    cases = sorted(p.name for p in cohort.dicom_dir.iterdir())
    assert cases == [f"case_{i:03d}" for i in range(1, SPEC.n_tumor + SPEC.n_normal + 1)]
    layouts = []
    for case in cases:
        folders = sorted((cohort.dicom_dir / case).glob("*/*"))
        layouts.append(tuple(f.relative_to(cohort.dicom_dir / case).as_posix() for f in folders))
        for folder in folders:
            files = sorted(p.name for p in folder.iterdir())
            assert files == [f"IM{k:04d}.dcm" for k in range(1, SPEC.slices + 1)]
    single = ("study_01/series_01",)
    multi = ("study_01/series_01", "study_01/series_02", "study_02/series_01", "study_02/series_02")
    assert sorted(layouts) == [single] * 4 + [multi] * 4


def test_every_file_is_a_complete_mr_image(series: dict[str, list[Slice]]) -> None:
    for slices in series.values():
        for item in slices:
            ds = item.ds
            missing = [tag for tag in REQUIRED_TAGS if tag not in ds]
            assert not missing, f"{item.path}: missing {missing}"
            assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
            assert ds.file_meta.MediaStorageSOPClassUID == MRImageStorage
            assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
            assert ds.SOPClassUID == MRImageStorage
            assert ds.Modality == "MR"
            assert ds.InstitutionName == "Medvit Demo Hospital"
            assert ds.SeriesDescription in (T1, T2)
            assert ds.PhotometricInterpretation == "MONOCHROME2"
            assert [float(x) for x in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
            pixels = ds.pixel_array
            assert pixels.shape == (SPEC.size, SPEC.size)
            assert pixels.dtype == np.uint16
            assert pixels.max() < 2 ** int(ds.BitsStored)


def test_uids_are_unique_and_series_belong_to_their_studies(
    series: dict[str, list[Slice]], patients: dict[str, list[list[Slice]]]
) -> None:
    sops = [item.ds.SOPInstanceUID for slices in series.values() for item in slices]
    assert len(sops) == len(set(sops)) == N_SERIES * SPEC.slices
    for slices in series.values():
        for tag in ("StudyInstanceUID", "SeriesDescription", "FrameOfReferenceUID"):
            assert len({item.ds[tag].value for item in slices}) == 1, tag
    studies = [
        (patient, first.StudyInstanceUID, first.AccessionNumber, first.StudyDate)
        for patient, items in patients.items()
        for first in (slices[0].ds for slices in items)
    ]
    assert len({study[1:] for study in studies}) == 4 + 4 * SPEC.studies  # none shared
    assert len({study[:2] for study in studies}) == len({study[1] for study in studies})


def test_a_share_of_each_class_has_a_follow_up_study_with_t1_and_t2_series(
    patients: dict[str, list[list[Slice]]], labels: dict[str, int]
) -> None:
    multi = {patient for patient, items in patients.items() if len(items) > 1}
    assert len(multi) == 4 and sum(labels[patient] for patient in multi) == 2
    for patient, items in patients.items():
        first = [slices[0].ds for slices in items]
        described = [(ds.StudyDate, int(ds.SeriesNumber), ds.SeriesDescription) for ds in first]
        if patient not in multi:
            assert [(number, text) for _, number, text in described] == [(1, T1)]
            continue
        baseline, follow_up = first[0].StudyDate, first[2].StudyDate
        assert follow_up > baseline
        assert described == [
            (baseline, 1, T1), (baseline, 2, T2), (follow_up, 1, T1), (follow_up, 2, T2)
        ]  # fmt: skip
        assert first[0].StudyInstanceUID == first[1].StudyInstanceUID != first[2].StudyInstanceUID


def test_t2_inverts_the_contrast_of_brain_and_csf(
    patients: dict[str, list[list[Slice]]], labels: dict[str, int]
) -> None:
    """Same anatomy, inverted contrast: inside a normal brain (grey and white matter,
    ventricles) T1 and T2 intensities of the same voxels are anti-correlated."""
    centre = slice(SPEC.size * 3 // 10, SPEC.size * 7 // 10)
    checked = 0
    for patient, items in patients.items():
        if len(items) == 1 or labels[patient]:
            continue
        for t1, t2 in ((items[0], items[1]), (items[2], items[3])):
            assert [item.z for item in t1] == [item.z for item in t2]
            for k in range(2, SPEC.slices - 2):
                a, b = t1[k].pixels[centre, centre], t2[k].pixels[centre, centre]
                assert np.corrcoef(a.ravel(), b.ravel())[0, 1] < -0.3
                checked += 1
    assert checked


def test_positions_are_consecutive_and_files_are_not_in_anatomical_order(
    series: dict[str, list[Slice]],
) -> None:
    shuffled = 0
    for slices in series.values():
        steps = np.diff([item.z for item in slices])
        assert np.allclose(steps, float(slices[0].ds.SpacingBetweenSlices))
        assert sorted(int(item.ds.InstanceNumber) for item in slices) == list(
            range(1, SPEC.slices + 1)
        )
        names = [item.path.name for item in slices]
        shuffled += names != sorted(names)
    assert shuffled == len(series)


def test_is_deterministic(tmp_path: Path, cohort: DemoCohort) -> None:
    again = write_demo_cohort(tmp_path / "again", SPEC)
    assert again.patients_csv.read_bytes() == cohort.patients_csv.read_bytes()
    assert again.boxes_csv.read_bytes() == cohort.boxes_csv.read_bytes()
    for relative in [
        "case_001/study_01/series_01/IM0001.dcm",
        "case_005/study_01/series_01/IM0003.dcm",
        *(
            str(path.relative_to(cohort.dicom_dir))
            for path in cohort.dicom_dir.glob("*/study_02/series_02/IM0005.dcm")
        ),
    ]:
        first = pydicom.dcmread(cohort.dicom_dir / relative)
        second = pydicom.dcmread(again.dicom_dir / relative)
        assert first.PixelData == second.PixelData
        assert first.SOPInstanceUID == second.SOPInstanceUID
    assert sorted(p.name for p in again.masks_dir.iterdir()) == sorted(
        p.name for p in cohort.masks_dir.iterdir()
    )


def test_other_seed_gives_other_cohort(tmp_path: Path, cohort: DemoCohort) -> None:
    other = write_demo_cohort(tmp_path / "other", DemoCohortSpec(1, 1, 6, 48, seed=4))
    ours = pd.read_csv(cohort.patients_csv, dtype=str).patient_id
    theirs = pd.read_csv(other.patients_csv, dtype=str).patient_id
    assert not set(ours) & set(theirs)


def test_rewrite_leaves_no_stale_files(tmp_path: Path) -> None:
    write_demo_cohort(tmp_path, DemoCohortSpec(2, 2, 6, 48))
    smaller = write_demo_cohort(tmp_path, DemoCohortSpec(1, 1, 6, 48))
    assert len(list(smaller.dicom_dir.rglob("*.dcm"))) == 2 * 6
    sops = set(pd.read_csv(smaller.boxes_csv, dtype=str).sop_instance_uid)
    assert {p.stem for p in smaller.masks_dir.glob("*.png")} == sops


def test_patient_labels_match_spec(
    labels: dict[str, int], patients: dict[str, list[list[Slice]]]
) -> None:
    assert sum(labels.values()) == SPEC.n_tumor
    assert len(labels) == SPEC.n_tumor + SPEC.n_normal
    assert set(labels) == set(patients)


def test_boxes_point_at_files_and_match_masks(
    cohort: DemoCohort, boxes: pd.DataFrame, series: dict[str, list[Slice]]
) -> None:
    sops = {item.ds.SOPInstanceUID for slices in series.values() for item in slices}
    assert set(boxes.sop_instance_uid) <= sops
    masks = {p.stem for p in cohort.masks_dir.glob("*.png")}
    assert masks == set(boxes.sop_instance_uid)
    for sop, rows in boxes.groupby("sop_instance_uid"):
        mask = np.asarray(Image.open(cohort.masks_dir / f"{sop}.png"))
        assert mask.shape == (SPEC.size, SPEC.size)
        assert mask.dtype == np.uint8
        assert set(np.unique(mask)) == {0, 255}
        ys, xs = np.nonzero(mask)
        union = [rows.x1.min(), rows.y1.min(), rows.x2.max(), rows.y2.max()]
        assert union == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        assert (rows.x2 > rows.x1).all() and (rows.y2 > rows.y1).all()
        assert (mask > 0).sum() >= 4 * len(rows)


def test_tumours_span_consecutive_slices_and_leave_some_free(
    labels: dict[str, int], boxes: pd.DataFrame, series: dict[str, list[Slice]]
) -> None:
    boxed = set(boxes.sop_instance_uid)
    for slices in series.values():
        patient = str(slices[0].ds.PatientID)
        hits = [k for k, item in enumerate(slices) if item.ds.SOPInstanceUID in boxed]
        if not labels[patient]:
            assert hits == [], f"normal patient {patient} has boxes"
            continue
        assert 2 <= len(hits) < SPEC.slices
        assert 0 not in hits and SPEC.slices - 1 not in hits
        for k in hits:
            assert k - 1 in hits or k + 1 in hits, f"{patient}: isolated tumour slice {k}"


def _boxed_area(boxes: pd.DataFrame, slices: list[Slice]) -> list[int]:
    """Box area per slice (0 where no tumour shows)."""
    area = ((boxes.x2 - boxes.x1) * (boxes.y2 - boxes.y1)).groupby(boxes.sop_instance_uid).sum()
    return [int(area.get(item.ds.SOPInstanceUID, 0)) for item in slices]


def test_a_tumour_shows_in_every_series_and_is_smaller_at_follow_up(
    labels: dict[str, int], boxes: pd.DataFrame, patients: dict[str, list[list[Slice]]]
) -> None:
    followed = 0
    for patient, items in patients.items():
        if len(items) == 1 or not labels[patient]:
            continue
        t1, t2, follow_t1, follow_t2 = (_boxed_area(boxes, slices) for slices in items)
        assert t1 == t2 and follow_t1 == follow_t2  # one anatomy in both contrasts of a study
        assert [a > 0 for a in follow_t1] == [a > 0 for a in t1]  # on the same slices
        assert sum(follow_t1) < sum(t1)
        followed += 1
    assert followed == 2


@pytest.mark.parametrize("contrast", [T1, T2])
def test_tumour_is_brighter_than_surrounding_brain(
    cohort: DemoCohort, boxes: pd.DataFrame, series: dict[str, list[Slice]], contrast: str
) -> None:
    by_sop = {item.ds.SOPInstanceUID: item for slices in series.values() for item in slices}
    ratios = []
    for sop in boxes.sop_instance_uid.unique():
        if by_sop[sop].ds.SeriesDescription != contrast:
            continue
        mask = np.asarray(Image.open(cohort.masks_dir / f"{sop}.png")) > 0
        pixels = by_sop[sop].pixels
        ring = binary_dilation(mask, iterations=4) & ~binary_dilation(mask, iterations=1)
        ratios.append(pixels[mask].mean() / pixels[ring].mean())
    assert len(ratios) >= 8
    assert min(ratios) > 1.1
    assert np.median(ratios) > 1.4


def test_no_identity_in_any_path(cohort: DemoCohort, series: dict[str, list[Slice]]) -> None:
    paths = [str(p.relative_to(cohort.root)).lower() for p in cohort.root.rglob("*")]
    for slices in series.values():
        ds = slices[0].ds
        tokens = [str(ds.PatientID), ds.PatientName.family_name, ds.PatientName.given_name]
        tokens += [str(ds.AccessionNumber)]
        for token in tokens:
            assert token
            assert not any(token.lower() in path for path in paths), token


def test_rejects_too_small_a_spec(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least"):
        write_demo_cohort(tmp_path, DemoCohortSpec(slices=4))
    with pytest.raises(ValueError, match="at least"):
        write_demo_cohort(tmp_path, DemoCohortSpec(size=32))
    with pytest.raises(ValueError, match="multi_fraction must be in"):
        write_demo_cohort(tmp_path, DemoCohortSpec(multi_fraction=1.5))
    with pytest.raises(ValueError, match="series_per_study must be 1"):
        write_demo_cohort(tmp_path, DemoCohortSpec(series_per_study=3))
