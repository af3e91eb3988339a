"""What a worker sends back for one unit of work, and the per-slice steps every reader shares.

A unit (a chunk of files, manifest rows or one volume) comes back already reduced to 8-bit
stored-size pixels, so the parent process only appends bytes to the store: memory stays flat and
the expensive decode runs in parallel.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from medvit.imaging.intensity import (
    Letterbox,
    box_clipped,
    box_problem,
    clip_box,
    foreground_box,
    head_mask,
    standardise,
    to_uint8,
)
from medvit.ingestion.config import Preprocessing


class Rejected(Exception):
    """One input that cannot become slices; `kind` groups reasons for counting."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind


@dataclass
class Quarantined:
    """One unusable input. Readers give its path; `UnitResult.key_files` makes it a file key."""

    file_id: str
    kind: str
    reason: str


@dataclass
class UnitResult:
    """Slices of one unit: `records[i]` describes `images[i]`; `mask_slot` indexes `masks`."""

    size: int
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    records: list[dict[str, Any]] = field(default_factory=list)
    images: list[np.ndarray] = field(default_factory=list)
    masks: list[np.ndarray] = field(default_factory=list)
    quarantine: list[Quarantined] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)  # raw keys, kept in memory only (orphan labels)

    def reject(self, path: str, kind: str, reason: str) -> None:
        self.quarantine.append(Quarantined(path, kind, reason))

    def key_files(self, file_id: Callable[[str], str], root: Path) -> None:
        """Replace every input path by its opaque file key before the result leaves the worker.

        Folder and file names of clinical exports often carry patient names, so paths stay in
        the local lookup; a library's error text that quotes a path gets the key instead.
        """
        for record in self.records:
            record["file_id"] = file_id(record.pop("path"))
        for item in self.quarantine:
            path, item.file_id = item.file_id, file_id(item.file_id)
            for quoted in (str(root / path), path):
                item.reason = item.reason.replace(quoted, item.file_id)

    def add_slice(
        self,
        record: dict[str, Any],
        image: np.ndarray,
        boxes: list[list[float]],
        mask: np.ndarray | None,
        spacing: tuple[float, float] | None = None,
    ) -> None:
        """Preprocess and letterbox one source image (float in [0,1] or uint8), its boxes and mask.

        The caller has already validated boxes and mask against the source image size; boxes
        that run past the edge are clipped to it here and counted (`clipped_boxes`), and so are
        boxes the foreground crop cuts (`cropped_boxes`). The crop never widens to keep a box:
        a crop that depended on the annotation would tell tumour slices apart by their geometry.
        `spacing` is the source pixels' (row, column) size in mm; the record keeps the stored
        pixels' size (`pixel_spacing_mm`, after crop and resize), which is what millimetre metrics
        on stored masks need.
        """
        rows, cols = image.shape
        clipped = [clip_box(b, rows, cols) for b in boxes]
        pixels, mask, clipped, cropped = self._preprocess(image, mask, clipped)
        box = Letterbox(*pixels.shape, self.size)
        pixels = pixels if pixels.dtype == np.uint8 else to_uint8(pixels)
        self.images.append(box.image(pixels))
        mask_slot = None
        if mask is not None:
            mask_slot = len(self.masks)
            self.masks.append(box.image((mask > 0).astype(np.uint8) * 255, nearest=True))
        self.records.append(
            {
                **record,
                "rows": rows,
                "cols": cols,
                "boxes": box.boxes(clipped),
                "pixel_spacing_mm": box.spacing(spacing),
                "mask_slot": mask_slot,
                "clipped_boxes": sum(box_clipped(b, rows, cols) for b in boxes),
                "cropped_boxes": cropped,
                "tumor": int(record.get("tumor") or bool(boxes) or mask_slot is not None),
            }
        )

    def _preprocess(
        self, image: np.ndarray, mask: np.ndarray | None, boxes: list[list[float]]
    ) -> tuple[np.ndarray, np.ndarray | None, list[list[float]], int]:
        """(pixels, mask, boxes in their frame, boxes the crop cut): the image as read unless
        `preprocessing` asks for a foreground crop or per-image standardisation."""
        settings = self.preprocessing
        if not settings.crop_foreground and settings.intensity == "window":
            return image, mask, boxes, 0
        head = head_mask(image, settings.foreground_threshold)
        cropped = 0
        if settings.crop_foreground:
            y0, y1, x0, x1 = foreground_box(head, settings.crop_margin)
            image, head = image[y0:y1, x0:x1], head[y0:y1, x0:x1]
            mask = None if mask is None else mask[y0:y1, x0:x1]
            rows, cols = image.shape
            moved = [[b[0] - x0, b[1] - y0, b[2] - x0, b[3] - y0] for b in boxes]
            cropped = sum(box_clipped(b, rows, cols) for b in moved)
            boxes = [
                b for b in (clip_box(b, rows, cols) for b in moved) if b[2] > b[0] and b[3] > b[1]
            ]
        if settings.intensity != "window":
            image = standardise(
                image,
                settings.intensity,
                percentiles=settings.percentiles,
                clip=settings.zscore_clip,
                foreground=head,
            )
        return image, mask, boxes, cropped


def check_annotations(
    boxes: list[list[float]], mask: np.ndarray | None, rows: int, cols: int
) -> str | None:
    """Why a slice's ground truth cannot be trusted, or None."""
    for box in boxes:
        problem = box_problem(box, rows, cols)
        if problem:
            return problem
    if mask is not None and mask.shape != (rows, cols):
        return f"mask is {mask.shape[1]}x{mask.shape[0]} but the image is {cols}x{rows}"
    return None


def mask_boxes(mask: np.ndarray) -> list[list[float]]:
    """One box per connected component: volumes ship masks, detectors need boxes."""
    labelled, _ = ndimage.label(mask > 0)
    return [
        [float(s[1].start), float(s[0].start), float(s[1].stop), float(s[0].stop)]
        for s in ndimage.find_objects(labelled)
        if s is not None
    ]
