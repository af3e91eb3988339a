"""A deterministic synthetic chest X-ray cohort, written as real DICOM DX files with its
multi-label truth beside them.

The chest pipeline has to run end to end, and be tested, without patient data, through exactly
the code path a hospital export takes: projection radiographs (Modality DX) of 12 to 16 bits,
some MONOCHROME1 (bright = low signal, inverted on display), some windowed by a VOI LUT Sequence
instead of Window Center/Width, PA and AP views, several studies per patient.

Layout under `root`::

    dicom/pt_0007/study_02/IM0001.dcm   one radiograph per study; names are opaque
    findings.csv                        `sop_instance_uid,findings`: NIH-style `A|B` strings,
                                        `No Finding` for a normal radiograph

Images are drawn so that a model has something real to learn, each finding from the sign a
radiologist reads (the study's findings are NIH names):

- Cardiomegaly: a cardiac silhouette wider than half the thorax (cardiothoracic ratio about
  0.55-0.65 against 0.38-0.46).
- Effusion: a blunted costophrenic angle, a homogeneous basal opacity with a meniscus rising
  laterally, on one side.
- Nodule: a small round soft-tissue opacity inside a lung field.
- Pneumothorax: a rim at the apex and lateral edge of one lung without lung markings, bounded by
  a thin visceral pleural line.

Every patient has ribs, clavicles, spine, mediastinum, heart and branching lung markings, varying
in position, size and exposure, so no finding is told by position or brightness alone.
Cardiomegaly and nodules persist across a patient's studies; an effusion or pneumothorax may
resolve at follow-up. The same spec gives byte-identical files and CSVs.
"""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import DigitalXRayImageStorageForPresentation
from scipy.ndimage import binary_dilation, gaussian_filter

from medvit.imaging.demo import (
    fake_person,
    file_dataset,
    set_grey_pixels,
    spec_uid,
    time_of_day,
)

# NIH names of the synthetic findings and how often a patient has each at the baseline study.
CHEST_DEMO_FINDINGS = ("Cardiomegaly", "Effusion", "Nodule", "Pneumothorax")
_PREVALENCE = (0.25, 0.2, 0.2, 0.15)
_PERSISTS = (1.0, 0.6, 1.0, 0.5)  # chance that a finding is still there at a follow-up
_NO_FINDING = "No Finding"
_VIEWS = ("PA", "AP")
_AP_SHARE = 0.35
_STUDY_SHARES = (0.5, 0.3, 0.2)  # patients with 1, 2, 3 studies (capped at max_studies)


@dataclass(frozen=True)
class ChestDemoSpec:
    """What to generate. Images are `size` rows by 7/8 of that in columns (portrait, as a
    detector plate); `max_studies` caps the studies per patient (1-3, most have one)."""

    n_patients: int = 160
    size: int = 128
    seed: int = 0
    max_studies: int = 3
    monochrome1_fraction: float = 0.3
    voi_lut_fraction: float = 0.3


@dataclass(frozen=True)
class ChestDemoCohort:
    root: Path
    dicom_dir: Path
    findings_csv: Path

    @classmethod
    def at(cls, root: Path) -> ChestDemoCohort:
        root = Path(root)
        return cls(root=root, dicom_dir=root / "dicom", findings_csv=root / "findings.csv")


@dataclass(frozen=True)
class _Anatomy:
    """One patient's chest, in image fractions (x: 0 = image left = patient right)."""

    cx: float  # body centre
    top: float  # lung apices
    base: float  # costophrenic angles
    half_width: float  # lung fields' half extent from the centre
    heart: float  # normal heart half width as a share of the thorax half width
    markings: np.ndarray  # (rows, cols) branching vessel pattern in [0, 1]


@dataclass(frozen=True)
class _Lesions:
    """Where this patient's findings sit (used only where the finding is present)."""

    effusion_side: int  # -1 image left, 1 image right
    effusion_depth: float
    nodule_side: int
    nodule_at: tuple[float, float]  # (y, x offset from the lung centre) in lung half-sizes
    nodule_radius: float
    pneumothorax_side: int
    pneumothorax_rim: float


