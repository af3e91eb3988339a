"""A deterministic synthetic brain-MRI cohort, written as real DICOM with ground truth beside it.

The pipeline has to run end to end, and be tested, without patient data. The demo therefore looks
to the readers exactly like a clinical export plus the ground truth a user would bring, so the
same code path serves both. Its shape mirrors the NBML study (81 patients: 30 tumour, 51 normal).

Layout under `root`::

    dicom/case_007/series_01/IM0011.dcm
        One MR study with one axial T1 post-contrast series per patient. Folder and file names are
        opaque (no name or PatientID in any path) and file numbers are shuffled, while
        InstanceNumber follows an interleaved acquisition: anatomical order comes only from
        ImagePositionPatient along the slice normal.
    patients.csv
        `patient_id,tumor`: the raw DICOM PatientID and 0/1, one row per patient.
    boxes.csv
        `sop_instance_uid,x1,y1,x2,y2`: one row per tumour per slice that shows it, in pixels of
        the stored DICOM image (x = column, y = row, x2/y2 exclusive). A slice crossing two
        tumours has two rows; tumour-free slices have none.
    masks/<SOPInstanceUID>.png
        Single-channel uint8, 0 background / 255 tumour, Rows x Columns, only for slices with a
        box. The union of a slice's boxes is exactly the bounding box of its mask.

Images are meant to be plausible and learnable at the same time: a head with skull, scalp,
grey/white texture, ventricles, bias field and Rician noise, where tumours are contrast-enhancing
ellipsoids spanning a few consecutive slices. Small bright vessel dots appear in every patient, so
"bright" alone does not mean "tumour". Everything derives from the spec: the same spec gives
byte-identical pixels, identical UIDs and identical CSVs.
"""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    ExplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)
from scipy.ndimage import binary_dilation, gaussian_filter

_FOV_MM = 230.0
_SLICE_MM = 5.0
_REFERENCE_SIZE = 128  # sizes below are given in pixels at this matrix and scaled with it
_MIN_BLOB_PIXELS = 4  # a tumour cut this thinly is not a finding a reader could box

# Relative T1 post-contrast intensities; white matter is 1.
_WHITE, _GREY, _CSF, _BONE, _SCALP = 1.0, 0.78, 0.22, 0.08, 1.1
_ENHANCING, _NECROTIC, _DOT = 1.75, 0.45, 1.4
_STORED_PER_UNIT = 800.0  # stored value of white matter
_BITS_STORED = 12
_WINDOW_CENTER, _WINDOW_WIDTH = 850, 1700  # from background to the brightest enhancing rim


@dataclass(frozen=True)
class DemoCohortSpec:
    n_tumor: int = 30
    n_normal: int = 51
    slices: int = 16
    size: int = 128
    seed: int = 0


@dataclass(frozen=True)
class DemoCohort:
    root: Path
    dicom_dir: Path
    patients_csv: Path
    boxes_csv: Path
    masks_dir: Path

    @classmethod
    def at(cls, root: Path) -> DemoCohort:
        """The cohort's paths are fixed by its root, so a written cohort is found again from it."""
        root = Path(root)
        return cls(
            root=root,
            dicom_dir=root / "dicom",
            patients_csv=root / "patients.csv",
            boxes_csv=root / "boxes.csv",
            masks_dir=root / "masks",
        )


@dataclass(frozen=True)
class _Patient:
    """Identity and visit of one fake patient; names and ids are distinctive to catch leaks."""

    index: int
    tumor: bool
    patient_id: str
    name: str
    sex: str
    birth_date: str
    study_date: str
    study_time: str
    accession: str


@dataclass(frozen=True)
class _Head:
    """Where the brain sits in the volume; `scale` is its cross-section per slice (1 = widest)."""

    cy: float
    cx: float
    semi_rows: float
    semi_cols: float
    angle: float
    scale: np.ndarray  # (slices,)
    slab: np.ndarray  # (slices,) position of each slice relative to the widest one, in [-1, 1]
    z_offset_mm: float


