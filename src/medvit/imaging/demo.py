"""A deterministic synthetic brain-MRI cohort, written as real DICOM with ground truth beside it.

The pipeline has to run end to end, and be tested, without patient data. The demo therefore looks
to the readers exactly like a clinical export plus the ground truth a user would bring, so the
same code path serves both. Its shape mirrors the NBML study (81 patients: 30 tumour, 51 normal).

Layout under `root`::

    dicom/case_007/study_01/series_01/IM0011.dcm
        Most patients have one MR study with one axial T1 post-contrast series. A share of them
        (`multi_fraction` of the tumour and of the normal patients) has `studies` studies, a
        baseline and follow-ups, each with a T1 post-contrast and a T2-like series: real patients
        do, and every slice downstream is keyed by patient, study, series and slice index. Folder
        and file names are opaque (no name or PatientID in any path) and file numbers are
        shuffled, while InstanceNumber follows an interleaved acquisition: anatomical order comes
        only from ImagePositionPatient along the slice normal.
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
"bright" alone does not mean "tumour". The T2-like series inverts the contrast (bright CSF, grey
matter above white matter, dark vessels): there the tumour is bright within a bright oedema halo
and must be told from CSF by shape. A patient's anatomy and tumour are the same in every series;
at a follow-up the tumour is smaller (treated), yet still visible on the same slices. Everything
derives from the spec: the same spec gives byte-identical pixels, identical UIDs and identical CSVs.
"""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
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
_MIN_TREATED_PX = 3.0  # semi-axis below which a treated tumour does not shrink any further

_STORED_PER_UNIT = 800.0  # stored value of T1 white matter
_BITS_STORED = 12
_FOLLOW_UP_DAYS = (60, 400)  # between consecutive studies of a patient
_FOLLOW_UP_SHRINK = (0.6, 0.9)  # in-plane size of a treated tumour relative to the last study


@dataclass(frozen=True)
class _Contrast:
    """Relative intensities (T1 white matter = 1) and acquisition tags of one MR contrast."""

    description: str
    white: float
    grey: float
    csf: float
    bone: float
    scalp: float
    tumour: float  # the boxed solid part
    core: float  # necrotic centre of some tumours
    oedema: float  # factor on the tissue around a tumour
    dot: float  # vessels and choroid plexus: enhancing on T1 post-contrast, flow voids on T2
    sequence_variant: str
    repetition_ms: int
    echo_ms: int
    echo_train: int
    window: tuple[int, int]  # (centre, width) from background to the brightest tumour


_T1_POST = _Contrast(
    "T1 post-contrast (synthetic)",
    white=1.0, grey=0.78, csf=0.22, bone=0.08, scalp=1.1,
    tumour=1.75, core=0.45, oedema=0.85, dot=1.4,
    sequence_variant="SP", repetition_ms=500, echo_ms=10, echo_train=1, window=(850, 1700),
)  # fmt: skip
_T2 = _Contrast(
    "T2 (synthetic)",
    white=0.6, grey=0.85, csf=1.45, bone=0.08, scalp=0.9,
    tumour=1.75, core=2.0, oedema=1.3, dot=0.25,
    sequence_variant="SK", repetition_ms=4000, echo_ms=100, echo_train=16, window=(950, 1900),
)  # fmt: skip
_CONTRASTS = (_T1_POST, _T2)  # series of a study, in acquisition order


@dataclass(frozen=True)
class DemoCohortSpec:
    """What to generate; `slices` counts slices per series.

    `multi_fraction` of the tumour patients and of the normal patients (rounded) have `studies`
    studies of `series_per_study` series each (1: T1 post-contrast; 2: and T2-like); everyone else
    has one study with one T1 post-contrast series.
    """

    n_tumor: int = 30
    n_normal: int = 51
    slices: int = 8
    size: int = 128
    seed: int = 0
    multi_fraction: float = 0.34
    studies: int = 2
    series_per_study: int = 2


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
class _Visit:
    """One study of a patient; `number` 0 is the baseline."""

    number: int
    date: str
    seconds: int  # time of day the study started
    accession: str