def write_chest_demo(root: Path, spec: ChestDemoSpec = ChestDemoSpec()) -> ChestDemoCohort:
    """Write the cohort from scratch, so a smaller spec leaves no stale files of a larger one."""
    if spec.size < 64 or spec.n_patients < 4:
        raise ValueError("chest_demo_cohort needs at least 4 patients at 64 px")
    if not 1 <= spec.max_studies <= len(_STUDY_SHARES):
        raise ValueError(f"chest_demo_cohort: max_studies must be 1-3, got {spec.max_studies}")
    for share in (spec.monochrome1_fraction, spec.voi_lut_fraction):
        if not 0 <= share <= 1:
            raise ValueError(f"chest_demo_cohort: fractions must be in [0, 1], got {share}")
    cohort = ChestDemoCohort.at(root)
    if cohort.dicom_dir.exists():
        shutil.rmtree(cohort.dicom_dir)
    cohort.dicom_dir.mkdir(parents=True)
    rows: list[tuple[str, str]] = []
    for index in range(spec.n_patients):
        rows += _write_patient(cohort, spec, index)
    truth = pd.DataFrame(rows, columns=["sop_instance_uid", "findings"])
    truth.sort_values("sop_instance_uid").to_csv(cohort.findings_csv, index=False)
    return cohort


def _write_patient(cohort: ChestDemoCohort, spec: ChestDemoSpec, index: int) -> list[tuple]:
    rng = np.random.default_rng([spec.seed, index])
    rows, cols = spec.size, _columns(spec.size)
    name, sex = fake_person(np.random.default_rng([spec.seed, index, 1]))
    mrn = f"CXR{int(rng.integers(10**6, 10**7))}"
    birth = dt.date(1940, 1, 1) + dt.timedelta(days=int(rng.integers(0, 60 * 365)))
    shares = np.array(_STUDY_SHARES[: spec.max_studies])
    n_studies = int(rng.choice(len(shares), p=shares / shares.sum())) + 1
    anatomy = _sample_anatomy(rng, rows, cols)
    lesions = _sample_lesions(rng)
    present = rng.uniform(size=len(CHEST_DEMO_FINDINGS)) < _PREVALENCE
    monochrome1 = bool(rng.uniform() < spec.monochrome1_fraction)
    day = dt.date(2018, 1, 1) + dt.timedelta(days=int(rng.integers(0, 4 * 365)))
    written = []
    for study in range(n_studies):
        if study:
            present &= rng.uniform(size=len(present)) < _PERSISTS
            day += dt.timedelta(days=int(rng.integers(2, 200)))
        view = _VIEWS[int(rng.uniform() < _AP_SHARE)]
        density = _render(rng, anatomy, lesions, present, rows, cols)
        sop = spec_uid(spec, "sop", index, study)
        ds = _dataset(spec, rng, index, study, sop, density, monochrome1)
        ds.PatientName, ds.PatientID, ds.PatientSex = name, mrn, sex
        ds.PatientBirthDate = birth.strftime("%Y%m%d")
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = day.strftime("%Y%m%d")
        ds.StudyTime = ds.SeriesTime = time_of_day(int(rng.integers(7 * 3600, 20 * 3600)))
        ds.AccessionNumber = f"ACX{int(rng.integers(10**7, 10**8))}"
        ds.ViewPosition = view
        folder = cohort.dicom_dir / f"pt_{index + 1:04d}" / f"study_{study + 1:02d}"
        folder.mkdir(parents=True)
        ds.save_as(folder / "IM0001.dcm", enforce_file_format=True)
        names = [name for name, on in zip(CHEST_DEMO_FINDINGS, present, strict=True) if on]
        written.append((sop, "|".join(names) or _NO_FINDING))
    return written


def _columns(size: int) -> int:
    return 2 * round(size * 7 / 16)