def write_demo_cohort(root: Path, spec: DemoCohortSpec = DemoCohortSpec()) -> DemoCohort:
    """Write the cohort from scratch, so a smaller spec leaves no stale files of a larger one."""
    if spec.slices < 5 or spec.size < 48:
        # Fewer slices leave no tumour-free ones; below 48 px small tumours vanish when boxed.
        raise ValueError("the demo needs at least 5 slices of 48 px")
    cohort = DemoCohort.at(root)
    for folder in (cohort.dicom_dir, cohort.masks_dir):
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
    patients = _patients(spec)
    boxes: list[tuple[str, int, int, int, int]] = []
    for patient in patients:
        boxes += _write_patient(cohort, spec, patient)
    table = pd.DataFrame(
        {"patient_id": [p.patient_id for p in patients], "tumor": [int(p.tumor) for p in patients]}
    )
    # Sorted by PatientID so row order says nothing about folder order or label.
    table.sort_values("patient_id").to_csv(cohort.patients_csv, index=False)
    pd.DataFrame(boxes, columns=["sop_instance_uid", "x1", "y1", "x2", "y2"]).to_csv(
        cohort.boxes_csv, index=False
    )
    return cohort


def _patients(spec: DemoCohortSpec) -> list[_Patient]:
    """Labels and identities come from one cohort-level generator so they are unique and mixed."""
    n = spec.n_tumor + spec.n_normal
    rng = np.random.default_rng(spec.seed)
    labels = rng.permutation(np.array([True] * spec.n_tumor + [False] * spec.n_normal))
    mrns = rng.choice(9_000_000, size=n, replace=False) + 1_000_000
    accessions = rng.choice(90_000_000, size=n, replace=False) + 10_000_000
    patients = []
    for index in range(n):
        own = np.random.default_rng([spec.seed, index, 1])
        token = "".join(own.choice(list("BCDFGHJKLMNPQRSTVWXZ"), size=7))
        sex = str(own.choice(["F", "M"]))
        study = dt.date(2016, 1, 1) + dt.timedelta(days=int(own.integers(0, 8 * 365)))
        birth = study - dt.timedelta(days=int(own.integers(20 * 365, 85 * 365)))
        seconds = int(own.integers(7 * 3600, 19 * 3600))
        patients.append(
            _Patient(
                index=index,
                tumor=bool(labels[index]),
                patient_id=f"MRN{mrns[index]}",
                name=f"Demo{token}^{'Anna' if sex == 'F' else 'Bruno'}{token[::-1].lower()}",
                sex=sex,
                birth_date=birth.strftime("%Y%m%d"),
                study_date=study.strftime("%Y%m%d"),
                study_time=f"{seconds // 3600:02d}{seconds // 60 % 60:02d}{seconds % 60:02d}",
                accession=f"ACC{accessions[index]}",
            )
        )
    return patients


def _write_patient(
    cohort: DemoCohort, spec: DemoCohortSpec, patient: _Patient
) -> list[tuple[str, int, int, int, int]]:
    rng = np.random.default_rng([spec.seed, patient.index])
    head = _sample_head(rng, spec)
    u, v = _brain_plane(head, spec.size)
    radius = np.hypot(u, v)[None] / head.scale[:, None, None]
    blobs = _sample_blobs(rng, head, spec, radius) if patient.tumor else []
    volume = _render(rng, head, spec, u, v, radius, blobs)
    sops = [_uid(spec, "sop", patient.index, k) for k in range(spec.slices)]
    series = cohort.dicom_dir / f"case_{patient.index + 1:03d}" / "series_01"
    series.mkdir(parents=True)
    file_numbers = rng.permutation(spec.slices) + 1
    acquisition = np.r_[np.arange(0, spec.slices, 2), np.arange(1, spec.slices, 2)]
    instance_numbers = np.argsort(acquisition) + 1
    for k in range(spec.slices):
        dataset = _slice_dataset(spec, patient, head, k, int(instance_numbers[k]), sops[k])
        dataset.PixelData = volume[k].tobytes()
        dataset.save_as(series / f"IM{file_numbers[k]:04d}.dcm", enforce_file_format=True)
    return _write_truth(cohort, sops, blobs)