@dataclass(frozen=True)
class _Patient:
    """Identity and studies of one fake patient; names and ids are distinctive to catch leaks."""

    index: int
    tumor: bool
    patient_id: str
    name: str
    sex: str
    birth_date: str
    visits: tuple[_Visit, ...]
    contrasts: tuple[_Contrast, ...]


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
    if not 0 <= spec.multi_fraction <= 1 or spec.studies < 1:
        raise ValueError(
            f"demo_cohort: multi_fraction must be in [0, 1] and studies >= 1, got "
            f"{spec.multi_fraction} and {spec.studies}"
        )
    if not 1 <= spec.series_per_study <= len(_CONTRASTS):
        raise ValueError(
            f"demo_cohort: series_per_study must be 1 (T1 post-contrast) or 2 (and T2-like), "
            f"got {spec.series_per_study}"
        )
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
    """Labels, identities and who has several studies come from one cohort-level generator, so
    they are unique and mixed; patients with several studies are drawn within each class."""
    n = spec.n_tumor + spec.n_normal
    rng = np.random.default_rng(spec.seed)
    labels = rng.permutation(np.array([True] * spec.n_tumor + [False] * spec.n_normal))
    mrns = rng.choice(9_000_000, size=n, replace=False) + 1_000_000
    accessions = rng.choice(90_000_000, size=(n, spec.studies), replace=False) + 10_000_000
    multi = np.zeros(n, dtype=bool)
    for label in (True, False):
        members = np.flatnonzero(labels == label)
        chosen = rng.permutation(members)[: round(spec.multi_fraction * len(members))]
        multi[chosen] = True
    patients = []
    for index in range(n):
        own = np.random.default_rng([spec.seed, index, 1])
        name, sex = fake_person(own)
        baseline = dt.date(2016, 1, 1) + dt.timedelta(days=int(own.integers(0, 8 * 365)))
        birth = baseline - dt.timedelta(days=int(own.integers(20 * 365, 85 * 365)))
        n_visits = spec.studies if multi[index] else 1
        gaps = np.cumsum([0, *own.integers(*_FOLLOW_UP_DAYS, size=n_visits - 1)])
        visits = tuple(
            _Visit(
                number=number,
                date=(baseline + dt.timedelta(days=int(gap))).strftime("%Y%m%d"),
                seconds=int(own.integers(7 * 3600, 19 * 3600)),
                accession=f"ACC{accessions[index, number]}",
            )
            for number, gap in enumerate(gaps)
        )
        patients.append(
            _Patient(
                index=index,
                tumor=bool(labels[index]),
                patient_id=f"MRN{mrns[index]}",
                name=name,
                sex=sex,
                birth_date=birth.strftime("%Y%m%d"),
                visits=visits,
                contrasts=_CONTRASTS[: spec.series_per_study] if multi[index] else _CONTRASTS[:1],
            )
        )
    return patients


def _write_patient(
    cohort: DemoCohort, spec: DemoCohortSpec, patient: _Patient
) -> list[tuple[str, int, int, int, int]]:
    """Every study and series of one patient: one anatomy and one set of tumours throughout."""
    rng = np.random.default_rng([spec.seed, patient.index])
    head = _sample_head(rng, spec)
    anatomy = _sample_anatomy(rng, head, spec)
    tumours = _sample_tumours(rng, head, spec, anatomy.radius) if patient.tumor else []
    acquisition = np.r_[np.arange(0, spec.slices, 2), np.arange(1, spec.slices, 2)]
    instance_numbers = np.argsort(acquisition) + 1
    case = cohort.dicom_dir / f"case_{patient.index + 1:03d}"
    boxes, shrink = [], 1.0
    for visit in patient.visits:
        if visit.number:
            shrink *= rng.uniform(*_FOLLOW_UP_SHRINK)
        z_offset = head.z_offset_mm + (round(rng.uniform(-10.0, 10.0), 1) if visit.number else 0)
        blobs = [tumour.rasterise(spec, anatomy.radius, shrink) for tumour in tumours]
        for number, contrast in enumerate(patient.contrasts, start=1):
            volume = _render(rng, head, spec, anatomy, contrast, blobs)
            sops = [
                spec_uid(spec, "sop", patient.index, visit.number, number, k)
                for k in range(spec.slices)
            ]
            folder = case / f"study_{visit.number + 1:02d}" / f"series_{number:02d}"
            folder.mkdir(parents=True)
            file_numbers = rng.permutation(spec.slices) + 1
            for k in range(spec.slices):
                dataset = _slice_dataset(
                    spec,
                    patient,
                    visit,
                    number,
                    contrast,
                    round(z_offset + k * _SLICE_MM, 3),
                    int(instance_numbers[k]),
                    sops[k],
                )
                dataset.PixelData = volume[k].tobytes()
                dataset.save_as(folder / f"IM{file_numbers[k]:04d}.dcm", enforce_file_format=True)
            boxes += _write_truth(cohort, sops, blobs)
    return boxes