def _sample_anatomy(rng: np.random.Generator, rows: int, cols: int) -> _Anatomy:
    """Position, size and lung markings: a branching pattern from band-passed noise, whose
    thin ridges stand for vessels and fade towards the periphery as real markings do."""
    scale = rows / 128
    noise = rng.standard_normal((rows, cols)).astype(np.float32)
    band = gaussian_filter(noise, 1.2 * scale) - gaussian_filter(noise, 3.0 * scale)
    band /= max(float(band.std()), 1e-6)
    return _Anatomy(
        cx=0.5 + rng.uniform(-0.03, 0.03),
        top=rng.uniform(0.08, 0.14),
        base=rng.uniform(0.76, 0.84),
        half_width=rng.uniform(0.36, 0.42),
        heart=rng.uniform(0.38, 0.46),
        markings=np.exp(-((band / 0.35) ** 2)),
    )


def _sample_lesions(rng: np.random.Generator) -> _Lesions:
    side = [-1, 1]
    return _Lesions(
        effusion_side=int(rng.choice(side)),
        effusion_depth=rng.uniform(0.3, 0.45),
        nodule_side=int(rng.choice(side)),
        nodule_at=(rng.uniform(-0.55, 0.35), rng.uniform(-0.45, 0.45)),
        nodule_radius=rng.uniform(0.028, 0.042),
        pneumothorax_side=int(rng.choice(side)),
        pneumothorax_rim=rng.uniform(0.16, 0.26),
    )


def _render(
    rng: np.random.Generator,
    anatomy: _Anatomy,
    lesions: _Lesions,
    present: np.ndarray,
    rows: int,
    cols: int,
) -> np.ndarray:
    """Density in about [0, 1] (1 = bone-dense), as the detector sees it after a study."""
    cardiomegaly, effusion, nodule, pneumothorax = (bool(flag) for flag in present)
    a = anatomy
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float32)
    y, x = y / rows, x / cols
    dx = x - a.cx
    body = np.abs(dx) < 0.47 - 0.08 * np.clip(0.25 - y, 0, None) / 0.25
    density = np.where(body, 0.42, 0.04).astype(np.float32)
    density += np.where(body, 0.1 * y, 0.0)  # more tissue towards the abdomen

    centre_y, half_height = (a.top + a.base) / 2, (a.base - a.top) / 2
    lungs = np.zeros((rows, cols), dtype=bool)
    rim = np.zeros((rows, cols), dtype=bool)
    fluid = np.zeros((rows, cols), dtype=bool)
    blob = np.zeros((rows, cols), dtype=np.float32)
    for side in (-1, 1):
        lung_cx = a.cx + side * a.half_width * 0.55
        u = (x - lung_cx) / (a.half_width * 0.45)
        v = (y - centre_y) / half_height
        # Rounded apex, flat base where the diaphragm cuts it
        radius = np.hypot(u, np.where(v < 0, v, v * 0.6))
        dome = a.base - 0.05 * np.cos(np.clip(u, -1, 1) * np.pi / 2)
        lung = (radius < 1) & (y < dome)
        lungs |= lung
        if pneumothorax and side == lesions.pneumothorax_side:
            lateral = side * u > -0.2
            rim |= lung & (radius > 1 - lesions.pneumothorax_rim) & ((v < 0.1) | lateral)
        if nodule and side == lesions.nodule_side:
            ny = centre_y + lesions.nodule_at[0] * half_height
            nx = lung_cx + lesions.nodule_at[1] * a.half_width * 0.45
            distance = np.hypot((y - ny) * rows / cols, x - nx) / lesions.nodule_radius
            blob = np.clip(1.2 - distance, 0, 1) ** 0.7
        if effusion and side == lesions.effusion_side:
            level = a.base - lesions.effusion_depth * half_height * (0.7 + 0.5 * side * u)
            fluid = (radius < 1.02) & (y > level) & (y < dome + 0.03)
    heart_half = a.heart * (1.45 if cardiomegaly else 1.0) * a.half_width
    heart = ((x - a.cx - 0.2 * heart_half) / heart_half) ** 2 + (
        (y - (a.base - 0.13)) / 0.15
    ) ** 2 < 1
    mediastinum = (np.abs(dx) < 0.07) & (y > a.top - 0.05) & (y < a.base)
    lung_field = lungs & ~heart & ~mediastinum
    density = np.where(lung_field, 0.14 + 0.16 * a.markings * (1 - 0.6 * rim), density)
    density = np.where(rim, 0.08, density)
    pleural_line = binary_dilation(rim) & lung_field & ~rim  # the collapsed lung's edge
    density = np.where(pleural_line, 0.4, density)
    density = np.where(heart | mediastinum, 0.62, density)
    density = np.where(fluid & body, np.maximum(density, 0.58), density)
    density = np.maximum(density, np.where(lungs & (blob > 0), 0.2 + 0.42 * blob, 0))
    density += _bones(a, x, y, dx)
    density = gaussian_filter(density, 0.7 * rows / 128)
    exposure = rng.uniform(0.9, 1.1)
    density = density * exposure + rng.normal(0, 0.015, size=density.shape)
    return np.clip(density, 0, 1).astype(np.float32)