def _sample_head(rng: np.random.Generator, spec: DemoCohortSpec) -> _Head:
    size, n = spec.size, spec.slices
    widest = (n - 1) / 2 + rng.uniform(-0.08, 0.08) * n
    slab = np.clip((np.arange(n) - widest) / (n / 2), -1.0, 1.0)
    return _Head(
        cy=size / 2 + rng.uniform(-0.03, 0.03) * size,
        cx=size / 2 + rng.uniform(-0.03, 0.03) * size,
        semi_rows=size * rng.uniform(0.34, 0.38),
        semi_cols=size * rng.uniform(0.27, 0.31),
        angle=rng.uniform(-0.18, 0.18),
        scale=np.sqrt(1.0 - (0.75 * slab) ** 2),
        slab=slab,
        z_offset_mm=round(float(rng.uniform(-60.0, -30.0)), 1),
    )


def _brain_plane(head: _Head, size: int) -> tuple[np.ndarray, np.ndarray]:
    """In-plane coordinates in units of the widest brain semi-axes, rotated with the head."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dy, dx = yy - head.cy, xx - head.cx
    cos, sin = np.cos(head.angle), np.sin(head.angle)
    return (dx * cos + dy * sin) / head.semi_cols, (dy * cos - dx * sin) / head.semi_rows


def _to_pixels(head: _Head, u: float, v: float) -> tuple[float, float]:
    """Inverse of `_brain_plane`: (row, column) of a point given in brain coordinates."""
    du, dv = u * head.semi_cols, v * head.semi_rows
    cos, sin = np.cos(head.angle), np.sin(head.angle)
    return head.cy + du * sin + dv * cos, head.cx + du * cos - dv * sin


@dataclass(frozen=True)
class _Blob:
    """One tumour: its rasterised voxels and the normalised ellipsoid distance that shades it."""

    mask: np.ndarray  # (slices, size, size) bool, slices under _MIN_BLOB_PIXELS already removed
    distance: np.ndarray  # (slices, size, size) float32, < 1 inside the ellipsoid
    necrotic: bool


def _sample_blobs(
    rng: np.random.Generator, head: _Head, spec: DemoCohortSpec, radius: np.ndarray
) -> list[_Blob]:
    """One tumour, sometimes a second one that neither overlaps nor touches the first."""
    first = _sample_blob(rng, head, spec, radius, max_px=18.0)
    if rng.uniform() < 0.25:
        for _ in range(20):
            second = _sample_blob(rng, head, spec, radius, max_px=12.0)
            if not np.any(second.mask & binary_dilation(first.mask, iterations=2)):
                return [first, second]
    return [first]


def _sample_blob(
    rng: np.random.Generator,
    head: _Head,
    spec: DemoCohortSpec,
    radius: np.ndarray,
    max_px: float,
) -> _Blob:
    """An ellipsoid spanning 3-8 slices, never the first or last, and well inside the brain."""
    n, scale_px = spec.slices, spec.size / _REFERENCE_SIZE
    length = int(rng.integers(3, min(8, n - 2) + 1))
    start = int(rng.integers(1, n - length))
    section = float(head.scale[start : start + length].min())
    narrowest = min(head.semi_rows, head.semi_cols) * section
    extent = min(rng.uniform(6.0, max_px) * scale_px, 0.5 * narrowest)
    room = 0.85 - extent / narrowest
    rho, phi = room * np.sqrt(rng.uniform()), rng.uniform(0.0, 2 * np.pi)
    row, col = _to_pixels(head, rho * np.cos(phi) * section, rho * np.sin(phi) * section)
    ry, rx = extent * rng.uniform(0.75, 1.0, size=2)
    yy, xx = np.mgrid[0 : spec.size, 0 : spec.size].astype(np.float32)
    dz = (np.arange(n, dtype=np.float32) - (start + (length - 1) / 2)) / (length / 2)
    distance = ((yy - row) / ry) ** 2 + ((xx - col) / rx) ** 2 + dz[:, None, None] ** 2
    mask = (distance < 1.0) & (radius < 0.95)
    mask[mask.sum(axis=(1, 2)) < _MIN_BLOB_PIXELS] = False
    return _Blob(mask=mask, distance=distance, necrotic=bool(rng.uniform() < 0.5))


def _smooth_noise(
    rng: np.random.Generator, shape: tuple[int, ...], sigma: tuple[float, ...]
) -> np.ndarray:
    field = gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma)
    return field / max(float(field.std()), 1e-6)


def _render(
    rng: np.random.Generator,
    head: _Head,
    spec: DemoCohortSpec,
    u: np.ndarray,
    v: np.ndarray,
    radius: np.ndarray,
    blobs: list[_Blob],
) -> np.ndarray:
    """Tissue model, then partial volume, bias field and Rician noise, as a scanner would add."""
    shape, px = radius.shape, spec.size / _REFERENCE_SIZE
    image = _tissue(rng, head, u, v, radius, px)
    image = np.where(_dots(rng, head, spec, u, v, radius), _DOT, image)
    for blob in blobs:
        image = _tumour(rng, image, blob, radius, px)
    image = gaussian_filter(image, (0.0, 0.6 * px, 0.6 * px))
    image *= _bias_field(rng, head, spec.size)
    sigma = rng.uniform(0.025, 0.045)
    real = image + sigma * rng.standard_normal(shape, dtype=np.float32)
    imaginary = sigma * rng.standard_normal(shape, dtype=np.float32)
    stored = np.rint(np.hypot(real, imaginary) * _STORED_PER_UNIT)
    return np.clip(stored, 0, 2**_BITS_STORED - 1).astype(np.uint16)


def _tissue(
    rng: np.random.Generator,
    head: _Head,
    u: np.ndarray,
    v: np.ndarray,
    radius: np.ndarray,
    px: float,
) -> np.ndarray:
    """Brain with folded grey/white boundary, CSF, dark bone and bright scalp fat."""
    gyri = _smooth_noise(rng, radius.shape, (0.7, 2.5 * px, 2.5 * px))
    texture = 1.0 + 0.04 * _smooth_noise(rng, radius.shape, (0.5, 1.2 * px, 1.2 * px))
    white = 1.0 / (1.0 + np.exp((radius - 0.72 - 0.08 * gyri) / 0.03))
    brain = (_GREY + (_WHITE - _GREY) * white) * texture
    image = np.select(
        [radius < 1.0, radius < 1.04, radius < 1.1, radius < 1.22],
        [brain, _CSF, _BONE, _SCALP * texture],
        0.0,
    ).astype(np.float32)
    return np.where(_ventricles(head, u, v), _CSF, image)


def _ventricles(head: _Head, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Two tilted lateral ventricles, largest mid-brain and gone towards the vertex and base."""
    size = np.sqrt(np.clip(1.0 - (head.slab / 0.45) ** 2, 0.0, 1.0))[:, None, None]
    section = head.scale[:, None, None]
    found = np.zeros((len(size), *u.shape), dtype=bool)
    for side in (-1.0, 1.0):
        du, dv = u[None] - side * 0.17 * section, v[None] + 0.06 * section
        tilt = side * 0.35
        along = (dv * np.cos(tilt) - du * np.sin(tilt)) / (0.30 * section * size + 1e-6)
        across = (du * np.cos(tilt) + dv * np.sin(tilt)) / (0.08 * section * size + 1e-6)
        found |= along**2 + across**2 < 1.0
    return found