def fake_person(rng: np.random.Generator) -> tuple[str, str]:
    """A distinctive fake name and a sex: privacy tests look for the name in every output."""
    token = "".join(rng.choice(list("BCDFGHJKLMNPQRSTVWXZ"), size=7))
    sex = str(rng.choice(["F", "M"]))
    return f"Demo{token}^{'Anna' if sex == 'F' else 'Bruno'}{token[::-1].lower()}", sex


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
    """One tumour in one study: its rasterised voxels and the ellipsoid distance that shades it."""

    mask: np.ndarray  # (slices, size, size) bool, slices under _MIN_BLOB_PIXELS already removed
    distance: np.ndarray  # (slices, size, size) float32, < 1 inside the ellipsoid
    necrotic: bool


@dataclass(frozen=True)
class _Tumour:
    """An ellipsoid fixed in the patient's anatomy; each study rasterises it at its own size."""

    row: float
    col: float
    ry: float
    rx: float
    start: int
    length: int
    necrotic: bool

    def rasterise(self, spec: DemoCohortSpec, radius: np.ndarray, shrink: float = 1.0) -> _Blob:
        """A treated tumour shrinks in-plane only and keeps semi-axes of a few pixels, so it is
        still seen, on the same slices, in every series of every study."""
        factor = max(shrink, min(1.0, _MIN_TREATED_PX / min(self.ry, self.rx)))
        yy, xx = np.mgrid[0 : spec.size, 0 : spec.size].astype(np.float32)
        centre = self.start + (self.length - 1) / 2
        dz = (np.arange(spec.slices, dtype=np.float32) - centre) / (self.length / 2)
        distance = (
            ((yy - self.row) / (self.ry * factor)) ** 2
            + ((xx - self.col) / (self.rx * factor)) ** 2
            + dz[:, None, None] ** 2
        )
        mask = (distance < 1.0) & (radius < 0.95)
        mask[mask.sum(axis=(1, 2)) < _MIN_BLOB_PIXELS] = False
        return _Blob(mask=mask, distance=distance, necrotic=self.necrotic)


def _sample_tumours(
    rng: np.random.Generator, head: _Head, spec: DemoCohortSpec, radius: np.ndarray
) -> list[_Tumour]:
    """One tumour, sometimes a second one that neither overlaps nor touches the first."""
    first = _sample_tumour(rng, head, spec, max_px=18.0)
    if rng.uniform() < 0.25:
        around_first = binary_dilation(first.rasterise(spec, radius).mask, iterations=2)
        for _ in range(20):
            second = _sample_tumour(rng, head, spec, max_px=12.0)
            if not np.any(second.rasterise(spec, radius).mask & around_first):
                return [first, second]
    return [first]


def _sample_tumour(
    rng: np.random.Generator, head: _Head, spec: DemoCohortSpec, max_px: float
) -> _Tumour:
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
    necrotic = bool(rng.uniform() < 0.5)
    return _Tumour(float(row), float(col), float(ry), float(rx), start, length, necrotic)


def _smooth_noise(
    rng: np.random.Generator, shape: tuple[int, ...], sigma: tuple[float, ...]
) -> np.ndarray:
    field = gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma)
    return field / max(float(field.std()), 1e-6)