def _bones(a: _Anatomy, x: np.ndarray, y: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """Spine, clavicles and posterior ribs arching across each hemithorax."""
    bones = np.where(np.abs(dx) < 0.035, 0.2, 0.0).astype(np.float32)
    spacing = (a.base - a.top) / 8
    for k in range(9):
        arch = a.top + k * spacing + 0.16 * (np.abs(dx) / a.half_width) ** 2 - 0.02
        bones += np.where((np.abs(y - arch) < 0.012) & (np.abs(dx) < a.half_width * 1.02), 0.1, 0)
    clavicle = a.top - 0.01 + 0.08 * (np.abs(dx) / a.half_width - 0.5) ** 2
    bones += np.where((np.abs(y - clavicle) < 0.012) & (np.abs(dx) < a.half_width), 0.15, 0)
    return bones


def _dataset(
    spec: ChestDemoSpec,
    rng: np.random.Generator,
    index: int,
    study: int,
    sop: str,
    density: np.ndarray,
    monochrome1: bool,
) -> Dataset:
    """Stored values at 12, 14 or 16 bits, inverted for MONOCHROME1, with a window or a VOI LUT
    that maps them back to the density."""
    bits = int(rng.choice([12, 14, 16]))
    top = 2**bits - 1
    offset, gain = 0.05 * top, 0.85 * top
    signal = offset + gain * density
    stored = np.rint(top - signal if monochrome1 else signal).astype(np.uint16)
    centre = offset + 0.4 * gain
    ds = file_dataset(DigitalXRayImageStorageForPresentation, sop)
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.Modality = "DX"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.BodyPartExamined = "CHEST"
    ds.StudyDescription = "XR CHEST 1 VIEW"
    ds.StudyInstanceUID = spec_uid(spec, "study", index, study)
    ds.SeriesInstanceUID = spec_uid(spec, "series", index, study)
    ds.StudyID = str(study + 1)
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.PatientOrientation = ["R", "F"]  # image left is the patient's right, as read
    set_grey_pixels(ds, stored.shape, bits, "MONOCHROME1" if monochrome1 else "MONOCHROME2")
    ds.ImagerPixelSpacing = [round(430 / stored.shape[0], 4)] * 2
    ds.WindowCenter = round(top - centre if monochrome1 else centre, 1)
    ds.WindowWidth = round(0.9 * gain, 1)
    if bits == 12 and rng.uniform() < spec.voi_lut_fraction:
        ds.VOILUTSequence = Sequence([_voi_lut(top, monochrome1, offset, gain)])
    ds.PixelData = stored.tobytes()
    return ds


def _voi_lut(top: int, monochrome1: bool, offset: float, gain: float) -> Dataset:
    """A sigmoid-shaped VOI LUT over every stored value, as many DR consoles ship it."""
    values = np.arange(top + 1, dtype=np.float64)
    density = ((top - values) if monochrome1 else values) - offset
    curve = 1 / (1 + np.exp(-(density / gain - 0.4) * 5))
    curve = 1 - curve if monochrome1 else curve  # the viewer inverts MONOCHROME1 afterwards
    item = Dataset()
    item.add(DataElement(0x00283002, "US", [top + 1, 0, 16]))
    item.add(DataElement(0x00283006, "OW", np.rint(curve * 65535).astype("<u2").tobytes()))
    item.LUTExplanation = "SIGMOID DEMO"
    return item