def _dots(
    rng: np.random.Generator,
    head: _Head,
    spec: DemoCohortSpec,
    u: np.ndarray,
    v: np.ndarray,
    radius: np.ndarray,
) -> np.ndarray:
    """Vessels and choroid plexus: small enhancing distractors every patient has."""
    n, px = spec.slices, spec.size / _REFERENCE_SIZE
    yy, xx = np.mgrid[0 : spec.size, 0 : spec.size].astype(np.float32)
    dots = np.zeros(radius.shape, dtype=bool)
    for _ in range(int(rng.integers(1, 4))):
        k = int(rng.integers(0, n - 1))
        rho, phi = 0.8 * np.sqrt(rng.uniform()), rng.uniform(0.0, 2 * np.pi)
        row, col = _to_pixels(head, *(rho * head.scale[k] * np.array([np.cos(phi), np.sin(phi)])))
        disc = (yy - row) ** 2 + (xx - col) ** 2 < (1.2 * px) ** 2
        dots[k : k + 2] |= disc & (radius[k : k + 2] < 0.9)
    plexus = np.zeros_like(dots)
    for side in (-1.0, 1.0):
        plexus |= (np.hypot(u - side * 0.19, v - 0.2) < 0.045)[None]
    return dots | (plexus & (np.abs(head.slab) < 0.25)[:, None, None])


