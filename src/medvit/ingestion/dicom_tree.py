"""Reader for a DICOM tree of any nesting, with ground truth keyed by PatientID and SOPInstanceUID.

Files are read in chunks in any order; grouping by SeriesInstanceUID and ordering along the slice
normal happen later on the gathered records (`table.py`), because one series may be spread over
many folders and chunks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from medvit.imaging.dicom import DicomProblem, decode_dicom
from medvit.ingestion.config import DicomSource
from medvit.ingestion.findings import UnknownFinding, Vocabulary, any_finding, view_name
from medvit.ingestion.pseudonym import Pseudonymiser
from medvit.ingestion.units import Quarantined, UnitResult, check_annotations


class SourceConfigError(ValueError):
    """A configured file is missing or malformed: a setup mistake, so the run stops at once."""


@dataclass(frozen=True)
class DicomTruth:
    """Ground truth loaded once in the parent and shipped to every worker at start-up."""

    patients: dict[str, int] | None
    boxes: dict[str, list[list[float]]]
    # by SOPInstanceUID, from findings_csv; None for an image marked unlabelled
    findings: dict[str, dict[str, int] | None] | None = None


def read_csv(path: Path, required: list[str]) -> pd.DataFrame:
    if not path.is_file():
        raise SourceConfigError(f"{path}: file not found")
    frame = pd.read_csv(path, dtype=str)
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise SourceConfigError(f"{path}: missing column(s) {missing}; found {list(frame.columns)}")
    return frame


def load_truth(source: DicomSource, vocabulary: Vocabulary | None = None) -> DicomTruth:
    """Ground truth from the source's CSVs; findings only with the vocabulary to read them."""
    patients = None
    if source.patients_csv is not None:
        frame = read_csv(source.patients_csv, ["patient_id", "tumor"])
        patients = dict(zip(frame.patient_id.str.strip(), frame.tumor.astype(int), strict=True))
    boxes: dict[str, list[list[float]]] = {}
    if source.boxes_csv is not None:
        frame = read_csv(source.boxes_csv, ["sop_instance_uid", "x1", "y1", "x2", "y2"])
        coords = frame[["x1", "y1", "x2", "y2"]].astype(float).to_numpy().tolist()
        for sop, box in zip(frame.sop_instance_uid.str.strip(), coords, strict=True):
            boxes.setdefault(sop, []).append(box)
    findings = None
    if source.findings_csv is not None and vocabulary is not None:
        frame = read_csv(source.findings_csv, ["sop_instance_uid", "findings"])
        findings = {}
        try:
            for line, (sop, text) in enumerate(
                zip(frame.sop_instance_uid.str.strip(), frame.findings, strict=True), start=2
            ):
                where = f"{source.findings_csv} line {line}"
                findings[sop] = (
                    None if vocabulary.is_unlabelled(text) else vocabulary.parse(text, where)
                )
        except UnknownFinding as error:
            raise SourceConfigError(str(error)) from None
    return DicomTruth(patients, boxes, findings)


def units(source: DicomSource, chunk_size: int) -> list[list[str]]:
    if not source.root.is_dir():
        raise SourceConfigError(f"{source.root}: DICOM root folder not found")
    files = []
    for folder, _, names in os.walk(source.root):
        prefix = os.path.relpath(folder, source.root)  # per folder, not per file: 1e5+ files
        base = "" if prefix == "." else prefix + os.sep
        files += [base + name for name in names if not name.startswith(".")]
    files.sort()
    return [files[i : i + chunk_size] for i in range(0, len(files), chunk_size)]


def paths(_: DicomSource, files: list[str]) -> list[str]:
    return files


def truth_files(source: DicomSource) -> list[str]:
    """Ground-truth files, which the quarantine report names when they match no image."""
    csvs = (source.patients_csv, source.boxes_csv, source.findings_csv)
    files = [str(path) for path in csvs if path is not None]
    return files + [str(path) for path in _mask_files(source)]


def _mask_files(source: DicomSource) -> list[Path]:
    if source.masks_dir is None or not source.masks_dir.is_dir():
        return []
    return sorted(source.masks_dir.glob("*.png"))


