"""Reader for an image folder with a manifest, YOLO label files and optional masks.

This is how most public 2-D sets ship (the figshare and Br35H brain MRI sets among them). YOLO
boxes are normalised centre/size; they are validated against the real image size before use.
"""

from __future__ import annotations

import logging
from typing import Any

import cv2
import numpy as np
import pandas as pd

from medvit.imaging.intensity import window_percentile
from medvit.ingestion.config import ImageFolderSource
from medvit.ingestion.dicom_tree import SourceConfigError, read_csv
from medvit.ingestion.findings import UnknownFinding, Vocabulary, any_finding, view_name
from medvit.ingestion.pseudonym import Pseudonymiser
from medvit.ingestion.units import Rejected, UnitResult, check_annotations

log = logging.getLogger(__name__)


def _rows(source: ImageFolderSource) -> list[dict[str, Any]]:
    """The manifest's rows with their CSV line number, missing cells as None."""
    columns = [source.image_column] + [
        column
        for column in (
            source.label_column,
            source.mask_column,
            source.tumor_column,
            source.patient_column,
            source.group_column,
            source.tumor_type_column,
            source.view_column,
            source.findings_column,
        )
        if column
    ]
    frame = read_csv(source.root / source.manifest, columns)
    return [
        {"_row": index + 2, **row}  # CSV line number, header being line 1
        for index, row in enumerate(
            frame.astype(object).where(frame.notna(), None).to_dict("records")
        )
    ]


# Manifest line -> finding labels, or None for a row marked unlabelled; None for a source
# without findings.
FolderTruth = dict[int, dict[str, int] | None] | None


def load_truth(source: ImageFolderSource, vocabulary: Vocabulary) -> FolderTruth:
    """Every row's findings, parsed in the parent before any image is decoded: an unknown
    finding name stops the run at once, naming the manifest line and the known findings."""
    if not source.has_findings:
        return None
    manifest = source.root / source.manifest
    rows = _rows(source)
    header = (
        vocabulary.match_header(rows[0].keys() if rows else [], str(manifest))
        if source.findings_as_columns
        else {}
    )
    truth: dict[int, dict[str, int] | None] = {}
    try:
        for row in rows:
            where = f"{manifest} line {row['_row']}"
            if source.findings_column is not None:
                text = row[source.findings_column]
                truth[row["_row"]] = (
                    None if vocabulary.is_unlabelled(text) else vocabulary.parse(text, where)
                )
            else:
                truth[row["_row"]] = vocabulary.from_columns(row, header, where)
    except UnknownFinding as error:
        raise SourceConfigError(str(error)) from None
    return truth


def units(source: ImageFolderSource, chunk_size: int) -> list[list[dict[str, Any]]]:
    if source.unit == "image":
        log.warning(
            "Source %r: `unit: image` makes every image its own unit, so slices of one patient "
            "may sit in both train and test and patient-level metrics are not patient-disjoint",
            source.name,
        )
    rows = _rows(source)
    return [rows[i : i + chunk_size] for i in range(0, len(rows), chunk_size)]


def patient_labels(source: ImageFolderSource) -> pd.Series | None:
    """Each unit's label as the manifest states it, before any image is read; None without a
    tumour column, where only the label files and masks tell.

    A row's box or mask also makes its slice a tumour slice at ingestion; the split node, which
    sees those, checks the split request again.
    """
    if source.tumor_column is None:
        return None
    rows = _rows(source)
    keys = [_unit_id(source, row)[0] for row in rows]
    return pd.Series([_tumor(source, row) for row in rows], index=keys).groupby(level=0).max()


def paths(source: ImageFolderSource, rows: list[dict[str, Any]]) -> list[str]:
    return [str(row[source.image_column]) for row in rows]


def _read_grey(path: str) -> np.ndarray:
    image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise Rejected("corrupt_image", "image file cannot be decoded")
    if image.ndim == 3:
        image = cv2.cvtColor(
            image, cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        )
    return image if image.dtype == np.uint8 else window_percentile(image.astype(np.float32))