def _tumour(
    rng: np.random.Generator, image: np.ndarray, blob: _Blob, radius: np.ndarray, px: float
) -> np.ndarray:
    """Enhancing rim, necrotic core for some, and dark oedema around it."""
    oedema = (blob.distance < 1.8) & ~blob.mask & (radius < 1.0)
    image = np.where(oedema, image * 0.85, image)
    rim = _ENHANCING * (1.0 + 0.08 * _smooth_noise(rng, image.shape, (0.5, 1.5 * px, 1.5 * px)))
    tumour = np.where(blob.necrotic & (blob.distance < 0.3), _NECROTIC, rim)
    return np.where(blob.mask, tumour, image)


def _bias_field(rng: np.random.Generator, head: _Head, size: int) -> np.ndarray:
    """Smooth multiplicative coil sensitivity, varying across the plane and along the stack."""
    y, x = (np.mgrid[0:size, 0:size].astype(np.float32) - size / 2) / (size / 2)
    z = head.slab.astype(np.float32)[:, None, None]
    terms = np.stack(np.broadcast_arrays(x[None], y[None], z, (x * y)[None], x[None] ** 2))
    coefficients = rng.normal(0.0, 0.08, size=len(terms)).astype(np.float32)
    return np.exp(np.tensordot(coefficients, terms, axes=1))


def _uid(spec: DemoCohortSpec, *parts: object) -> str:
    """UIDs derived from the spec: reproducible, yet different for every cohort the spec names.

    pydicom concatenates entropy sources, so the parts are joined with a separator to keep
    ("sop", 2, 13) and ("sop", 21, 3) apart.
    """
    return generate_uid(entropy_srcs=["/".join([repr(spec), *map(str, parts)])])


def _slice_dataset(
    spec: DemoCohortSpec, patient: _Patient, head: _Head, k: int, instance: int, sop: str
) -> FileDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = FileDataset("", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = sop
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = patient.study_date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = patient.study_time
    ds.AccessionNumber = patient.accession
    ds.Modality = "MR"
    ds.Manufacturer = "Medvit Synthetic"
    ds.InstitutionName = "Medvit Demo Hospital"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "MRI BRAIN W/WO CONTRAST"
    ds.SeriesDescription = "T1 post-contrast (synthetic)"
    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = patient.sex
    ds.ScanningSequence = "SE"
    ds.SequenceVariant = "SP"
    ds.ScanOptions = ""
    ds.MRAcquisitionType = "2D"
    ds.SliceThickness = _SLICE_MM
    ds.SpacingBetweenSlices = _SLICE_MM
    ds.RepetitionTime = 500
    ds.EchoTime = 10
    ds.EchoTrainLength = 1
    ds.MagneticFieldStrength = 1.5
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = _uid(spec, "study", patient.index)
    ds.SeriesInstanceUID = _uid(spec, "series", patient.index)
    ds.StudyID = patient.accession[-6:]
    ds.SeriesNumber = 1
    ds.InstanceNumber = instance
    spacing = round(_FOV_MM / spec.size, 4)
    corner = round(-spacing * (spec.size - 1) / 2, 3)
    z = round(head.z_offset_mm + k * _SLICE_MM, 3)
    ds.ImagePositionPatient = [corner, corner, z]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.FrameOfReferenceUID = _uid(spec, "frame", patient.index)
    ds.PositionReferenceIndicator = ""
    ds.SliceLocation = z
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = spec.size
    ds.PixelSpacing = [spacing, spacing]
    ds.BitsAllocated = 16
    ds.BitsStored = _BITS_STORED
    ds.HighBit = _BITS_STORED - 1
    ds.PixelRepresentation = 0
    ds.WindowCenter = _WINDOW_CENTER
    ds.WindowWidth = _WINDOW_WIDTH
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.RescaleType = "US"
    return ds


def _write_truth(
    cohort: DemoCohort, sops: list[str], blobs: list[_Blob]
) -> list[tuple[str, int, int, int, int]]:
    """Boxes per blob and slice, masks per slice, both from the very voxels that were rendered."""
    rows = []
    for k, sop in enumerate(sops):
        sections = [blob.mask[k] for blob in blobs if blob.mask[k].any()]
        for section in sections:
            ys, xs = np.nonzero(section)
            rows.append((sop, int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1))
        if sections:
            mask = np.logical_or.reduce(sections).astype(np.uint8) * 255
            Image.fromarray(mask).save(cohort.masks_dir / f"{sop}.png")
    return rows