def _mask(source: DicomSource, sop: str) -> np.ndarray | None:
    if source.masks_dir is None:
        return None
    path = source.masks_dir / f"{sop}.png"
    return cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) if path.is_file() else None


def process(
    source: DicomSource,
    truth: DicomTruth,
    files: list[str],
    pseudo: Pseudonymiser,
    result: UnitResult,
) -> UnitResult:
    """Fill `result` (empty, set up with the store's size and preprocessing)."""
    for relative in files:
        try:
            dicom = decode_dicom(source.root / relative, source.window)
        except DicomProblem as problem:
            result.reject(relative, problem.kind, str(problem))
            continue
        result.seen.update((dicom.sop_uid, dicom.patient_id))
        if dicom.burned_in and not source.allow_burned_in:
            result.reject(
                relative,
                "burned_in_annotation",
                "BurnedInAnnotation is YES: the pixels may show names or dates; after checking "
                f"them, set allow_burned_in: true for source '{source.name}' to use such slices",
            )
            continue
        if truth.patients is not None and dicom.patient_id not in truth.patients:
            result.reject(relative, "unlabelled_patient", "PatientID not in patients_csv")
            continue
        findings: dict[str, int] | None = {}
        if truth.findings is not None:
            findings = truth.findings.get(dicom.sop_uid)
            if findings is None:
                result.reject(
                    relative, "unlabelled", "no findings in findings_csv for its SOPInstanceUID"
                )
                continue
        boxes = truth.boxes.get(dicom.sop_uid, []) if dicom.frames.shape[0] == 1 else []
        mask = _mask(source, dicom.sop_uid) if dicom.frames.shape[0] == 1 else None
        problem = check_annotations(boxes, mask, *dicom.frames.shape[1:])
        if problem:
            result.reject(relative, "bad_annotation", problem)
            continue
        # A radiograph is a one-slice series of its own: a PA and a lateral image often share a
        # SeriesInstanceUID, yet are not slices of one volume.
        series = f"{dicom.series_uid}/{dicom.sop_uid}" if dicom.projection else dicom.series_uid
        record = {
            "source": source.name,
            "path": relative,
            "patient_id": pseudo("patient", dicom.patient_id),
            "study_id": pseudo("study", dicom.study_uid),
            "series_id": pseudo("series", series),
            "instance_number": dicom.instance_number,
            "patient_tumor": None if truth.patients is None else truth.patients[dicom.patient_id],
            "slice_thickness_mm": dicom.slice_spacing,
            "view": view_name(dicom.view),
            **findings,
        }
        if truth.findings is not None:
            record["tumor"] = any_finding(findings)
        for frame, (pixels, position) in enumerate(zip(dicom.frames, dicom.positions, strict=True)):
            result.add_slice(
                {
                    **record,
                    "frame": frame,
                    "position": position,
                    "instance_id": pseudo("instance", f"{dicom.sop_uid}/{frame}"),
                },
                pixels,
                boxes,
                mask,
                dicom.pixel_spacing,
            )
    return result


def _orphan_rows(path: Path, column: str, unmatched: set[str]) -> list[Quarantined]:
    """One entry per CSV line (header = 1) whose key matched nothing: the line number, never the
    key, which is a raw PatientID or UID."""
    if not unmatched:
        return []
    keys = read_csv(path, [column])[column].str.strip()
    return [
        Quarantined(str(path), "orphan_label", f"line {line}: its {column} matches no image")
        for line, key in enumerate(keys, start=2)
        if key in unmatched
    ]


def orphans(source: DicomSource, truth: DicomTruth, seen: set[str]) -> list[Quarantined]:
    """Ground truth that points at nothing ingested: listed, never silently ignored."""
    found = []
    if source.boxes_csv is not None:
        found += _orphan_rows(source.boxes_csv, "sop_instance_uid", set(truth.boxes) - seen)
    if source.patients_csv is not None:
        found += _orphan_rows(source.patients_csv, "patient_id", set(truth.patients or {}) - seen)
    if source.findings_csv is not None:
        found += _orphan_rows(
            source.findings_csv, "sop_instance_uid", set(truth.findings or {}) - seen
        )
    found += [
        Quarantined(str(path), "orphan_label", "mask matches no ingested image")
        for path in _mask_files(source)
        if path.stem not in seen
    ]
    return found