def _yolo_boxes(text: str, rows: int, cols: int) -> list[list[float]]:
    boxes = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            _, cx, cy, w, h = (float(value) for value in fields)
        except ValueError as error:
            raise Rejected("bad_label", f"label line {number} is not 'class cx cy w h'") from error
        boxes.append(
            [(cx - w / 2) * cols, (cy - h / 2) * rows, (cx + w / 2) * cols, (cy + h / 2) * rows]
        )
    return boxes


def _tumor(source: ImageFolderSource, row: dict[str, Any]) -> int:
    value = row.get(source.tumor_column) if source.tumor_column else None
    return int(float(value)) if value is not None else 0


def _unit_id(source: ImageFolderSource, row: dict[str, Any]) -> tuple[str, str | None]:
    """Raw patient key and group value: the patient id, else the group, else the image itself."""
    if source.patient_column:
        return str(row[source.patient_column]), None
    if source.group_column:
        group = str(row[source.group_column])
        return f"{source.name}/{source.group_column}={group}", group
    return f"{source.name}/{row[source.image_column]}", None


def _slice(
    source: ImageFolderSource,
    truth: FolderTruth,
    row: dict[str, Any],
    result: UnitResult,
    pseudo: Pseudonymiser,
) -> None:
    findings = truth[row["_row"]] if truth is not None else {}
    if findings is None:
        raise Rejected(
            "unlabelled", f"manifest line {row['_row']}: its findings are marked unlabelled"
        )
    image_path = source.root / str(row[source.image_column])
    if not image_path.is_file():
        raise Rejected(
            "missing_image", f"manifest line {row['_row']} names an image that does not exist"
        )
    image = _read_grey(str(image_path))
    rows, cols = image.shape
    boxes: list[list[float]] = []
    if source.label_column and row[source.label_column]:
        label_path = source.root / str(row[source.label_column])
        if not label_path.is_file():
            raise Rejected(
                "missing_label", f"manifest line {row['_row']} names a missing label file"
            )
        boxes = _yolo_boxes(label_path.read_text(), rows, cols)
    mask = None
    if source.mask_column and row[source.mask_column]:
        mask = cv2.imread(str(source.root / str(row[source.mask_column])), cv2.IMREAD_GRAYSCALE)
        if mask is None:
            raise Rejected(
                "missing_mask", f"manifest line {row['_row']} names a missing or unreadable mask"
            )
    problem = check_annotations(boxes, mask, rows, cols)
    if problem:
        raise Rejected("bad_annotation", problem)
    raw_patient, group = _unit_id(source, row)
    patient_id = pseudo("patient", raw_patient)
    image_key = f"{source.name}/{row[source.image_column]}"
    # A radiograph is its own study; slices of a patient's images share one.
    study = image_key if source.radiographs else raw_patient
    result.add_slice(
        {
            "source": source.archive or source.name,
            "path": str(row[source.image_column]),
            "patient_id": patient_id,
            "study_id": pseudo("study", study),
            # An image folder says nothing of series: a group (a fold, a set of near-copies) or a
            # patient's images are no volume, so each image is its own one-slice series and the
            # series checks (one size, an order) do not mistake them for one.
            "series_id": pseudo("series", image_key),
            "instance_id": pseudo("instance", image_key),
            "instance_number": row["_row"],
            "frame": 0,
            "position": None,
            "tumor": any_finding(findings) if truth is not None else _tumor(source, row),
            "group": group,
            "tumor_type": row.get(source.tumor_type_column) if source.tumor_type_column else None,
            "slice_thickness_mm": None,
            "view": view_name(row.get(source.view_column)) if source.view_column else None,
            **findings,
        },
        image,
        boxes,
        mask,
        None if source.pixel_spacing_mm is None else (source.pixel_spacing_mm,) * 2,
    )


def process(
    source: ImageFolderSource,
    truth: FolderTruth,
    rows: list[dict[str, Any]],
    pseudo: Pseudonymiser,
    result: UnitResult,
) -> UnitResult:
    """Fill `result` (empty, set up with the store's size and preprocessing)."""
    for row in rows:
        try:
            _slice(source, truth, row, result, pseudo)
        except Rejected as rejected:
            path = str(row[source.image_column])
            result.reject(path, rejected.kind, str(rejected))
        except (ValueError, OSError, cv2.error) as error:
            result.reject(
                str(row[source.image_column]), "corrupt_image", f"{type(error).__name__}: {error}"
            )
    return result