@dataclass(frozen=True)
class _Anatomy:
    """A patient's tissues, the same in every series and study: only the contrast changes."""

    radius: np.ndarray  # (slices, size, size) distance from the brain centre; 1 = brain surface
    white: np.ndarray  # share of white matter in the brain, in [0, 1]
    texture: np.ndarray  # multiplicative tissue texture around 1
    ventricles: np.ndarray  # bool
    dots: np.ndarray  # bool: vessels and choroid plexus, distractors every patient has


def _sample_anatomy(rng: np.random.Generator, head: _Head, spec: DemoCohortSpec) -> _Anatomy:
    """Folded grey/white boundary, texture, ventricles, vessels: drawn once per patient."""
    px = spec.size / _REFERENCE_SIZE
    u, v = _brain_plane(head, spec.size)
    radius = np.hypot(u, v)[None] / head.scale[:, None, None]
    gyri = _smooth_noise(rng, radius.shape, (0.7, 2.5 * px, 2.5 * px))
    texture = 1.0 + 0.04 * _smooth_noise(rng, radius.shape, (0.5, 1.2 * px, 1.2 * px))
    return _Anatomy(
        radius=radius,
        white=1.0 / (1.0 + np.exp((radius - 0.72 - 0.08 * gyri) / 0.03)),
        texture=texture,
        ventricles=_ventricles(head, u, v),
        dots=_dots(rng, head, spec, u, v, radius),
    )


def _render(
    rng: np.random.Generator,
    head: _Head,
    spec: DemoCohortSpec,
    anatomy: _Anatomy,
    contrast: _Contrast,
    blobs: list[_Blob],
) -> np.ndarray:
    """Tissue model, then partial volume, bias field and Rician noise, as a scanner would add."""
    shape, px = anatomy.radius.shape, spec.size / _REFERENCE_SIZE
    image = _tissue(anatomy, contrast)
    for blob in blobs:
        image = _tumour(rng, image, blob, anatomy.radius, px, contrast)
    image = gaussian_filter(image, (0.0, 0.6 * px, 0.6 * px))
    image *= _bias_field(rng, head, spec.size)
    sigma = rng.uniform(0.025, 0.045)
    real = image + sigma * rng.standard_normal(shape, dtype=np.float32)
    imaginary = sigma * rng.standard_normal(shape, dtype=np.float32)
    stored = np.rint(np.hypot(real, imaginary) * _STORED_PER_UNIT)
    return np.clip(stored, 0, 2**_BITS_STORED - 1).astype(np.uint16)


def _tissue(anatomy: _Anatomy, contrast: _Contrast) -> np.ndarray:
    """Brain, CSF around it and in the ventricles, dark bone, scalp fat, vessels."""
    c, radius = contrast, anatomy.radius
    brain = (c.grey + (c.white - c.grey) * anatomy.white) * anatomy.texture
    image = np.select(
        [radius < 1.0, radius < 1.04, radius < 1.1, radius < 1.22],
        [brain, c.csf, c.bone, c.scalp * anatomy.texture],
        0.0,
    ).astype(np.float32)
    image = np.where(anatomy.ventricles, c.csf, image)
    return np.where(anatomy.dots, c.dot, image)


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
    """Vessels and choroid plexus: small distractors every patient has."""
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
    rng: np.random.Generator,
    image: np.ndarray,
    blob: _Blob,
    radius: np.ndarray,
    px: float,
    contrast: _Contrast,
) -> np.ndarray:
    """Bright solid tumour, a necrotic core for some, and oedema around it (dark on T1, bright
    on T2)."""
    oedema = (blob.distance < 1.8) & ~blob.mask & (radius < 1.0)
    image = np.where(oedema, image * contrast.oedema, image)
    noise = _smooth_noise(rng, image.shape, (0.5, 1.5 * px, 1.5 * px))
    solid = contrast.tumour * (1.0 + 0.08 * noise)
    tumour = np.where(blob.necrotic & (blob.distance < 0.3), contrast.core, solid)
    return np.where(blob.mask, tumour, image)


def _bias_field(rng: np.random.Generator, head: _Head, size: int) -> np.ndarray:
    """Smooth multiplicative coil sensitivity, varying across the plane and along the stack."""
    y, x = (np.mgrid[0:size, 0:size].astype(np.float32) - size / 2) / (size / 2)
    z = head.slab.astype(np.float32)[:, None, None]
    terms = np.stack(np.broadcast_arrays(x[None], y[None], z, (x * y)[None], x[None] ** 2))
    coefficients = rng.normal(0.0, 0.08, size=len(terms)).astype(np.float32)
    return np.exp(np.tensordot(coefficients, terms, axes=1))


def spec_uid(spec: object, *parts: object) -> str:
    """UIDs derived from the spec: reproducible, yet different for every cohort the spec names.

    pydicom concatenates entropy sources, so the parts are joined with a separator to keep
    ("sop", 2, 13) and ("sop", 21, 3) apart.
    """
    return generate_uid(entropy_srcs=["/".join([repr(spec), *map(str, parts)])])


def _slice_dataset(
    spec: DemoCohortSpec,
    patient: _Patient,
    visit: _Visit,
    number: int,
    contrast: _Contrast,
    z: float,
    instance: int,
    sop: str,
) -> FileDataset:
    """One slice's tags; `number` is the series number within its study."""
    seconds = visit.seconds + 360 * (number - 1)  # each series takes about six minutes
    study_time = time_of_day(visit.seconds)
    ds = file_dataset(MRImageStorage, sop)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = visit.date
    ds.StudyTime = study_time
    ds.SeriesTime = ds.ContentTime = time_of_day(seconds)
    ds.AccessionNumber = visit.accession
    ds.Modality = "MR"
    ds.StudyDescription = "MRI BRAIN W/WO CONTRAST"
    ds.SeriesDescription = contrast.description
    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = patient.sex
    ds.ScanningSequence = "SE"
    ds.SequenceVariant = contrast.sequence_variant
    ds.ScanOptions = ""
    ds.MRAcquisitionType = "2D"
    ds.SliceThickness = _SLICE_MM
    ds.SpacingBetweenSlices = _SLICE_MM
    ds.RepetitionTime = contrast.repetition_ms
    ds.EchoTime = contrast.echo_ms
    ds.EchoTrainLength = contrast.echo_train
    ds.MagneticFieldStrength = 1.5
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = spec_uid(spec, "study", patient.index, visit.number)
    ds.SeriesInstanceUID = spec_uid(spec, "series", patient.index, visit.number, number)
    ds.StudyID = visit.accession[-6:]
    ds.SeriesNumber = number
    ds.InstanceNumber = instance
    spacing = round(_FOV_MM / spec.size, 4)
    corner = round(-spacing * (spec.size - 1) / 2, 3)
    ds.ImagePositionPatient = [corner, corner, z]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.FrameOfReferenceUID = spec_uid(spec, "frame", patient.index, visit.number)
    ds.PositionReferenceIndicator = ""
    ds.SliceLocation = z
    set_grey_pixels(ds, (spec.size, spec.size), _BITS_STORED, "MONOCHROME2")
    ds.PixelSpacing = [spacing, spacing]
    ds.WindowCenter, ds.WindowWidth = contrast.window
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.RescaleType = "US"
    return ds


def file_dataset(sop_class: str, sop: str) -> FileDataset:
    """A DICOM file of one SOP class from the demo hospital's synthetic scanner, uncompressed
    explicit VR little endian; the caller adds the rest."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = FileDataset("", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop
    ds.Manufacturer = "Medvit Synthetic"
    ds.InstitutionName = "Medvit Demo Hospital"
    ds.ReferringPhysicianName = ""
    return ds


def set_grey_pixels(ds: Dataset, shape: tuple[int, int], bits: int, photometric: str) -> None:
    """The image pixel tags of unsigned greyscale values of `bits` bits in 16-bit words."""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = shape
    ds.BitsAllocated = 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0


def time_of_day(seconds: int) -> str:
    return f"{seconds // 3600:02d}{seconds // 60 % 60:02d}{seconds % 60:02d}"


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
